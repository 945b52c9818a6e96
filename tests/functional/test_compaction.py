"""Compaction of the S3 dataset's closed hour partitions, on moto (issue 11, item 6).

GIVEN hour partitions of the events dataset holding natural duplicates across their objects
      (the sink's per-batch objects with stream.cross_batch_dedupe = false)
WHEN  the compactor runs (the planner, the executor, the CLI, the scheduled handler)
THEN  each closed partition holds each natural event once, in compacted-<hash>-NNNNN.parquet
      equal to the local backfill's dedupe of the same rows; young partitions, objects that
      arrive after the listing and objects that are not the canonical layout are never
      deleted; a crash or a second compactor never loses an event and the next run converges.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from load import compact_handler
from load.compaction import (
    CompactionPlan,
    PartitionOutcome,
    Prepared,
    compact,
    list_dataset,
    plan_compaction,
    prepare_partition,
    publish_partition,
    retire_inputs,
)
from load.dataset import EVENTS_DIR, STAGING_DIR, PartitionStager, finalize_partition
from load.errors import SinkWriteError
from load.parquet import arrow_schema, encode_parquet
from load.partitions import PartitionKey
from load.redshift.backfill_plan import S3Location, S3Object, content_hash, plan_backfill
from pipeline.app.cli import build_parser, main
from pipeline.app.commands import compact as compact_command
from pipeline.aws.clients import make_client
from pipeline.config import PipelineConfig, load_config
from pipeline.iglu import Resolver, resolver_from_config
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext
from pipeline.topology import scheduled_functions, stream_mappings

BUCKET = "test-compact-output"
PREFIX = "events/"
ROOT = S3Location(BUCKET, PREFIX)
HOUR = PartitionKey("2024-11-15", 19)
HOUR_MS = 1_731_697_200_000  # 2024-11-15T19:00:00Z
NOW = datetime(2024, 11, 16, 12, tzinfo=UTC)  # every partition of 2024-11-15 is closed
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
OUTPUT_NAME = re.compile(r"compacted-[0-9a-f]{16}-\d{5}\.parquet")


# ------------------------------------------------------------------------------ fixtures and helpers
@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def make_config(**load: Any) -> PipelineConfig:
    overrides = {"resources.output_bucket": BUCKET, "resources.events_prefix": PREFIX}
    overrides.update({f"load.{key}": value for key, value in load.items()})
    return load_config(environ={}, overrides=overrides)


CONFIG = make_config()
RESOLVER: Resolver = resolver_from_config(CONFIG.transform.iglu)


@pytest.fixture
def s3(aws: None) -> Any:
    client = make_client("s3", CONFIG.aws)
    client.create_bucket(Bucket=BUCKET)
    return client


def eid(number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-{number}"))


def event(number: int, offset_ms: int, *, fingerprint: str = "", hour_ms: int = HOUR_MS) -> dict[str, Any]:
    """A page view; every third one carries a web_page context (so typed entity columns are derived)."""
    row: dict[str, Any] = {
        "event_id": eid(number),
        "event_fingerprint": fingerprint or f"fp-{number}",
        "collector_tstamp": hour_ms + offset_ms,
        "event": "page_view",
        "page_url": f"https://example.com/{number}",
    }
    if number % 3 == 0:
        context = {"schema": WEB_PAGE, "data": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, str(number)))}}
        row["contexts"] = json.dumps({"schema": CONTEXTS, "data": [context]})
    return row


def put_events(s3: Any, key: str, events: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode_parquet(events, CONFIG.load, RESOLVER))  # type: ignore[arg-type]


def part_key(name: str, partition: PartitionKey = HOUR) -> str:
    return f"{PREFIX}{partition.format()}/{name}"


def keys(s3: Any, prefix: str = PREFIX) -> list[str]:
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def body(s3: Any, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def table_of(s3: Any, partition: PartitionKey = HOUR, skip: tuple[str, ...] = ()) -> pa.Table:
    """The partition's rows (canonical columns), its objects (but ``skip``) read in key order."""
    tables = [
        pq.read_table(io.BytesIO(body(s3, key)), columns=arrow_schema().names)
        for key in keys(s3, f"{PREFIX}{partition.format()}/")
        if key not in skip
    ]
    return pa.concat_tables(tables) if tables else arrow_schema().empty_table()


def natural_keys(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["event_id"].to_pylist(), table["event_fingerprint"].to_pylist(), strict=True))


