"""The ESM poller and the Firehose emulator against moto's Kinesis and S3."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline.app.local.esm import EsmSettings, KinesisPoller, StreamNotFoundError
from pipeline.app.local.firehose import FirehoseConfigError, FirehoseEmulator
from pipeline.testing.lambda_events import FirehoseInputRecord, KinesisRecord

REGION = "us-east-1"
STREAM = "clickstream-etl-test-stream-2"
BUCKET = "clickstream-etl-test-delivery"
SETTINGS = EsmSettings(batch_size=5, maximum_retry_attempts=2)


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    """moto-backed Kinesis (a 2-shard stream) and S3 (one bucket) clients, created inside the mock."""
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        s3.create_bucket(Bucket=BUCKET)
        yield kinesis, s3


def put(kinesis: Any, payloads: list[bytes]) -> dict[str, list[bytes]]:
    """Put records one by one (keys spread over both shards); returns shard id -> payloads in order."""
    by_shard: dict[str, list[bytes]] = {}
    for index, payload in enumerate(payloads):
        response = kinesis.put_record(StreamName=STREAM, Data=payload, PartitionKey=f"user-{index}")
        by_shard.setdefault(response["ShardId"], []).append(payload)
    return by_shard


class Recorder:
    __test__ = False

    def __init__(self, fail_once: set[bytes] | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._fail_once = set(fail_once or ())

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        failed = []
        for record in event["Records"]:
            data = base64.b64decode(record["kinesis"]["data"])
            self.received.append((record["eventID"].split(":")[0], data))
            if data in self._fail_once:
                self._fail_once.discard(data)
                failed.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failed}


def all_objects(s3: Any, prefix: str = "") -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}


# ---- KinesisPoller --------------------------------------------------------------------------------


def test_drain_delivers_every_shard_once_and_a_second_drain_nothing(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    # GIVEN 20 records spread over the stream's two shards
    payloads = [f"event-{i}".encode() for i in range(20)]
    by_shard = put(kinesis, payloads)
    assert len(by_shard) == 2
    poller = KinesisPoller(kinesis)
    handler = Recorder()
    # WHEN the stream is drained
    result = poller.drain(STREAM, handler, SETTINGS)
    # THEN every record arrives once, per shard in put order, in batches of at most 5
    assert result.records_in == 20 and result.duplicates == 0 and result.discarded == ()
    for shard, expected in by_shard.items():
        assert [data for s, data in handler.received if s == shard] == expected
        assert all(inv.size <= 5 for inv in result.outcomes[shard].invocations)
        assert poller.checkpoint(STREAM, shard) == result.outcomes[shard].checkpoint
    arn = poller.stream_arn(STREAM)
    assert arn.endswith(f":stream/{STREAM}")

    # WHEN drained again THEN nothing new is delivered
    again = poller.drain(STREAM, handler, SETTINGS)
    assert again.records_in == 0 and again.invocations == 0
    assert len(handler.received) == 20

    # WHEN more records arrive THEN only those are delivered
    put(kinesis, [b"late-1", b"late-2", b"late-3"])
    third = poller.drain(STREAM, handler, SETTINGS)
    assert third.records_in == 3
    assert sorted(data for _, data in handler.received[20:]) == [b"late-1", b"late-2", b"late-3"]


def test_drain_applies_partial_failure_rules_on_a_real_stream(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    put(kinesis, [f"e{i}".encode() for i in range(10)])
    handler = Recorder(fail_once={b"e3"})
    poller = KinesisPoller(kinesis)
    result = poller.drain(STREAM, handler, EsmSettings(batch_size=100, maximum_retry_attempts=1))
    # e3 was retried, together with whatever followed it in its shard
    assert [data for _, data in handler.received].count(b"e3") == 2
    assert result.duplicates >= 1
    assert result.discarded == ()
    assert poller.drain(STREAM, handler, SETTINGS).records_in == 0


def test_a_blocked_shard_is_retried_from_its_checkpoint_on_the_next_drain(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    by_shard = put(kinesis, [f"e{i}".encode() for i in range(10)])
    poisoned_shard, shard_payloads = next(iter(by_shard.items()))
    poison = shard_payloads[-1]
    broken = {"on": True}

    def handler(event: dict[str, Any], context: Any) -> None:
        if broken["on"] and any(base64.b64decode(r["kinesis"]["data"]) == poison for r in event["Records"]):
            raise ConnectionError("downstream down")

    poller = KinesisPoller(kinesis)
    # AWS defaults (infinite retries): the poisoned shard blocks, the other shard flows
    first = poller.drain(STREAM, handler, EsmSettings(batch_size=1), blocked_after_attempts=3)
    assert first.blocked_shards == (poisoned_shard,)
    assert first.discarded == ()
    # once the downstream recovers, the next drain delivers the blocked record and nothing else
    broken["on"] = False
    recorder = Recorder()
    second = poller.drain(STREAM, recorder, EsmSettings(batch_size=1), blocked_after_attempts=3)
    assert second.blocked_shards == ()
    assert [data for _, data in recorder.received] == [poison]


def test_latest_starting_position_skips_records_already_in_the_stream(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    put(kinesis, [b"old-1", b"old-2"])
    poller = KinesisPoller(kinesis)
    handler = Recorder()
    latest = EsmSettings(maximum_retry_attempts=0, starting_position="LATEST")
    assert poller.drain(STREAM, handler, latest).records_in == 0
    put(kinesis, [b"new-1", b"new-2", b"new-3"])
    assert poller.drain(STREAM, handler, latest).records_in == 3
    assert sorted(data for _, data in handler.received) == [b"new-1", b"new-2", b"new-3"]


def test_poll_reads_and_commits_and_records_carry_shard_and_arrival(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    by_shard = put(kinesis, [b"a", b"b", b"c", b"d"])
    poller = KinesisPoller(kinesis, get_records_limit=1)  # one record per GetRecords call
    batches = poller.poll(STREAM)
    assert {shard: [r.data for r in recs] for shard, recs in batches.items() if recs} == by_shard
    some = next(r for recs in batches.values() for r in recs)
    assert isinstance(some, KinesisRecord)
    assert some.arrival > 1_600_000_000
    assert all(not recs for recs in poller.poll(STREAM).values())


def test_a_missing_stream_is_a_terminal_error(aws: tuple[Any, Any]) -> None:
    kinesis, _ = aws
    with pytest.raises(StreamNotFoundError):
        KinesisPoller(kinesis).drain("no-such-stream", Recorder(), SETTINGS)


# ---- FirehoseEmulator -----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mixed_transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Upper-cases 'ok' records, drops 'drop' records, fails 'bad' records (Firehose contract)."""
    assert event["sourceKinesisStreamArn"].endswith(f":stream/{STREAM}")
    out = []
    for record in event["records"]:
        data = base64.b64decode(record["data"])
        assert record["kinesisRecordMetadata"]["partitionKey"].startswith("user-")
        if data.startswith(b"drop"):
            out.append({"recordId": record["recordId"], "result": "Dropped", "data": record["data"]})
        elif data.startswith(b"bad"):
            out.append({"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]})
        else:
            out.append({"recordId": record["recordId"], "result": "Ok", "data": b64(data.upper() + b"\n")})
    return {"records": out}


KEY_PATTERN = re.compile(
    r"^(?P<base>.*?)(?P<path>\d{4}/\d{2}/\d{2}/\d{2})/clickstream-etl-delivery-1-"
    r"(?P<stamp>\d{4}-\d{2}-\d{2}-\d{2})-\d{2}-\d{2}-[0-9a-f-]{36}$"
)


def test_firehose_delivers_ok_records_and_writes_processing_failed(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    payloads = [b"ok-1", b"drop-1", b"bad-1", b"ok-2", b"ok-3", b"bad-2", b"drop-2", b"ok-4"]
    by_shard = put(kinesis, payloads)
    emulator = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "delivered/", "errors/", mixed_transform)
    # WHEN the delivery stream drains
    summary = emulator.drain()
    # THEN the counts add up
    assert (summary.records_in, summary.ok, summary.dropped, summary.failed) == (8, 4, 2, 2)
    assert summary.conserved
    assert summary.invocations == 2 and summary.failed_invocations == 0  # one per shard
    assert summary.error_codes == {"Lambda.ProcessingFailedStatus": 2}
    # Ok records, transformed, concatenated in order: one object per invocation under the prefix
    delivered = all_objects(s3, "delivered/")
    assert set(delivered) == set(summary.objects_written)
    expected_bodies = {
        b"".join(p.upper() + b"\n" for p in shard_payloads if p.startswith(b"ok"))
        for shard_payloads in by_shard.values()
    }
    assert set(delivered.values()) == expected_bodies - {b""}
    today = datetime.now(tz=UTC)
    for key in delivered:
        match = KEY_PATTERN.match(key)
        assert match and match["base"] == "delivered/", key
        assert match["path"].replace("/", "-") == match["stamp"]
        assert match["path"][:4] == str(today.year)
    # ProcessingFailed records go to the error prefix as Firehose's JSON lines, raw data preserved
    failed = all_objects(s3, "errors/")
    assert set(failed) == set(summary.error_objects)
    lines = [json.loads(line) for body in failed.values() for line in body.splitlines()]
    assert sorted(base64.b64decode(line["rawData"]) for line in lines) == [b"bad-1", b"bad-2"]
    for key in failed:
        match = KEY_PATTERN.match(key)
        assert match and match["base"] == "errors/processing-failed/", key
    for line in lines:
        assert set(line) == {
            "attemptsMade",
            "arrivalTimestamp",
            "errorCode",
            "errorMessage",
            "attemptEndingTimestamp",
            "rawData",
            "lambdaArn",
        }
        assert line["attemptsMade"] == 1
        assert line["errorCode"] == "Lambda.ProcessingFailedStatus"
        assert line["lambdaArn"] == emulator.lambda_arn
        assert line["attemptEndingTimestamp"] >= line["arrivalTimestamp"]
    # and a second drain finds nothing new
    again = emulator.drain()
    assert (again.records_in, again.invocations, again.objects_written) == (0, 0, ())
    assert len(all_objects(s3)) == len(delivered) + len(failed)


@pytest.mark.parametrize(
    ("transform", "code"),
    [
        (
            lambda event, ctx: {"records": [{**r, "result": "Ok"} for r in event["records"][1:]]},
            "Lambda.MissingRecordId",
        ),
        (
            lambda event, ctx: {"records": [{**r, "result": "Ok"} for r in event["records"] + event["records"][:1]]},
            "Lambda.DuplicatedRecordId",
        ),
        (
            lambda event, ctx: {
                "records": [{**r, "result": "Ok", "recordId": "x" + r["recordId"]} for r in event["records"]]
            },
            "Lambda.MissingRecordId",
        ),
        (
            lambda event, ctx: {"records": [{**r, "result": "Fine"} for r in event["records"]]},
            "Lambda.JsonProcessingException",
        ),
        (
            lambda event, ctx: {"records": [{**r, "result": "Ok", "data": "%%%"} for r in event["records"]]},
            "Lambda.FunctionError",
        ),
        (lambda event, ctx: {"items": []}, "Lambda.JsonProcessingException"),
        (lambda event, ctx: None, "Lambda.JsonProcessingException"),
        (
            lambda event, ctx: {
                "records": [{**r, "result": "Ok", "data": b64(b"x" * 7_000_000)} for r in event["records"]]
            },
            "Lambda.FunctionError",
        ),
    ],
    ids=["missing", "duplicated", "renamed", "bad-result", "bad-base64", "no-records", "null", "over-6mb"],
)
def test_a_contract_violation_fails_the_whole_invocation(aws: tuple[Any, Any], transform: Any, code: str) -> None:
    kinesis, s3 = aws
    kinesis.put_record(StreamName=STREAM, Data=b"one", PartitionKey="same-key")
    kinesis.put_record(StreamName=STREAM, Data=b"two", PartitionKey="same-key")
    emulator = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "delivered/", "errors/", transform)
    summary = emulator.drain()
    # every record of the invocation failed, none was delivered, and the violation is not retried
    assert (summary.records_in, summary.ok, summary.failed) == (2, 0, 2)
    assert summary.invocations == 1 and summary.failed_invocations == 1
    assert all_objects(s3, "delivered/") == {}
    [body] = all_objects(s3, "errors/processing-failed/").values()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [base64.b64decode(line["rawData"]) for line in lines] == [b"one", b"two"]
    assert {line["errorCode"] for line in lines} == {code}
    assert {line["attemptsMade"] for line in lines} == {1}


def test_a_raising_transformation_is_retried_three_times_then_fails(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    kinesis.put_record(StreamName=STREAM, Data=b"one", PartitionKey="k")
    calls: list[str] = []

    def transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["invocationId"])
        raise RuntimeError("function crashed")

    summary = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "delivered/", "errors/", transform).drain()
    assert len(calls) == 4 and len(set(calls)) == 4  # a fresh invocation id per attempt
    assert (summary.invocations, summary.failed_invocations, summary.failed) == (4, 4, 1)
    [body] = all_objects(s3, "errors/").values()
    line = json.loads(body)
    assert line["errorCode"] == "Lambda.FunctionError"
    assert line["attemptsMade"] == 4
    assert "function crashed" in line["errorMessage"]


