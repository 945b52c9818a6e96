"""``clickstream-etl generate-logs``: write realistic, deterministic CloudFront sample logs."""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline.app.arguments import positive_int
from pipeline.app.progress import TerminalProgress
from pipeline.formats.cloudfront import GENERATIONS
from pipeline.testing.generate import PROFILES, GenerateOptions, write_log_file


def _parse_start(text: str) -> datetime:
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or YYYY-MM-DDTHH, got {text!r}")
    year, month, day, hour = match.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour or 0), tzinfo=UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be within [0, 1]")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a finite number > 0")
    return value


def _distribution_id(text: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]+", text):
        raise argparse.ArgumentTypeError("must be upper-case letters and digits, e.g. E2EXAMPLE1ABCD")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``generate-logs`` subcommand."""
    defaults = GenerateOptions()
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="directory to write the log files into")
    parser.add_argument(
        "--files", type=_non_negative, default=defaults.files, help="number of files (default %(default)s)"
    )
    parser.add_argument(
        "--lines-per-file",
        type=_non_negative,
        default=defaults.lines_per_file,
        help="lines per file (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=defaults.start,
        help="first hour covered, YYYY-MM-DD or YYYY-MM-DDTHH, UTC (default 2024-11-15)",
    )
    parser.add_argument(
        "--hours",
        type=positive_int,
        default=defaults.hours,
        help="hours the files are spread over (default %(default)s)",
    )
    parser.add_argument(
        "--fields",
        type=int,
        choices=GENERATIONS,
        default=defaults.fields,
        help="legacy field-count generation (default %(default)s)",
    )
    parser.add_argument(
        "--malformed-ratio",
        type=_ratio,
        default=None,
        help="share of deliberately malformed lines (default: the profile's, 0.002 classic, 0.005 high-cardinality)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=defaults.profile,
        help="what the traffic looks like: classic (a small repeated cast) or high-cardinality "
        "(like real traffic: distinct IPs, thousands of URLs, a few hundred user agents) (default %(default)s)",
    )
    parser.add_argument(
        "--distribution-id",
        type=_distribution_id,
        default=defaults.distribution_id,
        help="distribution id in file names",
    )
    parser.add_argument("--plain", action="store_true", help="write plain text instead of gzip")
    parser.add_argument(
        "--size-mb",
        type=_positive_float,
        default=None,
        help="approximate total size target in MiB (compressed unless --plain); overrides --files",
    )


def _options_from_args(args: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(
        files=args.files,
        lines_per_file=args.lines_per_file,
        seed=args.seed,
        start=args.start,
        hours=args.hours,
        fields=args.fields,
        malformed_ratio=args.malformed_ratio,
        distribution_id=args.distribution_id,
        gzip=not args.plain,
        profile=args.profile,
    )


def run(args: argparse.Namespace) -> int:
    """Write the files described by ``args``, print a one-line summary, return 0."""
    options = _options_from_args(args)
    options.validate()
    out_dir = Path(args.out_dir)
    size_mb: float | None = getattr(args, "size_mb", None)
    if size_mb is not None and options.lines_per_file == 0:
        print("generate-logs: error: --size-mb needs --lines-per-file > 0", file=sys.stderr)
        return 2
    progress = TerminalProgress()
    first = write_log_file(out_dir, options, 0) if options.files or size_mb is not None else None
    if size_mb is not None and first is not None:
        per_file = max(first.stat().st_size, 1)
        options = replace(options, files=max(1, round(size_mb * 1024 * 1024 / per_file)))
    paths: list[Path] = [first] if first is not None else []
    progress.phase("generating", options.files, "file")
    progress.update(len(paths))
    for index in range(len(paths), options.files):
        paths.append(write_log_file(out_dir, options, index))
        progress.update(len(paths), f"{len(paths) * options.lines_per_file:,} lines")
    progress.close()
    total_bytes = sum(path.stat().st_size for path in paths)
    total_lines = len(paths) * options.lines_per_file
    noun = "file" if len(paths) == 1 else "files"
    print(f"generated {len(paths)} {noun}, {total_lines} lines, {total_bytes} bytes in {out_dir}")
    return 0
