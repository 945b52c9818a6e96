"""``clickstream-etl rollup DEST``: the dashboard's daily rollups beside the events (:mod:`load.rollup`).

Reads ``DEST/events/`` (a folder or ``s3://bucket/prefix``), rolls up the days whose inputs changed
since their rollups were written (all of them the first time), and writes ``DEST/rollups/``.
Rerunning changes nothing; a late event re-rolls its day only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from pipeline.app.arguments import config_argument, iso_date
from pipeline.app.cli import EXIT_OK
from pipeline.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", metavar="DEST", help="the dataset: a backfill's output folder or s3://bucket/prefix")
    parser.add_argument("--since", type=iso_date, metavar="DATE", help="first event_date to roll up (inclusive)")
    parser.add_argument("--until", type=iso_date, metavar="DATE", help="last event_date to roll up (inclusive)")
    parser.add_argument("--dry-run", action="store_true", help="print the days that would be rolled up; write nothing")
    parser.add_argument("--json", action="store_true", help="print the plan or the summary as JSON")
    config_argument(parser)


def run(args: argparse.Namespace, *, s3: Any = None, out: TextIO | None = None) -> int:
    """Run ``rollup``; ``s3`` replaces the S3 client (tests)."""
    from load.rollup import list_store, plan_rollups, run_rollups
    from pipeline.app.dashboard import open_store

    out = out or sys.stdout
    if args.since and args.until and args.since > args.until:
        raise ConfigError(f"--since {args.since} is after --until {args.until}")
    store = open_store(args.dest, args.config, s3=s3)
    plan = plan_rollups(list_store(store), since=args.since, until=args.until)
    if args.dry_run:
        if args.json:
            out.write(json.dumps(plan.to_json(), indent=1) + "\n")
        else:
            for day in plan.selected:
                out.write(f"roll up  {day}\n")
            out.write(f"{len(plan.selected)} of {len(plan.days)} day(s) to roll up; dry run: nothing written\n")
        return EXIT_OK
    summary = run_rollups(store, plan)
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=1) + "\n")
    else:
        out.write(render_summary(summary, store.url()) + "\n")
    return EXIT_OK


def render_summary(summary: Any, where: str) -> str:
    """One line: what a rollup run did (also printed after ``backfill --rollup``)."""
    return (
        f"rollups: {len(summary.rolled_up)} of {summary.days} day(s) rolled up ({summary.events_read:,} events read), "
        f"{summary.files_written} files written ({summary.bytes_written:,} bytes), {summary.files_retired} retired; "
        f"{where.rstrip('/')}/rollups/"
    )
