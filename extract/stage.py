"""The extract stage: one S3 log object onto Kinesis stream 1, checkpointed in the ledger.

:func:`extract_object` claims the object version in the ledger, streams it through the
reader core, packs lines into :class:`~pipeline.records.RawBatch` records and puts them
with :class:`~pipeline.aws.kinesis.KinesisWriter`; bad rows go to the bad-rows sink.  Work is
flushed in groups (at most one PutRecords request of records); after each group every
line up to its last one is durable, which is where a checkpoint may be taken.  Group
boundaries depend only on the input from the start line, so a resumed or replayed object
produces the same records, the same ids and the same bad-row objects.

The object is acknowledged (ledger COMPLETE) only once everything is durable.  Every
durable group is checkpointed; near the invocation's timeout the checkpoint also releases
the lease and a continuation is asked for.  The lease lasts until the invocation's own
timeout, so an invocation killed without a chance to release it (out of memory, a runtime
crash) blocks its object until then, and no longer: a later attempt takes the lease over and
resumes at the last checkpoint.  An attempt that finds the object leased ("busy") is not an
answer: :func:`redelivery` says which notifications must come back (see extract.reconciler
for the ones that never do).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from extract.errors import ExtractTransientError, ObjectBusyError
from extract.notifications import ObjectNotice
from pipeline.aws.badsink import BadRowWriter
from pipeline.aws.errors import aws_exceptions, classify, error_code
from pipeline.aws.kinesis import MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, OutRecord, PacedWriter, RecordWriter
from pipeline.aws.ledger import Claim, ClaimRefused, Ledger, ObjectId
from pipeline.badrows import BadRow, SourceRef
from pipeline.config import PipelineConfig
from pipeline.formats import get_format
from pipeline.formats.base import FieldLayout, LogFormat, LogLine, ReadLimits, ReadProgress, ReadStats
from pipeline.pacing import Pacer, RateLimits
from pipeline.records import RawBatch, encode_raw

# Room for the record's fixed fields (bucket, key, etag, layout) besides its lines.
RECORD_OVERHEAD: Final = 8 * 1024
_MAX_PENDING_BAD: Final = 5000
_MAX_PENDING_BAD_BYTES: Final = 16 * 1024 * 1024  # raw payloads held before a flush (bounded memory)
# Skipped lines count toward the checkpoint cadence too: after this many lines read since the
# last checkpoint (blank lines, headers), one is taken even though nothing was shipped.
_SKIPPED_LINES_PER_CHECKPOINT: Final = 1_000_000

# Lambda's longest timeout.  The lease is the invocation's remaining time, which in Lambda ends
# at its timeout; the cap keeps a caller reporting more time (a fake context) from holding an
# object past any real invocation's end.
MAX_LEASE_MS: Final = 15 * 60 * 1000

Outcome = Literal["complete", "continued", "deferred", "duplicate", "busy", "failed", "ignored"]
RETRY_LATER: Final[frozenset[Outcome]] = frozenset({"busy"})
"""Outcomes that consume nothing: another invocation's lease is still valid, so the notification
must be delivered again once it can have expired (the holder may have been killed)."""


@dataclass
class ExtractResult:
    object: ObjectId
    outcome: Outcome
    start_line: int = 0
    next_line: int = 0
    lines_read: int = 0
    lines_shipped: int = 0
    bad: int = 0
    skipped: int = 0
    records: int = 0

    @property
    def conserved(self) -> bool:
        return self.lines_read == self.lines_shipped + self.bad + self.skipped

    def counts(self) -> dict[str, int]:
        return {
            "lines_read": self.lines_read,
            "lines_shipped": self.lines_shipped,
            "bad": self.bad,
            "skipped": self.skipped,
            "records": self.records,
        }


def partition_key(batch: RawBatch) -> str:
    """Spread records over shards; deterministic, so a resent record keeps its shard."""
    return batch.batch_id


class _Packer:
    """Accumulates lines of one layout into RawBatch records of at most ``budget`` bytes."""

    def __init__(self, obj: ObjectId, etl_tstamp: int, budget: int, format_name: str) -> None:
        self._obj = obj
        self._format = format_name
        self._etl = etl_tstamp
        self._budget = budget
        self._layout: FieldLayout | None = None
        self._numbers: list[int] = []
        self._lines: list[str] = []
        self._size = 0
        self.records: list[OutRecord] = []
        self.records_bytes = 0
        self.lines_in_records = 0

    def add(self, line: LogLine) -> None:
        size = len(line.text) if line.text.isascii() else len(line.text.encode("utf-8"))
        if self._lines and (line.layout is not self._layout or self._size + size + 10 > self._budget):
            self.seal()
        if not self._lines and line.layout is not None:
            self._size = sum(len(name) + 1 for name in line.layout.names)  # the record carries its layout
        self._layout = line.layout
        self._numbers.append(line.line_no)
        self._lines.append(line.text)
        self._size += size + 10

    def seal(self) -> None:
        if not self._lines:
            return
        batch = RawBatch(
            self._obj.bucket,
            self._obj.key,
            self._obj.etag,
            self._etl,
            " ".join(self._layout.names) if self._layout else "",
            tuple(self._numbers),
            tuple(self._lines),
            self._format,
        )
        record = OutRecord(encode_raw(batch), partition_key(batch))
        self.records.append(record)
        self.records_bytes += record.size
        self.lines_in_records += len(self._lines)
        self._numbers, self._lines, self._size = [], [], 0

    def take(self) -> tuple[list[OutRecord], int]:
        records, lines = self.records, self.lines_in_records
        self.records, self.records_bytes, self.lines_in_records = [], 0, 0
        return records, lines


def owner_token(request_id: str, obj: ObjectId) -> str:
    """The ledger owner of ``obj`` for the invocation ``request_id`` (deterministic, 24 hex digits)."""
    return hashlib.sha256(f"{request_id}\x00{obj.pk}".encode()).hexdigest()[:24]


def claim_object(
    ledger: Ledger, obj: ObjectId, *, request_id: str, remaining_ms: Callable[[], int]
) -> Claim | ClaimRefused:
    """Lease ``obj`` in the ledger for the rest of the invocation (at most :data:`MAX_LEASE_MS`).

    The claim every object function makes (Extract, and the direct mode's function): a new
    object, or one in progress whose lease has expired or was released, is taken; a complete,
    failed or leased one is refused (:func:`refusal_outcome` says what that means).
    Raises :class:`~pipeline.aws.ledger.LedgerError` (retry) or ``LedgerAccessError``.
    """
    return ledger.claim(obj, owner_token(request_id, obj), lease_ms=min(remaining_ms(), MAX_LEASE_MS))


def refusal_outcome(refused: ClaimRefused) -> Literal["duplicate", "busy", "failed"]:
    """The outcome of an object whose claim was refused: done already, leased to another, or failed."""
    if refused.reason == "complete":
        return "duplicate"
    return "busy" if refused.reason == "busy" else "failed"


def extract_object(
    notice: ObjectNotice,
    *,
    s3: Any,
    writer: RecordWriter,
    bad_sink: BadRowWriter,
    ledger: Ledger,
    config: PipelineConfig,
    limits: ReadLimits,
    request_id: str,
    remaining_ms: Callable[[], int],
    log_format: LogFormat | None = None,
) -> ExtractResult:
    """Ship one object version to stream 1 (read as ``log_format``, by default CloudFront W3C).

    Raises TransientError when it must be retried.
    """
    obj = ObjectId(notice.bucket, notice.key, notice.etag)
    claimed = claim_object(ledger, obj, request_id=request_id, remaining_ms=remaining_ms)
    if isinstance(claimed, ClaimRefused):
        return ExtractResult(obj, refusal_outcome(claimed))
    claim = claimed
    durable: dict[str, Any] = {}
    try:
        reader = log_format or get_format()
        return _ship(obj, claim, s3, writer, bad_sink, ledger, config, limits, reader, remaining_ms, durable)
    except BaseException:
        # Let a retry resume at once, from the last flush that was durable (not from the last
        # timeout checkpoint), instead of waiting for the lease to expire.
        try:
            if durable.get("line", claim.next_line) > claim.next_line:
                ledger.checkpoint(claim, durable["line"], durable["counts"], release=True)
            else:
                ledger.release(claim)
        except Exception:  # noqa: BLE001 - the original error matters more; the lease expires anyway
            pass
        raise


@dataclass(frozen=True)
class OpenedObject:
    """An object version being read: its body stream and what its GetObject response said."""

    body: Any
    """The streaming body (botocore ``StreamingBody``); the caller closes it."""
    etl_tstamp: int
    """LastModified in epoch ms (0 when absent): the same on every read of the version."""
    size: int | None
    """ContentLength in bytes (None when absent)."""


def open_object(s3: Any, obj: ObjectId) -> OpenedObject | str:
    """The object version opened for reading (``IfMatch`` its ETag), or why it cannot be read.

    A missing object or an overwritten one (its new version has its own notification) is a
    reason string: nothing to do.  Any other failure raises ExtractTransientError (retry).
    """
    kwargs: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.etag:
        kwargs["IfMatch"] = f'"{obj.etag}"'
    try:
        response = s3.get_object(**kwargs)
    except aws_exceptions() as exc:
        code = error_code(exc)
        if code in ("NoSuchKey", "404"):
            return "object no longer exists"
        if code in ("PreconditionFailed", "412"):
            return "object was overwritten (its new version has its own notification)"
        # Anything else (throttling, a 5xx, even access denied while a policy propagates) is
        # raised so that Lambda retries the notification and, in the end, sends it to the DLQ.
        raise ExtractTransientError(f"cannot read {obj.uri}: {classify(exc).code}") from exc
    modified = response.get("LastModified")
    etl_tstamp = int(modified.timestamp() * 1000) if modified is not None else 0
    size = response.get("ContentLength")
    return OpenedObject(response["Body"], etl_tstamp, int(size) if size is not None else None)


def _ship(  # noqa: PLR0915 - one object's read-pack-flush-checkpoint loop; its steps share the durable-progress state
    obj: ObjectId,
    claim: Claim,
    s3: Any,
    writer: RecordWriter,
    bad_sink: BadRowWriter,
    ledger: Ledger,
    config: PipelineConfig,
    limits: ReadLimits,
    reader: LogFormat,
    remaining_ms: Callable[[], int],
    durable: dict[str, Any],
) -> ExtractResult:
    start = claim.next_line
    result = ExtractResult(obj, "complete", start_line=start, next_line=start)
    opened = open_object(s3, obj)
    if isinstance(opened, str):
        ledger.complete(claim, dict(claim.counts), detail=opened)
        result.outcome = "ignored"
        return result
    body, etl_tstamp = opened.body, opened.etl_tstamp
    source = SourceRef(obj.uri, etag=obj.etag)
    budget = min(config.stream.record_target_bytes, config.stream.record_max_bytes - RECORD_OVERHEAD)
    packer = _Packer(obj, etl_tstamp, budget, reader.name)
    stats = ReadStats()
    pending_bad: list[BadRow] = []
    pending_bad_bytes = 0
    group_start = start  # first line (exclusive) of the group being filled
    margin = config.stream.timeout_margin_ms
    group_records = max(min(config.stream.put_batch_records, MAX_RECORDS_PER_CALL) - 1, 1)
    group_bytes = MAX_BYTES_PER_CALL - 2 * config.stream.record_max_bytes
    totals = Counter(claim.counts)

    def flush(last_line: int) -> None:
        nonlocal group_start, pending_bad_bytes
        packer.seal()
        records, lines = packer.take()
        if records:
            writer.put(records)
        if pending_bad:
            bad_sink.write(
                list(pending_bad),
                stage="extract",
                batch_id=f"{object_digest(obj)}-{group_start:09d}",
                etl_tstamp=etl_tstamp,
            )
        result.records += len(records)
        result.lines_shipped += lines
        result.bad += len(pending_bad)
        pending_bad.clear()
        pending_bad_bytes = 0
        group_start = last_line
        result.next_line = last_line
        # Every line up to last_line is now durable or skipped: a safe place to resume.
        _account_skips(result, stats)
        result.lines_read = last_line - start
        durable["line"], durable["counts"] = last_line, counts_now()

    def counts_now() -> dict[str, int]:
        now = dict(totals)
        for name, value in result.counts().items():
            now[name] = now.get(name, 0) + value
        return now

    last_line = start
    try:
        for item in reader.read(body, source, limits, stats, expect_gzip=obj.key.endswith(".gz"), start_line=start):
            if type(item) is LogLine:
                packer.add(item)
                last_line = item.line_no
            elif type(item) is ReadProgress:
                # A stretch of blank lines or headers: nothing to ship, but the clock runs
                # (a newline bomb must not time out on every attempt).
                last_line = item.line_no
                near_timeout = remaining_ms() < margin
                if near_timeout or last_line - group_start >= _SKIPPED_LINES_PER_CHECKPOINT:
                    flush(last_line)
                    claim = ledger.checkpoint(claim, last_line, counts_now(), release=near_timeout)
                    if near_timeout:
                        result.outcome = "continued"
                        return result
                continue
            else:
                bad: BadRow = item  # type: ignore[assignment]
                pending_bad.append(bad)
                pending_bad_bytes += len(bad.raw)
                last_line = bad.source.line or last_line
            if (
                len(packer.records) >= group_records
                or packer.records_bytes >= group_bytes
                or len(pending_bad) >= _MAX_PENDING_BAD
                or pending_bad_bytes >= _MAX_PENDING_BAD_BYTES
            ):
                # Every line up to last_line is now yielded or skipped; after this flush all of
                # them are durable, so last_line is a safe checkpoint.  It is taken after every
                # group, not only near the timeout: an invocation killed without running any
                # handler leaves its progress here, and the one that takes the lease over later
                # resends at most one group (identical records, so the sinks dedupe them).
                flush(last_line)
                near_timeout = remaining_ms() < margin
                claim = ledger.checkpoint(claim, last_line, counts_now(), release=near_timeout)
                if near_timeout:
                    result.outcome = "continued"
                    return result
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    flush(start + stats.lines_read)  # also settles lines_read and the skips
    ledger.complete(claim, counts_now())
    return result


def _account_skips(result: ExtractResult, stats: ReadStats) -> None:
    result.skipped = sum(stats.skipped.values())


def object_digest(obj: ObjectId) -> str:
    """16 hex digits naming an object version (bucket, key, ETag) in output keys: stable across retries."""
    return hashlib.sha256(obj.pk.encode("utf-8", "surrogateescape")).hexdigest()[:16]


# ------------------------------------------------------------------ notifications
@dataclass(frozen=True)
class ExtractDeps:
    """What the stage needs from the outside world; the handler builds it once per container."""

    config: PipelineConfig
    limits: ReadLimits
    s3: Any
    writer: RecordWriter
    bad_sink: BadRowWriter
    ledger: Ledger
    continue_later: Callable[[ObjectNotice], None]
    """Schedules a fresh invocation for an object that was checkpointed near the timeout."""
    log_format: LogFormat = field(default_factory=get_format)
    """How the objects are read (``extract.format``)."""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    """The clock and sleep that pace a replay's objects (:class:`~pipeline.aws.kinesis.PacedWriter`)."""


def is_own_output(notice: ObjectNotice, config: PipelineConfig) -> bool:
    """Recursion guard: the pipeline's output prefixes are never read as logs.

    They are the dataset's, the bad rows', Firehose's and the Redshift load's COPY manifests
    (written to the dataset's bucket); an empty prefix guards nothing rather than everything.
    """
    resources = config.resources
    prefixes = tuple(p for p in (*resources.output_prefixes, config.redshift.manifest_prefix) if p)
    return notice.bucket == resources.output_bucket and notice.key.startswith(prefixes)


def handle_notices(
    notices: list[ObjectNotice], deps: ExtractDeps, *, request_id: str, remaining_ms: Callable[[], int]
) -> list[ExtractResult]:
    """Extract every noticed object; guarded, deduplicated and continued as needed."""
    results: list[ExtractResult] = []
    pacers: dict[RateLimits, Pacer] = {}  # one per pace, so an invocation's objects share its budget
    for notice in notices:
        obj = ObjectId(notice.bucket, notice.key, notice.etag)
        if is_own_output(notice, deps.config) or notice.key.endswith("/"):
            results.append(ExtractResult(obj, "ignored"))
            continue
        if remaining_ms() < deps.config.stream.timeout_margin_ms:
            # Too little time to start an object: hand it to a fresh invocation unclaimed.
            deps.continue_later(notice)
            results.append(ExtractResult(obj, "deferred"))
            continue
        writer = deps.writer
        if notice.pace is not None:
            pacer = pacers.setdefault(notice.pace, Pacer(notice.pace, deps.clock, deps.sleep))
            writer = PacedWriter(deps.writer, pacer)
        result = extract_object(
            notice,
            s3=deps.s3,
            writer=writer,
            bad_sink=deps.bad_sink,
            ledger=deps.ledger,
            config=deps.config,
            limits=deps.limits,
            request_id=request_id,
            remaining_ms=remaining_ms,
            log_format=deps.log_format,
        )
        if result.outcome == "continued":
            deps.continue_later(notice)
        results.append(result)
    return results


@dataclass(frozen=True)
class Redelivery:
    """The notifications of one invocation that must come back later, by how they came."""

    sqs_message_ids: tuple[str, ...] = ()
    """SQS messages to report as batch item failures: SQS redelivers them after the queue's
    visibility timeout (see pipeline.topology.notification_mapping), when the lease can have expired."""
    direct: tuple[ObjectId, ...] = ()
    """Objects noticed directly: only a failed invocation makes Lambda retry those."""

    def batch_item_failures(self) -> list[dict[str, str]]:
        """The ``batchItemFailures`` of an SQS partial batch response."""
        return [{"itemIdentifier": message_id} for message_id in self.sqs_message_ids]

    def raise_for_direct(self) -> None:
        """Fail the invocation (ObjectBusyError, retryable) when a directly noticed object must come back."""
        if self.direct:
            objects = ", ".join(obj.uri for obj in self.direct)
            raise ObjectBusyError(f"leased to another invocation, retry later: {objects}")


class ObjectOutcome(Protocol):
    """What :func:`redelivery` reads of a result: the object and its outcome (:class:`ExtractResult` has both)."""

    @property
    def object(self) -> ObjectId: ...

    @property
    def outcome(self) -> str: ...


def redelivery(
    notices: Sequence[ObjectNotice],
    results: Sequence[ObjectOutcome],
    retry_later: Collection[str] = RETRY_LATER,
) -> Redelivery:
    """Which of ``notices`` must be delivered again, given their ``results`` (one each, in order).

    Only ``retry_later`` outcomes (Extract's :data:`RETRY_LATER`, by default): everything else
    is done, continued in a fresh invocation, or deliberately ignored, and acknowledging its
    notification is right.
    """
    messages: dict[str, None] = {}
    direct: list[ObjectId] = []
    for notice, result in zip(notices, results, strict=True):
        if result.outcome not in retry_later:
            continue
        if notice.sqs_message_id:
            messages[notice.sqs_message_id] = None  # one message may carry several notices
        else:
            direct.append(result.object)
    return Redelivery(tuple(messages), tuple(direct))


def check_limits(config: PipelineConfig) -> None:
    """Refuse a configuration whose longest line could not fit one Kinesis record."""
    from pipeline.errors import ConfigError

    # A record holds at least one line and its #Fields layout (itself at most one line long).
    if 2 * config.extract.max_line_bytes + RECORD_OVERHEAD > min(config.stream.record_max_bytes, 1024 * 1024):
        raise ConfigError(
            f"twice extract.max_line_bytes ({config.extract.max_line_bytes}) plus record overhead must fit "
            f"stream.record_max_bytes ({config.stream.record_max_bytes}, at most 1 MiB)"
        )
