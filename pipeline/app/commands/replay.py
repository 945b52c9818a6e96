"""``clickstream-etl replay``: feed the deployed pipeline a date range of raw logs, paced to stream 1's shards.

The plan, the pacing and the final reconciliation are :mod:`pipeline.app.replay`.  Exit codes are
the CLI's (:mod:`pipeline.app.cli`): 0 when every invoked object is COMPLETE in the ledger, 1 when
some are FAILED or still pending after ``--wait`` (run it again: it skips what completed), 2 for
bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.app.arguments import config_argument, non_negative_float, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK, error_message, exit_code
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.app.reconcile import ReconcileDeps
    from pipeline.app.replay import RateLimits, ReplayDeps, ReplaySummary
    from pipeline.app.replay_map import MapReplayDeps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="S3_URL", help="the raw logs, s3://bucket/prefix")
    parser.add_argument(
        "--since", required=True, metavar="DATE", help="first request hour: YYYY-MM-DD or YYYY-MM-DD-HH (inclusive)"
    )
    parser.add_argument(
        "--until", required=True, metavar="DATE", help="end of the range: YYYY-MM-DD or YYYY-MM-DD-HH (exclusive)"
    )
    parser.add_argument("--distribution", metavar="ID", help="only this CloudFront distribution's files")
    add_replay_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its time budget; invoke nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    config_argument(parser)


def add_replay_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The options of a replay, shared by ``replay`` and ``backfill --mode replay``."""
    parser.add_argument(
        "--engine",
        choices=("auto", "map", "invoke"),
        default="auto",
        help=(
            "map: the deployed ReplayStateMachine (a Distributed Map, a batch of objects per Extract invocation); "
            "invoke: one asynchronous invocation per object, paced from here; auto (default): invoke up to "
            "200 objects, map above"
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="concurrent Extract invocations of the map (default: one per shard, at most 8)",
    )
    parser.add_argument(
        "--state-machine",
        metavar="ARN",
        help="the replay state machine (default: the one named clickstream-etl-replay)",
    )
    parser.add_argument(
        "--rate-records",
        type=non_negative_float,
        metavar="N",
        help="records/s on stream 1 (default: 80%% of 1,000 per shard)",
    )
    parser.add_argument(
        "--rate-bytes",
        type=non_negative_float,
        metavar="N",
        help="bytes/s on stream 1 (default: 80%% of 1 MiB per shard)",
    )
    parser.add_argument(
        "--shards", type=positive_int, metavar="N", help="stream 1's shards (default: asked of Kinesis)"
    )
    parser.add_argument(
        "--compression-ratio",
        type=non_negative_float,
        default=10.0,
        metavar="R",
        help="decompressed bytes per stored byte of a .gz log, for the estimate (default 10)",
    )
    parser.add_argument(
        "--wait",
        type=non_negative_float,
        default=900.0,
        metavar="SECONDS",
        help="how long to wait, after the last invocation, for the ledger to mark them COMPLETE (default 900)",
    )
    parser.add_argument("--poll", type=non_negative_float, default=15.0, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--function",
        metavar="NAME",
        help="the function invoked per object (default: the Extract function; clickstream-etl-direct in direct mode)",
    )


def run(
    args: argparse.Namespace,
    *,
    deps: tuple[ReconcileDeps, ReplayDeps] | None = None,
    shards: int | None = None,
    out: TextIO | None = None,
    map_deps: MapReplayDeps | None = None,
) -> int:
    """Run ``replay``; ``deps`` replaces the AWS clients, clock and sleep, ``shards`` the DescribeStream,
    ``map_deps`` the state machine (tests)."""
    out = out or sys.stdout
    try:
        return _replay(args, deps, shards, out, map_deps)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)


def _source(url: str) -> tuple[str, str]:
    from pipeline.app.reconcile import ReconcileInputError

    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ReconcileInputError(f"{url!r} is not s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    if ".." in prefix.split("/"):
        raise ReconcileInputError(f"the prefix of {url!r} must not hold '..'")
    return bucket, prefix


def _default_deps(args: argparse.Namespace, bucket: str) -> tuple[ReconcileDeps, ReplayDeps, Any]:
    from dataclasses import replace

    from extract.reconciler import invoke_extract
    from pipeline.app.progress import TerminalProgress
    from pipeline.app.reconcile import ReconcileDeps
    from pipeline.app.replay import ReplayDeps
    from pipeline.aws.clients import make_client
    from pipeline.aws.ledger import Ledger
    from pipeline.config import load_config
    from pipeline.topology import EXTRACT_FUNCTION

    config = load_config(args.config)
    config = replace(config, resources=replace(config.resources, log_bucket=bucket))
    ledger = Ledger(make_client("dynamodb", config.aws), config.resources.ledger_table)
    redrive = invoke_extract(make_client("lambda", config.aws), args.function or EXTRACT_FUNCTION)
    listing = ReconcileDeps(config, make_client("s3", config.aws), ledger, redrive)
    return listing, ReplayDeps(ledger, redrive, progress=TerminalProgress()), make_client("kinesis", config.aws)


def _shard_count(kinesis: Any, stream: str) -> int:
    from pipeline.app.reconcile import ReconcileAccessError, ReconcileTransientError
    from pipeline.aws.errors import aws_exceptions, translate

    try:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except aws_exceptions() as exc:
        what = f"Kinesis DescribeStreamSummary of {stream} (or give --shards)"
        raise translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError) from exc
    return max(int(summary.get("OpenShardCount", 1)), 1)