def assert_each_natural_event_once(s3: Any, expected: set[tuple[str, str]], partition: PartitionKey = HOUR) -> None:
    found = natural_keys(table_of(s3, partition))
    assert len(found) == len(set(found)), "a natural event is in the partition twice"
    assert set(found) == expected


def plan(s3: Any, now: datetime = NOW, **kwargs: Any) -> CompactionPlan:
    return plan_compaction(ROOT, list_dataset(s3, ROOT), now=now, after_hours=CONFIG.load.compact_after_hours, **kwargs)


def run(s3: Any, tmp_path: Path, config: PipelineConfig = CONFIG, now: datetime = NOW) -> Any:
    scratch = tmp_path / f"scratch-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    return compact(plan(s3, now), s3, config.load, scratch=scratch, resolver=RESOLVER)


class Calls:
    """Records the operation of every call a client makes (botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.operations: list[str] = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


def fail_first(client: Any, operation: str) -> Any:
    """Make ``client``'s first call of ``operation`` fail with a 500 (a transient error)."""
    state = {"failed": False}

    def before(**_: Any) -> None:
        if not state["failed"]:
            state["failed"] = True
            raise ClientError(
                {
                    "Error": {"Code": "InternalError", "Message": "injected"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },
                operation,
            )

    client.meta.events.register(f"before-call.s3.{operation}", before)
    return client


def three_sink_objects() -> list[list[dict[str, Any]]]:
    """Three sink-like objects of HOUR, in key order: 0-9, 5-14 (5-9 again, later), 12-16 (12-14
    again, earlier), plus a synthetic duplicate of event 1 (same id, another fingerprint: kept)."""
    return [
        [event(n, n * 1000) for n in range(10)],
        [event(n, n * 1000 + 500) for n in range(5, 15)],
        [event(n, n * 1000 - 200) for n in range(12, 17)] + [event(1, 60_000, fingerprint="fp-other")],
    ]


SINK_KEYS = (
    "shardId-000000000001-100-200.parquet",
    "shardId-000000000001-201-300.parquet",
    "shardId-000000000002-100-200.parquet",
)


def three_objects_with_natural_duplicates(s3: Any) -> set[tuple[str, str]]:
    """Put :func:`three_sink_objects`; the natural events they hold."""
    for name, events in zip(SINK_KEYS, three_sink_objects(), strict=True):
        put_events(s3, part_key(name), events)
    return {(eid(n), f"fp-{n}") for n in range(17)} | {(eid(1), "fp-other")}


def backfill_dedupe(sources: list[list[dict[str, Any]]], tmp_path: Path) -> pa.Table:
    """The local backfill's finalize of the same rows: each source staged as a fragment, in order."""
    dest = tmp_path / "backfill"
    for index, events in enumerate(sources):
        stager = PartitionStager(dest / STAGING_DIR, f"source-{index:03d}")
        for row in events:
            stager.add(row)  # type: ignore[arg-type]
        stager.close()
    fragments = sorted((dest / STAGING_DIR / HOUR.format()).glob("*.arrow"))
    result = finalize_partition(dest, HOUR, fragments, CONFIG.load, resolver=RESOLVER)
    folder = dest / EVENTS_DIR / HOUR.format()
    return pa.concat_tables(pq.read_table(folder / name, columns=arrow_schema().names) for name in result.files)


# ------------------------------------------------------------------------------ the plan (pure)
def obj(name: str, partition: PartitionKey = HOUR, size: int = 100, etag: str = "e") -> S3Object:
    return S3Object(part_key(name, partition), size, etag)


def test_the_plan_picks_closed_partitions_with_more_than_one_object_or_one_that_is_not_an_output() -> None:
    done = f"compacted-{'a' * 16}-00000.parquet"
    objects = [
        obj("part-00000.parquet", PartitionKey("2024-11-15", 1)),  # one backfill part: normalized
        obj(done, PartitionKey("2024-11-15", 2)),  # one complete output set: done
        obj(done, PartitionKey("2024-11-15", 3)),
        obj(f"compacted-{'a' * 16}-00001.parquet", PartitionKey("2024-11-15", 3)),  # complete, two files
        obj(f"compacted-{'a' * 16}-00001.parquet", PartitionKey("2024-11-15", 4)),  # -00000 missing: incomplete
        obj(done, PartitionKey("2024-11-15", 5)),
        obj(f"compacted-{'b' * 16}-00000.parquet", PartitionKey("2024-11-15", 5)),  # two sets: a crash's leftovers
        obj(done, PartitionKey("2024-11-15", 6)),
        obj("shardId-1-2-3.parquet", PartitionKey("2024-11-15", 6)),  # a late sink object beside an output
        obj("a.parquet", PartitionKey("2024-11-16", 4)),  # hour ended 7 h before NOW: closed
        obj("b.parquet", PartitionKey("2024-11-16", 4)),
        obj("a.parquet", PartitionKey("2024-11-16", 5)),  # ended 6 h before NOW: young
        obj("b.parquet", PartitionKey("2024-11-16", 5)),
        S3Object(f"{PREFIX}event_date=2024-11-15/event_hour=07/_SUCCESS", 0, "e"),  # not the layout
        S3Object(f"{PREFIX}event_date=2024-11-15/event_hour=07/.hidden.parquet", 10, "e"),
        S3Object(f"{PREFIX}event_date=2024-13-45/event_hour=07/x.parquet", 10, "e"),  # the shape, not a date
        S3Object("elsewhere/event_date=2024-11-15/event_hour=07/x.parquet", 10, "e"),
    ]
    result = plan_compaction(ROOT, objects, now=NOW, after_hours=7)
    chosen = [(t.partition.date, t.partition.hour) for t in result.tasks]
    assert chosen == [("2024-11-15", 1), ("2024-11-15", 4), ("2024-11-15", 5), ("2024-11-15", 6), ("2024-11-16", 4)]
    assert (result.young_partitions, result.compacted_partitions, result.ignored_keys) == (1, 2, 4)
    bounded = plan_compaction(ROOT, objects, now=NOW, after_hours=7, since=NOW.date(), until=NOW.date())
    assert [t.partition for t in bounded.tasks] == [PartitionKey("2024-11-16", 4)]
    assert plan_compaction(ROOT, objects, now=NOW, after_hours=0).young_partitions == 0
    with pytest.raises(ValueError, match="aware"):
        plan_compaction(ROOT, objects, now=NOW.replace(tzinfo=None), after_hours=7)


def test_the_outputs_are_named_after_the_inputs_sorted_key_size_and_etag() -> None:
    inputs = [obj("b.parquet", etag="2"), obj("a.parquet", etag="1")]
    [task] = plan_compaction(ROOT, inputs, now=NOW, after_hours=7).tasks
    assert [o.key for o in task.inputs] == sorted(o.key for o in inputs)
    assert task.digest == content_hash(inputs)[:16]
    assert task.output_key(3) == part_key(f"compacted-{task.digest}-00003.parquet")
    [again] = plan_compaction(ROOT, list(reversed(inputs)), now=NOW, after_hours=7).tasks
    assert again == task
    [other] = plan_compaction(ROOT, [obj("b.parquet", etag="3"), inputs[1]], now=NOW, after_hours=7).tasks
    assert other.digest != task.digest  # an input replaced since: another set of outputs


def test_compact_after_hours_outlasts_the_streams_maximum_record_age() -> None:
    ages = [m.maximum_record_age_s for m in stream_mappings(CONFIG).values()]
    assert CONFIG.load.compact_after_hours * 3600 > max(ages)
    assert CONFIG.stream.cross_batch_dedupe is False  # the per-event manifest is off by default


# ------------------------------------------------------------------------------ compaction on moto
def test_natural_duplicates_across_objects_are_removed_as_the_local_backfill_removes_them(
    s3: Any, tmp_path: Path
) -> None:
    expected = three_objects_with_natural_duplicates(s3)

    summary = run(s3, tmp_path)

    [outcome] = summary.outcomes
    assert outcome.status == "compacted"
    [output] = keys(s3)
    assert OUTPUT_NAME.fullmatch(output.rsplit("/", 1)[1]) and outcome.outputs == (output,)
    assert (outcome.rows_in, outcome.rows_out, outcome.duplicates) == (26, 18, 8)
    assert outcome.deleted == 3 and not outcome.left
    assert_each_natural_event_once(s3, expected)
    # The same rows, in the same order, as the backfill's finalize of the same inputs.
    assert table_of(s3).equals(backfill_dedupe(three_sink_objects(), tmp_path))
    # The earliest copy of each natural event won (event 7: 7,000 ms in the first object, 7,500 in the second).
    rows = {(r["event_id"], r["event_fingerprint"]): r for r in table_of(s3).to_pylist()}
    assert rows[(eid(7), "fp-7")]["collector_tstamp"] == datetime.fromtimestamp((HOUR_MS + 7000) / 1000, UTC)
    assert rows[(eid(13), "fp-13")]["collector_tstamp"] == datetime.fromtimestamp((HOUR_MS + 12_800) / 1000, UTC)
    # Typed entity columns are derived again from the JSON ones.
    names = pq.read_schema(io.BytesIO(body(s3, output))).names
    assert "contexts_com_snowplowanalytics_snowplow_web_page_1" in names
    metrics = summary.metrics()
    assert (metrics["PartitionsCompacted"], metrics["ObjectsIn"], metrics["ObjectsOut"]) == (1, 3, 1)
    assert (metrics["RowsIn"], metrics["RowsOut"], metrics["DuplicatesDropped"]) == (26, 18, 8)
    assert metrics["BytesOut"] == len(body(s3, output)) and metrics["BytesIn"] > 0

    # A second run finds the partition compacted and does nothing.
    again = run(s3, tmp_path)
    assert not again.outcomes and again.plan.compacted_partitions == 1 and keys(s3) == [output]


def test_young_partitions_are_untouched(s3: Any, tmp_path: Path) -> None:
    three_objects_with_natural_duplicates(s3)
    hour_end = datetime.fromtimestamp(HOUR_MS / 1000 + 3600, UTC)
    summary = run(s3, tmp_path, now=hour_end + timedelta(hours=6, minutes=59))
    assert not summary.outcomes and summary.plan.young_partitions == 1
    assert len(keys(s3)) == 3
    assert [o.status for o in run(s3, tmp_path, now=hour_end + timedelta(hours=7)).outcomes] == ["compacted"]


def test_a_partition_larger_than_the_files_per_file_limit_is_one_complete_set_of_outputs(
    s3: Any, tmp_path: Path
) -> None:
    three_objects_with_natural_duplicates(s3)
    summary = run(s3, tmp_path, make_config(max_rows_per_file=7))
    [outcome] = summary.outcomes
    assert [key.rsplit("-", 1)[1] for key in outcome.outputs] == ["00000.parquet", "00001.parquet", "00002.parquet"]
    assert keys(s3) == sorted(outcome.outputs)
    assert plan(s3).compacted_partitions == 1 and not plan(s3).tasks


def test_a_crash_after_the_upload_before_the_deletes_converges_on_the_next_run(s3: Any, tmp_path: Path) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    inputs = keys(s3)
    crashing = fail_first(make_client("s3", CONFIG.aws), "DeleteObject")
    scratch = tmp_path / "crash"
    scratch.mkdir()
    with pytest.raises(SinkWriteError, match="DeleteObject") as failure:
        compact(plan(s3), crashing, make_config(compact_concurrency=1).load, scratch=scratch, resolver=RESOLVER)
    assert failure.value.retryable
    # Inputs and outputs side by side: a reader may count a natural event twice, never miss one.
    after_crash = keys(s3)
    assert set(inputs) <= set(after_crash) and len(after_crash) == 4
    assert set(natural_keys(table_of(s3))) == expected

    summary = run(s3, tmp_path)  # the old output is an input now
    [outcome] = summary.outcomes
    assert outcome.status == "compacted" and len(outcome.task.inputs) == 4
    assert outcome.duplicates == 26 - 18 + 18  # the old output's rows are all duplicates of the inputs'
    [output] = keys(s3)
    assert output not in after_crash
    assert_each_natural_event_once(s3, expected)
    assert not run(s3, tmp_path).outcomes  # converged


def test_a_crash_between_two_uploads_leaves_an_incomplete_set_that_the_next_run_compacts(
    s3: Any, tmp_path: Path
) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    small_files = make_config(max_rows_per_file=7)
    crashing = make_client("s3", CONFIG.aws)
    uploads = {"n": 0}

    def second_upload_fails(**_: Any) -> None:
        uploads["n"] += 1
        if uploads["n"] == 2:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "PutObject")

    crashing.meta.events.register("before-call.s3.PutObject", second_upload_fails)
    scratch = tmp_path / "crash"
    scratch.mkdir()
    with pytest.raises(SinkWriteError, match="PutObject"):
        compact(plan(s3), crashing, small_files.load, scratch=scratch, resolver=RESOLVER)
    assert len(keys(s3)) == 4  # the three inputs and compacted-H-00000 alone
    assert [t.partition for t in plan(s3).tasks] == [HOUR]
    run(s3, tmp_path, small_files)
    assert_each_natural_event_once(s3, expected)
    assert not plan(s3).tasks


