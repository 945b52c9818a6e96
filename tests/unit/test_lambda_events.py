"""Event factories and the fake context produce what AWS delivers, and Powertools parses it."""

from __future__ import annotations

import base64
import json
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.data_classes import (
    EventBridgeEvent,
    KinesisFirehoseEvent,
    KinesisStreamEvent,
    S3Event,
    SQSEvent,
)
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from hypothesis import given
from hypothesis import strategies as st

from pipeline.testing.lambda_events import (
    FakeClock,
    FakeLambdaContext,
    FirehoseInputRecord,
    KinesisRecord,
    encode_s3_event_key,
    eventbridge_object_created,
    firehose_event,
    kinesis_event,
    s3_object_created_event,
    s3_test_event,
    sqs_wrapped,
)

TRICKY_KEYS = [
    "logs/E2EXAMPLE.2024-11-15-19.abcd1234.gz",
    "logs/with space/file name.gz",
    "logs/a+b/c++.gz",
    "logs/ünïcødé/日本語.gz",
    "logs/100%/x?y=z&w#frag.gz",
    "plain",
]


# ---- FakeClock / FakeLambdaContext ----------------------------------------------------------


def test_context_remaining_time_follows_the_injected_clock() -> None:
    # GIVEN a context with 30 s left on a fake clock
    clock = FakeClock()
    context = FakeLambdaContext(remaining_ms=30_000, clock=clock.now)
    assert context.get_remaining_time_in_millis() == 30_000
    # WHEN time passes
    clock.advance(29.5)
    # THEN the remaining time shrinks, and never goes below zero
    assert context.get_remaining_time_in_millis() == 500
    clock.advance(10)
    assert context.get_remaining_time_in_millis() == 0


def test_fake_clock_is_monotonic() -> None:
    clock = FakeClock(start=100.0)
    clock.advance(0)
    assert clock() == clock.now() == 100.0
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_context_attributes_and_unique_request_ids() -> None:
    first = FakeLambdaContext(function_name="extract")
    second = FakeLambdaContext(function_name="extract")
    assert first.aws_request_id != second.aws_request_id
    assert first.function_name == "extract"
    assert first.function_version == "$LATEST"
    assert first.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:extract"
    assert first.memory_limit_in_mb == 1024
    assert first.log_group_name == "/aws/lambda/extract"
    assert first.log_stream_name
    assert FakeLambdaContext(aws_request_id="fixed").aws_request_id == "fixed"


def test_context_is_accepted_by_powertools_logger_injection() -> None:
    from aws_lambda_powertools import Logger

    logger = Logger(service="test", stream=None)

    @logger.inject_lambda_context
    def handler(event: dict[str, object], context: object) -> str:
        return "done"

    assert handler({}, FakeLambdaContext()) == "done"


# ---- S3 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TRICKY_KEYS)
@pytest.mark.parametrize("encode_slash", [False, True])
def test_s3_event_key_round_trips_with_unquote_plus(key: str, encode_slash: bool) -> None:
    event = s3_object_created_event("clickstream-raw", key, encode_slash=encode_slash)
    encoded = event["Records"][0]["s3"]["object"]["key"]
    assert unquote_plus(encoded) == key
    assert S3Event(event).object_key == key
    assert " " not in encoded and (("%2F" in encoded) == (encode_slash and "/" in key))


def test_s3_event_key_encoding_matches_s3() -> None:
    # S3 form-encodes keys: space -> '+', literal '+' -> %2B, UTF-8 bytes -> %XX, '/' kept (moto: %2F).
    assert encode_s3_event_key("a b+c/ü") == "a+b%2Bc/%C3%BC"
    assert encode_s3_event_key("a b+c/ü", encode_slash=True) == "a+b%2Bc%2F%C3%BC"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_s3_event_key_round_trip_property(key: str) -> None:
    for encode_slash in (False, True):
        assert unquote_plus(encode_s3_event_key(key, encode_slash=encode_slash)) == key


def test_s3_event_shape_parses_with_powertools() -> None:
    event = s3_object_created_event(
        "clickstream-raw",
        "logs/a b.gz",
        etag="abc123",
        size=2048,
        sequencer="0A1B2C3D4E5F678901",
        version_id="v1",
        event_name="ObjectCreated:CompleteMultipartUpload",
        region="eu-west-1",
    )
    record = S3Event(event).record
    assert record.event_source == "aws:s3"
    assert record.event_name == "ObjectCreated:CompleteMultipartUpload"
    assert record.aws_region == "eu-west-1"
    assert record.event_time == "2024-11-15T19:45:51.000Z"
    assert record.s3.bucket.name == "clickstream-raw"
    assert record.s3.bucket.arn == "arn:aws:s3:::clickstream-raw"
    assert record.s3.get_object.size == 2048
    assert record.s3.get_object.etag == "abc123"
    assert record.s3.get_object.sequencer == "0A1B2C3D4E5F678901"
    assert record.s3.get_object.version_id == "v1"
    assert "versionId" not in s3_object_created_event("b", "k")["Records"][0]["s3"]["object"]


def test_s3_test_event_has_no_records() -> None:
    event = s3_test_event("clickstream-raw")
    assert event["Event"] == "s3:TestEvent"
    assert event["Bucket"] == "clickstream-raw"
    assert "Records" not in event


def test_sqs_wrapped_carries_s3_events_as_json_bodies() -> None:
    events = [s3_object_created_event("b", "logs/one two.gz"), s3_test_event("b")]
    sqs = SQSEvent(sqs_wrapped(events))
    records = list(sqs.records)
    assert len(records) == 2
    assert records[0].decoded_nested_s3_event.object_key == "logs/one two.gz"
    assert records[1].json_body["Event"] == "s3:TestEvent"
    assert records[0].message_id != records[1].message_id
    assert records[0].event_source == "aws:sqs"
    # a single event is accepted too, and the result is deterministic
    assert sqs_wrapped(events[0]) == sqs_wrapped(events[0])
    assert len(sqs_wrapped(events[0])["Records"]) == 1