def test_a_transformation_that_recovers_on_retry_delivers_normally(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    kinesis.put_record(StreamName=STREAM, Data=b"one", PartitionKey="k")
    attempts = {"n": 0}

    def transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise TimeoutError("throttled")
        return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in event["records"]]}

    summary = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "delivered/", "errors/", transform).drain()
    assert (summary.ok, summary.failed, summary.invocations, summary.failed_invocations) == (1, 0, 2, 1)
    assert list(all_objects(s3).values()) == [b"one"]


def test_buffer_bytes_splits_invocations_and_data_is_delivered_in_order(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    payloads = [f"{i:02d}-xxxxxxx\n".encode() for i in range(12)]  # 11 bytes each
    for payload in payloads:
        kinesis.put_record(StreamName=STREAM, Data=payload, PartitionKey="one-shard")
    sizes: list[int] = []

    def identity(event: dict[str, Any], context: Any) -> dict[str, Any]:
        sizes.append(sum(len(base64.b64decode(r["data"])) for r in event["records"]))
        return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in event["records"]]}

    emulator = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "d/", "e/", identity, buffer_bytes=50)
    summary = emulator.drain()
    assert sizes == [44, 44, 44]  # 4 records of 11 bytes fit in 50
    assert summary.invocations == 3 and len(summary.objects_written) == 3
    bodies = all_objects(s3, "d/")
    assert b"".join(bodies[key] for key in summary.objects_written) == b"".join(payloads)


