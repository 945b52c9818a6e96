"""The Parquet sink over stream 2: a Kinesis batch -> partitioned Parquet objects on S3.

Object keys are ``<events_prefix>event_date=D/event_hour=H/<shard>-<first seq>-<last seq>.parquet``:
a retried batch (same records, same boundaries) overwrites its own objects.  This requires
stable batch boundaries: the sink's event source mapping must not bisect
(``BisectBatchOnFunctionError: false``).

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

import base64
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.aws.errors import aws_exceptions
from pipeline.badrows import BadRow, FailureKind, SourceRef, undecodable_record
from pipeline.config import PipelineConfig
from pipeline.records import RecordDecodeError, decode_events, event_problems
from pipeline.schema import CanonicalEvent


@dataclass(frozen=True)
class SinkRecord:
    chunk_id: str
    sequence_number: str
    data: bytes


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
    rows_by_object: Counter[str] = field(default_factory=Counter)
    etl_tstamp: int = 0
    """Of the batch's first event: dates its bad rows (epoch when there is none)."""


def batch_key(shard_id: str, first_sequence: str, last_sequence: str) -> str:
    return f"{shard_id}-{first_sequence}-{last_sequence}"


def records_from_event(event: dict[str, Any]) -> tuple[str, list[SinkRecord]]:
    """The shard and records of a Lambda Kinesis event (one shard per batch)."""
    records: list[SinkRecord] = []
    shard = ""
    for raw in event.get("Records") or []:
        kinesis = raw["kinesis"]
        shard = shard or str(raw.get("eventID", "")).split(":", 1)[0]
        records.append(
            SinkRecord(kinesis["partitionKey"], kinesis["sequenceNumber"], base64.b64decode(kinesis["data"]))
        )
    return shard, records


def plan_objects(
    records: Sequence[SinkRecord],
    key: str,
    prefix: str,
    is_new_chunk: Callable[[str], bool],
    *,
    origin: str,
    claim_events: Callable[[list[tuple[str, str]]], set[int]] | None = None,
) -> tuple[dict[str, list[CanonicalEvent]], SinkResult]:
    """Events per object key for one batch, without replayed chunks or natural duplicates.

    ``claim_events`` (the cross-batch event manifest) gets the batch's distinct
    (event_id, fingerprint) keys and returns the indices this batch may write.
    """
    from load.parquet import PartitionKey

    result = SinkResult(key, records=len(records))
    seen_chunks: set[str] = set()
    seen_events: set[tuple[str, str]] = set()
    unique: list[CanonicalEvent] = []
    for record in records:
        if record.chunk_id in seen_chunks or not is_new_chunk(record.chunk_id):
            result.replayed_chunks += 1
            continue
        seen_chunks.add(record.chunk_id)
        try:
            events = decode_events(record.data)
        except RecordDecodeError as exc:
            result.bad.append(undecodable_record(record.data, str(exc), f"{origin}/{record.sequence_number}"))
            continue
        for event in events:
            result.events += 1
            if not result.etl_tstamp and type(event.get("etl_tstamp")) is int:
                result.etl_tstamp = event["etl_tstamp"]
            problems = event_problems(event)
            if problems:
                result.bad.append(
                    BadRow(
                        FailureKind.SCHEMA_VIOLATION,
                        tuple(problems),
                        SourceRef(f"{origin}/{record.sequence_number}"),
                        raw=json.dumps(event, ensure_ascii=False),
                    )
                )
                continue
            ident = (str(event.get("event_id")), str(event.get("event_fingerprint")))
            if ident in seen_events:
                result.duplicates_dropped += 1
                continue
            seen_events.add(ident)
            unique.append(event)
    if claim_events is not None and unique:
        keys = [(str(e.get("event_id")), str(e.get("event_fingerprint"))) for e in unique]
        granted = claim_events(keys)
        result.duplicates_dropped += len(unique) - len(granted)
        unique = [event for index, event in enumerate(unique) if index in granted]
    objects: defaultdict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in unique:
        partition = PartitionKey.of(int(event["collector_tstamp"]))
        objects[f"{prefix}{partition.format()}/{key}.parquet"].append(event)
    return dict(objects), result


def write_batch(
    event: dict[str, Any],
    *,
    s3: Any,
    ledger: Any,
    bad_sink: Any,
    config: PipelineConfig,
    clock: Callable[[], float] = time.time,
) -> SinkResult:
    """Write one stream-2 batch; raises (transient) when any object could not be written."""
    from load.errors import SinkWriteError
    from load.parquet import encode_parquet

    shard, records = records_from_event(event)
    if not records:
        return SinkResult("")
    key = batch_key(shard, records[0].sequence_number, records[-1].sequence_number)
    resources = config.resources
    expires_at = int(clock()) + config.stream.dedupe_window_days * 86400
    claimed_chunks: list[str] = []
    claimed_events: list[tuple[str, str]] = []

    def claim_chunk(chunk: str) -> bool:
        granted = bool(ledger.claim_chunk(chunk, key))
        if granted:
            claimed_chunks.append(chunk)
        return granted

    def claim_events(keys: list[tuple[str, str]]) -> set[int]:
        granted = set(
            ledger.claim_events(keys, key, expires_at_s=expires_at, concurrency=config.stream.dedupe_concurrency)
        )
        claimed_events.extend(keys[i] for i in sorted(granted))
        return granted

    written: list[str] = []
    try:
        objects, result = plan_objects(
            records,
            key,
            resources.events_prefix,
            claim_chunk,
            origin=str((event.get("Records") or [{}])[0].get("eventSourceARN", "kinesis")),
            claim_events=claim_events if config.stream.cross_batch_dedupe else None,
        )
        for object_key, events in sorted(objects.items()):
            body = encode_parquet(events, config.load)
            try:
                s3.put_object(Bucket=resources.output_bucket, Key=object_key, Body=body)
            except aws_exceptions() as exc:
                raise SinkWriteError(f"cannot write s3://{resources.output_bucket}/{object_key}: {exc}") from exc
            written.append(object_key)
            result.objects.append(object_key)
            result.rows_by_object[object_key] = len(events)
            result.rows_written += len(events)
        if result.bad:
            first = records[0].sequence_number
            bad_sink.write(result.bad, stage="sink", batch_id=f"{shard}-{first}", etl_tstamp=result.etl_tstamp)
    except BaseException:
        # Undo this attempt so that its retry starts clean, even if Lambda groups the records
        # differently: remove the objects written and give the claims back.
        _undo(s3, resources.output_bucket, written, ledger, claimed_chunks, claimed_events, key)
        raise
    return result


def _undo(
    s3: Any,
    bucket: str,
    written: list[str],
    ledger: Any,
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
