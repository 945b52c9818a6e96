"""The direct mode's function: each S3 log object -> Parquet and bad rows, with no streams.

``PipelineMode=direct`` (issue 11): the S3 notifications that would reach Extract (through
the same SQS queue, or directly from the reconciler) reach this function instead, and it
runs the backfill's file core (:func:`pipeline.app.process.process_stream`) on each object.
There is no Kinesis, so nothing costs money while no log arrives.

One object, from notification to ledger
---------------------------------------
1. The notification is parsed and guarded as Extract does it (:mod:`extract.notifications`,
   :func:`extract.stage.is_own_output`): the pipeline's own output and folder keys are ignored.
2. The object version (bucket, key, ETag) is claimed in the ledger with Extract's lease
   (:func:`extract.stage.claim_object`): a complete object is skipped ("duplicate"), one
   leased to another invocation is left to it ("busy": its SQS message is a batch item
   failure and comes back once the lease can have ended), one that failed for good is skipped.
3. The object is streamed through the reader and the canonicalizer, as the backfill reads a
   file.  Good events are grouped by hour partition (:class:`PartPlanner`) and written as
   Parquet parts under the Parquet sink's dataset layout; bad rows go to the bad-rows sink in
   groups.  Natural duplicates within the object (same ``event_id`` and
   ``event_fingerprint``) are written once: the first in the object wins.
4. Only when every write succeeded is the ledger entry COMPLETE, with the counts.

Every line read ends as exactly one of a good event in Parquet, a bad row, a counted skip
(headers, blank lines, requests that are not tracker hits) or a dropped natural duplicate:
``lines_read == events + bad + skipped + duplicates`` (:attr:`DirectResult.conserved`).

Idempotence: keys are functions of the object and the data
----------------------------------------------------------
A Parquet part is ``<events_prefix>event_date=D/event_hour=H/direct-<stem>-<digest>-<part>.parquet``
(:class:`PartKey`): ``digest`` names the object version (:func:`extract.stage.object_digest` of
bucket, key and ETag), ``part`` counts that object's parts of that hour.  Bad rows are
``<bad_prefix><kind>/date=D/direct-<digest>-<group>.jsonl`` (:func:`pipeline.aws.badsink.plan_bad_objects`).
Where parts and groups are cut depends only on the object's content, and events and bad rows
are dated by the object's LastModified, so an attempt that crashed after some puts is
retried into the same keys with the same bytes: the dataset converges, nothing is duplicated.
(A deployment that changes the code or the configuration between a crash and its retry may
cut parts differently; a part of the crashed attempt could then outlive the retry with copies
of its events, which readers and the Redshift merge deduplicate by ``event_id`` and fingerprint.)
The Parquet files carry the canonical columns; ``clickstream-etl redshift load`` finds them
like the Parquet sink's (:mod:`load.redshift.backfill_plan`).

Errors
------
Data errors are bad rows, an object that is not a log included (binary content, another
format: bad rows, as in the backfill).  Transient infrastructure errors (S3 or DynamoDB
throttling, 5xx, a read that breaks mid-stream) give the object back (its lease is released)
and its message is a batch item failure, retried by SQS.  Terminal errors (access denied on a
write, a misconfigured registry) fail the invocation: Lambda's error metric and alarm see them,
the batch comes back, and after ``maxReceiveCount`` it rests in the dead-letter queue.

Limits: what bounds an object
-----------------------------
Extract continues a large object in fresh invocations from a checkpoint; this function does
not: an object is read in one invocation or not at all.  Its bounds are

* :data:`MAX_OBJECT_BYTES` (128 MiB stored: 0.6 GB of log at the samples' 5:1, 1.3 GB at 10:1):
  a larger object is refused before it is read -- ledger FAILED, one size_violation bad row
  naming it, the ``ObjectsAbandoned`` metric.  Process it with the streaming mode or
  ``clickstream-etl backfill``;
* :data:`MAX_DECOMPRESSED_BYTES` (2 GiB, or ``extract.max_decompressed_bytes`` if lower):
  reading stops there with a size_violation bad row for the rest, as the reader does at its cap;
* the invocation's time: with less than ``stream.timeout_margin_ms`` left the object is
  given up for this attempt (nothing is marked done, the lease is released, the message
  comes back: ``RetryLater``, and ``timed_out`` in the log).  An attempt that had at least half of its invocation
  counts a strike in the ledger; after :data:`MAX_TIMEOUTS` strikes the object is abandoned
  like an oversized one, and the parts of its last attempt are deleted;
* memory: at most :data:`PART_ROWS` events are buffered (then the largest partition's buffer
  becomes a part), plus 16 bytes per distinct event for the duplicate check.

Measured here (generated logs, 870 bytes a line, 1.85 lines per event, 2 shared x86_64 cores):
about 76 us of CPU per line read, so 128 MiB at 5:1 (730,000 lines) takes about a minute, and the
2 GiB cap (2.5 million lines) about three, well inside the 15-minute timeout on one vCPU (1,769 MB).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import IO, Any, Final, Literal, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from extract.errors import MalformedNotificationError
from extract.notifications import ObjectNotice, parse_notifications
from extract.stage import (
    claim_object,
    is_own_output,
    object_digest,
    open_object,
    redelivery,
    refusal_outcome,
)
from load.partitions import PartitionKey
from pipeline.app.process import process_stream
from pipeline.aws.badsink import BadRowWriter, S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.errors import aws_exceptions, classify
from pipeline.aws.ledger import Claim, ClaimRefused, Ledger, ObjectId
from pipeline.aws.registry import s3_schema_fetch
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.errors import PipelineError, TerminalError, TransientError
from pipeline.formats import get_format, read_limits
from pipeline.formats.base import LogFormat, ReadLimits
from pipeline.iglu import Resolver, resolver_from_config
from pipeline.observability import LazyTracer
from pipeline.schema import CanonicalEvent
from pipeline.summary import FileSummary
from transform.canonicalize import Canonicalizer, resolve_pseudonymization_key

logger = Logger(service="clickstream-etl-direct")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="direct")
tracer = LazyTracer(service="clickstream-etl-direct")

MAX_OBJECT_BYTES: Final = 128 * 1024 * 1024
"""Objects stored larger than this are refused (ledger FAILED, one bad row): see the module docstring."""
MAX_DECOMPRESSED_BYTES: Final = 2 * 1024 * 1024 * 1024
"""The reader's decompressed cap in direct mode (``extract.max_decompressed_bytes`` when that is lower)."""
MAX_TIMEOUTS: Final = 3
"""Attempts (with at least half an invocation each) that may run out of time before an object is abandoned."""
PART_ROWS: Final = 50_000
"""Events buffered before the largest partition's buffer becomes a part (about 5 KB each in memory)."""
STAGE: Final = "direct"
"""The stage name in bad-row keys and records."""
_BAD_ROWS_PER_GROUP: Final = 5000
_BAD_BYTES_PER_GROUP: Final = 16 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STEM_CHARS: Final = 64

