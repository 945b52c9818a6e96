"""``clickstream-etl backfill``: arguments, the run (see :mod:`pipeline.app.backfill`) and its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pipeline.app.arguments import config_argument, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK
from pipeline.errors import InputError
from pipeline.summary import RunSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help="log files, folders (searched recursively) or globs; several may be given (a shell's glob)",
    )
    parser.add_argument("--output", "-o", required=True, metavar="DEST", help="output folder")
    parser.add_argument(
        "--workers",
        "-w",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="parallel worker processes (default: the number of cores)",
    )
    config_argument(parser)
    parser.add_argument(
        "--non-tracker-policy",
        choices=("skip", "page_view"),
        help="what to do with requests that are not tracker hits (default from config: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from pipeline.app.backfill import plan_sources, run_backfill
    from pipeline.app.progress import TerminalProgress
    from pipeline.config import load_config

    overrides = {}
    if args.non_tracker_policy:
        overrides["transform.non_tracker_policy"] = args.non_tracker_policy
    config = load_config(args.config, overrides=overrides)
    dest = Path(args.output)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--output {dest} exists and is not a folder")
    sources = plan_sources(args.source)
    summary = run_backfill(
        sources, dest, config, workers=args.workers, progress=TerminalProgress(), source_roots=args.source
    )
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
    else:
        print(render_summary(summary, dest))
    for error in summary.errors:
        print(f"clickstream-etl: could not read {error}", file=sys.stderr)
    for source in sorted(summary.not_logs):
        print(
            f"clickstream-etl: warning: {source} is not a CloudFront log as far as can be told (no #Fields header, "
            "and no [extract] default_fields): its lines are schema_mismatch bad rows",
            file=sys.stderr,
        )
    return EXIT_FAILED if summary.failed_files else EXIT_OK


NOTICES: Final = {
    "redacted_url_parameters": "events had secret-carrying URL parameters redacted ([transform.redact])",
    "email_shaped_user_id": (
        "events have an e-mail-shaped user_id: turn on [transform.pseudonymize] so that no address leaves"
    ),
}


def render_summary(summary: RunSummary, dest: Path) -> str:
    """The run's totals as a small table, with the breakdowns and notices beside them."""

    def by(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))

    events = dest / "events"
    rows = [
        ("files", f"{summary.files:,}", f"{summary.failed_files:,} could not be read" if summary.failed_files else ""),
        ("lines read", f"{summary.lines_read:,}", f"{summary.bytes_read / 1048576:,.1f} MiB decompressed"),
        ("good events", f"{summary.good:,}", ""),
        ("bad rows", f"{summary.bad:,}", by(summary.bad_by_kind)),
        ("skipped lines", f"{summary.skipped:,}", by(summary.skipped_by_reason)),
        (
            "rows in DEST",
            f"{summary.rows_written:,}",
            f"in the partitions this run wrote; {summary.duplicates_dropped:,} natural duplicates dropped",
        ),
        ("time", f"{summary.seconds:,.2f} s", f"{summary.lines_per_second:,.0f} lines/s"),
    ]
    if summary.not_logs:
        rows.insert(1, ("not logs", f"{len(summary.not_logs):,}", "files without a #Fields header (named on stderr)"))
    rows += [("notice", f"{count:,}", NOTICES.get(name, name)) for name, count in sorted(summary.notices.items())]
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [f"{label:<{label_width}}  {value:>{value_width}}  {note}".rstrip() for label, value, note in rows]
    bad = f", {dest / 'bad'} (bad rows)" if summary.bad else ""
    where = f"{events} (Parquet){bad}" if summary.rows_written else f"no events written{bad or ''}"
    lines.append(f"{'output':<{label_width}}  {where}")
    return "\n".join(lines)