def _prepare(s3: Any, task: Any, scratch: Path) -> Prepared:
    scratch.mkdir()
    prepared = prepare_partition(s3, BUCKET, task, scratch, CONFIG.load, RESOLVER)
    assert isinstance(prepared, Prepared)
    return prepared


def test_two_compactors_with_one_listing_write_identical_objects_and_both_deletes_are_harmless(
    s3: Any, tmp_path: Path
) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    [task] = plan(s3).tasks
    first, second = _prepare(s3, task, tmp_path / "a"), _prepare(s3, task, tmp_path / "b")
    assert [p.read_bytes() for p in first.files] == [p.read_bytes() for p in second.files]  # deterministic

    outputs = publish_partition(s3, BUCKET, first)
    written = {key: body(s3, key) for key in outputs}
    assert publish_partition(s3, BUCKET, second) == outputs
    assert {key: body(s3, key) for key in outputs} == written  # overwritten with the same bytes
    assert retire_inputs(s3, BUCKET, task, outputs) == (3, ())
    assert retire_inputs(s3, BUCKET, task, outputs) == (3, ())  # already gone: counted as done, no error
    assert keys(s3) == list(outputs)
    assert_each_natural_event_once(s3, expected)


def test_a_compactor_that_lists_while_another_is_halfway_loses_nothing_and_the_next_run_converges(
    s3: Any, tmp_path: Path
) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    [task_a] = plan(s3).tasks
    a = _prepare(s3, task_a, tmp_path / "a")
    outputs_a = publish_partition(s3, BUCKET, a)  # A has uploaded, not deleted yet
    [task_b] = plan(s3).tasks  # B sees A's inputs and A's output
    assert len(task_b.inputs) == 4 and task_b.digest != task_a.digest
    b = _prepare(s3, task_b, tmp_path / "b")
    outputs_b = publish_partition(s3, BUCKET, b)
    assert retire_inputs(s3, BUCKET, task_b, outputs_b) == (4, ())  # B deletes A's inputs and A's output
    assert retire_inputs(s3, BUCKET, task_a, outputs_a) == (3, ())  # A's deletes find them gone
    assert keys(s3) == list(outputs_b)
    assert_each_natural_event_once(s3, expected)


