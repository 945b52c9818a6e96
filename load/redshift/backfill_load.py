"""``clickstream-etl redshift load``: plan the backfill from S3 and the ledger, then load it.

:func:`plan_backfill_load` lists the dataset and reads the ledger (read-only);
:func:`run_backfill_load` writes each partition's manifest, runs its COPY and merge, then
records it in the ledger.  Both take their S3 client and executor as arguments and return
typed values.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from load.errors import DestinationError, SinkWriteError, StatementFailedError
from load.redshift.backfill_plan import (
    BackfillPlan,
    PartitionPlan,
    S3Location,
    S3Object,
    backfill_plan_for,
    manifest_bodies,
    plan_backfill,
)
from load.redshift.entity_load import DrainSummary, drain_entities, prepare_tables
from load.redshift.executor import Executor, merge_once
from load.redshift.identifiers import RedshiftTables
from load.redshift.ledger import ledger_from_rows, ledger_insert, ledger_lookup
from load.redshift.load_errors import LoadErrorDetail, load_errors_of_query
from load.redshift.merge import MergeStats
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.iglu import Resolver
from pipeline.schema import FIELDS


def _s3_call(operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except aws_exceptions() as exc:
        raise translate(exc, f"S3 {operation}", transient=SinkWriteError, terminal=DestinationError) from exc


def list_objects(s3: Any, root: S3Location) -> Iterator[S3Object]:
    """Every object under ``root`` (paginated)."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": root.bucket, "Prefix": root.prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = _s3_call("ListObjectsV2", s3.list_objects_v2, **kwargs)
        for item in page.get("Contents", []):
            yield S3Object(item["Key"], int(item["Size"]), str(item.get("ETag", "")).strip('"'))
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if not token:
            return


_FOOTER_TAIL: Final = 8
"""A Parquet file ends with its footer's length (4 bytes, little-endian) and ``PAR1``."""


def parquet_columns(s3: Any, bucket: str, obj: S3Object) -> tuple[str, ...]:
    """The top-level column names of a Parquet object, from its footer (two ranged reads).

    Raises ValueError when the object is not a Parquet file.
    """
    if obj.size < 12:
        raise ValueError(f"s3://{bucket}/{obj.key} is too small to be a Parquet file")
    tail = _s3_call("GetObject", s3.get_object, Bucket=bucket, Key=obj.key, Range=f"bytes=-{_FOOTER_TAIL}")
    end = tail["Body"].read()
    if len(end) != _FOOTER_TAIL or end[4:] != b"PAR1":
        raise ValueError(f"s3://{bucket}/{obj.key} does not end like a Parquet file")
    length = struct.unpack("<I", end[:4])[0]
    if length + _FOOTER_TAIL + 4 > obj.size:
        raise ValueError(f"s3://{bucket}/{obj.key}: its footer length is larger than the file")
    footer = _s3_call("GetObject", s3.get_object, Bucket=bucket, Key=obj.key, Range=f"bytes=-{length + _FOOTER_TAIL}")
    try:
        return tuple(pq.read_schema(pa.BufferReader(footer["Body"].read())).names)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"s3://{bucket}/{obj.key}: its Parquet footer cannot be read ({exc})") from exc


_CANONICAL: Final = tuple(f.name for f in FIELDS)


def with_layouts(s3: Any, bucket: str, partition: PartitionPlan) -> PartitionPlan:
    """The partition with each file's extra columns (from its footer), or with the problem that
    keeps it from loading: a file whose leading columns are not the canonical ones would be
    COPYed into the wrong columns, since COPY maps Parquet columns by position."""
    files = []
    for obj in partition.files:
        try:
            names = parquet_columns(s3, bucket, obj)
        except ValueError as exc:
            return replace(partition, problem=str(exc))
        if names[: len(_CANONICAL)] != _CANONICAL:
            return replace(
                partition,
                problem=f"s3://{bucket}/{obj.key} does not start with the {len(_CANONICAL)} canonical columns in order",
            )
        files.append(replace(obj, extra_columns=names[len(_CANONICAL) :]))
    return replace(partition, files=tuple(files))