Outcome = Literal["complete", "duplicate", "failed", "ignored", "busy", "deferred", "timed_out", "abandoned", "error"]
RETRY_LATER: Final[frozenset[Outcome]] = frozenset({"busy", "deferred", "timed_out", "error"})
"""Outcomes whose notification must come back: leased to another, not started or not finished
for lack of time, or stopped by a transient error.  Everything else is settled."""


class DirectError(PipelineError):
    """Base of the direct function's errors."""


class DirectWriteError(DirectError, TransientError):
    """An output object could not be written or deleted (throttling, 5xx): the object is retried."""


class DirectWriteAccessError(DirectError, TerminalError):
    """The output bucket refused a write for a reason retries will not fix (permissions, KMS)."""


class DirectReadError(DirectError, TransientError):
    """The object's body broke off while it was read: the object is retried from its start."""


class DirectRetryError(DirectError, TransientError):
    """Objects noticed directly (a re-drive) must be tried again: the invocation fails so that Lambda retries it."""


class _OutOfTime(Exception):  # noqa: N818 - internal control flow, never leaves this module
    """The invocation's time is nearly up: stop the object here."""


# ------------------------------------------------------------------------------ result
@dataclass
class DirectResult:
    """What became of one noticed object (the counts are this attempt's)."""

    object: ObjectId
    outcome: Outcome
    lines_read: int = 0
    events: int = 0
    """Good events written to Parquet (natural duplicates excluded)."""
    bad: int = 0
    skipped: int = 0
    duplicates: int = 0
    """Natural duplicates within the object that were not written again."""
    parquet_objects: list[str] = field(default_factory=list)
    bad_objects: list[str] = field(default_factory=list)
    not_a_log: bool = False
    """No line had a layout (no ``#Fields`` header): probably not a CloudFront log."""
    seconds: float = 0.0
    detail: str = ""
    """Why, for ignored, abandoned and error outcomes."""

    @property
    def conserved(self) -> bool:
        return self.lines_read == self.events + self.bad + self.skipped + self.duplicates

    def counts(self) -> dict[str, int]:
        return {
            "lines_read": self.lines_read,
            "events": self.events,
            "bad": self.bad,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "parquet_objects": len(self.parquet_objects),
            "bad_objects": len(self.bad_objects),
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object.uri, "outcome": self.outcome, **self.counts()}
        if self.detail:
            out["detail"] = self.detail
        return out


