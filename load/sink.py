"""The Parquet sink over stream 2, the executor: claims, then Parquet objects on S3, or undo.

:mod:`load.sink_plan` decides what a batch writes; this module does the I/O around it.

Chunks replayed upstream arrive again with new sequence numbers but the same chunk id (their
partition key); the ledger assigns each chunk to one batch key, so a replayed chunk is
skipped.  Natural duplicates that arrive in different chunks (a tracker's retries, the
same line in two log files) are caught by the event manifest: one conditional put per
(event_id, fingerprint), as Snowplow's cross-batch deduplication does, kept for
``stream.dedupe_window_days``.  It costs one DynamoDB write per event;
``stream.cross_batch_dedupe = false`` turns it off and leaves cross-batch duplicates to
readers and to the Redshift merge.

Claims are taken before the objects are written.  When an attempt fails, it deletes the
objects it wrote and gives its claims back before raising, so a retry that Lambda groups
differently still writes every event.  An invocation killed outright (timeout, out of
memory) between its claims and its writes leaves claims behind: its retry with the same
boundaries is unaffected, but events of a regrouped retry would be held until the manifest
entries expire (``stream.dedupe_window_days``); events are validated before anything is
claimed, so a malformed one becomes a bad row instead of failing the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from load.errors import SinkWriteError
from load.sink_plan import SinkRecord, batch_key, event_origin, plan_objects, records_from_event, screen_batch
from pipeline.aws.badsink import BadRowWriter
from pipeline.aws.errors import aws_exceptions
from pipeline.badrows import BadRow
from pipeline.config import PipelineConfig


class ClaimLedger(Protocol):
    """The ledger calls the sink makes (:class:`pipeline.aws.ledger.Ledger` in the deployed wiring)."""

    def claim_chunk(self, chunk_id: str, object_key: str) -> bool: ...

    def claim_events(
        self, keys: Sequence[tuple[str, str]], owner: str, *, expires_at_s: int, concurrency: int = 1
    ) -> set[int]: ...

    def release_claims(self, chunk_ids: Sequence[str], events: Sequence[tuple[str, str]], owner: str) -> None: ...


@dataclass
class SinkResult:
    batch_key: str
    records: int = 0
    events: int = 0
    rows_written: int = 0
    replayed_chunks: int = 0
    duplicates_dropped: int = 0
    bad: list[BadRow] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    etl_tstamp: int = 0
    """Of the batch's first event: dates its bad rows (epoch when there is none)."""


class _Claims:
    """The ledger claims one attempt took, in order, so that they can be given back."""

    def __init__(self, ledger: ClaimLedger, owner: str) -> None:
        self._ledger = ledger
        self._owner = owner
        self.chunks: list[str] = []
        self.events: list[tuple[str, str]] = []
        self._held: set[str] = set()

    def take_chunks(self, records: Sequence[SinkRecord]) -> set[int]:
        """Claim each record's chunk until this batch holds it; the indices of the records that won."""
        won: set[int] = set()
        for index, record in enumerate(records):
            if record.chunk_id in self._held:
                continue  # a second copy of a chunk this batch holds: a replay
            if self._ledger.claim_chunk(record.chunk_id, self._owner):
                self._held.add(record.chunk_id)
                self.chunks.append(record.chunk_id)
                won.add(index)
        return won

    def take_events(self, keys: list[tuple[str, str]], *, expires_at_s: int, concurrency: int) -> set[int]:
        granted = set(self._ledger.claim_events(keys, self._owner, expires_at_s=expires_at_s, concurrency=concurrency))
        self.events.extend(keys[i] for i in sorted(granted))
        return granted


def write_batch(
    event: dict[str, Any],
    *,
    s3: Any,
    ledger: ClaimLedger,
    bad_sink: BadRowWriter,
    config: PipelineConfig,
    clock: Callable[[], float] = time.time,
) -> SinkResult:
    """Write one stream-2 batch; raises (transient) when any object could not be written."""
    from load.parquet import encode_parquet  # pyarrow loads with the first batch, not at import (cold start)

    shard, records = records_from_event(event)
    if not records:
        return SinkResult("")
    key = batch_key(shard, records[0].sequence_number, records[-1].sequence_number)
    resources = config.resources
    expires_at = int(clock()) + config.stream.dedupe_window_days * 86400
    claims = _Claims(ledger, key)
    written: list[str] = []
    try:
        screened = screen_batch(records, claims.take_chunks(records), origin=event_origin(event))
        granted = None
        if config.stream.cross_batch_dedupe and screened.unique:
            granted = claims.take_events(
                screened.event_keys, expires_at_s=expires_at, concurrency=config.stream.dedupe_concurrency
            )
        plan = plan_objects(screened, key, resources.events_prefix, granted)
        result = SinkResult(
            key,
            records=plan.records,
            events=plan.events,
            replayed_chunks=plan.replayed_chunks,
            duplicates_dropped=plan.duplicates_dropped,
            bad=list(plan.bad),
            etl_tstamp=plan.etl_tstamp,
        )
        for object_key, events in sorted(plan.objects.items()):
            body = encode_parquet(events, config.load)
            try:
                s3.put_object(Bucket=resources.output_bucket, Key=object_key, Body=body)
            except aws_exceptions() as exc:
                raise SinkWriteError(f"cannot write s3://{resources.output_bucket}/{object_key}: {exc}") from exc
            written.append(object_key)
            result.objects.append(object_key)
            result.rows_written += len(events)
        if result.bad:
            first = records[0].sequence_number
            bad_sink.write(result.bad, stage="sink", batch_id=f"{shard}-{first}", etl_tstamp=result.etl_tstamp)
    except BaseException:
        # Undo this attempt so that its retry starts clean, even if Lambda groups the records
        # differently: remove the objects written and give the claims back.
        _undo(s3, resources.output_bucket, written, ledger, claims.chunks, claims.events, key)
        raise
    return result


def _undo(
    s3: Any,
    bucket: str,
    written: list[str],
    ledger: ClaimLedger,
    chunks: list[str],
    events: list[tuple[str, str]],
    owner: str,
) -> None:
    try:
        for object_key in written:
            s3.delete_object(Bucket=bucket, Key=object_key)
        ledger.release_claims(chunks, events, owner)
    except Exception:  # noqa: BLE001 - the original error is the one to report; see the module docstring
        pass
