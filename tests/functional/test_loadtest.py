"""``clickstream-etl loadtest`` on the emulated chain and, for the deployed mode, on moto's Kinesis and S3."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.app.cli import build_parser, main
from pipeline.app.commands import loadtest as command
from pipeline.app.loadtest import (
    CHUNK_S,
    RemoteDeps,
    S3Location,
    event_id,
    parse_event_id,
    partitions_of,
    plan_load,
    run_local,
    run_remote,
)
from pipeline.app.local.runtime import LocalChain, emulated_aws
from pipeline.aws.clients import make_client
from pipeline.config import PipelineConfig
from pipeline.records import decode_raw
from pipeline.testing.lambda_events import FakeClock
from tests.conftest import make_config

START = 1_764_000_000.0


@pytest.fixture
def moto() -> Iterator[PipelineConfig]:
    with emulated_aws(server=False):
        yield make_config()


def _parquet_keys(chain: LocalChain) -> list[str]:
    r = chain.config.resources
    listing = chain.s3.list_objects_v2(Bucket=r.output_bucket, Prefix=r.events_prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# ------------------------------------------------------------------ local chain
@pytest.mark.slow
def test_a_local_run_on_a_fake_clock_delivers_every_event_once(moto: PipelineConfig) -> None:
    # GIVEN 200 events/s for 2 s on a fake clock
    clock = FakeClock(START)
    plan = plan_load(200, 2)
    # WHEN they run through the emulated chain
    report = run_local(plan, moto, clock=clock, sleep=clock.advance)
    # THEN every event reached the sink exactly once, with a latency each, and nothing went bad
    figures = report.to_json()
    assert (figures["sent"], figures["received"], figures["missing"], figures["duplicated_events"]) == (400, 400, 0, 0)
    assert figures["bad_rows"] == 0 and figures["untimed_events"] == 0 and figures["ok"]
    assert len(report.matching.latencies_ms) == 400 and min(report.matching.latencies_ms) >= 0
    assert figures["latency_ms"]["p50"] is not None and figures["throughput"] > 0


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["loadtest", *argv])


def test_the_command_reports_json_figures_and_exits_0_without_loss(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a short real-clock run of the command
    code = command.run(_args("--rate", "100", "--duration", "1", "--json"))
    # THEN it exits 0 and prints the figures
    figures = json.loads(capsys.readouterr().out)
    assert code == 0
    # On a real clock a busy machine may send fewer than planned (the chain's rounds run in the
    # pacer's waits, and the report says so); whatever was sent must all arrive.
    assert figures["mode"] == "local" and 0 < figures["sent"] == figures["received"] <= figures["planned"] == 100
    assert set(figures["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert "sink handler returned" in figures["sink_time"]


def test_loss_at_the_sink_is_reported_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a run where one Parquet object of the sink disappears before the read-back
    lost: list[int] = []

    def delete_one(chain: LocalChain) -> None:
        key = _parquet_keys(chain)[0]
        body = chain.s3.get_object(Bucket=chain.config.resources.output_bucket, Key=key)["Body"].read()
        lost.append(pq.read_table(io.BytesIO(body)).num_rows)
        chain.s3.delete_object(Bucket=chain.config.resources.output_bucket, Key=key)

    code = command.run(_args("--rate", "100", "--duration", "1"), before_read_back=delete_one)
    # THEN the table says how many were lost, and the exit code is 1
    out = capsys.readouterr().out
    assert code == 1
    assert f"lost        {lost[0]} " in out and "LOSS, DUPLICATION OR BAD ROWS" in out


def test_a_duplicated_sink_object_is_reported_as_duplicates_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a run where a Parquet object of the sink is written twice (a copy under another key)
    copied: list[int] = []

    def duplicate_one(chain: LocalChain) -> None:
        bucket = chain.config.resources.output_bucket
        key = _parquet_keys(chain)[0]
        body = chain.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        copied.append(pq.read_table(io.BytesIO(body)).num_rows)
        chain.s3.put_object(Bucket=bucket, Key=key.replace(".parquet", "-copy.parquet"), Body=body)

    code = command.run(_args("--rate", "100", "--duration", "1", "--json"), before_read_back=duplicate_one)
    figures = json.loads(capsys.readouterr().out)
    # THEN each row of the copy is a duplicate; none is lost; the exit code is 1
    assert code == 1
    assert figures["duplicated_events"] == figures["duplicate_rows"] == copied[0]
    assert figures["missing"] == 0 and figures["received"] == figures["sent"] > 0 and not figures["ok"]


def test_a_plan_above_the_cap_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--rate", "1000", "--duration", "1000"]) == 2
    assert "--max-events" in capsys.readouterr().err
    assert main(["loadtest", "--rate", "10", "--duration", "1", "--output", "s3://b/events/"]) == 2


# ------------------------------------------------------------------ deployed mode, on moto
def _stream_events(kinesis: Any, stream: str) -> list[tuple[int, str]]:
    """(ingestion ms, eid) of every event on ``stream``, over all shards."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                batch = decode_raw(record["Data"])
                for line in batch.lines:
                    out.append((batch.etl_tstamp, line.split("&eid=")[1][:36]))
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return sorted(out)