# ------------------------------------------------------------------------------ the plan (pure)
@dataclass(frozen=True, slots=True)
class PartKey:
    """The S3 key of one Parquet part that the direct function writes for one object version."""

    partition: PartitionKey
    stem: str
    """The source key's file name made key-safe (readability only; ``digest`` makes it unique)."""
    digest: str
    """:func:`extract.stage.object_digest` of the source object version."""
    part: int

    def format(self, prefix: str) -> str:
        return f"{prefix}{self.partition.format()}/direct-{self.stem}-{self.digest}-{self.part:05d}.parquet"

    @classmethod
    def parse(cls, key: str, prefix: str) -> PartKey:
        """The inverse of :meth:`format`; raises ValueError for a key it did not make."""
        folder, _, name = key.removeprefix(prefix).rpartition("/")
        fields = name.removeprefix("direct-").removesuffix(".parquet").rsplit("-", 2)
        if not key.startswith(prefix) or not name.startswith("direct-") or len(fields) != 3:
            raise ValueError(f"not a direct-mode part: {key!r}")
        stem, digest, part = fields
        return cls(PartitionKey.parse(folder), stem, digest, int(part))


def source_stem(key: str) -> str:
    """The file name of ``key`` without ``.gz``, made of ``[A-Za-z0-9._-]`` only (``object`` when nothing is left)."""
    name = key.rsplit("/", 1)[-1].removesuffix(".gz")
    return _UNSAFE.sub("_", name)[:_STEM_CHARS].strip("_") or "object"


@dataclass(frozen=True, slots=True)
class Part:
    key: PartKey
    events: list[CanonicalEvent]


class PartPlanner:
    """Cuts one object's good events into parts per hour partition, in bounded memory (pure).

    Events are buffered per partition; when ``max_buffered`` are held, the largest buffer
    (ties: the earliest partition) becomes a part.  :meth:`finish` makes the rest into parts.
    Cuts depend only on the sequence of events, so rereading an object cuts the same parts.
    """

    def __init__(self, stem: str, digest: str, max_buffered: int) -> None:
        self._stem = stem
        self._digest = digest
        self._max = max(max_buffered, 1)
        self._buffers: dict[PartitionKey, list[CanonicalEvent]] = {}
        self._buffered = 0
        self._next_part: dict[PartitionKey, int] = {}

    def add(self, event: CanonicalEvent) -> Part | None:
        """Buffer ``event``; the part that this makes ready, if any."""
        partition = PartitionKey.of(int(event["collector_tstamp"]))
        buffer = self._buffers.get(partition)
        if buffer is None:
            buffer = self._buffers[partition] = []
        buffer.append(event)
        self._buffered += 1
        if self._buffered < self._max:
            return None
        largest = min(self._buffers, key=lambda p: (-len(self._buffers[p]), p))
        return self._cut(largest)

    def finish(self) -> list[Part]:
        """Every buffered event as parts, partitions in order."""
        return [self._cut(partition) for partition in sorted(self._buffers)]

    def _cut(self, partition: PartitionKey) -> Part:
        events = self._buffers.pop(partition)
        self._buffered -= len(events)
        number = self._next_part.get(partition, 0)
        self._next_part[partition] = number + 1
        return Part(PartKey(partition, self._stem, self._digest, number), events)


