"""Compaction of the events dataset on S3: closed hour partitions rewritten without natural duplicates.

The Parquet sink's claims catch a chunk replayed upstream (it keeps its chunk id), but a
*natural* duplicate -- a tracker's retry, the same line in two log files -- arrives in another
chunk and, with ``stream.cross_batch_dedupe = false`` (the default: the per-event manifest costs
one DynamoDB write per event), lands in another object of the same hour partition.  This
module removes those: once an hour partition is closed, it rewrites the partition's objects as
one set of ``compacted-<hash>-NNNNN.parquet`` files holding each natural event once (the
Redshift merge dedupes at load regardless).  The direct mode's ``direct-...`` parts and the
backfill's ``part-NNNNN`` files are compacted the same way.

Plan, then execute
------------------
:func:`plan_compaction` is pure: from a listing of the dataset root (``s3://bucket/prefix/``,
layout ``event_date=YYYY-MM-DD/event_hour=HH/<name>.parquet``, :mod:`load.partitions`) and the
current time it picks the partitions to compact: closed ones, whose hour ended at least
``load.compact_after_hours`` ago (7 by default: the streams' maximum record age of 6 hours,
``pipeline/topology.py``, plus a margin), holding more than one object or any object that is not
a compaction output.  A partition that is exactly one complete set of compaction outputs is
done.  Each :class:`CompactionTask` lists its inputs (key, size, ETag) and the outputs' names:
``<hash>`` is derived from the sorted (key, size, ETag) of the inputs, the content hash the
Redshift backfill keeps in its ledger (:func:`load.redshift.backfill_plan.content_hash`).

:func:`compact_partition` runs one task through an injected S3 client, in four steps:

1. **fetch**: download each input as it was listed (``GetObject`` with ``If-Match`` its ETag) into
   a scratch folder, as the existing parts of a local dataset partition;
2. **check**: every input must be a Parquet file of the canonical layout -- the 131 canonical
   columns first, in order and with their types, then only typed entity columns (the layout
   the sink, the direct mode and the backfill write, and the one ``redshift load`` accepts);
3. **merge**: :func:`load.dataset.finalize_partition` with the resolver, the backfill's own
   finalize: it reads the inputs' canonical columns only (typed entity columns are derived
   again from the JSON ones), keeps one row per natural event (same ``event_id`` and
   ``event_fingerprint``: the earliest ``collector_tstamp``, then the first in key order) in
   bounded memory, and writes deterministic files: the same inputs give the same bytes;
4. **publish** the files as ``compacted-<hash>-00000.parquet``..., then **retire** exactly the
   inputs it listed (``DeleteObject`` with ``If-Match`` their listed ETag).

Why a crash or a second compactor never loses an event
-------------------------------------------------------
An object is deleted only by a compactor that listed it, read it as listed, and has already
uploaded every output holding its rows.  So at every instant each event is in some object:

* A crash anywhere (a failed upload, a failed or partial retirement, a killed invocation)
  leaves inputs and outputs side by side.  The partition then is no longer one complete set of
  outputs, so the next run compacts it again: the old outputs become inputs, their rows are
  natural duplicates of the inputs' rows, and the result holds each natural event once.  A
  half-uploaded set (``-00000`` without ``-00001``) is incomplete and is compacted too.
* Two compactors with the same listing compute the same hash, hence the same keys and the same
  bytes: each upload overwrites the other's with identical content, and the second round of
  deletes finds the inputs gone (``NoSuchKey``, counted as done).  Two with different listings
  write different keys; whichever deletes the other's outputs has read them and uploaded their
  rows first.  Leftovers of either are duplicates, compacted away by the next run.
* An object written after the listing -- a late CloudFront log (up to a day late), a re-drive,
  the sink's retry -- is not an input: it is never deleted, and the next run compacts it.  An
  object *replaced* after the listing (the same key, a new ETag) fails the conditional delete
  (``412 PreconditionFailed``) and stays too; one that changed or vanished before it was read
  makes the partition wait for the next run, with nothing written.
* A reader during compaction (Athena, ``redshift load``) may see an input and an output at
  once, so it may briefly count a natural event twice -- never miss one, since inputs go only
  after their outputs are durable.  The Redshift merge dedupes regardless; a COPY whose
  manifest names an input deleted meanwhile fails for that partition, stays out of the load
  ledger, and the next ``redshift load`` loads the compacted partition.

Bad input is left alone: an object that is not Parquet, or not the canonical layout, is
reported with its reason and never deleted, and the partition's other objects are not
compacted that run (a rewrite without it could not retire it, and one with it cannot read
it).  Move the object away and the next run compacts the partition.

pyarrow is imported by the executor only, when the first partition is compacted (the plan,
and the scheduled handler's import, stay light).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from load.errors import DestinationError, SinkWriteError
from load.partitions import PartitionKey
from load.redshift.backfill_plan import S3Location, S3Object, content_hash, group_partitions
from pipeline.aws.errors import aws_exceptions, classify, translate
from pipeline.config import LoadConfig
from pipeline.iglu import Resolver

if TYPE_CHECKING:
    import pyarrow as pa

COMPACTED_PREFIX: Final = "compacted-"
HASH_DIGITS: Final = 16
"""Hex digits of the content hash in an output's name (64 bits: distinct sets of inputs never meet)."""
STOP_MARGIN_MS: Final = 60_000
"""A deadline-bound run starts another partition only with at least this much time left (or
twice its longest partition so far, whichever is more)."""
SCRATCH_FACTOR: Final = 2.5
"""A partition needs about this many times its inputs' bytes of free scratch space: the inputs,
the outputs (the same rows, recompressed) and a margin for typed entity columns."""

