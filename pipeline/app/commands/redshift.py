"""``clickstream-etl redshift``: print the DDL and the Firehose COPY command; load the dataset.

Exit codes are the CLI's (:mod:`pipeline.app.cli`): 1 when the load did not complete (COPY
load errors, or Redshift/S3 trouble -- the message says whether running again can help); 2
for bad arguments or configuration (including unsafe identifiers).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.app.arguments import config_argument
from pipeline.app.cli import EXIT_FAILED, EXIT_OK, error_message, exit_code
from pipeline.errors import ConfigError, PipelineError

if TYPE_CHECKING:  # the load modules are imported when a subcommand runs, not when the CLI starts
    from load.redshift.executor import Executor, Waiting
    from load.redshift.identifiers import RedshiftTables
    from pipeline.config import PipelineConfig


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``redshift`` subcommand's own subcommands: ``ddl``, ``firehose-copy``, ``load``."""
    commands = parser.add_subparsers(dest="redshift_command", metavar="SUBCOMMAND")
    commands.required = True
    ddl = commands.add_parser(
        "ddl",
        help="print the DDL of the events, staging, rejects and ledger tables",
        description="Print CREATE statements (idempotent) for the Redshift load path, from the canonical schema.",
    )
    config_argument(ddl)
    copy = commands.add_parser(
        "firehose-copy",
        help="print the CopyCommand of Firehose's Redshift destination (JSON)",
        description="Print the CopyCommand (staging table, column list, COPY options) for Firehose.",
    )
    config_argument(copy)
    load = commands.add_parser(
        "load",
        help="COPY the Parquet dataset from S3 into Redshift, deduplicated, recorded in the load ledger",
        description=(
            "Load s3://BUCKET/PREFIX/event_date=YYYY-MM-DD/event_hour=HH/part-NNNNN.parquet into the events "
            "table: one transaction per hour partition (COPY by manifest, then the deduplicating merge), then a "
            "ledger row. Partitions already loaded with the same files are skipped; rewritten ones (late "
            "events) are loaded again and only their new events are inserted."
        ),
    )
    load.add_argument("source", metavar="S3_URL", help="the dataset's events prefix, e.g. s3://bucket/events/")
    load.add_argument("--since", type=_date, metavar="DATE", help="first event_date to load (inclusive)")
    load.add_argument("--until", type=_date, metavar="DATE", help="last event_date to load (inclusive)")
    load.add_argument("--dry-run", action="store_true", help="print the plan (reads S3 and the ledger, writes nothing)")
    load.add_argument("--json", action="store_true", help="print the plan or the summary as JSON")
    config_argument(load)


def run(
    args: argparse.Namespace, *, s3: Any = None, executor: Executor | None = None, out: TextIO | None = None
) -> int:
    """Run a ``redshift`` subcommand; ``s3`` and ``executor`` replace the AWS clients (tests)."""
    out = out or sys.stdout
    from load.redshift.ddl import ddl_statements
    from load.redshift.firehose_destination import firehose_copy_command
    from load.redshift.identifiers import RedshiftTables
    from load.redshift.statements import render_script
    from pipeline.config import load_config

    try:
        config = load_config(args.config)
        tables = RedshiftTables.from_config(config.redshift)
        if args.redshift_command == "ddl":
            out.write(render_script(ddl_statements(tables)))
            return EXIT_OK
        if args.redshift_command == "firehose-copy":
            out.write(json.dumps(firehose_copy_command(tables), indent=1) + "\n")
            return EXIT_OK
        return _load(args, config, tables, s3, executor, out)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)


