"""Lambda event factories and a fake Lambda context: the public toolkit for invoking handlers locally.

Each factory returns the JSON shape AWS delivers to a function (plain dicts, ready for a
handler or a Powertools data class), built deterministically from its arguments:

* :func:`s3_object_created_event`, :func:`s3_test_event`, :func:`sqs_wrapped`,
  :func:`eventbridge_object_created` -- the three ways an Extract function hears of a new log file;
* :func:`kinesis_event` -- a Kinesis event source mapping batch (Transform function);
* :func:`firehose_event` -- a Firehose data-transformation invocation.

:class:`FakeLambdaContext` carries the attributes of the real context object; its remaining time
follows an injectable clock (:class:`FakeClock`), so a test can bring an invocation close to its
timeout without sleeping::

    clock = FakeClock()
    context = FakeLambdaContext(remaining_ms=30_000, clock=clock.now)
    clock.advance(29.5)
    assert context.get_remaining_time_in_millis() == 500

This module is used by the ``run-local`` runtime as well as by tests: it imports neither pytest
nor boto3.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote_plus

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT: Final = "123456789012"
DEFAULT_KINESIS_STREAM_ARN: Final = f"arn:aws:kinesis:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stream/clickstream-etl-stream"
DEFAULT_FIREHOSE_ARN: Final = f"arn:aws:firehose:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:deliverystream/clickstream-etl"
DEFAULT_QUEUE_ARN: Final = f"arn:aws:sqs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:clickstream-etl-s3-events"
DEFAULT_INVOKE_IDENTITY_ARN: Final = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/clickstream-etl-transform"
# A fixed instant, so events built without an explicit time are byte-for-byte reproducible.
DEFAULT_EVENT_TIME: Final = datetime(2024, 11, 15, 19, 45, 51, tzinfo=UTC)
# Epoch seconds a FakeClock starts at (the same instant).
DEFAULT_CLOCK_START: Final = DEFAULT_EVENT_TIME.timestamp()
EMPTY_ETAG: Final = "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of b"": S3's ETag for an empty single-part object


# --------------------------------------------------------------------------------------------
# Clock and context
# --------------------------------------------------------------------------------------------


class FakeClock:
    """A manual clock in epoch seconds: :meth:`now` only moves when :meth:`advance` is called."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: float = DEFAULT_CLOCK_START) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current fake time, in seconds since the epoch."""
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must be >= 0: the clock is monotonic)."""
        if seconds < 0:
            raise ValueError(f"a FakeClock only moves forward; got advance({seconds})")
        self._now += seconds


_request_counter = itertools.count(1)


class FakeLambdaContext:
    """Stands in for the Lambda context object (``LambdaContext`` in Powertools' typing).

    ``remaining_ms`` is the time left when the context is created; :meth:`get_remaining_time_in_millis`
    counts down from it as ``clock`` (seconds, default :func:`time.monotonic`) advances, and never
    goes below zero.  ``aws_request_id`` is unique per instance (a process-wide counter, so the
    values are deterministic within a run).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        remaining_ms: int = 900_000,
        clock: Callable[[], float] | None = None,
        function_name: str = "clickstream-etl-fn",
        *,
        function_version: str = "$LATEST",
        memory_limit_in_mb: int = 1024,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT,
        aws_request_id: str | None = None,
    ) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._deadline = self._clock() + remaining_ms / 1000
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id or str(uuid.UUID(int=next(_request_counter), version=4))
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"2024/11/15/[{function_version}]{self.aws_request_id.replace('-', '')}"
        self.identity: Any = None
        self.client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the (fake) timeout, clamped at 0."""
        return max(0, int((self._deadline - self._clock()) * 1000))

    def __repr__(self) -> str:
        return f"FakeLambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


# --------------------------------------------------------------------------------------------
# S3 notifications (direct, via SQS, via EventBridge)
# --------------------------------------------------------------------------------------------


def _iso_millis(when: datetime | str) -> str:
    """``2024-11-15T19:45:51.000Z`` -- the timestamp format of S3 notifications."""
    if isinstance(when, str):
        return when
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def encode_s3_event_key(key: str, *, encode_slash: bool = False) -> str:
    """A key as S3 writes it into a notification: form encoding (space ``+``, ``+`` as ``%2B``, UTF-8 %XX).

    AWS leaves ``/`` alone; moto encodes it as ``%2F`` (``encode_slash=True``).  Either way
    :func:`urllib.parse.unquote_plus` recovers the key.
    """
    return quote_plus(key, safe="" if encode_slash else "/")


def s3_object_created_event(
    bucket: str,
    key: str,
    *,
    etag: str = EMPTY_ETAG,
    size: int = 0,
    sequencer: str = "0055AED6DCD90281E5",
    version_id: str | None = None,
    event_name: str = "ObjectCreated:Put",
    region: str = DEFAULT_REGION,
    event_time: datetime | str = DEFAULT_EVENT_TIME,
    encode_slash: bool = False,
) -> dict[str, Any]:
    """An S3 event notification (``{"Records": [one record]}``) as delivered to Lambda or SQS.

    ``key`` is the real object key; the event carries it URL-encoded like S3 does
    (see :func:`encode_s3_event_key`).  ``version_id`` appears only when given (versioned buckets).
    """
    obj: dict[str, Any] = {"key": encode_s3_event_key(key, encode_slash=encode_slash), "size": size, "eTag": etag}
    if version_id is not None:
        obj["versionId"] = version_id
    obj["sequencer"] = sequencer
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": _iso_millis(event_time),
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLEPRINCIPAL"},
                "requestParameters": {"sourceIPAddress": "203.0.113.10"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "clickstream-etl-logs",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": obj,
                },
            }
        ]
    }


def s3_test_event(bucket: str, *, event_time: datetime | str = DEFAULT_EVENT_TIME) -> dict[str, Any]:
    """The ``s3:TestEvent`` S3 sends when a notification configuration is saved (no ``Records``)."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": _iso_millis(event_time),
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