def test_an_object_written_after_the_listing_survives_and_is_compacted_next_time(s3: Any, tmp_path: Path) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    listed = plan(s3)
    late = part_key("shardId-000000000003-900-999.parquet")
    put_events(s3, late, [event(3, 90_000), event(40, 1000)])  # a natural duplicate and a new event
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    [outcome] = compact(listed, s3, CONFIG.load, scratch=scratch, resolver=RESOLVER).outcomes
    assert outcome.status == "compacted" and late not in outcome.task.inputs
    assert sorted(keys(s3)) == sorted([*outcome.outputs, late])
    run(s3, tmp_path)
    assert late not in keys(s3)
    assert_each_natural_event_once(s3, expected | {(eid(40), "fp-40")})


def test_an_input_replaced_after_it_was_read_fails_its_conditional_delete_and_stays(s3: Any, tmp_path: Path) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    [task] = plan(s3).tasks
    prepared = _prepare(s3, task, tmp_path / "a")
    outputs = publish_partition(s3, BUCKET, prepared)
    replaced = task.inputs[0].key
    put_events(s3, replaced, [event(50, 5000)])  # the same key, new content (a new ETag)
    deleted, left = retire_inputs(s3, BUCKET, task, outputs)
    assert (deleted, left) == (2, (replaced,))
    assert replaced in keys(s3)
    run(s3, tmp_path)
    assert_each_natural_event_once(s3, expected | {(eid(50), "fp-50")})