class WaitReporter:
    """Says on ``stream`` that a statement is still running, at most every ``every_s`` seconds
    of its run, so a long COPY is not minutes of silence."""

    def __init__(self, stream: TextIO, every_s: float = 10.0) -> None:
        self._stream = stream
        self._every = every_s
        self._shown: dict[str, float] = {}

    def __call__(self, waiting: Waiting) -> None:
        if waiting.seconds - self._shown.get(waiting.label, 0.0) < self._every:
            return
        self._shown[waiting.label] = waiting.seconds
        self._stream.write(
            f"redshift load: {waiting.label} still {waiting.status.lower()} after {waiting.seconds:.0f} s "
            f"(poll {waiting.poll} of at most {waiting.max_polls})\n"
        )
        self._stream.flush()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _load(  # noqa: PLR0912 - a command's output: one branch per line it prints
    args: argparse.Namespace,
    config: PipelineConfig,
    tables: RedshiftTables,
    s3: Any,
    executor: Executor | None,
    out: TextIO,
) -> int:
    from load.redshift.backfill_load import plan_backfill_load, run_backfill_load
    from load.redshift.backfill_plan import S3Location, backfill_plan_for, validate_manifest_prefix
    from load.redshift.executor import DataApiExecutor
    from pipeline.aws.clients import make_client
    from pipeline.entities import UNRESOLVED_ENTITY_TABLE

    root = S3Location.parse(args.source)
    if args.since and args.until and args.since > args.until:
        raise ConfigError(f"--since {args.since} is after --until {args.until}")
    manifest_prefix = validate_manifest_prefix(config.redshift.manifest_prefix)
    if executor is None:
        executor = DataApiExecutor.from_config(
            make_client("redshift-data", config.aws), config.redshift, on_wait=WaitReporter(sys.stderr)
        )
    s3 = s3 or make_client("s3", config.aws)
    plan = plan_backfill_load(s3, executor, tables, root, manifest_prefix, args.since, args.until)
    if args.dry_run:
        if args.json:
            out.write(json.dumps(plan.to_json(), indent=1) + "\n")
            return EXIT_OK
        for p in plan.partitions:
            out.write(f"{p.action:4}  {p.prefix}  {len(p.files)} files  {p.bytes:,} bytes  ({p.reason})\n")
        out.write(
            f"{len(plan.to_load)} to load, {len(plan.partitions) - len(plan.to_load)} to skip, "
            f"{plan.ignored_keys} other objects ignored\n"
        )
        if plan.to_load:
            first = plan.to_load[0]
            transaction = backfill_plan_for(tables, root.bucket, first, config.redshift.copy_role_arn)
            out.write(
                f"each partition: write s3://{root.bucket}/{first.manifest_key} (its manifest), then one transaction:\n"
            )
            for statement in transaction.statements:
                out.write(f"  {statement.label:22} {statement.sql.splitlines()[0]}\n")
            out.write("  then a ledger row (prefix, content hash, counts, collector_tstamp range) as parameters\n")
        return EXIT_OK
    from pipeline.aws.registry import s3_schema_fetch
    from pipeline.iglu import resolver_from_config

    resolver = resolver_from_config(config.transform.iglu, s3_schema_fetch(s3))
    summary = run_backfill_load(plan, s3, executor, tables, config.redshift.copy_role_arn, resolver)
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=1) + "\n")
    else:
        for result in summary.results:
            if result.status == "loaded":
                s = result.stats
                out.write(
                    f"loaded   {result.partition.prefix}  staged {s.staged:,}  inserted {s.inserted:,}  "
                    f"natural duplicates {s.natural_duplicates:,}  synthetic {s.synthetic_duplicates:,}  "
                    f"rejected {s.rejected:,}\n"
                )
            elif result.status == "skipped":
                out.write(f"skipped  {result.partition.prefix}  ({result.message})\n")
            else:
                out.write(f"FAILED   {result.partition.prefix}  {_one_line(result.message)}\n")
                for error in result.load_errors:
                    out.write(
                        f"         {error.file_name}:{error.line_number} {error.column_name} "
                        f"[{error.error_code}] {_one_line(error.error_message)}\n"
                    )
        entities = summary.entities
        if entities.typed or entities.fallback:
            out.write(
                f"entities {entities.typed:,} into {len(entities.tables)} typed table(s), "
                f"{entities.fallback:,} into {UNRESOLVED_ENTITY_TABLE}\n"
            )
        for uri, why in entities.fallback_reasons:
            out.write(f"         {uri}: {why}\n")
        metrics = summary.metrics()
        out.write("  ".join(f"{name} {value:,}" for name, value in metrics.items()) + "\n")
    if summary.failed:
        print(
            f"clickstream-etl: {summary.failed} partition(s) failed to load; they are not in the ledger and the "
            "next run retries them",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK
