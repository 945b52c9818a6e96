"""The ``clickstream-etl`` command line.

Exit codes: 0 success (bad rows are data, not failures); 1 the run finished but some
sources could not be read; 2 bad arguments, bad configuration or an unreadable SOURCE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.errors import PipelineError

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickstream-etl",
        description="CloudFront clickstream logs to Snowplow-compatible canonical events.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    backfill = commands.add_parser(
        "backfill",
        help="process historical log files into a Parquet dataset and bad rows",
        description=(
            "Process CloudFront log files (gzipped or plain) into DEST/events/ (Hive-partitioned "
            "Parquet) and DEST/bad/ (bad rows as JSON lines). Rerunning into the same DEST gives "
            "the same dataset."
        ),
    )
    backfill.add_argument("source", metavar="SOURCE", help="a log file, a folder (searched recursively) or a glob")
    backfill.add_argument("--output", "-o", required=True, metavar="DEST", help="output folder")
    backfill.add_argument(
        "--workers",
        "-w",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="parallel worker processes (default: the number of cores)",
    )
    backfill.add_argument("--config", metavar="FILE", help="a TOML overlay on the default configuration")
    backfill.add_argument(
        "--non-tracker-policy",
        choices=("skip", "page_view"),
        help="what to do with requests that are not tracker hits (default from config: skip)",
    )
    backfill.add_argument("--json", action="store_true", help="print the summary as JSON")

    from pipeline import generate

    generator = commands.add_parser(
        "generate-logs",
        help="write realistic, deterministic CloudFront sample logs",
        description="Write realistic CloudFront access logs (deterministic for a given seed).",
    )
    generate.add_arguments(generator)

    from pipeline import redshift_cli

    redshift = commands.add_parser(
        "redshift",
        help="Redshift load path: print the DDL or Firehose's COPY command, load the Parquet dataset",
        description="Print the Redshift DDL or Firehose's CopyCommand, or load the Parquet dataset from S3.",
    )
    redshift_cli.add_arguments(redshift)

    from pipeline.local import cli as local_cli

    local = commands.add_parser(
        "run-local",
        help="run the whole serverless chain on this machine, on emulated AWS (moto)",
        description=(
            "Create the configured buckets, streams and ledger on moto, upload SOURCE and drive "
            "Extract, Transform, the Parquet sink and an emulated Firehose as AWS would; then print "
            "a reconciliation of every stage. Exit code 1 when the stages do not reconcile."
        ),
    )
    local_cli.add_arguments(local)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "backfill":
            return _backfill(args)
        if args.command == "generate-logs":
            from pipeline import generate

            return generate.run(args)
        if args.command == "redshift":
            from pipeline import redshift_cli

            return redshift_cli.run(args)
        if args.command == "run-local":
            from pipeline.local import cli as local_cli

            return local_cli.run(args)
    except PipelineError as exc:
        print(f"clickstream-etl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("clickstream-etl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: the reader left, the work is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it first
    return EXIT_USAGE  # pragma: no cover


def _backfill(args: argparse.Namespace) -> int:
    from pipeline.backfill import ProgressBar, plan_sources, run_backfill
    from pipeline.config import load_config

    overrides = {}
    if args.non_tracker_policy:
        overrides["transform.non_tracker_policy"] = args.non_tracker_policy
    config = load_config(args.config, overrides=overrides)
    dest = Path(args.output)
    if dest.exists() and not dest.is_dir():
        print(f"clickstream-etl: error: --output {dest} exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    sources = plan_sources(args.source)
    summary = run_backfill(sources, dest, config, workers=args.workers, progress=ProgressBar())
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
    else:
        print(
            f"files {summary.files} ({summary.failed_files} failed)  lines {summary.lines_read:,}  "
            f"events {summary.good:,}  bad {summary.bad:,}  skipped {summary.skipped:,}  "
            f"rows written {summary.rows_written:,} ({summary.duplicates_dropped:,} duplicates dropped)  "
            f"{summary.seconds:.2f}s  {summary.lines_per_second:,.0f} lines/s"
        )
        if summary.bad_by_kind:
            print("bad rows by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.bad_by_kind.items())))
        if summary.skipped_by_reason:
            print("skipped by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped_by_reason.items())))
        print(f"output: {dest / 'events'} (Parquet), {dest / 'bad'} (bad rows)")
    for error in summary.errors:
        print(f"clickstream-etl: could not read {error}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failed_files else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
