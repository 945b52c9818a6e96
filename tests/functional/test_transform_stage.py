"""Transform on moto: stream-1 batches -> stream 2, bad rows, and faults F10-F12, F14, F15."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

from extract.handler import handle as extract
from pipeline.aws.kinesis import KinesisPutError
from pipeline.records import decode_events
from pipeline.testing import DEFAULT_VALUES, LogBuilder, tracker_query
from pipeline.testing.lambda_events import FakeLambdaContext, KinesisRecord, kinesis_event, s3_object_created_event
from tests.functional.aws_chain import Chain, chain_config
from transform.handler import handle

GROUPS = {"stream.record_target_bytes": 2048}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def extracted(chain: Chain, lines: int = 30, *, junk: bool = True) -> list[KinesisRecord]:
    builder = LogBuilder()
    for n in range(lines):
        builder.add(
            uri_stem="/i",
            query=tracker_query(
                {"e": "pv", "url": f"https://shop.example/{n}", "eid": f"00000000-0000-4000-8000-{n:012d}"}
            ),
        )
        if junk and n == 7:
            builder.add(uri_stem="/i", query=tracker_query({"e": "zz"}))  # tracker protocol violation
        if junk and n == 9:
            builder.add(uri_stem="/style.css")  # not a tracker hit: skipped
    notice = chain.upload("cf/E1.2024-11-15-10.x.gz", builder.to_gzip())
    extract(
        s3_object_created_event(notice.bucket, notice.key, etag=notice.etag), FakeLambdaContext(), chain.extract_deps()
    )
    return chain.stream_records(chain.config.resources.raw_stream)


def events_on_stream_2(chain: Chain) -> list[dict[str, Any]]:
    return [e for r in chain.stream_records(chain.config.resources.events_stream) for e in decode_events(r.data)]


def test_given_a_batch_when_transformed_then_events_bad_rows_and_skips_account_for_every_line(aws: None) -> None:
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain)
    assert len(records) > 1
    response = handle(kinesis_event(records), FakeLambdaContext(), chain.transform_deps())
    assert response == {"batchItemFailures": []}
    events = events_on_stream_2(chain)
    assert len(events) == 30 and len({e["event_id"] for e in events}) == 30
    assert all(e["event"] == "page_view" and e["user_ipaddress"].endswith(".0") for e in events)
    bad = chain.objects("bad/")
    assert list(bad) and all(k.startswith("bad/tracker_protocol_violation/date=") for k in bad)
    [row] = [json.loads(line) for body in bad.values() for line in body.splitlines()]
    assert row["data"]["payload"]["source"]["line"] == 3 + 8


def test_f10_a_poison_record_becomes_a_bad_row_and_is_acknowledged(aws: None) -> None:
    """Reliability catalogue A14: an undecodable record is a record_invalid bad row and is not a batch item failure."""
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain, junk=False)
    poison = KinesisRecord(b"\x01\xff\xfe garbage", "poison", "49999", records[0].shard_id)
    response = handle(kinesis_event([records[0], poison, *records[1:]]), FakeLambdaContext(), chain.transform_deps())
    assert response == {"batchItemFailures": []}
    assert len(events_on_stream_2(chain)) == 30
    [(key, body)] = chain.objects("bad/").items()
    assert key.startswith("bad/record_invalid/")
    row = json.loads(body)
    assert "49999" in row["data"]["payload"]["source"]["object"]


class FailingWriter:
    """Puts through to the real writer, except for the records whose chunk ids match ``fail``."""

    def __init__(self, inner: Any, fail: Any) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0

    def put(self, records: list[Any]) -> None:
        self.calls += 1
        if self.fail(self.calls):
            raise KinesisPutError("stream 2 unavailable")
        self.inner.put(records)


def test_f11_a_transient_error_reports_that_record_and_a_retry_from_it_adds_no_distinct_events(aws: None) -> None:
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain, junk=False)
    inner = chain.writer(chain.config.resources.events_stream)
    deps = chain.transform_deps(writer=FailingWriter(inner, lambda call: call == 2))
    response = handle(kinesis_event(records), FakeLambdaContext(), deps)
    assert response["batchItemFailures"] == [{"itemIdentifier": records[1].sequence_number}]
    # Lambda rewinds to the lowest failure and redelivers from there (successes included).
    handle(kinesis_event(records[1:]), FakeLambdaContext(), chain.transform_deps())
    events = events_on_stream_2(chain)
    assert len({e["event_id"] for e in events}) == 30
    assert len(events) > 30  # the redelivered records were put again: the sinks dedupe by chunk and id


def test_f12_when_every_record_fails_the_batch_raises_so_lambda_retries_or_bisects(aws: None) -> None:
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain, junk=False)
    deps = chain.transform_deps(writer=FailingWriter(None, lambda call: True))
    with pytest.raises(BatchProcessingError):
        handle(kinesis_event(records), FakeLambdaContext(), deps)


def test_f14_item_identifiers_are_always_sequence_numbers_of_the_batch(aws: None) -> None:
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain, junk=False)
    deps = chain.transform_deps(writer=FailingWriter(chain.writer("test-events"), lambda call: call % 2 == 1))
    response = handle(kinesis_event(records), FakeLambdaContext(), deps)
    ids = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert ids and all(ids) and set(ids) <= {r.sequence_number for r in records}


def test_f15_a_crash_after_partial_output_then_full_retry_repeats_identical_chunks(aws: None) -> None:
    chain = Chain.create(chain_config(GROUPS))
    records = extracted(chain, junk=False)
    deps = chain.transform_deps(writer=FailingWriter(chain.writer("test-events"), lambda call: call > 1))
    handle(kinesis_event(records), FakeLambdaContext(), deps)  # partial output, then failures
    handle(kinesis_event(records), FakeLambdaContext(), chain.transform_deps())  # the retry
    stream = chain.stream_records("test-events")
    by_chunk: dict[str, set[bytes]] = {}
    for record in stream:
        by_chunk.setdefault(record.partition_key, set()).add(record.data)
    assert len(stream) > len(by_chunk)  # duplicates exist on the stream...
    assert all(len(v) == 1 for v in by_chunk.values())  # ...and each chunk id always carries the same bytes


def test_s09_handler_logs_carry_counts_but_no_raw_lines_or_addresses(aws: None) -> None:
    from extract.handler import logger as extract_logger
    from transform.handler import logger as transform_logger

    stream = io.StringIO()
    handlers = []
    for powertools_logger in (extract_logger, transform_logger):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(powertools_logger.registered_formatter)  # the JSON the Lambda would print
        powertools_logger.addHandler(handler)
        handlers.append((powertools_logger, handler))
    try:
        chain = Chain.create(chain_config(GROUPS))
        records = extracted(chain)
        handle(kinesis_event(records), FakeLambdaContext(), chain.transform_deps())
    finally:
        for powertools_logger, handler in handlers:
            powertools_logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "object extracted" in logged and "batch transformed" in logged  # INFO logs are on
    for secret in (DEFAULT_VALUES["c-ip"], "shop.example", "00000000-0000-4000-8000-000000000001", "\\t"):
        assert secret not in logged