class NaturalDedupe:
    """Drops the second and later copies of a natural event (same event_id and event_fingerprint).

    The first copy in the object wins, as in a Parquet-sink batch (:func:`load.sink_plan.screen_batch`);
    the backfill's finalize prefers the earliest ``collector_tstamp`` among copies of one hour,
    which picks another copy only when a tracker's retry of one event landed earlier in the file.
    Keys are kept as 16-byte BLAKE2b digests (a collision, about 2**-64 for a billion events,
    would drop an event).
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def first(self, event: CanonicalEvent) -> bool:
        ident = f"{event.get('event_id')}\x00{event.get('event_fingerprint')}".encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(ident, digest_size=16).digest()
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True


# ------------------------------------------------------------------------------ dependencies
@dataclass(frozen=True)
class DirectDeps:
    """What the function needs from the outside world; the handler builds it once per container."""

    config: PipelineConfig
    s3: Any
    """A boto3 S3 client: the log objects, the dataset and the bad rows."""
    ledger: Ledger
    bad_sink: BadRowWriter
    canonicalizer: Canonicalizer
    log_format: LogFormat
    limits: ReadLimits
    resolver: Resolver | None = None
    """Types the Parquet files' entity columns (``load.typed_entities``), as the sink and the backfill do."""
    clock: Callable[[], float] = time.monotonic
    """Measures each object's duration (seconds); the leases use the ledger's own clock."""
    part_rows: int = PART_ROWS
    """Events buffered before a part is cut (at most ``load.max_rows_per_file``)."""
    max_object_bytes: int = MAX_OBJECT_BYTES


def build_deps(
    config: PipelineConfig, *, s3: Any, dynamodb: Any, environ: Mapping[str, str] | None = None
) -> DirectDeps:
    """The function's dependencies on the given clients, the canonicalizer built as the backfill builds it."""
    resources = config.resources
    limits = read_limits(config.extract)
    limits = replace(limits, max_decompressed_bytes=min(limits.max_decompressed_bytes, MAX_DECOMPRESSED_BYTES))
    in_s3 = any(entry.startswith("s3://") for entry in config.transform.iglu.registries)
    fetch = s3_schema_fetch(s3) if in_s3 else None
    canonicalizer = Canonicalizer(
        config.transform,
        pseudonymization_key=resolve_pseudonymization_key(
            config.transform, dict(environ) if environ is not None else None
        ),
        s3_fetch=fetch,
    )
    return DirectDeps(
        config=config,
        s3=s3,
        ledger=Ledger(dynamodb, resources.ledger_table),
        bad_sink=S3BadRowSink(s3, resources.output_bucket, resources.bad_prefix),
        canonicalizer=canonicalizer,
        log_format=get_format(config.extract.format),
        limits=limits,
        resolver=resolver_from_config(config.transform.iglu, fetch) if config.load.typed_entities else None,
    )


@cache
def default_deps() -> DirectDeps:
    config = load_config()
    return build_deps(config, s3=make_client("s3", config.aws), dynamodb=make_client("dynamodb", config.aws))


# ------------------------------------------------------------------------------ the executor
class _Body:
    """The object's body as the reader sees it: stops at the deadline, and read errors are ours."""

    def __init__(self, body: Any, out_of_time: Callable[[], bool], uri: str) -> None:
        self._body = body
        self._out_of_time = out_of_time
        self._uri = uri

    def read(self, size: int = -1) -> bytes:
        if self._out_of_time():
            raise _OutOfTime
        try:
            data: bytes = self._body.read(size if size >= 0 else None)
        except aws_exceptions() as exc:
            raise DirectReadError(f"reading {self._uri} broke off: {classify(exc)} (retry)") from exc
        return data


