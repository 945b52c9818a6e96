"""Reliability catalogue F21: a Kinesis batch the event source mapping discarded is read back from the
stream by its sequence range and put back, on moto, exactly once downstream; a range past retention
is reported with its arrival window and left on the queue."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from extract.handler import handle as extract
from pipeline.app.commands import redrive_discarded as command
from pipeline.app.discarded import DiscardedDeps, DiscardedRange, read_range
from pipeline.app.local.esm import KinesisPoller
from pipeline.aws.clients import make_client
from pipeline.records import decode_events
from pipeline.testing.lambda_events import FakeLambdaContext, s3_object_created_event
from pipeline.topology import stream_mappings
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.aws_chain import page_view_log as log
from transform.handler import handle as transform


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


QUEUE = "clickstream-etl-transform-failures"


class Setup:
    def __init__(self) -> None:
        self.chain = Chain.create(chain_config(), shards=1)
        self.sqs = make_client("sqs", self.chain.config.aws)
        self.url = self.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        self.raw = self.chain.config.resources.raw_stream
        self.events = self.chain.config.resources.events_stream
        self.poller = KinesisPoller(self.chain.kinesis)
        self.settings = _transform_settings()

    def extract(self, key: str, lines: int) -> None:
        notice = self.chain.upload(key, log(lines))
        event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
        extract(event, FakeLambdaContext(), self.chain.extract_deps())

    def discard_everything(self) -> int:
        """Drain stream 1 with a Transform that always fails: the simulator discards each batch after
        its retries and Lambda's on-failure record goes to the queue, as AWS sends it."""

        def failing(event: dict[str, Any], context: Any) -> Any:
            raise RuntimeError("the events stream is unavailable")

        result = self.poller.drain(self.raw, failing, self.settings)
        for batch in result.discarded:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(batch.to_destination_record()))
        return len(result.discarded)

    def transform_all(self) -> None:
        deps = self.chain.transform_deps()
        self.poller.drain(self.raw, lambda event, context: transform(event, context, deps), self.settings)

    def deps(self, **overrides: Any) -> DiscardedDeps:
        chain = self.chain
        values: dict[str, Any] = {"sqs": self.sqs, "kinesis": chain.kinesis, "writer_for": chain.writer, **overrides}
        return DiscardedDeps(**values)

    def event_ids(self) -> list[str]:
        ids: list[str] = []
        for record in self.chain.stream_records(self.events):
            ids.extend(e["event_id"] for e in decode_events(record.data))
        return ids

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _transform_settings() -> Any:
    from pipeline.app.local.runtime import esm_settings
    from pipeline.config import load_config

    return esm_settings(stream_mappings(load_config(environ={}))["transform"])


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--queue", QUEUE, *extra])


def test_a_discarded_batch_is_put_back_and_becomes_each_event_once(aws: None) -> None:
    """Reliability catalogue F21.

    GIVEN two log objects on stream 1 whose Transform batches were all discarded (the queue holds their ranges)
    WHEN redrive-discarded runs, and the Transform then reads stream 1 again
    THEN every record of the ranges is put back, the messages are gone, and stream 2 holds every
    event of the two logs exactly once; a second run has nothing to do."""
    setup = Setup()
    setup.extract("cf/E1.2026-01-01-00.a.gz", 7)
    setup.extract("cf/E1.2026-01-01-01.b.gz", 5)
    assert setup.discard_everything() >= 1
    assert setup.event_ids() == []

    out = io.StringIO()
    assert command.run(_args("--json"), deps=setup.deps(), out=out) == 0
    [outcome] = json.loads(out.getvalue())["queues"]
    assert outcome["redriven_records"] == len(setup.chain.stream_records(setup.raw)) // 2
    assert outcome["unreadable"] == [] and setup.queued() == 0

    setup.transform_all()
    ids = setup.event_ids()
    assert len(ids) == 12 and len(set(ids)) == 12

    out = io.StringIO()
    assert command.run(_args("--json"), deps=setup.deps(), out=out) == 0
    assert json.loads(out.getvalue())["queues"][0]["redriven_batches"] == 0