def test_an_input_that_vanished_before_it_was_read_leaves_the_partition_for_the_next_run(
    s3: Any, tmp_path: Path
) -> None:
    three_objects_with_natural_duplicates(s3)
    listed = plan(s3)
    s3.delete_object(Bucket=BUCKET, Key=listed.tasks[0].inputs[1].key)  # e.g. the sink undid an abandoned attempt
    calls = Calls(s3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    [outcome] = compact(listed, s3, CONFIG.load, scratch=scratch, resolver=RESOLVER).outcomes
    assert outcome.status == "changed" and "next run" in outcome.message
    assert not {"PutObject", "DeleteObject"} & set(calls.operations)
    assert len(keys(s3)) == 2
    assert not list(scratch.iterdir())  # the scratch space is given back


def test_objects_that_are_not_canonical_parquet_are_left_alone_and_reported(s3: Any, tmp_path: Path) -> None:
    expected = three_objects_with_natural_duplicates(s3)
    garbage = part_key("garbage.parquet")
    s3.put_object(Bucket=BUCKET, Key=garbage, Body=b"not a parquet file at all")
    other = PartitionKey("2024-11-15", 20)
    foreign = part_key("foreign.parquet", other)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"event_id": ["x"], "value": [1]}), buffer)
    s3.put_object(Bucket=BUCKET, Key=foreign, Body=buffer.getvalue())
    put_events(s3, part_key("good.parquet", other), [event(1, 0, hour_ms=HOUR_MS + 3_600_000)])
    retyped = PartitionKey("2024-11-15", 21)
    table = pa.Table.from_batches([pa.RecordBatch.from_pylist([event(2, 0)], arrow_schema())])
    index = table.schema.get_field_index("collector_tstamp")
    buffer = io.BytesIO()
    pq.write_table(table.set_column(index, "collector_tstamp", pa.array(["2024-11-15"], pa.string())), buffer)
    s3.put_object(Bucket=BUCKET, Key=part_key("retyped.parquet", retyped), Body=buffer.getvalue())
    clean = PartitionKey("2024-11-15", 22)
    put_events(s3, part_key("a.parquet", clean), [event(5, 0, hour_ms=HOUR_MS + 3 * 3_600_000)])
    put_events(s3, part_key("b.parquet", clean), [event(5, 0, hour_ms=HOUR_MS + 3 * 3_600_000)])
    before = keys(s3)

    summary = run(s3, tmp_path)

    by_hour = {o.task.partition.hour: o for o in summary.outcomes}
    assert [by_hour[h].status for h in (19, 20, 21, 22)] == ["rejected", "rejected", "rejected", "compacted"]
    [problem] = by_hour[19].problems
    assert problem.startswith(f"s3://{BUCKET}/{garbage} is not a Parquet file")
    assert "other 3 object(s) are not compacted this run" in by_hour[19].message
    [problem] = by_hour[20].problems
    assert foreign in problem and "canonical columns" in problem
    [problem] = by_hour[21].problems
    assert "column collector_tstamp is string" in problem
    assert summary.failed == 3 and summary.metrics()["ObjectsRejected"] == 3
    # Nothing of the three partitions was deleted or written; the clean one was compacted.
    clean_prefix = f"{PREFIX}{clean.format()}/"
    assert [k for k in keys(s3) if not k.startswith(clean_prefix)] == [
        k for k in before if not k.startswith(clean_prefix)
    ]
    assert len(keys(s3, clean_prefix)) == 1
    assert set(natural_keys(table_of(s3, skip=(garbage,)))) == expected