class _Outputs:
    """Writes one object's parts and bad-row groups as they become ready, and remembers every key."""

    def __init__(self, deps: DirectDeps, obj: ObjectId, etl_tstamp: int, out_of_time: Callable[[], bool]) -> None:
        self._deps = deps
        self._bucket = deps.config.resources.output_bucket
        self._prefix = deps.config.resources.events_prefix
        self._out_of_time = out_of_time
        self._digest = object_digest(obj)
        self._etl = etl_tstamp
        rows = min(deps.part_rows, deps.config.load.max_rows_per_file or deps.part_rows)
        self.planner = PartPlanner(source_stem(obj.key), self._digest, rows)
        self.dedupe = NaturalDedupe()
        self.parquet_keys: list[str] = []
        self.bad_keys: list[str] = []
        self.events = self.duplicates = 0
        self._bad: list[BadRow] = []
        self._bad_bytes = 0
        self._bad_group = 0

    def event(self, event: CanonicalEvent) -> None:
        if not self.dedupe.first(event):
            self.duplicates += 1
            return
        part = self.planner.add(event)
        if part is not None:
            self._write_part(part)

    def bad(self, row: BadRow) -> None:
        self._bad.append(row)
        self._bad_bytes += len(row.raw)
        if len(self._bad) >= _BAD_ROWS_PER_GROUP or self._bad_bytes >= _BAD_BYTES_PER_GROUP:
            self._write_bad()

    def finish(self) -> None:
        for part in self.planner.finish():
            self._write_part(part, check=False)
        self._write_bad(check=False)

    def _write_part(self, part: Part, *, check: bool = True) -> None:
        from load.parquet import encode_parquet  # pyarrow loads with the first part, not at import (cold start)

        key = part.key.format(self._prefix)
        self.put(key, encode_parquet(part.events, self._deps.config.load, self._deps.resolver))
        self.parquet_keys.append(key)
        self.events += len(part.events)
        if check and self._out_of_time():
            raise _OutOfTime

    def _write_bad(self, *, check: bool = True) -> None:
        if not self._bad:
            return
        batch_id = f"{self._digest}-{self._bad_group:05d}"
        self.bad_keys += self._deps.bad_sink.write(self._bad, stage=STAGE, batch_id=batch_id, etl_tstamp=self._etl)
        self._bad_group += 1
        self._bad, self._bad_bytes = [], 0
        if check and self._out_of_time():
            raise _OutOfTime

    def put(self, key: str, body: bytes) -> None:
        try:
            self._deps.s3.put_object(Bucket=self._bucket, Key=key, Body=body)
        except aws_exceptions() as exc:
            failure = classify(exc)
            error = DirectWriteError if failure.retryable else DirectWriteAccessError
            raise error(f"cannot write s3://{self._bucket}/{key}: {failure}") from exc

    def delete_written(self) -> None:
        """Delete every object this attempt wrote (deleting a missing key succeeds, so repeating is safe)."""
        for key in self.parquet_keys + self.bad_keys:
            try:
                self._deps.s3.delete_object(Bucket=self._bucket, Key=key)
            except aws_exceptions() as exc:
                failure = classify(exc)
                error = DirectWriteError if failure.retryable else DirectWriteAccessError
                raise error(f"cannot delete s3://{self._bucket}/{key}: {failure}") from exc


def process_object(
    notice: ObjectNotice,
    deps: DirectDeps,
    *,
    request_id: str,
    remaining_ms: Callable[[], int],
    fair_share: bool = True,
) -> DirectResult:
    """Claim, read and write one object version; COMPLETE in the ledger once everything is durable.

    ``remaining_ms`` is the invocation's time left (the Lambda context's); ``fair_share`` says
    whether this attempt had at least half of its invocation, so that running out of time
    counts as a strike (see the module docstring).  Raises TransientError (the object is given
    back, retry later) or TerminalError; data errors are bad rows, never exceptions.
    """
    obj = ObjectId(notice.bucket, notice.key, notice.etag)
    started = deps.clock()
    claimed = claim_object(deps.ledger, obj, request_id=request_id, remaining_ms=remaining_ms)
    if isinstance(claimed, ClaimRefused):
        return DirectResult(obj, refusal_outcome(claimed))
    try:
        result = _process_claimed(obj, claimed, deps, remaining_ms, fair_share)
    except BaseException:
        # Let a retry start at once instead of waiting for the lease to expire.
        try:
            deps.ledger.release(claimed)
        except Exception:  # noqa: BLE001 - the original error matters more; the lease expires anyway
            pass
        raise
    result.seconds = deps.clock() - started
    return result