_HOUR_MS: Final = 3_600_000
_OUTPUT = re.compile(rf"{COMPACTED_PREFIX}([0-9a-f]{{{HASH_DIGITS}}})-(\d{{5}})\.parquet", re.ASCII)
_TYPED_COLUMN_PREFIXES: Final = ("contexts_", "unstruct_event_")
"""The typed entity columns of :mod:`load.lake` (``..._recovered_...`` ones included)."""
_CHANGED_CODES: Final = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404", "NotFound"})
_DELETE_LEFT_CODES: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_DELETE_GONE_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})


# ------------------------------------------------------------------------------ plan (pure)
@dataclass(frozen=True, slots=True)
class CompactionTask:
    """One partition to compact: its objects as listed, and the names of its outputs."""

    partition: PartitionKey
    prefix: str
    """The partition's key prefix, ``<root prefix>event_date=YYYY-MM-DD/event_hour=HH/``."""
    inputs: tuple[S3Object, ...]
    """Sorted by key: the order finalize reads them in (the first copy of an event wins ties)."""
    digest: str
    """The first :data:`HASH_DIGITS` hex digits of the inputs' content hash."""

    @property
    def bytes(self) -> int:
        return sum(obj.size for obj in self.inputs)

    def output_key(self, number: int) -> str:
        return f"{self.prefix}{COMPACTED_PREFIX}{self.digest}-{number:05d}.parquet"

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition.format(),
            "objects": len(self.inputs),
            "bytes": self.bytes,
            "outputs": self.output_key(0).rsplit("/", 1)[1].replace("-00000.", "-NNNNN."),
        }


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    root: S3Location
    now: datetime
    after_hours: int
    tasks: tuple[CompactionTask, ...]
    young_partitions: int = 0
    """Partitions whose hour ended less than ``after_hours`` ago: not closed yet."""
    compacted_partitions: int = 0
    """Partitions that are one complete set of compaction outputs already."""
    ignored_keys: int = 0
    """Objects under the root that are not ``event_date=…/event_hour=…/<name>.parquet`` (never touched)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root.format(),
            "now": self.now.isoformat(),
            "older_than_hours": self.after_hours,
            "to_compact": [task.to_json() for task in self.tasks],
            "young_partitions": self.young_partitions,
            "compacted_partitions": self.compacted_partitions,
            "ignored_keys": self.ignored_keys,
        }


def is_compaction_output(name: str) -> bool:
    """Whether an object's name (the part after its partition) is a compaction output's."""
    return _OUTPUT.fullmatch(name) is not None


def _one_complete_output_set(names: Sequence[str]) -> bool:
    """``compacted-H-00000`` … ``compacted-H-<n-1>`` of a single H, none missing: a finished compaction."""
    matches = [_OUTPUT.fullmatch(name) for name in names]
    if not matches or any(m is None for m in matches):
        return False
    digests = {m.group(1) for m in matches if m is not None}
    numbers = sorted(int(m.group(2)) for m in matches if m is not None)
    return len(digests) == 1 and numbers == list(range(len(numbers)))


def _hour_start_ms(partition: PartitionKey) -> int:
    day = date.fromisoformat(partition.date)
    return int(datetime(day.year, day.month, day.day, partition.hour, tzinfo=UTC).timestamp()) * 1000


def plan_compaction(
    root: S3Location,
    objects: Iterable[S3Object],
    *,
    now: datetime,
    after_hours: int,
    since: date | None = None,
    until: date | None = None,
) -> CompactionPlan:
    """Choose the partitions to compact from a listing of ``root`` (pure).

    A partition is compacted when its hour ended at least ``after_hours`` hours before ``now``
    (an aware datetime) and it is not already one complete set of compaction outputs.
    ``since`` and ``until`` bound the partition dates, inclusive.  Objects that are not the
    dataset's layout are counted as ignored; they are never inputs.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    now_ms = int(now.timestamp() * 1000)
    groups, ignored = group_partitions(root, objects, since, until)
    tasks: list[CompactionTask] = []
    young = compacted = 0
    for partition, files in sorted(groups.items()):
        try:
            hour_end_ms = _hour_start_ms(partition) + _HOUR_MS
        except ValueError:  # event_date=2024-13-45: the layout's shape, not a date
            ignored += len(files)
            continue
        if now_ms < hour_end_ms + after_hours * _HOUR_MS:
            young += 1
            continue
        inputs = tuple(sorted(files, key=lambda o: o.key))
        if _one_complete_output_set([obj.key.rsplit("/", 1)[1] for obj in inputs]):
            compacted += 1
            continue
        tasks.append(
            CompactionTask(
                partition,
                f"{root.prefix}{partition.format()}/",
                inputs,
                content_hash(inputs)[:HASH_DIGITS],
            )
        )
    return CompactionPlan(root, now, after_hours, tuple(tasks), young, compacted, ignored)


