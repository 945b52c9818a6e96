"""``clickstream-etl loadtest``: synthetic traffic at ``--rate`` for ``--duration``, measured ingestion to sink.

The traffic, the pacing, the matching and the figures are :mod:`pipeline.app.loadtest`.  Exit codes
are the CLI's (:mod:`pipeline.app.cli`): 0 when every event sent reached the sink exactly once and
no bad row was written, 1 otherwise (loss, duplication, bad rows, or nothing sent), 2 for bad
arguments or configuration, 130 when interrupted (after the report of what was measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from typing import TYPE_CHECKING, TextIO

from pipeline.app.arguments import config_argument, non_negative_float, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from pipeline.app.loadtest import DEFAULT_MAX_EVENTS
from pipeline.constants import (
    METRICS_NAMESPACE,
    POWERTOOLS_LOG_LEVEL_ENV,
    POWERTOOLS_METRICS_DISABLED_ENV,
    POWERTOOLS_METRICS_NAMESPACE_ENV,
    POWERTOOLS_TRACE_DISABLED_ENV,
)

if TYPE_CHECKING:
    from pipeline.app.loadtest import LoadPlan, LoadTestReport
    from pipeline.app.local.runtime import LocalChain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=non_negative_float, required=True, metavar="N", help="events per second")
    parser.add_argument("--duration", type=non_negative_float, required=True, metavar="S", help="seconds of traffic")
    parser.add_argument(
        "--max-events",
        type=positive_int,
        metavar="N",
        help=f"hard cap on the events sent; RATE * DURATION above it is refused (default {DEFAULT_MAX_EVENTS:,})",
    )
    parser.add_argument(
        "--stream",
        metavar="NAME",
        help="put the traffic on this deployed stream 1 instead of the local chain (real AWS: it costs money)",
    )
    parser.add_argument(
        "--output",
        metavar="S3_URL",
        help="with --stream: the deployed events dataset, s3://bucket/prefix/, to read the events back from",
    )
    parser.add_argument(
        "--bad",
        metavar="S3_URL",
        help="with --stream: the deployed bad rows, s3://bucket/prefix/ (counted, not deleted)",
    )
    parser.add_argument(
        "--wait",
        type=non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="with --output: how long to wait, after the last put, for every event to reach it (default 300)",
    )
    parser.add_argument("--poll", type=non_negative_float, default=10.0, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--keep", action="store_true", help="with --output: leave the run's output objects in place (no cleanup)"
    )
    parser.add_argument("--shards", type=positive_int, default=2, help="local chain: shards per stream (default: 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    config_argument(parser)


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    before_read_back: Callable[[LocalChain], None] | None = None,
) -> int:
    """Run ``loadtest``; ``before_read_back`` is handed the local chain before its sink is read (tests
    inject loss or duplication with it)."""
    from pipeline.app.loadtest import LoadTestInputError, plan_load

    out = out or sys.stdout
    if not args.stream and (args.output or args.bad or args.keep):
        raise LoadTestInputError("--output, --bad and --keep are for a deployed pipeline: give --stream too")
    plan = plan_load(args.rate, args.duration, args.max_events)
    report = _remote(args, plan) if args.stream else _local(args, plan, before_read_back)
    if args.json:
        out.write(json.dumps(report.to_json(), indent=1) + "\n")
    else:
        out.write(report.render() + "\n")
    if report.interrupted:
        return EXIT_INTERRUPTED
    if args.stream and not args.output:
        return EXIT_OK if report.sent == plan.events else EXIT_FAILED  # nothing to match: what was sent is all
    return EXIT_OK if report.ok else EXIT_FAILED


@contextmanager
def _quiet_handlers() -> Iterator[None]:
    """The handlers' JSON logs, traces and metrics off for the run, the environment put back after.

    As ``run-local`` does, before the handlers are imported (their Powertools objects read these).
    """
    keys = (
        POWERTOOLS_LOG_LEVEL_ENV,
        POWERTOOLS_TRACE_DISABLED_ENV,
        POWERTOOLS_METRICS_NAMESPACE_ENV,
        POWERTOOLS_METRICS_DISABLED_ENV,
    )
    saved = {key: os.environ.get(key) for key in keys}
    level = logging.getLogger().level
    try:
        os.environ.setdefault(POWERTOOLS_LOG_LEVEL_ENV, "WARNING")
        logging.getLogger().setLevel(logging.WARNING)
        os.environ.setdefault(POWERTOOLS_TRACE_DISABLED_ENV, "true")
        os.environ.setdefault(POWERTOOLS_METRICS_NAMESPACE_ENV, METRICS_NAMESPACE)
        os.environ.setdefault(POWERTOOLS_METRICS_DISABLED_ENV, "true")
        # Powertools prints a metric set to stdout once a metric holds 100 values, disabled or not
        # (aws-lambda-powertools 3.x, AmazonCloudWatchEMFProvider.add_metric): thousands of events
        # reach that, and the report is the output here.
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
            yield
    finally:
        logging.getLogger().setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _local(
    args: argparse.Namespace, plan: LoadPlan, before_read_back: Callable[[LocalChain], None] | None
) -> LoadTestReport:
    from pipeline.app.commands.run_local import missing_emulator
    from pipeline.config import load_config
    from pipeline.errors import InputError

    problem = missing_emulator(server=False)
    if problem:
        raise InputError(problem.replace("run-local", "loadtest"))
    config = load_config(args.config)
    with _quiet_handlers():
        # Imported here, inside: the handlers' loggers read the level when they are created.
        from pipeline.app.loadtest import run_local
        from pipeline.app.local.runtime import emulated_aws

        with emulated_aws(server=False):
            return run_local(plan, config, shards=args.shards, before_read_back=before_read_back)


def _remote(args: argparse.Namespace, plan: LoadPlan) -> LoadTestReport:
    from pipeline.app.loadtest import RemoteDeps, S3Location, run_remote
    from pipeline.aws.clients import make_client
    from pipeline.config import load_config

    output = S3Location.parse(args.output) if args.output else None
    bad = S3Location.parse(args.bad) if args.bad else None
    config = load_config(args.config)
    deps = RemoteDeps(make_client("kinesis", config.aws), make_client("s3", config.aws), config.stream)
    return run_remote(
        plan, args.stream, deps, output=output, bad=bad, wait_s=args.wait, poll_s=args.poll, keep=args.keep
    )