def _process_claimed(
    obj: ObjectId, claim: Claim, deps: DirectDeps, remaining_ms: Callable[[], int], fair_share: bool
) -> DirectResult:
    opened = open_object(deps.s3, obj)
    if isinstance(opened, str):
        deps.ledger.complete(claim, {}, detail=opened)
        return DirectResult(obj, "ignored", detail=opened)
    try:
        if opened.size is not None and opened.size > deps.max_object_bytes:
            why = (
                f"{obj.uri} is {opened.size} bytes, more than direct mode reads ({deps.max_object_bytes}); "
                "process it with the streaming mode or clickstream-etl backfill"
            )
            return _abandon(obj, claim, deps, opened.etl_tstamp, why, opened.size)
        margin = deps.config.stream.timeout_margin_ms

        def out_of_time() -> bool:
            return remaining_ms() < margin

        outputs = _Outputs(deps, obj, opened.etl_tstamp, out_of_time)
        summary = FileSummary(obj.uri)
        stream = cast(IO[bytes], _Body(opened.body, out_of_time, obj.uri))
        try:
            _read(stream, obj, deps, summary, outputs, opened.etl_tstamp)
        except _OutOfTime:
            return _timed_out(obj, claim, deps, outputs, opened.etl_tstamp, fair_share)
    finally:
        close = getattr(opened.body, "close", None)
        if close is not None:
            close()
    result = DirectResult(
        obj,
        "complete",
        lines_read=summary.lines_read,
        events=outputs.events,
        bad=summary.bad,
        skipped=summary.skipped,
        duplicates=outputs.duplicates,
        parquet_objects=outputs.parquet_keys,
        bad_objects=outputs.bad_keys,
        not_a_log=summary.not_a_log,
    )
    deps.ledger.complete(claim, result.counts(), detail=STAGE)
    return result


def _read(
    stream: IO[bytes], obj: ObjectId, deps: DirectDeps, summary: FileSummary, outputs: _Outputs, etl_tstamp: int
) -> None:
    items = process_stream(
        stream,
        SourceRef(obj.uri, etag=obj.etag),
        deps.log_format,
        deps.canonicalizer,
        deps.limits,
        summary,
        etl_tstamp,
        expect_gzip=obj.key.endswith(".gz"),
    )
    event, bad = outputs.event, outputs.bad
    try:
        for item in items:
            if type(item) is dict:
                event(item)
            else:
                bad(item)  # type: ignore[arg-type]
    finally:
        close = getattr(items, "close", None)  # a generator: when out of time, the reader lets go of the body now
        if close is not None:
            close()
    outputs.finish()


def _timed_out(
    obj: ObjectId, claim: Claim, deps: DirectDeps, outputs: _Outputs, etl_tstamp: int, fair_share: bool
) -> DirectResult:
    strikes = int(claim.counts.get("timeouts", 0)) + (1 if fair_share else 0)
    if strikes >= MAX_TIMEOUTS:
        outputs.delete_written()
        why = (
            f"{obj.uri} did not finish within the function's timeout {strikes} times; direct mode cannot "
            "continue an object: process it with the streaming mode or clickstream-etl backfill"
        )
        return _abandon(obj, claim, deps, etl_tstamp, why, None)
    # Not done: the lease is given back for the retry, which reads the object again from its start.
    deps.ledger.checkpoint(claim, claim.next_line, {**claim.counts, "timeouts": strikes}, release=True)
    return DirectResult(obj, "timed_out", detail=f"out of time ({strikes} of {MAX_TIMEOUTS} strikes)")


def _abandon(
    obj: ObjectId, claim: Claim, deps: DirectDeps, etl_tstamp: int, why: str, size: int | None
) -> DirectResult:
    """Give up on the object for good: one size_violation bad row names it, the ledger says FAILED.

    Counted as one line read that became one bad row, as the reader counts what it stops at
    its decompressed cap.
    """
    row = BadRow(FailureKind.SIZE_VIOLATION, (why,), SourceRef(obj.uri, etag=obj.etag), raw=b"", size=size)
    keys = deps.bad_sink.write([row], stage=STAGE, batch_id=f"{object_digest(obj)}-object", etl_tstamp=etl_tstamp)
    result = DirectResult(obj, "abandoned", lines_read=1, bad=1, bad_objects=keys, detail=why)
    deps.ledger.complete(claim, result.counts(), status="FAILED", detail=why)
    return result


