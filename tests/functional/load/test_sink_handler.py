"""The Parquet sink on moto: partitioned objects keyed by batch, retries overwrite, replays skip."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from load.sink_handler import SinkDeps, build_deps
from load.sink_handler import handle as handle_sink
from pipeline.records import encode_event, event_chunk_id, pack_events
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import KinesisRecord, kinesis_event
from tests.conftest import run_core
from tests.functional.aws_chain import Chain, chain_config


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def chunks(n: int, batch: str = "b" * 32, first: int = 0) -> list[KinesisRecord]:
    builder = LogBuilder()
    for i in range(first, first + n):
        hour = 9 + i % 2
        builder.add(
            {"time": f"{hour:02d}:00:{i % 60:02d}"},
            uri_stem="/i",
            query=tracker_query(
                {"e": "pv", "url": f"https://a.example/{i}", "eid": f"00000000-0000-4000-8000-{i:012d}"}
            ),
        )
    events = run_core(builder.to_gzip()).events
    packed = list(pack_events((encode_event(e) for e in events), 2048))
    return [
        KinesisRecord(data, event_chunk_id(batch, i), str(1000 + i), "shardId-000000000001")
        for i, data in enumerate(packed)
    ]


def sink(chain: Chain, records: list[KinesisRecord]) -> dict[str, object]:
    r = chain.config.resources
    deps = SinkDeps(chain.config, chain.s3, chain.ledger(), chain.bad_sink())
    return handle_sink(
        kinesis_event(records, stream_arn=f"arn:aws:kinesis:us-east-1:123456789012:stream/{r.events_stream}"), deps
    )


def rows(chain: Chain) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for body in chain.objects(chain.config.resources.events_prefix).values():
        out.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return out


def test_given_a_batch_when_sunk_then_objects_are_partitioned_and_keyed_by_shard_and_sequences(aws: None) -> None:
    chain = Chain.create(chain_config())
    records = chunks(30)
    result = sink(chain, records)
    keys = sorted(chain.objects("events/"))
    last = 999 + len(records)
    assert keys == [
        f"events/event_date=2024-11-15/event_hour=09/shardId-000000000001-1000-{last}.parquet",
        f"events/event_date=2024-11-15/event_hour=10/shardId-000000000001-1000-{last}.parquet",
    ]
    assert result["rows_written"] == 30 and len(rows(chain)) == 30


def test_given_a_retried_batch_when_sunk_again_then_its_objects_are_overwritten(aws: None) -> None:
    chain = Chain.create(chain_config())
    records = chunks(20)
    sink(chain, records)
    first = chain.objects("events/")
    sink(chain, records)
    assert chain.objects("events/") == first and len(rows(chain)) == 20


def test_given_replayed_chunks_in_a_later_batch_then_they_are_skipped(aws: None) -> None:
    chain = Chain.create(chain_config())
    records = chunks(20)
    sink(chain, records)
    fresh = chunks(6, batch="c" * 32, first=100)
    replay = [
        KinesisRecord(r.data, r.partition_key, str(5000 + i), r.shard_id) for i, r in enumerate([*records[:2], *fresh])
    ]
    result = sink(chain, replay)
    assert result["rows_written"] == 6
    ids = [r["event_id"] for r in rows(chain)]
    assert len(ids) == len(set(ids)) == 26


def test_given_a_garbage_record_then_it_becomes_a_bad_row_and_the_rest_is_written(aws: None) -> None:
    chain = Chain.create(chain_config())
    records = [*chunks(4), KinesisRecord(b"\xff\x00", "junk", "9999", "shardId-000000000001")]
    result = sink(chain, records)
    assert result["rows_written"] == 4
    assert [k.split("/")[1] for k in chain.objects("bad/")] == ["record_invalid"]


def test_given_natural_duplicates_in_different_batches_then_the_event_manifest_writes_them_once(aws: None) -> None:
    # The per-event manifest is off by default (compaction removes these duplicates instead:
    # tests/functional/test_compaction.py); this test is about the manifest, so it turns it on.
    chain = Chain.create(chain_config({"stream.cross_batch_dedupe": True}))
    first = chunks(10)
    # The same events (a tracker retry, or the same line in another log file) in a new chunk.
    again = [KinesisRecord(r.data, event_chunk_id("d" * 32, i), str(7000 + i), r.shard_id) for i, r in enumerate(first)]
    sink(chain, first)
    result = sink(chain, again)
    assert result["rows_written"] == 0
    assert len(rows(chain)) == 10
    sink(chain, again)  # its retry changes nothing either
    assert len(rows(chain)) == 10


def test_the_deployed_wiring_writes_typed_entity_columns_next_to_the_json(aws: None) -> None:
    # GIVEN page views with a web_page context, sunk through the handler's own dependencies
    chain = Chain.create(chain_config())
    builder = LogBuilder()
    for i in range(3):
        page = {
            "schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
            "data": {"id": f"{i:08d}-0000-4000-8000-000000000000"},
        }
        envelope = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": [page]}
        cx = base64.urlsafe_b64encode(json.dumps(envelope).encode()).decode()
        builder.add(
            {"time": f"09:00:{i:02d}"},
            uri_stem="/i",
            query=tracker_query(
                {"e": "pv", "url": f"https://a.example/{i}", "eid": f"00000000-0000-4000-8000-{i:012d}", "cx": cx}
            ),
        )
    packed = list(pack_events((encode_event(e) for e in run_core(builder.to_gzip()).events), 2048))
    records = [
        KinesisRecord(d, event_chunk_id("f" * 32, i), str(1000 + i), "shardId-000000000001")
        for i, d in enumerate(packed)
    ]
    r = chain.config.resources
    stream_arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{r.events_stream}"
    handle_sink(
        kinesis_event(records, stream_arn=stream_arn), build_deps(chain.config, s3=chain.s3, dynamodb=chain.dynamodb)
    )
    # THEN the object has the lake loader's column with every page id, and the JSON column too
    [body] = chain.objects("events/").values()
    table = pq.read_table(io.BytesIO(body))
    ids = sorted(v[0]["id"] for v in table.column("contexts_com_snowplowanalytics_snowplow_web_page_1").to_pylist())
    assert ids == [f"{i:08d}-0000-4000-8000-000000000000" for i in range(3)]
    assert all(
        json.loads(text)["data"][0]["schema"].endswith("web_page/jsonschema/1-0-0")
        for text in table.column("contexts").to_pylist()
    )


class FailingPuts:
    """An S3 client whose n-th put_object fails (once); everything else goes to moto."""

    def __init__(self, inner: object, fail_on: int) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.puts = 0

    def put_object(self, **kwargs: object) -> object:
        self.puts += 1
        if self.puts == self.fail_on:
            raise RuntimeError("S3 unavailable")
        return self.inner.put_object(**kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize("regroup", ["same", "grown", "shrunk"])
def test_a_failed_batch_retried_with_other_boundaries_loses_and_duplicates_nothing(aws: None, regroup: str) -> None:
    chain = Chain.create(chain_config())
    records = chunks(30)
    extra = chunks(4, batch="e" * 32, first=200)
    extra = [KinesisRecord(r.data, r.partition_key, str(2000 + i), r.shard_id) for i, r in enumerate(extra)]
    deps = SinkDeps(chain.config, FailingPuts(chain.s3, fail_on=2), chain.ledger(), chain.bad_sink())
    with pytest.raises(Exception, match="S3 unavailable"):
        handle_sink(kinesis_event(records), deps)  # the first object is written, the second fails
    retry = {"same": records, "grown": [*records, *extra], "shrunk": records[1:]}[regroup]
    sink(chain, retry)
    if regroup == "shrunk":
        sink(chain, records[:1])  # the rest arrives later (e.g. re-driven from the on-failure queue)
    ids = [r["event_id"] for r in rows(chain)]
    expected = 30 + (4 if regroup == "grown" else 0)
    assert len(ids) == len(set(ids)) == expected


def test_malformed_events_on_stream_2_become_bad_rows_and_the_rest_is_written(aws: None) -> None:
    chain = Chain.create(chain_config())
    good = chunks(5)
    poison = (
        b'{"foo":1}\n{"event_id":"x","collector_tstamp":"abc"}\n{"event_id":"y","collector_tstamp":1,"page_url":123}\n'
    )
    result = sink(chain, [*good, KinesisRecord(poison, "p" * 37, "9000", "shardId-000000000001")])
    assert result["rows_written"] == 5
    bad = chain.objects("bad/")
    assert [k.split("/")[1] for k in bad] == ["schema_violation"]
    assert sum(len(body.splitlines()) for body in bad.values()) == 3