def sqs_wrapped(
    s3_event_or_events: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    queue_arn: str = DEFAULT_QUEUE_ARN,
    region: str = DEFAULT_REGION,
    sent_timestamp_ms: int = int(DEFAULT_CLOCK_START * 1000),
) -> dict[str, Any]:
    """An SQS Lambda event with one message per given event; each body is the event as JSON.

    Message ids and receipt handles are derived from the body, so equal inputs give equal events.
    """
    events = [s3_event_or_events] if isinstance(s3_event_or_events, Mapping) else list(s3_event_or_events)
    records = []
    for index, event in enumerate(events):
        body = json.dumps(event, separators=(",", ":"))
        digest = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
        message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{queue_arn}#{index}#{digest}"))
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": base64.b64encode(f"{message_id}:{index}".encode()).decode(),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(sent_timestamp_ms),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(sent_timestamp_ms + 5),
                },
                "messageAttributes": {},
                "md5OfBody": digest,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def eventbridge_object_created(
    bucket: str,
    key: str,
    etag: str = EMPTY_ETAG,
    size: int = 0,
    *,
    sequencer: str = "0055AED6DCD90281E5",
    version_id: str | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT,
    event_time: datetime | str = DEFAULT_EVENT_TIME,
    reason: str = "PutObject",
) -> dict[str, Any]:
    """An EventBridge ``Object Created`` event from S3.  The key is NOT URL-encoded in this shape.

    Note: Powertools' ``S3EventBridgeNotificationObject.key`` applies ``unquote_plus`` anyway, which
    turns a literal ``+`` into a space; read ``event["detail"]["object"]["key"]`` directly.
    """
    obj: dict[str, Any] = {"key": key, "size": size, "etag": etag}
    if version_id is not None:
        obj["version-id"] = version_id
    obj["sequencer"] = sequencer
    time_text = _iso_millis(event_time)
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}#{etag}#{sequencer}")),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account_id,
        "time": time_text[:19] + "Z" if time_text.endswith("Z") else time_text,
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": account_id,
            "source-ip-address": "203.0.113.10",
            "reason": reason,
        },
    }