# ------------------------------------------------------------------------------ results
Status = Literal["compacted", "changed", "rejected", "too_large"]


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """What compacting one partition did."""

    task: CompactionTask
    status: Status
    """``compacted``; ``changed`` (an input changed or vanished before it was read: nothing
    written, the next run compacts it); ``rejected`` (bad input, see :attr:`problems`: nothing
    written or deleted); ``too_large`` (not enough scratch space: nothing written)."""
    rows_in: int = 0
    rows_out: int = 0
    bytes_out: int = 0
    outputs: tuple[str, ...] = ()
    deleted: int = 0
    """Inputs deleted now (or found deleted already, by a concurrent compactor)."""
    left: tuple[str, ...] = ()
    """Inputs replaced after the listing (their conditional delete failed): kept, compacted next run."""
    problems: tuple[str, ...] = ()
    message: str = ""

    @property
    def objects_in(self) -> int:
        return len(self.task.inputs) if self.status == "compacted" else 0

    @property
    def duplicates(self) -> int:
        return self.rows_in - self.rows_out

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.task.partition.format(),
            "status": self.status,
            "objects_in": self.objects_in,
            "objects_out": len(self.outputs),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "duplicates_dropped": self.duplicates,
            "bytes_in": self.task.bytes if self.status == "compacted" else 0,
            "bytes_out": self.bytes_out,
            "outputs": list(self.outputs),
            "deleted": self.deleted,
            "left": list(self.left),
            "problems": list(self.problems),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class CompactionSummary:
    """What a compaction run did, partition by partition (``not_started``: left for the next run)."""

    plan: CompactionPlan
    outcomes: tuple[PartitionOutcome, ...]
    not_started: tuple[CompactionTask, ...] = ()

    def _done(self) -> list[PartitionOutcome]:
        return [o for o in self.outcomes if o.status == "compacted"]

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> int:
        """Partitions left because of their input (bad objects) or the scratch space: they need a person."""
        return self.count("rejected") + self.count("too_large")

    def metrics(self) -> dict[str, int]:
        done = self._done()
        return {
            "PartitionsCompacted": len(done),
            "PartitionsChanged": self.count("changed"),
            "PartitionsRejected": self.count("rejected"),
            "PartitionsTooLarge": self.count("too_large"),
            "PartitionsLeft": len(self.not_started),
            "PartitionsLeftAlone": self.failed,
            "ObjectsIn": sum(o.objects_in for o in done),
            "ObjectsOut": sum(len(o.outputs) for o in done),
            "ObjectsRejected": sum(len(o.problems) for o in self.outcomes),
            "RowsIn": sum(o.rows_in for o in done),
            "RowsOut": sum(o.rows_out for o in done),
            "DuplicatesDropped": sum(o.duplicates for o in done),
            "BytesIn": sum(o.task.bytes for o in done),
            "BytesOut": sum(o.bytes_out for o in done),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.plan.root.format(),
            "metrics": self.metrics(),
            "partitions": [o.to_json() for o in self.outcomes],
            "not_started": [t.partition.format() for t in self.not_started],
            "young_partitions": self.plan.young_partitions,
            "compacted_partitions": self.plan.compacted_partitions,
            "ignored_keys": self.plan.ignored_keys,
        }