def test_the_deployed_mode_puts_each_event_once_within_the_rate(moto: PipelineConfig) -> None:
    # GIVEN a deployed stream 1 (moto) and a fake clock
    kinesis = make_client("kinesis", moto.aws)
    kinesis.create_stream(StreamName="loadtest-stream-1", ShardCount=2)
    clock = FakeClock(START)
    plan = plan_load(50, 3)
    deps = RemoteDeps(kinesis, make_client("s3", moto.aws), moto.stream, clock=clock, sleep=clock.advance)
    # WHEN the loadtest puts its traffic there (no read-back)
    report = run_remote(plan, "loadtest-stream-1", deps)
    # THEN every event is on the stream once, and the first t seconds carry at most rate * t plus one chunk
    events = _stream_events(kinesis, "loadtest-stream-1")
    assert sorted(eid for _, eid in events) == sorted(event_id(plan.run_id, seq) for seq in range(150))
    assert report.sent == 150 and clock() - START <= 3 + 0.5
    chunk = math.ceil(50 * CHUNK_S)
    for index, (sent_ms, _) in enumerate(events):
        assert index + 1 <= 50 * (sent_ms / 1000 - START + 2e-3) + chunk  # 2e-3: stamps are truncated to ms
    assert "nothing read back" in report.cleanup[0]


@pytest.mark.slow
def test_the_deployed_mode_reads_back_matches_and_deletes_only_its_own_objects(moto: PipelineConfig) -> None:
    # GIVEN a "deployed" pipeline (the emulated chain, driven while the loadtest waits) whose
    # output already holds an object of other traffic in the hour the loadtest will write to
    chain = LocalChain(moto)
    chain.create_resources()
    r = moto.resources
    clock = FakeClock(START)
    foreign_key = r.events_prefix + partitions_of([int(START * 1000)])[0] + "other-traffic.parquet"
    other = pa.table({"event_id": ["9f0c1d6e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"]})
    buffer = io.BytesIO()
    pq.write_table(other, buffer)
    chain.s3.put_object(Bucket=r.output_bucket, Key=foreign_key, Body=buffer.getvalue())

    def sleep(seconds: float) -> None:
        chain.step()
        clock.advance(seconds)

    deps = RemoteDeps(chain.kinesis, chain.s3, moto.stream, clock=clock, sleep=sleep)
    output = S3Location.parse(f"s3://{r.output_bucket}/{r.events_prefix}")
    bad = S3Location.parse(f"s3://{r.output_bucket}/{r.bad_prefix}")
    # WHEN the loadtest runs against its stream 1 and reads the output back
    report = run_remote(plan_load(40, 2), r.raw_stream, deps, output=output, bad=bad, wait_s=60, poll_s=1)
    # THEN every event was found once; the run's objects are gone and the other one is still there
    figures = report.to_json()
    assert figures["ok"] and figures["received"] == 80 and figures["missing"] == 0
    assert figures["foreign_rows"] == 0  # the other traffic's rows are not even counted as the run's
    assert "S3 LastModified" in figures["sink_time"]
    assert _parquet_keys(chain) == [foreign_key]
    assert any(note.startswith("deleted ") and " 0 " not in note for note in report.cleanup)


def test_the_deployed_mode_waits_no_longer_than_told_and_reports_what_it_missed(moto: PipelineConfig) -> None:
    # GIVEN a stream nothing consumes, and an empty output bucket
    kinesis = make_client("kinesis", moto.aws)
    s3 = make_client("s3", moto.aws)
    kinesis.create_stream(StreamName="loadtest-unconsumed", ShardCount=1)
    s3.create_bucket(Bucket="loadtest-out")
    clock = FakeClock(START)
    deps = RemoteDeps(kinesis, s3, moto.stream, clock=clock, sleep=clock.advance)
    # WHEN the loadtest waits 30 s for its events
    report = run_remote(
        plan_load(10, 1), "loadtest-unconsumed", deps, output=S3Location.parse("s3://loadtest-out/events"), wait_s=30
    )
    # THEN it gives up after the wait, with every event missing, and deletes nothing
    assert report.timed_out and len(report.matching.missing) == 10 and not report.ok
    assert clock() - START <= 1 + 0.5 + 30 + 1e-6
    assert parse_event_id(event_id(report.run_id, 0)) == (report.run_id, 0)
    assert any("deleted 0" in note for note in report.cleanup)