# --------------------------------------------------------------------------------------------
# Kinesis (event source mapping) and Firehose (data transformation)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KinesisRecord:
    """One record as read from a Kinesis shard.  ``arrival`` is the approximate arrival time, epoch seconds."""

    __test__ = False  # not a pytest test class

    data: bytes
    partition_key: str
    sequence_number: str
    shard_id: str = "shardId-000000000000"
    arrival: float = DEFAULT_CLOCK_START


def _region_of(arn: str, default: str = DEFAULT_REGION) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else default


def kinesis_event(
    records: Sequence[KinesisRecord],
    *,
    stream_arn: str = DEFAULT_KINESIS_STREAM_ARN,
    invoke_identity_arn: str = DEFAULT_INVOKE_IDENTITY_ARN,
) -> dict[str, Any]:
    """The event a Kinesis event source mapping passes to Lambda for ``records`` (in the given order)."""
    region = _region_of(stream_arn)
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key,
                    "sequenceNumber": record.sequence_number,
                    "data": base64.b64encode(record.data).decode("ascii"),
                    "approximateArrivalTimestamp": record.arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{record.shard_id}:{record.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": invoke_identity_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for record in records
        ]
    }


@dataclass(frozen=True)
class FirehoseInputRecord:
    """One record of a Firehose transformation invocation.

    ``arrival_ms`` is Firehose's approximate arrival time (epoch milliseconds).  For a
    Kinesis-sourced delivery stream, ``source`` is the Kinesis record it came from; it fills
    ``kinesisRecordMetadata``.
    """

    __test__ = False  # not a pytest test class

    record_id: str
    data: bytes
    arrival_ms: int = int(DEFAULT_CLOCK_START * 1000)
    source: KinesisRecord | None = None
    subsequence_number: int = 0


def firehose_event(
    records: Sequence[tuple[str, bytes]] | Sequence[FirehoseInputRecord],
    *,
    stream_arn: str = DEFAULT_FIREHOSE_ARN,
    source_kinesis_stream_arn: str | None = None,
    invocation_id: str | None = None,
) -> dict[str, Any]:
    """A Firehose data-transformation event.  ``(record_id, data)`` pairs get the default arrival time.

    ``invocationId`` defaults to a UUID derived from the delivery stream and the record ids.
    """
    inputs = [r if isinstance(r, FirehoseInputRecord) else FirehoseInputRecord(r[0], r[1]) for r in records]
    event_records: list[dict[str, Any]] = []
    for record in inputs:
        item: dict[str, Any] = {
            "recordId": record.record_id,
            "approximateArrivalTimestamp": record.arrival_ms,
            "data": base64.b64encode(record.data).decode("ascii"),
        }
        if record.source is not None:
            item["kinesisRecordMetadata"] = {
                "shardId": record.source.shard_id,
                "partitionKey": record.source.partition_key,
                "approximateArrivalTimestamp": int(record.source.arrival * 1000),
                "sequenceNumber": record.source.sequence_number,
                "subsequenceNumber": record.subsequence_number,
            }
        event_records.append(item)
    if invocation_id is None:
        seed = stream_arn + "|" + "|".join(r.record_id for r in inputs)
        invocation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
    event: dict[str, Any] = {"invocationId": invocation_id, "deliveryStreamArn": stream_arn}
    if source_kinesis_stream_arn is not None:
        event["sourceKinesisStreamArn"] = source_kinesis_stream_arn
    event["region"] = _region_of(stream_arn)
    event["records"] = event_records
    return event