def handle_notices(
    notices: Sequence[ObjectNotice], deps: DirectDeps, *, request_id: str, remaining_ms: Callable[[], int]
) -> list[DirectResult]:
    """Process every noticed object in order; one result each (guarded, deferred, retried as needed).

    A transient error of one object is its result ("error"), so the others go on; a terminal
    error raises.
    """
    budget = remaining_ms()
    results: list[DirectResult] = []
    for notice in notices:
        obj = ObjectId(notice.bucket, notice.key, notice.etag)
        if is_own_output(notice, deps.config) or notice.key.endswith("/"):
            results.append(DirectResult(obj, "ignored", detail="the pipeline's own output or a folder"))
            continue
        left = remaining_ms()
        if left < deps.config.stream.timeout_margin_ms:
            results.append(DirectResult(obj, "deferred"))  # unclaimed: its message comes back
            continue
        try:
            result = process_object(
                notice, deps, request_id=request_id, remaining_ms=remaining_ms, fair_share=2 * left >= budget
            )
        except TransientError as exc:
            result = DirectResult(obj, "error", detail=f"{type(exc).__name__}: {exc}")
        results.append(result)
    return results


# ------------------------------------------------------------------------------ the Lambda adapter
def _report(results: Sequence[DirectResult], ignored: Mapping[str, int]) -> None:
    """Logs per object; seven metric names in all (``config/prices.toml`` counts them in the direct footprint)."""
    for reason, count in ignored.items():
        logger.info("notification ignored", extra={"reason": reason, "count": count})
    settled = [r for r in results if r.outcome in ("complete", "abandoned")]  # final counts, never counted twice
    for name, value in (
        ("Lines", sum(r.lines_read for r in settled)),
        ("Events", sum(r.events for r in settled)),
        ("BadRows", sum(r.bad for r in settled)),
        ("Skipped", sum(r.skipped for r in settled)),
        ("DuplicatesDropped", sum(r.duplicates for r in settled)),
        ("ObjectsAbandoned", sum(r.outcome == "abandoned" for r in results)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for result in results:
        extra = {**result.to_json(), "not_a_log": result.not_a_log, "seconds": round(result.seconds, 3)}
        logger.info("object processed", extra=extra)


def _direct_failures(results: Iterator[DirectResult]) -> str:
    return "; ".join(f"{r.object.uri}: {r.outcome}{f' ({r.detail})' if r.detail else ''}" for r in results)


def handle(event: dict[str, Any], context: Any, deps: DirectDeps) -> dict[str, Any]:
    """One invocation: the objects' results and the SQS batch item failures (ReportBatchItemFailures)."""
    notices = parse_notifications(event)
    results = handle_notices(
        notices.objects, deps, request_id=context.aws_request_id, remaining_ms=context.get_remaining_time_in_millis
    )
    _report(results, notices.ignored)
    retry = redelivery(notices.objects, results, RETRY_LATER)
    metrics.add_metric(name="RetryLater", unit=MetricUnit.Count, value=len(retry.sqs_message_ids) + len(retry.direct))
    if retry.direct:
        again = set(retry.direct)
        raise DirectRetryError(f"retry later: {_direct_failures(r for r in results if r.object in again)}")
    if notices.malformed_direct:
        malformed = {reason: n for reason, n in sorted(notices.ignored.items()) if reason.startswith("malformed")}
        raise MalformedNotificationError(f"parts of the event are not S3 notifications: {malformed}")
    failures = retry.batch_item_failures()
    # Malformed SQS messages come back until the queue's redrive policy moves them to its dead-letter queue.
    failures += [{"itemIdentifier": m} for m in notices.malformed_messages if m not in retry.sqs_message_ids]
    return {"objects": [r.to_json() for r in results], "batchItemFailures": failures}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, default_deps())