def plan_backfill_load(
    s3: Any,
    executor: Executor,
    tables: RedshiftTables,
    root: S3Location,
    manifest_prefix: str,
    since: date | None = None,
    until: date | None = None,
) -> BackfillPlan:
    """List the dataset, read the ledger (read-only), and decide per partition: load or skip."""
    objects = list(list_objects(s3, root))
    ledger = ledger_from_rows(root, executor.execute(ledger_lookup(tables, root)).rows)
    plan = plan_backfill(root, objects, ledger, manifest_prefix, since, until)
    partitions = tuple(with_layouts(s3, root.bucket, p) if p.action == "load" else p for p in plan.partitions)
    return replace(plan, partitions=partitions)


@dataclass(frozen=True, slots=True)
class PartitionResult:
    partition: PartitionPlan
    status: str
    """``loaded``, ``skipped`` or ``load_error``."""
    stats: MergeStats = field(default_factory=MergeStats.empty)
    message: str = ""
    load_errors: tuple[LoadErrorDetail, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.partition.prefix,
            "status": self.status,
            "message": self.message,
            **self.stats.to_json(),
            "load_errors": [e.to_json() for e in self.load_errors],
        }


@dataclass(frozen=True, slots=True)
class BackfillLoadSummary:
    """What ``clickstream-etl redshift load`` did, partition by partition."""

    plan: BackfillPlan
    results: tuple[PartitionResult, ...]
    entities: DrainSummary = DrainSummary()

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def total(self, name: str) -> int:
        return sum(int(getattr(r.stats, name)) for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("load_error")

    def metrics(self) -> dict[str, int]:
        return {
            "PartitionsLoaded": self.count("loaded"),
            "PartitionsSkipped": self.count("skipped"),
            "PartitionsFailed": self.failed,
            "RowsStaged": self.total("staged"),
            "RowsInserted": self.total("inserted"),
            "NaturalDuplicates": self.total("natural_duplicates"),
            "SyntheticDuplicates": self.total("synthetic_duplicates"),
            "RowsRejected": self.total("rejected"),
            "LoadErrors": sum(max(len(r.load_errors), 1) for r in self.results if r.status == "load_error"),
            "EntitiesTyped": self.entities.typed,
            "EntitiesFallback": self.entities.fallback,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics(),
            "partitions": [r.to_json() for r in self.results],
            "entities": self.entities.to_json(),
        }


def run_backfill_load(
    plan: BackfillPlan, s3: Any, executor: Executor, tables: RedshiftTables, copy_role_arn: str, resolver: Resolver
) -> BackfillLoadSummary:
    """Load every partition the plan marks ``load``: manifest, COPY + merge, then ledger; then
    move the loaded events' entities to their tables (:func:`~load.redshift.entity_load.drain_entities`).

    A COPY that fails (a file that is not the canonical Parquet, a value COPY cannot read)
    rolls its partition back, is reported with its ``sys_load_error_detail`` rows, and
    the run goes on; the partition stays out of the ledger, so the next run retries it.
    The ledger row is written after the merge commits: if that write is lost, the next
    run loads the partition again and the merge finds every row already present.
    """
    bucket = plan.root.bucket
    results: list[PartitionResult] = []
    prepare_tables(executor, tables)
    for partition in plan.partitions:
        if partition.action == "skip":
            results.append(PartitionResult(partition, "skipped", message=partition.reason))
            continue
        if partition.problem:
            results.append(PartitionResult(partition, "load_error", message=partition.problem))
            continue
        for key, body in manifest_bodies(partition, bucket):
            _s3_call("PutObject", s3.put_object, Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        try:
            stats = merge_once(executor, backfill_plan_for(tables, bucket, partition, copy_role_arn))
        except StatementFailedError as exc:
            if exc.label != "copy":
                raise
            details: tuple[LoadErrorDetail, ...] = ()
            if exc.query_id is not None:
                rows = executor.execute(load_errors_of_query(exc.query_id)).rows
                details = tuple(LoadErrorDetail.from_row(row) for row in rows)
            results.append(PartitionResult(partition, "load_error", message=str(exc), load_errors=details))
            continue
        executor.execute(ledger_insert(tables, bucket, partition, stats))
        results.append(PartitionResult(partition, "loaded", stats))
    # The merges queued their entities with their events; a drain that fails leaves them
    # queued, and the next load (or the scheduled loader) drains them.
    entities = drain_entities(executor, tables, resolver)
    return BackfillLoadSummary(plan, tuple(results), entities)
