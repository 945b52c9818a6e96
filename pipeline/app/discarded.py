"""Re-drive the Kinesis batches an event source mapping discarded, by their sequence range (reliability F21).

When a Kinesis batch runs out of retries or age, Lambda sends its on-failure destination (the
transform and sink failure queues, ``pipeline.topology``) metadata, not records:
``KinesisBatchInfo`` names the stream, the shard and the first and last sequence numbers
(https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html).  While the
records are within the stream's retention they can be read back: ``GetShardIterator``
``AT_SEQUENCE_NUMBER`` the first, ``GetRecords`` until past the last.

:func:`redrive_discarded` reads each message's range and puts the records back on the same
stream, with their data and partition keys (so they land on the same shard's hash range), and
deletes the message only once every record is durable.  The consumers are idempotent (Transform's
chunk ids and event ids are deterministic, the sink claims each chunk, the Redshift merge
deduplicates), so a crash between the put and the delete, which puts a range twice, adds nothing.
A range the stream no longer holds in full (past retention, or a resharded stream whose shard is
gone) is reported with its arrival window and left on the queue: re-process the log objects of
that window (``clickstream-etl backfill`` or ``replay``).  ``dry_run`` receives the messages
without hiding them (visibility timeout 0), reads the ranges and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.app.reconcile import ReconcileAccessError, ReconcileTransientError
from pipeline.aws.errors import aws_exceptions, classify, translate
from pipeline.aws.kinesis import OutRecord, RecordWriter

MAX_MESSAGES: Final = 10
"""SQS ReceiveMessage's maximum per call."""
VISIBILITY_S: Final = 300
"""How long a received message stays hidden while its range is read and put back."""
GET_RECORDS_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class DiscardedRange:
    """One discarded batch, as Lambda's on-failure record describes it."""

    stream_arn: str
    shard_id: str
    start: str
    end: str
    batch_size: int
    first_arrival: str
    last_arrival: str

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rsplit("/", 1)[-1]

    @classmethod
    def from_message(cls, body: str) -> DiscardedRange | None:
        """The range of an on-failure record; ``None`` when the body is not one."""
        try:
            info = json.loads(body)["KinesisBatchInfo"]
            return cls(
                str(info["streamArn"]),
                str(info["shardId"]),
                str(info["startSequenceNumber"]),
                str(info["endSequenceNumber"]),
                int(info.get("batchSize", 0)),
                str(info.get("approximateArrivalOfFirstRecord", "")),
                str(info.get("approximateArrivalOfLastRecord", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class QueueOutcome:
    queue: str
    redriven_batches: int = 0
    redriven_records: int = 0
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    """Ranges the stream no longer holds in full: their arrival window, for a re-process of the logs."""
    foreign: int = 0
    """Messages that are not on-failure records of a Kinesis batch (left on the queue)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "redriven_batches": self.redriven_batches,
            "redriven_records": self.redriven_records,
            "unreadable": self.unreadable,
            "foreign": self.foreign,
        }


@dataclass
class DiscardedDeps:
    sqs: Any
    kinesis: Any
    writer_for: Callable[[str], RecordWriter]
    """The writer that puts records back on a stream, by stream name."""


def _stream_error(exc: BaseException, what: str) -> Exception:
    return translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError)


def read_range(kinesis: Any, batch: DiscardedRange) -> list[dict[str, Any]] | None:
    """The records of ``batch``'s range, in order; ``None`` when the stream no longer holds all of them."""
    try:
        iterator = kinesis.get_shard_iterator(
            StreamName=batch.stream_name,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=batch.start,
        )["ShardIterator"]
    except aws_exceptions() as exc:
        if classify(exc).code in ("ResourceNotFoundException", "InvalidArgumentException"):
            return None  # the shard is gone, or the sequence number is past retention
        raise _stream_error(exc, f"Kinesis GetShardIterator on {batch.stream_name}/{batch.shard_id}") from exc
    start, end = int(batch.start), int(batch.end)
    found: list[dict[str, Any]] = []
    while iterator:
        try:
            page = kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        except aws_exceptions() as exc:
            raise _stream_error(exc, f"Kinesis GetRecords on {batch.stream_name}/{batch.shard_id}") from exc
        records = page.get("Records", [])
        for record in records:
            sequence = int(record["SequenceNumber"])
            if sequence > end:
                return found if _whole(found, batch) else None
            if sequence >= start:
                found.append(record)
        if not records and not page.get("MillisBehindLatest"):
            break  # caught up with the shard's tip without passing the end
        iterator = page.get("NextShardIterator")
    return found if _whole(found, batch) and int(found[-1]["SequenceNumber"]) == end else None


def _whole(found: Sequence[Mapping[str, Any]], batch: DiscardedRange) -> bool:
    """The range starts where the batch did and holds as many records (retention trims from the start)."""
    if not found or int(found[0]["SequenceNumber"]) != int(batch.start):
        return False
    return not batch.batch_size or len(found) == batch.batch_size


def _messages(sqs: Any, url: str, visibility: int) -> Iterator[list[dict[str, Any]]]:
    seen: set[str] = set()
    while True:
        try:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=MAX_MESSAGES, VisibilityTimeout=visibility, WaitTimeSeconds=0
            ).get("Messages", [])
        except aws_exceptions() as exc:
            raise _stream_error(exc, f"SQS ReceiveMessage on {url}") from exc
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        seen.update(m["MessageId"] for m in fresh)
        yield fresh


def queue_url(sqs: Any, name: str) -> str:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except aws_exceptions() as exc:
        raise _stream_error(exc, f"SQS GetQueueUrl of {name}") from exc


def redrive_queue(deps: DiscardedDeps, name: str, *, dry_run: bool = False) -> QueueOutcome:
    """Re-drive every discarded batch the queue ``name`` holds (see the module docstring)."""
    url = queue_url(deps.sqs, name)
    outcome = QueueOutcome(name)
    left: list[str] = []  # receipts of the messages left on the queue, made visible again at the end
    for messages in _messages(deps.sqs, url, 0 if dry_run else VISIBILITY_S):
        for message in messages:
            batch = DiscardedRange.from_message(message.get("Body", ""))
            if batch is None:
                outcome.foreign += 1
                left.append(message["ReceiptHandle"])
                continue
            records = read_range(deps.kinesis, batch)
            if records is None:
                left.append(message["ReceiptHandle"])
                outcome.unreadable.append(
                    {
                        "stream": batch.stream_name,
                        "shard": batch.shard_id,
                        "start": batch.start,
                        "end": batch.end,
                        "batch_size": batch.batch_size,
                        "first_arrival": batch.first_arrival,
                        "last_arrival": batch.last_arrival,
                    }
                )
                continue
            if not dry_run:
                put_back(deps.writer_for(batch.stream_name), records)
                try:
                    deps.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                except aws_exceptions() as exc:
                    raise _stream_error(exc, f"SQS DeleteMessage on {name}") from exc
            outcome.redriven_batches += 1
            outcome.redriven_records += len(records)
    if not dry_run:
        _release(deps.sqs, url, left)
    return outcome


def _release(sqs: Any, url: str, receipts: Sequence[str]) -> None:
    """Make the messages left on the queue visible again: its depth alarm keeps showing them."""
    for receipt in receipts:
        try:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except aws_exceptions() as exc:
            raise _stream_error(exc, f"SQS ChangeMessageVisibility on {url}") from exc


def put_back(writer: RecordWriter, records: Sequence[Mapping[str, Any]]) -> None:
    """Put the records back on their stream, data and partition key unchanged; returns once durable."""
    writer.put([OutRecord(bytes(r["Data"]), str(r["PartitionKey"])) for r in records])
