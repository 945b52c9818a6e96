"""``clickstream-etl backfill``: arguments, the run (see :mod:`pipeline.app.backfill`) and its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.app.arguments import config_argument, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK
from pipeline.errors import InputError


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
    from pipeline.app.backfill import ProgressBar, plan_sources, run_backfill
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
        sources, dest, config, workers=args.workers, progress=ProgressBar(), source_roots=args.source
    )
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
    return EXIT_FAILED if summary.failed_files else EXIT_OK
