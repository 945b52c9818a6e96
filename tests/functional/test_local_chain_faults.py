"""The local chain under faults: lost notifications (F08), ledger faults (F16), mapping drift (F13)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from extract.errors import ObjectBusyError
from extract.handler import handle
from pipeline.app.local.runtime import LOG_PREFIX, LocalChain
from pipeline.aws.kinesis import KinesisPutError
from pipeline.aws.ledger import LedgerError, ObjectId
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, s3_object_created_event
from pipeline.topology import stream_mappings
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.aws_chain import page_view_log as log


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def test_f08_objects_whose_notification_was_lost_are_found_and_processed(aws: None) -> None:
    config = chain_config()
    chain = LocalChain(config)
    chain.create_resources()
    chain.s3.put_bucket_notification_configuration(Bucket=config.resources.log_bucket, NotificationConfiguration={})
    for index in range(3):  # uploaded while notifications were off: no message will ever come
        chain.s3.put_object(Bucket=config.resources.log_bucket, Key=f"{LOG_PREFIX}lost-{index}.gz", Body=log(5))
    report = chain.run()
    assert report.redriven_objects == 3
    assert report.lines_shipped == 15 and report.parquet_rows == 15 and report.complete


def test_f16_ledger_throttling_leaves_the_object_unacknowledged_and_a_retry_completes(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/throttled-ledger.gz", log(4))
    calls = {"n": 0}

    def throttle_first_update(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "UpdateItem"
            )

    chain.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", throttle_first_update)
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    with pytest.raises(LedgerError):
        handle(event, FakeLambdaContext(), chain.extract_deps())
    assert chain.raw_batches() == [] and chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag)) is None
    [result] = handle(event, FakeLambdaContext(), chain.extract_deps())["objects"]
    assert result["outcome"] == "complete" and result["lines_shipped"] == 4


def test_f16_an_in_progress_lease_left_by_a_killed_invocation_expires(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/killed.gz", log(4))
    clock = FakeClock()
    ledger = chain.ledger(clock=clock.now)
    ledger.claim(ObjectId(notice.bucket, notice.key, notice.etag), "killed-invocation", lease_ms=60_000)
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    with pytest.raises(ObjectBusyError):  # not consumed: Lambda retries it
        handle(event, FakeLambdaContext(clock=clock.now), chain.extract_deps(ledger=ledger))
    clock.advance(61)
    [done] = handle(event, FakeLambdaContext(clock=clock.now), chain.extract_deps(ledger=ledger))["objects"]
    assert (done["outcome"], done["lines_shipped"]) == ("complete", 4)


def test_f13_the_event_source_mappings_keep_data_safe() -> None:
    mappings = stream_mappings(chain_config())
    for name, mapping in mappings.items():
        aws = mapping.to_aws("arn:stream", "arn:function", "arn:queue")
        assert 0 <= aws["MaximumRetryAttempts"] <= 10, name  # never the infinite default
        assert 60 <= aws["MaximumRecordAgeInSeconds"] <= 24 * 3600, name
        assert aws["DestinationConfig"]["OnFailure"]["Destination"] == "arn:queue", name
    transform = mappings["transform"].to_aws("s", "f", "q")
    assert transform["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert transform["BisectBatchOnFunctionError"] is True
    # A bisected sink retry is safe (it takes the failed attempt's claims over), so a batch
    # that keeps failing is split down to what fails (tests/functional/load/test_sink_claims.py).
    assert mappings["parquet_sink"].to_aws("s", "f", "q")["BisectBatchOnFunctionError"] is True


def test_injected_faults_across_the_chain_lose_nothing_and_duplicate_nothing(aws: None) -> None:
    config = chain_config({"stream.record_target_bytes": 4096, "stream.put_batch_records": 3})
    chain = LocalChain(config)
    chain.create_resources()
    calls = {"n": 0}
    real_put = chain.kinesis.put_records

    def flaky_put_records(**kwargs: Any) -> Any:
        """Every third call fails every other entry (throttled); every seventh throws whole."""
        calls["n"] += 1
        if calls["n"] % 7 == 0:
            raise ClientError({"Error": {"Code": "InternalFailure", "Message": "boom"}}, "PutRecords")
        if calls["n"] % 3 or len(kwargs["Records"]) < 2:
            return real_put(**kwargs)
        results = []
        for index, record in enumerate(kwargs["Records"]):
            if index % 2:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"})
            else:
                results.append(real_put(StreamName=kwargs["StreamName"], Records=[record])["Records"][0])
        return {"FailedRecordCount": len(results) // 2, "Records": results}

    chain.kinesis.put_records = flaky_put_records
    for writer in (chain.extract_deps.writer, chain.transform_deps.writer):
        writer._sleep = lambda _seconds: None
    inner = chain.transform_deps.writer
    failures = {"left": 2}

    class StreamTwoOutage:
        """Stream 2 is down for two calls: those records become item failures and are redelivered."""

        def put(self, records: list[Any]) -> None:
            if failures["left"] and len(records) > 0:
                failures["left"] -= 1
                raise KinesisPutError("stream 2 unavailable")
            inner.put(records)

    chain.transform_deps = dataclasses.replace(chain.transform_deps, writer=StreamTwoOutage())
    for index in range(4):
        chain.s3.put_object(Bucket=config.resources.log_bucket, Key=f"{LOG_PREFIX}f{index}.gz", Body=log(60))
    report = chain.run()
    assert calls["n"] > 10 and failures["left"] == 0
    assert report.redelivered_records > 0
    assert report.complete, report.render()
    assert report.lines_shipped == 240 and report.parquet_rows == report.distinct_events == 240
