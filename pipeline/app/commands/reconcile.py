"""``clickstream-etl reconcile``: re-drive the raw objects of a date range the ledger lacks, and Firehose's failures.

The plan and the executors are :mod:`pipeline.app.reconcile`.  Exit codes are the CLI's
(:mod:`pipeline.app.cli`): 0 when nothing needs attention (re-driven objects are handed to
Extract, whose ledger then completes them), 1 when objects are FAILED in the ledger (they need a
fix, not a re-drive) or AWS failed us, 2 for bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.app.arguments import config_argument, non_negative_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK, error_message, exit_code
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.app.reconcile import ReconcileDeps, ReconcileSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", required=True, metavar="DATE", help="first request hour: YYYY-MM-DD or YYYY-MM-DD-HH (inclusive)"
    )
    parser.add_argument(
        "--until", required=True, metavar="DATE", help="end of the range: YYYY-MM-DD or YYYY-MM-DD-HH (exclusive)"
    )
    parser.add_argument("--prefix", default="", help="key prefix of the logs in the raw bucket (default: all)")
    parser.add_argument("--distribution", metavar="ID", help="only this CloudFront distribution's files")
    parser.add_argument(
        "--min-age",
        type=non_negative_int,
        default=900,
        metavar="SECONDS",
        help="leave objects without a ledger entry younger than this to their notification (default 900)",
    )
    parser.add_argument(
        "--function",
        metavar="NAME",
        help="the function re-driven objects are sent to (default: the Extract function; "
        "clickstream-etl-direct in direct mode)",
    )
    parser.add_argument(
        "--no-firehose", action="store_true", help="leave Firehose's errors/ alone (direct mode has no Firehose)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be re-driven; write and invoke nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    config_argument(parser)


def run(args: argparse.Namespace, *, deps: ReconcileDeps | None = None, out: TextIO | None = None) -> int:
    """Run ``reconcile``; ``deps`` replaces the AWS clients (tests)."""
    out = out or sys.stdout
    try:
        return _reconcile(args, deps, out)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)


def default_deps(args: argparse.Namespace) -> ReconcileDeps:
    from extract.reconciler import invoke_extract
    from pipeline.app.reconcile import ReconcileDeps
    from pipeline.aws.clients import make_client
    from pipeline.aws.kinesis import KinesisWriter
    from pipeline.aws.ledger import Ledger
    from pipeline.config import load_config
    from pipeline.topology import EXTRACT_FUNCTION

    config = load_config(args.config)
    writer = None
    if not args.no_firehose:
        writer = KinesisWriter(make_client("kinesis", config.aws), config.resources.events_stream, config.stream)
    return ReconcileDeps(
        config=config,
        s3=make_client("s3", config.aws),
        ledger=Ledger(make_client("dynamodb", config.aws), config.resources.ledger_table),
        redrive=invoke_extract(make_client("lambda", config.aws), args.function or EXTRACT_FUNCTION),
        events_writer=writer,
    )


def _reconcile(args: argparse.Namespace, deps: ReconcileDeps | None, out: TextIO) -> int:
    from pipeline.app.reconcile import HourWindow, reconcile

    window = HourWindow.parse(args.since, args.until)
    deps = deps or default_deps(args)
    summary = reconcile(
        deps,
        window,
        prefix=args.prefix,
        distribution=args.distribution,
        min_age_ms=args.min_age * 1000,
        dry_run=args.dry_run,
    )
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=1) + "\n")
    else:
        _print(summary, out)
    return EXIT_FAILED if summary.left else EXIT_OK


def _print(summary: ReconcileSummary, out: TextIO) -> None:
    verb = "would re-drive" if summary.dry_run else "re-driven"
    for uri in summary.redriven:
        out.write(f"{verb}  {uri}\n")
    for item in summary.left:
        out.write(f"FAILED  {item['uri']}  (the ledger says FAILED: read bad/ for why, fix, re-run it)\n")
    window: dict[str, Any] = summary.window.to_json()
    counts = ", ".join(f"{state} {n}" for state, n in summary.objects.items()) or "none"
    out.write(f"raw objects {window['since']} .. {window['until']}: {counts}\n")
    if summary.error_objects or summary.copy_failures:
        errors = ", ".join(f"{state} {n}" for state, n in summary.error_objects.items())
        out.write(
            f"firehose errors/: {errors}; records {verb} to stream 2: {summary.records_redriven}, "
            f"not canonical events (left in place): {summary.records_not_events}\n"
        )
        for uri in summary.copy_failures:
            out.write(f"COPY failed  {uri}  (re-COPY with clickstream-etl redshift load)\n")