def test_eventbridge_object_created_keeps_the_key_unencoded() -> None:
    event = eventbridge_object_created("clickstream-raw", "logs/a b+c.gz", "etag1", 512, version_id="v9")
    parsed = S3EventBridgeNotificationEvent(event)
    assert EventBridgeEvent(event).detail_type == "Object Created"
    assert parsed.source == "aws.s3"
    assert parsed.detail.bucket.name == "clickstream-raw"
    assert event["detail"]["object"]["key"] == "logs/a b+c.gz"
    # Powertools 3.x applies unquote_plus to this key too, which turns a literal '+' into a space:
    # a handler fed by EventBridge must read detail.object.key raw, not through this property.
    assert parsed.detail.object.key == "logs/a b c.gz"
    assert parsed.detail.object.size == 512
    assert parsed.detail.object.etag == "etag1"
    assert parsed.detail.object.version_id == "v9"
    assert parsed.detail.object.sequencer
    assert parsed.time == "2024-11-15T19:45:51Z"


# ---- Kinesis ------------------------------------------------------------------------------------


def test_kinesis_event_parses_with_powertools() -> None:
    records = [
        KinesisRecord(
            b'{"n":1}',
            "pk-1",
            "49590338271490256608559692538361571095921575989136588898",
            "shardId-000000000001",
            1731700000.25,
        ),
        KinesisRecord(
            b"\x00\xffbinary",
            "pk-2",
            "49590338271490256608559692540925702759324208523137515618",
            "shardId-000000000001",
            1731700001.5,
        ),
    ]
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/stream-1"
    event = kinesis_event(records, stream_arn=arn)
    parsed = list(KinesisStreamEvent(event).records)
    assert [r.kinesis.data_as_bytes() for r in parsed] == [r.data for r in records]
    assert parsed[0].kinesis.data_as_json() == {"n": 1}
    assert parsed[0].kinesis.partition_key == "pk-1"
    assert parsed[0].kinesis.sequence_number == records[0].sequence_number
    assert parsed[0].kinesis.approximate_arrival_timestamp == 1731700000.25
    assert parsed[0].kinesis.kinesis_schema_version == "1.0"
    assert parsed[0].event_id == f"shardId-000000000001:{records[0].sequence_number}"
    assert parsed[0].event_name == "aws:kinesis:record"
    assert parsed[0].event_source == "aws:kinesis"
    assert parsed[0].event_source_arn == arn
    assert parsed[0].aws_region == "eu-west-1"


def test_kinesis_event_works_with_the_powertools_batch_processor() -> None:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    records = [KinesisRecord(f"r{i}".encode(), "pk", str(i), arrival=1.0) for i in range(1, 5)]
    seen: list[bytes] = []

    def record_handler(record: object) -> None:
        data = record.kinesis.data_as_bytes()  # type: ignore[attr-defined]
        seen.append(data)
        if data == b"r2":
            raise ValueError("poison")

    response = process_partial_response(
        event=kinesis_event(records),
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.KinesisDataStreams),
        context=FakeLambdaContext(),
    )
    assert seen == [b"r1", b"r2", b"r3", b"r4"]
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}


# ---- Firehose -----------------------------------------------------------------------------------


def test_firehose_event_from_pairs_parses_with_powertools() -> None:
    arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/ds"
    event = firehose_event([("id-1", b"one"), ("id-2", b'{"a":2}')], stream_arn=arn)
    parsed = KinesisFirehoseEvent(event)
    records = list(parsed.records)
    assert parsed.delivery_stream_arn == arn
    assert parsed.region == "eu-west-1"
    assert parsed.source_kinesis_stream_arn is None
    assert parsed.invocation_id
    assert [r.record_id for r in records] == ["id-1", "id-2"]
    assert [r.data_as_bytes for r in records] == [b"one", b'{"a":2}']
    assert records[1].data_as_json == {"a": 2}
    assert isinstance(records[0].approximate_arrival_timestamp, int)
    assert records[0].metadata is None
    # deterministic: same input, same invocation id
    assert firehose_event([("id-1", b"one")])["invocationId"] == firehose_event([("id-1", b"one")])["invocationId"]


def test_firehose_event_with_kinesis_metadata() -> None:
    source = KinesisRecord(b"payload", "pk-9", "12345", "shardId-000000000003", 1731700000.5)
    stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s2"
    event = firehose_event(
        [FirehoseInputRecord("rid", source.data, arrival_ms=1731700000600, source=source, subsequence_number=2)],
        source_kinesis_stream_arn=stream_arn,
    )
    parsed = KinesisFirehoseEvent(event)
    record = next(parsed.records)
    assert parsed.source_kinesis_stream_arn == stream_arn
    assert record.approximate_arrival_timestamp == 1731700000600
    assert record.metadata is not None
    assert record.metadata.shard_id == "shardId-000000000003"
    assert record.metadata.partition_key == "pk-9"
    assert record.metadata.sequence_number == "12345"
    assert record.metadata.subsequence_number == 2
    assert record.metadata.approximate_arrival_timestamp == 1731700000500
    # and a Powertools-built response is what the emulator's contract expects
    response = record.build_data_transformation_response(result="Ok", data=base64.b64encode(b"out").decode())
    assert response.asdict() == {"recordId": "rid", "result": "Ok", "data": base64.b64encode(b"out").decode()}
    json.dumps(event)  # the event is plain JSON