def test_without_a_transformation_records_are_delivered_as_they_are(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    by_shard = put(kinesis, [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n'])
    summary = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, prefix="raw/").drain()
    assert (summary.ok, summary.invocations) == (3, 0)
    assert set(all_objects(s3, "raw/").values()) == {b"".join(p) for p in by_shard.values()}


def test_a_powertools_transformation_satisfies_the_contract(aws: tuple[Any, Any]) -> None:
    from aws_lambda_powertools.utilities.data_classes import (
        KinesisFirehoseDataTransformationResponse,
        KinesisFirehoseEvent,
    )

    def transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = KinesisFirehoseDataTransformationResponse()
        for record in KinesisFirehoseEvent(event).records:
            response.add_record(
                record.build_data_transformation_response(result="Ok", data=b64(record.data_as_bytes + b"!"))
            )
        return response.asdict()

    kinesis, s3 = aws
    kinesis.put_record(StreamName=STREAM, Data=b"hi", PartitionKey="k")
    summary = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "p/", "e/", transform).drain()
    assert summary.ok == 1
    assert list(all_objects(s3, "p/").values()) == [b"hi!"]


def test_object_keys_are_deterministic_and_follow_arrival_time(aws: tuple[Any, Any]) -> None:
    kinesis, s3 = aws
    emulator = FirehoseEmulator(kinesis, s3, STREAM, BUCKET, "p/", "e/")
    inputs = [FirehoseInputRecord("shardId-000000000000-1", b"x", arrival_ms=1_731_699_951_000)]
    key = emulator.object_key(inputs)
    assert key == emulator.object_key(inputs)
    assert key.startswith("p/2024/11/15/19/clickstream-etl-delivery-1-2024-11-15-19-45-51-")
    assert emulator.object_key(inputs, failed=True).startswith("e/processing-failed/2024/11/15/19/")


@pytest.mark.parametrize("buffer_bytes", [0, 3 * 1_048_576 + 1])
def test_buffer_sizes_firehose_rejects_are_rejected(aws: tuple[Any, Any], buffer_bytes: int) -> None:
    kinesis, s3 = aws
    with pytest.raises(FirehoseConfigError, match="buffer_bytes"):
        FirehoseEmulator(kinesis, s3, STREAM, BUCKET, buffer_bytes=buffer_bytes)
