"""The Parquet sink's plan of one stream-2 batch, pure: records -> the objects to write.

Object keys are ``<events_prefix>event_date=D/event_hour=H/<shard>-<first seq>-<last seq>.parquet``
(:func:`batch_key`): a retried batch (same records, same boundaries) overwrites its own
objects.  A retry with other boundaries (grown, shrunk, bisected, re-driven) writes other
keys; the ledger's claims, which :mod:`load.sink` takes, keep each event in one object even
then, whatever point the failed attempt reached (:func:`judge_holder` decides what a batch
does about a claim another attempt holds).

The plan is made in two steps around those claims:

1. :func:`screen_batch` keeps the records whose chunk this batch claimed -- a chunk
   replayed upstream arrives again with a new sequence number but the same chunk id, and
   another batch holds it -- decodes them, turns malformed events into bad rows and drops
   natural duplicates inside the batch.  Its :attr:`ScreenedBatch.event_keys` are what
   the cross-batch event manifest is asked for.
2. :func:`plan_objects` keeps the events the manifest granted and groups them by object key.

Nothing here does I/O or imports pyarrow: a test needs only literals.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Container, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import Enum
from typing import Any

from load.partitions import PartitionKey
from pipeline.aws.ledger import ClaimHolder, SinkBatch
from pipeline.badrows import BadRow, FailureKind, SourceRef, undecodable_record
from pipeline.records import RecordDecodeError, decode_events, event_problems
from pipeline.schema import CanonicalEvent


@dataclass(frozen=True)
class SinkRecord:
    chunk_id: str
    sequence_number: str
    data: bytes


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


def event_origin(event: dict[str, Any]) -> str:
    """Where a Lambda Kinesis event's records come from (its stream ARN), for bad rows."""
    return str((event.get("Records") or [{}])[0].get("eventSourceARN", "kinesis"))


@dataclass(frozen=True)
class ScreenedBatch:
    """A batch's valid events of newly claimed chunks, before the cross-batch manifest."""

    records: int
    events: int
    """Events decoded from the claimed chunks, valid or not."""
    unique: tuple[CanonicalEvent, ...]
    """Valid events, one per (event_id, event_fingerprint), in record order."""
    bad: tuple[BadRow, ...]
    replayed_chunks: int
    duplicates_dropped: int
    etl_tstamp: int
    """Of the batch's first event: dates its bad rows (0 when there is none)."""

    @property
    def event_keys(self) -> list[tuple[str, str]]:
        """The (event_id, event_fingerprint) of each of :attr:`unique`, for the event manifest."""
        return [(str(e.get("event_id")), str(e.get("event_fingerprint"))) for e in self.unique]


def screen_batch(records: Sequence[SinkRecord], claimed: Container[int], *, origin: str) -> ScreenedBatch:
    """Decode and check the records at the indices in ``claimed`` (their chunk is this batch's).

    Every other record is a replayed chunk.  A record that does not decode, or an event with
    schema problems, becomes a bad row; a second copy of a natural event is dropped.
    """
    events = replayed = duplicates = etl_tstamp = 0
    bad: list[BadRow] = []
    seen_events: set[tuple[str, str]] = set()
    unique: list[CanonicalEvent] = []
    for index, record in enumerate(records):
        if index not in claimed:
            replayed += 1
            continue
        try:
            decoded = decode_events(record.data)
        except RecordDecodeError as exc:
            bad.append(undecodable_record(record.data, str(exc), f"{origin}/{record.sequence_number}"))
            continue
        for event in decoded:
            events += 1
            if not etl_tstamp and type(event.get("etl_tstamp")) is int:
                etl_tstamp = event["etl_tstamp"]
            problems = event_problems(event)
            if problems:
                bad.append(
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
                duplicates += 1
                continue
            seen_events.add(ident)
            unique.append(event)
    return ScreenedBatch(len(records), events, tuple(unique), tuple(bad), replayed, duplicates, etl_tstamp)


@dataclass(frozen=True)
class SinkPlan:
    """The objects one batch writes (object key -> events) and the batch's counts."""

    batch_key: str
    objects: dict[str, list[CanonicalEvent]]
    records: int
    events: int
    replayed_chunks: int
    duplicates_dropped: int
    bad: tuple[BadRow, ...]
    etl_tstamp: int


def plan_objects(batch: ScreenedBatch, key: str, prefix: str, granted: AbstractSet[int] | None = None) -> SinkPlan:
    """Events per object key for one batch.

    ``granted`` are the indices of :attr:`ScreenedBatch.event_keys` that the cross-batch
    event manifest gave this batch (``None``: no manifest was asked, keep them all); the
    others are natural duplicates another batch writes.
    """
    unique = list(batch.unique)
    duplicates = batch.duplicates_dropped
    if granted is not None:
        duplicates += len(unique) - len(granted)
        unique = [event for index, event in enumerate(unique) if index in granted]
    objects: defaultdict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in unique:
        partition = PartitionKey.of(int(event["collector_tstamp"]))
        objects[f"{prefix}{partition.format()}/{key}.parquet"].append(event)
    return SinkPlan(
        key,
        dict(objects),
        batch.records,
        batch.events,
        batch.replayed_chunks,
        duplicates,
        batch.bad,
        batch.etl_tstamp,
    )


class Held(Enum):
    """What a batch does about a claim that another attempt holds (:func:`judge_holder`)."""

    DONE = "done"
    """The holder's outputs are durable: the chunk is a replay, the event a natural duplicate; skip it."""
    CHECK_OUTPUTS = "check_outputs"
    """The holder is PENDING and listed its outputs: find out whether all of them exist, then judge again."""
    ROLL_FORWARD = "roll_forward"
    """The holder wrote every output and died before its commit: commit it on its behalf; then DONE."""
    ABANDON = "abandon"
    """The holder's attempt is over without a commit: abort it, delete what it listed, then TAKE_OVER."""
    TAKE_OVER = "take_over"
    """The holder's attempt was replaced by a later one of its batch, which deleted its outputs: take its claims."""
    BUSY = "busy"
    """The holder may still be running and has not written everything: retry later."""


def judge_holder(
    holder: ClaimHolder, batch: SinkBatch | None, *, now_ms: int, outputs_exist: bool | None = None
) -> Held:
    """What to do about a claim ``holder`` holds, given the record of its batch (``batch``).

    ``outputs_exist`` says whether every output the attempt listed is in S3 (None: not asked
    yet).  A claim of an earlier version (no attempt) or one whose batch record is gone counts
    as final: skipping it can only repeat the old behaviour, never write an event twice.
    """
    if not holder.attempt or batch is None:
        return Held.DONE
    if batch.attempt != holder.attempt:
        return Held.TAKE_OVER
    if batch.status != "PENDING":
        return Held.DONE if batch.status == "COMMITTED" else Held.ABANDON
    if batch.outputs is not None and outputs_exist is not False:
        # Outputs are listed before the first of them is put, and a new attempt deletes its
        # predecessor's before it starts: when all exist, this attempt wrote all of them.
        return Held.CHECK_OUTPUTS if outputs_exist is None else Held.ROLL_FORWARD
    return Held.ABANDON if batch.lease_until_ms < now_ms else Held.BUSY
