"""``clickstream-etl run-local``: arguments and the run (see :mod:`pipeline.app.local.runtime`)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Final

from pipeline.app.arguments import config_argument, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK
from pipeline.app.progress import TerminalProgress
from pipeline.bundled import sample_logs
from pipeline.constants import (
    METRICS_NAMESPACE,
    POWERTOOLS_LOG_LEVEL_ENV,
    POWERTOOLS_METRICS_DISABLED_ENV,
    POWERTOOLS_METRICS_NAMESPACE_ENV,
    POWERTOOLS_TRACE_DISABLED_ENV,
)
from pipeline.errors import InputError

LOCAL_EXTRA_HINT: Final = "pip install 'clickstream-etl[local]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="*",
        metavar="SOURCE",
        help="log files, folders or globs to upload (default: the sample logs shipped with the package)",
    )
    parser.add_argument(
        "--output", "-o", metavar="DEST", help="copy the Parquet dataset and bad rows to DEST/events/ and DEST/bad/"
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="run moto as a local HTTP server on 127.0.0.1 (every call goes over HTTP) instead of in-process",
    )
    parser.add_argument("--shards", type=positive_int, default=2, help="shards per Kinesis stream (default: 2)")
    config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the reconciliation as JSON")
    parser.add_argument(
        "--collector",
        action="store_true",
        help="serve the collector Lambda on 127.0.0.1 in front of the chain (no uploads); Ctrl-C stops it",
    )
    parser.add_argument(
        "--port", type=positive_int, default=8080, help="the collector's local port with --collector (default: 8080)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the handlers' JSON logs")


def missing_emulator(server: bool) -> str | None:
    """What is missing for the emulator (the ``local`` extra), or None when it is installed."""
    needed = ["moto"] + (["flask", "werkzeug"] if server else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"run-local emulates AWS with moto, and {', '.join(missing)} is not installed; "
        f"install the emulator with: {LOCAL_EXTRA_HINT}"
    )


def run(args: argparse.Namespace) -> int:
    problem = missing_emulator(args.server)
    if problem:
        raise InputError(problem)
    # Before the handlers are imported: their Powertools loggers read these when created.  The
    # environment is put back afterwards, so that a caller in the same process (a test, a
    # notebook) gets its own settings again (metrics on, say).
    keys = (
        POWERTOOLS_LOG_LEVEL_ENV,
        POWERTOOLS_TRACE_DISABLED_ENV,
        POWERTOOLS_METRICS_NAMESPACE_ENV,
        POWERTOOLS_METRICS_DISABLED_ENV,
    )
    saved = {key: os.environ.get(key) for key in keys}
    try:
        if not args.verbose:
            # The handlers' JSON logs (INFO) would bury the reconciliation, which is the output here.
            os.environ.setdefault(POWERTOOLS_LOG_LEVEL_ENV, "WARNING")
            logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
        os.environ.setdefault(POWERTOOLS_TRACE_DISABLED_ENV, "true")
        os.environ.setdefault(POWERTOOLS_METRICS_NAMESPACE_ENV, METRICS_NAMESPACE)
        os.environ.setdefault(POWERTOOLS_METRICS_DISABLED_ENV, "true")
        return _run_collector(args) if args.collector else _run_chain(args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_collector(args: argparse.Namespace) -> int:
    """The collector on 127.0.0.1 in front of the emulated chain, until Ctrl-C; then the reconciliation and export."""
    from extract.collector import build_deps
    from extract.realtime import LOCAL_TABLE, create_realtime_table
    from pipeline.app.local.collector_server import ObservedChain, serving
    from pipeline.app.local.runtime import emulated_aws
    from pipeline.config import load_config
    from pipeline.schema import CanonicalEvent

    def landed(events: list[CanonicalEvent]) -> None:
        for event in events:
            print(json.dumps({k: event.get(k) for k in _SHOWN_FIELDS if event.get(k) is not None}), flush=True)

    # The real-time counter on an emulated table too, so the dashboard's tile works locally.
    overrides: dict[str, object] = {"collector.realtime_table": LOCAL_TABLE, "collector.realtime_salt": "run-local"}
    config = load_config(args.config, overrides=overrides)
    output = Path(args.output or "run-local-collector")
    with emulated_aws(server=args.server) as endpoint:
        if endpoint:
            config = load_config(args.config, overrides={**overrides, "aws.endpoint_url": endpoint})
        chain = ObservedChain(config, shards=args.shards, on_events=landed)
        chain.create_resources()
        create_realtime_table(chain.dynamodb, LOCAL_TABLE)
        deps = build_deps(config, kinesis=chain.kinesis, dynamodb=chain.dynamodb)
        with serving(chain, deps, port=args.port) as server:
            print(
                f"run-local: collector on {server.url} (pixel /i, tp2 POST/GET, /health, /realtime); Ctrl-C to stop",
                flush=True,
            )
            # Ctrl-C, or a plain kill, ends the session with the export (a shell's background job
            # inherits SIGINT ignored, so both are set here).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nrun-local: stopping the collector", flush=True)
        report = chain.run()
        chain.export(output)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.render())
    print(f"output: {output / 'events'} (Parquet), {output / 'bad'} (bad rows)")
    return EXIT_OK if report.complete else EXIT_FAILED


_SHOWN_FIELDS: Final = ("event_id", "event", "event_name", "app_id", "page_url", "se_action", "network_userid")


def _run_chain(args: argparse.Namespace) -> int:
    from pipeline.app.backfill import plan_sources
    from pipeline.app.local.runtime import LocalChain, emulated_aws
    from pipeline.config import load_config

    config = load_config(args.config)
    sources = plan_sources(args.source or [str(sample_logs())])
    started = time.perf_counter()
    with emulated_aws(server=args.server) as endpoint:
        if endpoint:
            config = load_config(args.config, overrides={"aws.endpoint_url": endpoint})
        chain = LocalChain(config, shards=args.shards)
        chain.create_resources()
        progress = TerminalProgress()
        chain.upload([s.path for s in sources], progress)
        report = chain.run(progress)
        if args.output:
            chain.export(Path(args.output))
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({**report.to_json(), "seconds": round(seconds, 3)}, indent=1))
    else:
        mode = f"moto server at {endpoint}" if args.server else "moto in-process"
        print(f"run-local: {len(sources)} files through extract -> transform -> sinks ({mode})")
        print(report.render())
        rate = report.events / seconds if seconds else 0.0
        print(f"{seconds:.2f}s, {rate:,.0f} events/s through the local chain")
        if args.output:
            print(f"output: {Path(args.output) / 'events'} (Parquet), {Path(args.output) / 'bad'} (bad rows)")
    return EXIT_OK if report.complete else EXIT_FAILED
