"""``clickstream-etl compact``: compact the closed hour partitions of the S3 dataset.

The plan and the executor are :mod:`load.compaction`: list the dataset, choose the closed
partitions with more than one object (or one that is not a compaction output), rewrite each as
``compacted-<hash>-NNNNN.parquet`` without natural duplicates, then delete exactly the objects
listed.  Exit codes are the CLI's (:mod:`pipeline.app.cli`): 1 when a partition was left alone
(an object that is not the canonical Parquet layout, too little scratch space) or S3 failed us
(the message says whether running again can help); 2 for bad arguments or configuration.  A
partition that changed while it was read is not a failure: the next run compacts it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.app.arguments import config_argument, iso_date, non_negative_int
from pipeline.app.cli import EXIT_FAILED, EXIT_OK, error_message, exit_code
from pipeline.errors import ConfigError, PipelineError

if TYPE_CHECKING:  # the load modules are imported when the command runs, not when the CLI starts
    from load.compaction import CompactionPlan, CompactionSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="S3_URL", help="the dataset's events prefix, e.g. s3://bucket/events/")
    parser.add_argument(
        "--older-than-hours",
        type=non_negative_int,
        metavar="N",
        help="compact the partitions whose hour ended at least N hours ago (default: load.compact_after_hours, 7)",
    )
    parser.add_argument("--since", type=iso_date, metavar="DATE", help="first event_date to compact (inclusive)")
    parser.add_argument("--until", type=iso_date, metavar="DATE", help="last event_date to compact (inclusive)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (lists S3, writes nothing)")
    parser.add_argument("--json", action="store_true", help="print the plan or the summary as JSON")
    config_argument(parser)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def run(
    args: argparse.Namespace,
    *,
    s3: Any = None,
    out: TextIO | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> int:
    """Run ``compact``; ``s3`` replaces the S3 client and ``clock`` the current time (tests)."""
    out = out or sys.stdout
    try:
        return _compact(args, s3, out, clock)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)


def _compact(args: argparse.Namespace, s3: Any, out: TextIO, clock: Callable[[], datetime]) -> int:
    from load.compaction import compact, list_dataset, plan_compaction
    from load.redshift.backfill_plan import S3Location
    from pipeline.aws.clients import make_client
    from pipeline.config import load_config

    config = load_config(args.config)
    root = S3Location.parse(args.source)
    if args.since and args.until and args.since > args.until:
        raise ConfigError(f"--since {args.since} is after --until {args.until}")
    after = config.load.compact_after_hours if args.older_than_hours is None else args.older_than_hours
    s3 = s3 or make_client("s3", config.aws)
    plan = plan_compaction(
        root, list_dataset(s3, root), now=clock(), after_hours=after, since=args.since, until=args.until
    )
    if args.dry_run:
        if args.json:
            out.write(json.dumps(plan.to_json(), indent=1) + "\n")
        else:
            _print_plan(plan, out)
        return EXIT_OK
    from load.dataset import use_compact_memory_pool
    from pipeline.aws.registry import s3_schema_fetch
    from pipeline.iglu import resolver_from_config

    use_compact_memory_pool()
    resolver = resolver_from_config(config.transform.iglu, s3_schema_fetch(s3)) if config.load.typed_entities else None
    with tempfile.TemporaryDirectory(prefix="clickstream-compact-") as scratch:
        summary = compact(plan, s3, config.load, scratch=Path(scratch), resolver=resolver)
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=1) + "\n")
    else:
        _print_summary(summary, out)
    if summary.failed:
        print(
            f"clickstream-etl: {summary.failed} partition(s) were left alone (see above); fix or move the objects "
            "named, then run it again",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _tail(plan: CompactionPlan) -> str:
    return (
        f"{plan.young_partitions} not closed yet (hour ended less than {plan.after_hours} h ago), "
        f"{plan.compacted_partitions} compacted already, {plan.ignored_keys} other objects ignored"
    )


def _print_plan(plan: CompactionPlan, out: TextIO) -> None:
    for task in plan.tasks:
        out.write(
            f"compact  {plan.root.url_of(task.prefix)}  {len(task.inputs)} objects  {task.bytes:,} bytes  "
            f"-> {task.to_json()['outputs']}\n"
        )
    out.write(f"{len(plan.tasks)} to compact; {_tail(plan)}\n")


def _print_summary(summary: CompactionSummary, out: TextIO) -> None:
    root = summary.plan.root
    for o in summary.outcomes:
        url = root.url_of(o.task.prefix)
        if o.status == "compacted":
            out.write(
                f"compacted  {url}  objects {len(o.task.inputs)} -> {len(o.outputs)}  rows {o.rows_in:,} -> "
                f"{o.rows_out:,}  duplicates {o.duplicates:,}  bytes {o.task.bytes:,} -> {o.bytes_out:,}\n"
            )
            for key in o.left:
                out.write(f"           kept {root.url_of(key)}: replaced since the listing; the next run compacts it\n")
        elif o.status == "changed":
            out.write(f"changed    {url}  ({o.message})\n")
        else:
            out.write(f"LEFT       {url}  {o.message}\n")
            for problem in o.problems:
                out.write(f"           {problem}\n")
    m = summary.metrics()
    out.write(
        f"partitions compacted {m['PartitionsCompacted']:,}, objects {m['ObjectsIn']:,} -> {m['ObjectsOut']:,}, "
        f"rows {m['RowsIn']:,} -> {m['RowsOut']:,}, duplicates dropped {m['DuplicatesDropped']:,}, "
        f"bytes {m['BytesIn']:,} -> {m['BytesOut']:,}; {m['PartitionsChanged']} changed while read, "
        f"{summary.failed} left alone; {_tail(summary.plan)}\n"
    )