def limits_from(args: argparse.Namespace, shards: int) -> RateLimits:
    from pipeline.app.replay import RateLimits

    default = RateLimits.for_shards(shards)
    return RateLimits(args.rate_records or default.records_per_s, args.rate_bytes or default.bytes_per_s)


def _map_deps(listing: ReconcileDeps, args: argparse.Namespace) -> MapReplayDeps:
    from pipeline.app.progress import TerminalProgress
    from pipeline.app.replay_map import MapReplayDeps, StepFunctionsMap, state_machine_arn
    from pipeline.aws.clients import make_client
    from pipeline.topology import REPLAY_STATE_MACHINE

    config = listing.config
    sfn = make_client("stepfunctions", config.aws)
    if args.state_machine:
        arn = args.state_machine
    elif args.dry_run:  # a dry run starts nothing, so it needs no deployed state machine
        arn = f"(the state machine named {REPLAY_STATE_MACHINE})"
    else:
        arn = state_machine_arn(sfn, REPLAY_STATE_MACHINE)
    bucket = config.resources.output_bucket
    engine = StepFunctionsMap(listing.s3, sfn, arn, bucket)
    return MapReplayDeps(listing.ledger, engine, bucket, progress=TerminalProgress())


def _replay(
    args: argparse.Namespace,
    deps: tuple[ReconcileDeps, ReplayDeps] | None,
    shards: int | None,
    out: TextIO,
    map_deps: MapReplayDeps | None = None,
) -> int:
    from pipeline.app.reconcile import HourWindow, plan_raw
    from pipeline.app.replay import Estimator, plan_replay, replay
    from pipeline.app.replay_map import AUTO_MAP_THRESHOLD, max_concurrency_for, replay_with_map

    bucket, prefix = _source(args.source)
    window = HourWindow.parse(args.since, args.until)
    if deps is None:
        listing, replay_deps, kinesis = _default_deps(args, bucket)
    else:
        (listing, replay_deps), kinesis = deps, None
    if shards is None:
        shards = args.shards or _shard_count(kinesis, listing.config.resources.raw_stream)
    limits = limits_from(args, shards)
    plan = plan_raw(listing, window, prefix=prefix, distribution=args.distribution)
    items = plan_replay(plan, Estimator.from_config(listing.config.stream, args.compression_ratio or 1.0))
    engine = args.engine
    if engine == "auto":
        engine = "map" if len(items) > AUTO_MAP_THRESHOLD else "invoke"
    summary: ReplaySummary
    if engine == "map":
        concurrency = max_concurrency_for(shards, args.concurrency)
        if map_deps is None:
            map_deps = _map_deps(listing, args)
        summary = replay_with_map(
            plan,
            items,
            map_deps,
            limits,
            max_concurrency=concurrency,
            wait_s=args.wait,
            poll_s=args.poll,
            dry_run=args.dry_run,
        )
    else:
        summary = replay(plan, items, replay_deps, limits, wait_s=args.wait, poll_s=args.poll, dry_run=args.dry_run)
    if args.json:
        out.write(json.dumps({**summary.to_json(), **_limits_json(limits, shards)}, indent=1) + "\n")
    else:
        _print(summary, limits, shards, out)
    return EXIT_OK if args.dry_run or summary.ok else EXIT_FAILED


def _limits_json(limits: RateLimits, shards: int) -> dict[str, Any]:
    return {"shards": shards, "rate_records": limits.records_per_s, "rate_bytes": limits.bytes_per_s}


def _print(summary: ReplaySummary, limits: RateLimits, shards: int, out: TextIO) -> None:
    out.write(
        f"selected {summary.selected} objects: {summary.already_complete} complete already, "
        f"{sum(summary.left_alone.values())} left alone {summary.left_alone or ''}\n"
    )
    verb = "would invoke" if summary.dry_run else "invoked"
    out.write(
        f"{verb} Extract for {len(summary.pending) if summary.dry_run else summary.invoked} objects, "
        f"about {summary.records:,} records and {summary.bytes:,} bytes on stream 1 ({shards} shard(s), "
        f"{limits.records_per_s:,.0f} records/s, {limits.bytes_per_s:,.0f} bytes/s): "
        f"{summary.paced_s:,.1f} s of pacing\n"
    )
    from pipeline.app.replay_map import MapReplaySummary

    if isinstance(summary, MapReplaySummary):
        verb = "would start" if summary.dry_run else "started"
        out.write(
            f"{verb} the replay state machine: batches of objects, {summary.max_concurrency} Extract invocations "
            f"at a time, each paced to 1/{summary.max_concurrency} of those rates\n"
            f"  manifest {summary.manifest}\n  results  {summary.results}\n"
        )
        if not summary.dry_run:
            out.write(f"  execution {summary.execution}: {summary.status}\n")
    if summary.dry_run:
        return
    out.write(f"ledger: {summary.complete} complete, {len(summary.failed)} failed, {len(summary.pending)} pending\n")
    for uri in summary.failed:
        out.write(f"FAILED   {uri}\n")
    for uri in summary.pending:
        out.write(f"PENDING  {uri}\n")
    if summary.pending:
        out.write(
            "still pending: run the same replay again later (it skips what completed), or clickstream-etl reconcile\n"
        )