# ------------------------------------------------------------------------------ execute
def list_dataset(s3: Any, root: S3Location) -> list[S3Object]:
    """Every object under ``root`` (paginated ListObjectsV2), with its size and ETag."""
    from load.redshift.backfill_load import list_objects

    return list(list_objects(s3, root))


def _call(what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except aws_exceptions() as exc:
        raise translate(exc, what, transient=SinkWriteError, terminal=DestinationError) from exc


def _fault_code(exc: BaseException) -> str:
    return classify(exc).code


@dataclass(frozen=True, slots=True)
class Prepared:
    """A partition merged in scratch space, ready to publish: its output files in order."""

    task: CompactionTask
    files: tuple[Path, ...]
    rows_in: int
    rows_out: int


def _download(s3: Any, bucket: str, obj: S3Object, path: Path) -> bool:
    """Download ``obj`` as listed (its ETag); False when it changed or vanished since the listing."""
    try:
        response = s3.get_object(Bucket=bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')
        body = response["Body"]
        try:
            with path.open("wb") as out:
                shutil.copyfileobj(body, out, 1 << 20)
        finally:
            body.close()
    except aws_exceptions() as exc:
        if _fault_code(exc) in _CHANGED_CODES:
            return False
        raise translate(
            exc, f"S3 GetObject s3://{bucket}/{obj.key}", transient=SinkWriteError, terminal=DestinationError
        ) from exc
    except OSError as exc:  # the scratch space (disk full)
        raise SinkWriteError(f"cannot copy s3://{bucket}/{obj.key} to {path}: {exc} (retry)") from exc
    return True


def _layout_problem(schema: pa.Schema, canonical: pa.Schema) -> str:
    """Why a file's columns are not the canonical layout ("" when they are)."""
    names = schema.names
    if names[: len(canonical)] != canonical.names:
        return f"does not start with the {len(canonical)} canonical columns in order"
    for index, expected in enumerate(canonical):
        actual = schema.field(index).type
        if not actual.equals(expected.type):
            return f"column {expected.name} is {actual}, not {expected.type}"
    extra = [name for name in names[len(canonical) :] if not name.startswith(_TYPED_COLUMN_PREFIXES)]
    if extra:
        return f"has columns that are neither canonical nor typed entity columns: {', '.join(extra[:5])}"
    return ""


def _check(bucket: str, task: CompactionTask, paths: Sequence[Path]) -> tuple[int, list[str]]:
    """Rows of the inputs, and the problem of each input that is not a canonical Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from load.parquet import arrow_schema

    canonical = arrow_schema()
    rows = 0
    problems: list[str] = []
    for obj, path in zip(task.inputs, paths, strict=True):
        url = f"s3://{bucket}/{obj.key}"
        try:
            metadata = pq.ParquetFile(path)
            problem = _layout_problem(metadata.schema_arrow, canonical)
            rows += metadata.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            problem = f"is not a Parquet file ({exc})"
        if problem:
            problems.append(f"{url} {problem}")
    return rows, problems


def _scratch_problem(task: CompactionTask, scratch: Path) -> str:
    free = shutil.disk_usage(scratch).free
    needed = int(task.bytes * SCRATCH_FACTOR)
    if needed > free:
        return f"needs about {needed:,} bytes of scratch space in {scratch}, {free:,} are free"
    return ""


def prepare_partition(
    s3: Any,
    bucket: str,
    task: CompactionTask,
    scratch: Path,
    config: LoadConfig,
    resolver: Resolver | None = None,
) -> Prepared | PartitionOutcome:
    """Steps 1-3 (fetch, check, merge) of ``task`` in ``scratch`` (a folder the caller owns).

    Returns the merged files, or the outcome that stops the partition here (``changed``,
    ``rejected``, ``too_large``; nothing was written to S3).  Raises
    :class:`~load.errors.SinkWriteError` (transient) or :class:`~load.errors.DestinationError`
    (terminal) when S3 fails us, and :class:`~pipeline.iglu.RegistryUnavailableError` when a
    schema registry cannot be asked.
    """
    from load.dataset import EVENTS_DIR, finalize_partition

    problem = _scratch_problem(task, scratch)
    if problem:
        return PartitionOutcome(task, "too_large", message=problem)
    dest = scratch / task.digest
    folder = dest / EVENTS_DIR / task.partition.format()
    if dest.exists():
        shutil.rmtree(dest)
    folder.mkdir(parents=True)
    # finalize reads a partition's existing parts in name order: part-NNNNN keeps the key order.
    paths = [folder / f"part-{index:05d}.parquet" for index in range(len(task.inputs))]
    with ThreadPoolExecutor(max_workers=max(config.compact_concurrency, 1)) as pool:
        fetched = list(pool.map(lambda pair: _download(s3, bucket, *pair), zip(task.inputs, paths, strict=True)))
    if not all(fetched):
        return PartitionOutcome(
            task, "changed", message="an object changed or vanished since the listing; the next run compacts it"
        )
    rows_in, problems = _check(bucket, task, paths)
    if problems:
        return PartitionOutcome(
            task,
            "rejected",
            problems=tuple(problems),
            message=f"left alone: its other {len(task.inputs) - len(problems)} object(s) are not compacted this run",
        )
    import pyarrow as pa

    try:
        result = finalize_partition(dest, task.partition, [], config, resolver=resolver)
    except (pa.ArrowException, OSError) as exc:
        # Footers and layouts were checked: a data page that cannot be read, or the scratch space.
        # Reported rather than raised, so that one such partition does not stop every later run.
        return PartitionOutcome(
            task,
            "rejected",
            problems=(f"the merge failed (an object's data cannot be read, or the scratch space): {exc}",),
            message="left alone: nothing was written or deleted",
        )
    return Prepared(task, tuple(folder / name for name in result.files), rows_in, result.rows_written)


def publish_partition(s3: Any, bucket: str, prepared: Prepared) -> tuple[str, ...]:
    """Step 4a: upload the merged files as the task's outputs; their keys."""
    keys = []
    for number, path in enumerate(prepared.files):
        key = prepared.task.output_key(number)
        with path.open("rb") as body:
            _call(f"S3 PutObject s3://{bucket}/{key}", s3.put_object, Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    return tuple(keys)


def _retire(s3: Any, bucket: str, obj: S3Object) -> bool:
    """Delete ``obj`` if it is still as listed; False when it was replaced since (it stays)."""
    try:
        s3.delete_object(Bucket=bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')
    except aws_exceptions() as exc:
        code = _fault_code(exc)
        if code in _DELETE_GONE_CODES:
            return True  # a concurrent compactor with the same listing deleted it
        if code in _DELETE_LEFT_CODES:
            return False
        raise translate(
            exc, f"S3 DeleteObject s3://{bucket}/{obj.key}", transient=SinkWriteError, terminal=DestinationError
        ) from exc
    return True


def retire_inputs(
    s3: Any, bucket: str, task: CompactionTask, outputs: Sequence[str], concurrency: int = 1
) -> tuple[int, tuple[str, ...]]:
    """Step 4b: delete exactly the listed inputs (never an output); (deleted, kept because replaced)."""
    keep = set(outputs)
    inputs = [obj for obj in task.inputs if obj.key not in keep]
    with ThreadPoolExecutor(max_workers=max(concurrency, 1)) as pool:
        retired = list(pool.map(lambda obj: _retire(s3, bucket, obj), inputs))
    left = tuple(obj.key for obj, done in zip(inputs, retired, strict=True) if not done)
    return len(inputs) - len(left), left


def compact_partition(
    s3: Any,
    bucket: str,
    task: CompactionTask,
    scratch: Path,
    config: LoadConfig,
    resolver: Resolver | None = None,
) -> PartitionOutcome:
    """Compact one partition: fetch, check, merge, publish, retire (see the module docstring).

    Raises as :func:`prepare_partition` does; a failure after the upload leaves inputs and
    outputs side by side, which the next run compacts again.
    """
    try:
        prepared = prepare_partition(s3, bucket, task, scratch, config, resolver)
        if isinstance(prepared, PartitionOutcome):
            return prepared
        outputs = publish_partition(s3, bucket, prepared)
        deleted, left = retire_inputs(s3, bucket, task, outputs, config.compact_concurrency)
        bytes_out = sum(path.stat().st_size for path in prepared.files)
    finally:
        shutil.rmtree(scratch / task.digest, ignore_errors=True)
    return PartitionOutcome(
        task,
        "compacted",
        rows_in=prepared.rows_in,
        rows_out=prepared.rows_out,
        bytes_out=bytes_out,
        outputs=outputs,
        deleted=deleted,
        left=left,
    )


def compact(
    plan: CompactionPlan,
    s3: Any,
    config: LoadConfig,
    *,
    scratch: Path,
    resolver: Resolver | None = None,
    time_left_ms: Callable[[], int] | None = None,
    margin_ms: int = STOP_MARGIN_MS,
) -> CompactionSummary:
    """Compact every task of ``plan``, oldest partition first.

    With ``time_left_ms`` (a Lambda context's ``get_remaining_time_in_millis``), a partition is
    started only with at least ``margin_ms`` left, or twice the longest partition so far; the
    rest are :attr:`CompactionSummary.not_started`.  Raises as :func:`compact_partition` does.
    """
    outcomes: list[PartitionOutcome] = []
    longest_ms = 0
    for index, task in enumerate(plan.tasks):
        before = time_left_ms() if time_left_ms is not None else 0
        if time_left_ms is not None and before < max(margin_ms, 2 * longest_ms):
            return CompactionSummary(plan, tuple(outcomes), plan.tasks[index:])
        outcomes.append(compact_partition(s3, plan.root.bucket, task, scratch, config, resolver))
        if time_left_ms is not None:
            longest_ms = max(longest_ms, before - time_left_ms())
    return CompactionSummary(plan, tuple(outcomes))
