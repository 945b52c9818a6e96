"""``clickstream-etl redrive-discarded``: put the discarded Kinesis batches back on their streams.

The reading and the re-drive are :mod:`pipeline.app.discarded`.  Exit codes are the CLI's
(:mod:`pipeline.app.cli`): 0 when every discarded batch on the queues was re-driven (or, with
``--dry-run``, could be), 1 when a range is no longer on its stream in full (re-process the log
objects of its arrival window) or a message is not an on-failure record, 2 for bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.app.arguments import config_argument
from pipeline.app.cli import EXIT_FAILED, EXIT_OK, error_message, exit_code
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.app.discarded import DiscardedDeps, QueueOutcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="an on-failure queue to drain (may be repeated; default: the transform and sink failure queues)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="read the queues and the ranges; put nothing, delete nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    config_argument(parser)


def run(args: argparse.Namespace, *, deps: DiscardedDeps | None = None, out: TextIO | None = None) -> int:
    """Run ``redrive-discarded``; ``deps`` replaces the SQS and Kinesis clients and the writers (tests)."""
    out = out or sys.stdout
    try:
        return _run(args, deps, out)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)


def _default_deps(args: argparse.Namespace) -> DiscardedDeps:
    from pipeline.app.discarded import DiscardedDeps
    from pipeline.aws.clients import make_client
    from pipeline.aws.kinesis import KinesisWriter
    from pipeline.config import load_config

    config = load_config(args.config)
    kinesis = make_client("kinesis", config.aws)
    return DiscardedDeps(
        make_client("sqs", config.aws), kinesis, lambda stream: KinesisWriter(kinesis, stream, config.stream)
    )


def _run(args: argparse.Namespace, deps: DiscardedDeps | None, out: TextIO) -> int:
    from pipeline.app.discarded import redrive_queue
    from pipeline.config import load_config
    from pipeline.topology import stream_mappings

    queues = args.queue or [m.on_failure_queue for m in stream_mappings(load_config(args.config)).values()]
    deps = deps or _default_deps(args)
    outcomes = [redrive_queue(deps, name, dry_run=args.dry_run) for name in dict.fromkeys(queues)]
    failed = any(o.unreadable or o.foreign for o in outcomes)
    if args.json:
        out.write(json.dumps({"dry_run": args.dry_run, "queues": [o.to_json() for o in outcomes]}, indent=1) + "\n")
    else:
        _print(outcomes, args.dry_run, out)
    return EXIT_FAILED if failed else EXIT_OK


def _print(outcomes: list[QueueOutcome], dry_run: bool, out: TextIO) -> None:
    verb = "would re-drive" if dry_run else "re-drove"
    for o in outcomes:
        out.write(f"{o.queue}: {verb} {o.redriven_batches} batch(es), {o.redriven_records} record(s)\n")
        for gone in o.unreadable:
            window: Any = f"{gone['first_arrival']} .. {gone['last_arrival']}"
            out.write(
                f"  NOT ON THE STREAM {gone['stream']}/{gone['shard']} {gone['start']}..{gone['end']} "
                f"(arrived {window}): re-process the log objects of that window (clickstream-etl backfill or replay)\n"
            )
        if o.foreign:
            out.write(f"  {o.foreign} message(s) are not on-failure records of a Kinesis batch: left on the queue\n")