def test_a_crash_between_the_put_and_the_delete_puts_the_range_twice_and_changes_no_event(aws: None) -> None:
    """Reliability catalogue F21.

    GIVEN a discarded batch, and a first re-drive that dies after its put (the delete never happens)
    WHEN the re-drive runs again and the Transform reads stream 1
    THEN the range is on stream 1 twice more, and the Transform's output for the two copies is the same
    chunks, byte for byte, with the same event ids (what the sink's per-chunk claim absorbs)."""
    setup = Setup()
    setup.extract("cf/E1.2026-01-01-00.a.gz", 4)
    setup.discard_everything()
    original = len(setup.chain.stream_records(setup.raw))

    class DyingSqs:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.receipts: list[str] = []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def delete_message(self, **kwargs: Any) -> Any:
            self.receipts.append(kwargs["ReceiptHandle"])
            raise KeyboardInterrupt  # the process is killed here

    dying = DyingSqs(setup.sqs)
    with pytest.raises(KeyboardInterrupt):
        command.run(_args(), deps=setup.deps(sqs=dying), out=io.StringIO())
    # The message comes back when its visibility timeout ends; the test ends it now.
    [receipt] = dying.receipts
    setup.sqs.change_message_visibility(QueueUrl=setup.url, ReceiptHandle=receipt, VisibilityTimeout=0)
    assert command.run(_args(), deps=setup.deps(), out=io.StringIO()) == 0
    assert len(setup.chain.stream_records(setup.raw)) == 3 * original  # the batch, then two copies of it
    assert setup.queued() == 0
    setup.transform_all()
    chunks: dict[str, bytes] = {}
    for record in setup.chain.stream_records(setup.events):
        previous = chunks.setdefault(record.partition_key, record.data)
        assert previous == record.data  # a copy is the same chunk, byte for byte
    ids = setup.event_ids()
    assert len(set(ids)) == 4 and len(ids) == 8  # two copies of the same four events, in identical chunks


def test_a_range_past_retention_is_reported_with_its_window_and_left_on_the_queue(aws: None) -> None:
    """Reliability catalogue F21.

    GIVEN an on-failure record whose first sequence number the stream no longer holds, and a message
    that is not an on-failure record at all
    WHEN redrive-discarded runs
    THEN it exits 1 naming the range and its arrival window, puts nothing, and leaves both messages."""
    setup = Setup()
    setup.extract("cf/E1.2026-01-01-00.a.gz", 3)
    [held] = setup.chain.stream_records(setup.raw)[:1]
    arn = setup.poller.stream_arn(setup.raw)
    trimmed = {
        "KinesisBatchInfo": {
            "shardId": held.shard_id,
            "startSequenceNumber": str(int(held.sequence_number) - 1),  # trimmed: before what the shard holds
            "endSequenceNumber": held.sequence_number,
            "approximateArrivalOfFirstRecord": "2026-01-01T00:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-01-01T00:05:00.000Z",
            "batchSize": 2,
            "streamArn": arn,
        }
    }
    setup.sqs.send_message(QueueUrl=setup.url, MessageBody=json.dumps(trimmed))
    setup.sqs.send_message(QueueUrl=setup.url, MessageBody="not an on-failure record")
    before = len(setup.chain.stream_records(setup.raw))
    out = io.StringIO()
    assert command.run(_args(), deps=setup.deps(), out=out) == 1
    text = out.getvalue()
    assert "NOT ON THE STREAM" in text and "2026-01-01T00:00:00.000Z .. 2026-01-01T00:05:00.000Z" in text
    assert "1 message(s) are not on-failure records" in text
    assert len(setup.chain.stream_records(setup.raw)) == before
    assert setup.queued() == 2


def test_a_dry_run_reads_the_ranges_and_writes_nothing(aws: None) -> None:
    setup = Setup()
    setup.extract("cf/E1.2026-01-01-00.a.gz", 3)
    setup.discard_everything()
    before = len(setup.chain.stream_records(setup.raw))
    calls: list[str] = []
    for client in (setup.sqs, setup.chain.kinesis):
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    out = io.StringIO()
    assert command.run(_args("--dry-run", "--json"), deps=setup.deps(), out=out) == 0
    assert json.loads(out.getvalue())["queues"][0]["redriven_batches"] >= 1
    assert not {"PutRecords", "PutRecord", "DeleteMessage"} & set(calls)
    assert len(setup.chain.stream_records(setup.raw)) == before and setup.queued() >= 1


def test_an_on_failure_record_parses_and_anything_else_does_not() -> None:
    body = json.dumps(
        {
            "KinesisBatchInfo": {
                "shardId": "shardId-000000000000",
                "startSequenceNumber": "1",
                "endSequenceNumber": "5",
                "batchSize": 3,
                "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/raw",
            }
        }
    )
    parsed = DiscardedRange.from_message(body)
    assert parsed is not None and parsed.stream_name == "raw" and parsed.batch_size == 3
    assert DiscardedRange.from_message("{}") is None and DiscardedRange.from_message("[1]") is None
    assert DiscardedRange.from_message("not json") is None


def test_a_range_on_a_missing_stream_is_unreadable(aws: None) -> None:
    kinesis = make_client("kinesis", chain_config().aws)
    gone = DiscardedRange(
        "arn:aws:kinesis:us-east-1:123456789012:stream/gone", "shardId-000000000000", "1", "2", 1, "", ""
    )
    assert read_range(kinesis, gone) is None
