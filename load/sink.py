"""The Parquet sink over stream 2: a Kinesis batch -> partitioned Parquet objects on S3.

Object keys are ``<events_prefix>event_date=D/event_hour=H/<shard>-<first seq>-<last seq>.parquet``:
a retried batch (same records, same boundaries) overwrites its own objects.  Chunks that
were replayed upstream arrive again with new sequence numbers but the same chunk id (their
partition key); the ledger assigns each chunk to one batch key, so a replayed chunk is
skipped instead of written twice.  This requires stable batch boundaries: the sink's event
source mapping must not bisect (``BisectBatchOnFunctionError: false``).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.config import PipelineConfig
from pipeline.records import RecordDecodeError, decode_events
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
    records: Sequence[SinkRecord], key: str, prefix: str, is_new_chunk: Callable[[str], bool], *, origin: str
) -> tuple[dict[str, list[CanonicalEvent]], SinkResult]:
    """Events per object key for one batch, without replayed chunks or natural duplicates."""
    from load.parquet import PartitionKey

    result = SinkResult(key, records=len(records))
    seen_chunks: set[str] = set()
    seen_events: set[tuple[str, str]] = set()
    objects: defaultdict[str, list[CanonicalEvent]] = defaultdict(list)
    for record in records:
        if record.chunk_id in seen_chunks or not is_new_chunk(record.chunk_id):
            result.replayed_chunks += 1
            continue
        seen_chunks.add(record.chunk_id)
        try:
            events = decode_events(record.data)
        except RecordDecodeError as exc:
            result.bad.append(
                BadRow(
                    FailureKind.RECORD_INVALID,
                    (str(exc),),
                    SourceRef(f"{origin}/{record.sequence_number}"),
                    raw=record.data[:65536],
                    size=len(record.data),
                )
            )
            continue
        for event in events:
            result.events += 1
            ident = (str(event.get("event_id")), str(event.get("event_fingerprint")))
            if ident in seen_events:
                result.duplicates_dropped += 1
                continue
            seen_events.add(ident)
            partition = PartitionKey.of(int(event["collector_tstamp"]))
            objects[f"{prefix}{partition.format()}/{key}.parquet"].append(event)
    return dict(objects), result


def write_batch(event: dict[str, Any], *, s3: Any, ledger: Any, bad_sink: Any, config: PipelineConfig) -> SinkResult:
    """Write one stream-2 batch; raises (transient) when any object could not be written."""
    from load.errors import SinkWriteError
    from load.parquet import encode_parquet

    shard, records = records_from_event(event)
    if not records:
        return SinkResult("")
    key = batch_key(shard, records[0].sequence_number, records[-1].sequence_number)
    resources = config.resources
    objects, result = plan_objects(
        records,
        key,
        resources.events_prefix,
        lambda chunk: bool(ledger.claim_chunk(chunk, key)),
        origin=str((event.get("Records") or [{}])[0].get("eventSourceARN", "kinesis")),
    )
    for object_key, events in sorted(objects.items()):
        body = encode_parquet(events, config.load)
        try:
            s3.put_object(Bucket=resources.output_bucket, Key=object_key, Body=body)
        except Exception as exc:
            raise SinkWriteError(f"cannot write s3://{resources.output_bucket}/{object_key}: {exc}") from exc
        result.objects.append(object_key)
        result.rows_by_object[object_key] = len(events)
        result.rows_written += len(events)
    if result.bad:
        first = records[0].sequence_number
        bad_sink.write(result.bad, stage="sink", batch_id=f"{shard}-{first}", etl_tstamp=_first_etl(records))
    return result


def _first_etl(records: Sequence[SinkRecord]) -> int:
    # Bad rows of the sink are dated by the first decodable event's etl_tstamp, else epoch.
    for record in records:
        try:
            events = decode_events(record.data)
        except RecordDecodeError:
            continue
        if events:
            return int(events[0].get("etl_tstamp") or 0)
    return 0