def test_a_partition_larger_than_the_free_scratch_space_is_left_for_later(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_objects_with_natural_duplicates(s3)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))  # type: ignore[attr-defined]
    [outcome] = run(s3, tmp_path).outcomes
    assert outcome.status == "too_large" and "scratch space" in outcome.message
    assert len(keys(s3)) == 3


def test_redshift_loads_planner_recognises_the_compacted_keys(s3: Any, tmp_path: Path) -> None:
    three_objects_with_natural_duplicates(s3)
    listing = list_dataset(s3, ROOT)
    before = plan_backfill(ROOT, listing, {}, "redshift/manifests/")
    summary = run(s3, tmp_path)
    after = plan_backfill(ROOT, list_dataset(s3, ROOT), {}, "redshift/manifests/")
    [partition] = after.partitions
    assert after.ignored_keys == 0
    assert [f.key for f in partition.files] == list(summary.outcomes[0].outputs)
    # A new content hash: the next `redshift load` loads the partition again and the merge inserts nothing new.
    loaded = {before.partitions[0].prefix: frozenset({before.partitions[0].content_hash})}
    assert plan_backfill(ROOT, list_dataset(s3, ROOT), loaded, "redshift/manifests/").partitions[0].action == "load"


# ------------------------------------------------------------------------------ the CLI
def cli(argv: list[str], s3: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = build_parser().parse_args(["compact", *argv])
    code = compact_command.run(args, s3=s3, clock=lambda: NOW)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_dry_run_lists_the_plan_and_makes_no_write_call(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    three_objects_with_natural_duplicates(s3)
    calls = Calls(s3)
    code, out, _ = cli([f"s3://{BUCKET}/{PREFIX}", "--dry-run"], s3, capsys)
    assert code == 0
    assert set(calls.operations) == {"ListObjectsV2"}
    assert f"compact  s3://{BUCKET}/{PREFIX}{HOUR.format()}/  3 objects" in out
    assert "1 to compact; 0 not closed yet" in out
    code, out, _ = cli([f"s3://{BUCKET}/{PREFIX}", "--dry-run", "--json"], s3, capsys)
    document = json.loads(out)
    assert code == 0 and document["to_compact"][0]["objects"] == 3 and document["older_than_hours"] == 7
    assert set(calls.operations) == {"ListObjectsV2"} and len(keys(s3)) == 3


def test_the_cli_compacts_and_prints_the_summary(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    three_objects_with_natural_duplicates(s3)
    code, out, err = cli([f"s3://{BUCKET}/{PREFIX}"], s3, capsys)
    assert code == 0, err
    assert f"compacted  s3://{BUCKET}/{PREFIX}{HOUR.format()}/  objects 3 -> 1  rows 26 -> 18  duplicates 8" in out
    assert "partitions compacted 1, objects 3 -> 1, rows 26 -> 18, duplicates dropped 8, bytes" in out
    code, out, _ = cli([f"s3://{BUCKET}/{PREFIX}", "--json"], s3, capsys)
    document = json.loads(out)
    assert code == 0 and document["metrics"]["PartitionsCompacted"] == 0 and document["compacted_partitions"] == 1


def test_the_cli_exit_codes(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    three_objects_with_natural_duplicates(s3)
    # --older-than-hours: the partition ended 16 h before NOW.
    code, out, _ = cli([f"s3://{BUCKET}/{PREFIX}", "--older-than-hours", "17", "--dry-run"], s3, capsys)
    assert code == 0 and "0 to compact; 1 not closed yet (hour ended less than 17 h ago)" in out
    s3.put_object(Bucket=BUCKET, Key=part_key("garbage.parquet"), Body=b"garbage")
    code, out, err = cli([f"s3://{BUCKET}/{PREFIX}"], s3, capsys)
    assert code == 1
    assert "LEFT" in out and "garbage.parquet is not a Parquet file" in out and "left alone" in err
    assert cli(["https://example.com/x"], s3, capsys)[0] == 2
    code, _, err = cli([f"s3://{BUCKET}/{PREFIX}", "--since", "2024-11-16", "--until", "2024-11-15"], s3, capsys)
    assert code == 2 and "--since" in err
    denied = fail_first(make_client("s3", CONFIG.aws), "ListObjectsV2")
    code, _, err = cli([f"s3://{BUCKET}/{PREFIX}"], denied, capsys)
    assert code == 1 and "running it again may succeed" in err
    with pytest.raises(SystemExit) as usage:
        main(["compact", f"s3://{BUCKET}/{PREFIX}", "--since", "yesterday"])
    assert usage.value.code == 2


def test_compact_is_in_the_cli_and_documents_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        main(["compact", "--help"])
    assert shown.value.code == 0
    out = capsys.readouterr().out
    for flag in ("S3_URL", "--older-than-hours", "--since", "--until", "--dry-run", "--json", "--config"):
        assert flag in out
    assert isinstance(build_parser().parse_args(["compact", "s3://b-1/events/"]), argparse.Namespace)


# ------------------------------------------------------------------------------ the scheduled handler
def test_the_handler_stops_between_partitions_near_its_deadline(s3: Any, tmp_path: Path) -> None:
    for hour in (19, 20, 21):
        partition = PartitionKey("2024-11-15", hour)
        start = HOUR_MS + (hour - 19) * 3_600_000
        put_events(s3, part_key("a.parquet", partition), [event(hour, 0, hour_ms=start)])
        put_events(s3, part_key("b.parquet", partition), [event(hour, 0, hour_ms=start)])
    clock = FakeClock()
    client = make_client("s3", CONFIG.aws)
    # Each partition takes 40 s (one upload each); the invocation has 130 s.
    client.meta.events.register("before-call.s3.PutObject", lambda **_: clock.advance(40))
    context = FakeLambdaContext(remaining_ms=130_000, clock=clock)
    deps = dataclasses.replace(
        compact_handler.build_deps(CONFIG, s3=client), clock=lambda: NOW, scratch=tmp_path, resolver=RESOLVER
    )
    try:
        result = compact_handler.handle({}, deps, context)
        # 130 s: the first (60 s margin); 90 s: the second (twice the longest, 80 s); 50 s: stop.
        assert result["metrics"]["PartitionsCompacted"] == 2 and result["metrics"]["PartitionsLeft"] == 1
        assert result["not_started"] == ["event_date=2024-11-15/event_hour=21"]
        assert compact_handler.metrics.provider.metric_set["PartitionsLeft"]["Value"] == [1.0]
        assert len(keys(s3, part_key("", PartitionKey("2024-11-15", 21)))) == 2
        # The next run goes on from there.
        result = compact_handler.handle({}, deps, FakeLambdaContext(remaining_ms=900_000, clock=clock))
        assert result["metrics"]["PartitionsCompacted"] == 1 and result["metrics"]["PartitionsLeft"] == 0
    finally:
        compact_handler.metrics.clear_metrics()
    assert not list(tmp_path.iterdir())  # its scratch folder is removed


def test_the_compactor_is_a_scheduled_function_of_the_topology() -> None:
    compactor = scheduled_functions(CONFIG)["compactor"]
    assert compactor.handler == "load.compact_handler.handler" and callable(compact_handler.handler)
    assert compactor.schedule == "rate(1 hour)" and compactor.reserved_concurrency == 1
    assert compactor.timeout_s <= 900
    assert compactor.lists_bucket == BUCKET and compactor.rewrites == f"{BUCKET}/{PREFIX}"


def test_the_handler_module_imports_without_pyarrow_or_boto3() -> None:
    code = (
        "import sys, load.compact_handler\n"
        "print(','.join(sorted(m for m in ('pyarrow', 'boto3') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_an_outcome_reports_nothing_moved_unless_compacted() -> None:
    [task] = plan_compaction(ROOT, [obj("a.parquet"), obj("b.parquet")], now=NOW, after_hours=7).tasks
    outcome = PartitionOutcome(task, "rejected", problems=("x",))
    assert (outcome.objects_in, outcome.to_json()["bytes_in"]) == (0, 0)


# ------------------------------------------------------------------------------ with the sink
def test_the_sinks_default_leaves_natural_duplicates_across_batches_to_compaction(aws: None, tmp_path: Path) -> None:
    """The sink's default (stream.cross_batch_dedupe = false) writes the same events sent again in
    other chunks (a tracker's retries) into other objects; compaction leaves each natural event once."""
    from pipeline.records import event_chunk_id
    from pipeline.testing.lambda_events import KinesisRecord
    from tests.functional.aws_chain import Chain, chain_config
    from tests.functional.load.test_sink_handler import chunks, rows, sink

    config = chain_config()
    assert config.stream.cross_batch_dedupe is False
    chain = Chain.create(config)
    first = chunks(10)
    again = [KinesisRecord(r.data, event_chunk_id("d" * 32, i), str(7000 + i), r.shard_id) for i, r in enumerate(first)]
    sink(chain, first)
    sink(chain, again)
    written = [(r["event_id"], r["event_fingerprint"]) for r in rows(chain)]
    assert len(written) == 20 and len(set(written)) == 10  # each event twice, in two objects per hour
    resources = config.resources
    root = S3Location(resources.output_bucket, resources.events_prefix)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    listing = list_dataset(chain.s3, root)
    summary = compact(
        plan_compaction(root, listing, now=datetime(2030, 1, 1, tzinfo=UTC), after_hours=7),
        chain.s3,
        config.load,
        scratch=scratch,
        resolver=RESOLVER,
    )
    assert summary.metrics()["PartitionsCompacted"] == 2 and summary.metrics()["DuplicatesDropped"] == 10
    compacted = [(r["event_id"], r["event_fingerprint"]) for r in rows(chain)]
    assert sorted(compacted) == sorted(set(written))


def test_an_object_whose_data_pages_are_corrupt_is_left_alone_with_its_partition(s3: Any, tmp_path: Path) -> None:
    three_objects_with_natural_duplicates(s3)
    data = bytearray(encode_parquet([event(n, n) for n in range(50)], CONFIG.load, RESOLVER))  # type: ignore[arg-type]
    page = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(0).column(5).data_page_offset
    for offset in range(page + 20, page + 60):  # a page header; the footer stays intact
        data[offset] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=part_key("corrupt.parquet"), Body=bytes(data))
    before = keys(s3)
    [outcome] = run(s3, tmp_path).outcomes
    assert outcome.status == "rejected" and keys(s3) == before
    [problem] = outcome.problems
    assert problem.startswith("the merge failed")  # its footer and layout are fine: its pages are not
