"""The Redshift load plans on a real SQL engine (DuckDB): staging, dedupe, merge, ledger.

Both paths run the SQL text that Redshift would get (see tests/redshift_support.py for the
few engine adaptations): the stream path from the Firehose transformation Lambda's JSON
lines, the backfill path from the Parquet dataset that ``clickstream-etl backfill`` writes,
uploaded to S3 (moto).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow.dataset as ds
import pytest
from moto import mock_aws

from load.firehose import transform_records
from load.parquet import encode_parquet
from load.redshift.ddl import ddl_statements
from load.redshift.firehose_destination import firehose_copy_command
from load.redshift.identifiers import RedshiftTables
from load.redshift.stream_load import run_loader
from pipeline.app.cli import build_parser, main
from pipeline.app.commands import redshift as redshift_cli
from pipeline.config import PipelineConfig
from pipeline.iglu import Resolver, bundled_registry
from pipeline.records import encode_event
from pipeline.schema import FIELDS, to_json_record
from tests.redshift_support import DuckDBExecutor, synthetic_event_id

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "samples" / "cloudfront" / "E2EXAMPLE1ABCD.2024-11-15-09.90344bfc.gz"
NOW = datetime(2024, 11, 15, 12, 0, tzinfo=UTC)
BUCKET = "clickstream-test-output"
TSTAMPS = [f.name for f in FIELDS if f.type == "tstamp"]
RESOLVER = Resolver([bundled_registry()])
CANONICAL = frozenset(f.name for f in FIELDS)


# --------------------------------------------------------------------------- helpers
def engine(tables: RedshiftTables, s3: Any = None) -> DuckDBExecutor:
    """An in-memory DuckDB with the load path's tables (test_entity_tables.py uses it too)."""
    executor = DuckDBExecutor(s3)
    for statement in ddl_statements(tables):
        executor.execute(statement)
    return executor


def firehose(executor: DuckDBExecutor, tables: RedshiftTables, events: list[dict[str, Any]]) -> None:
    """What Firehose does: the transformation Lambda's JSON lines, COPYed into staging."""
    records = [
        {"recordId": str(n), "data": base64.b64encode(encode_event(e)).decode("ascii")} for n, e in enumerate(events)
    ]
    out, counts = transform_records(records)
    assert counts.failed == 0, "the transformation Lambda refused an event"
    lines = [line for item in out for line in base64.b64decode(item["data"]).decode("utf-8").splitlines()]
    executor.copy_json_lines(tables, firehose_copy_command(tables), lines)


def staged_directly(executor: DuckDBExecutor, tables: RedshiftTables, events: list[dict[str, Any]]) -> None:
    """Rows in the staging table that the transformation Lambda would refuse (another producer
    wrote them): the merge must still not truncate them."""
    lines = [json.dumps(to_json_record(e), ensure_ascii=False) for e in events]
    executor.copy_json_lines(tables, firehose_copy_command(tables), lines)


def table_rows(executor: DuckDBExecutor) -> list[tuple[Any, ...]]:
    """atomic.events without load_tstamp, sorted: the table's content."""
    return executor.query("SELECT * EXCLUDE (load_tstamp) FROM atomic.events ORDER BY event_id, event_fingerprint")


def keys(executor: DuckDBExecutor, table: str = "atomic.events") -> list[tuple[str, str]]:
    return executor.query(f"SELECT event_id, event_fingerprint FROM {table} ORDER BY 1, 2")


def with_changes(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copy = dict(event)
    copy.update(changes)
    return copy


def natural_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["event_id"], e["event_fingerprint"]) for e in events}


# --------------------------------------------------------------------------- stream path
def test_stream_merge_loads_each_natural_event_once_and_a_replay_changes_nothing(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]]
) -> None:
    """Reliability catalogue F19: natural duplicates go in once, and loading a batch again changes nothing."""
    # GIVEN a Firehose batch with every sample event, tracker retries among them, plus
    # redelivered copies (same id and fingerprint, collected later)
    retries = [with_changes(e, collector_tstamp=e["collector_tstamp"] + 1500) for e in sample_events[:10]]
    batch = sample_events + retries
    expected = natural_keys(sample_events)
    assert len(expected) < len(sample_events)  # the sample itself holds natural duplicates
    executor = engine(tables)

    # WHEN Firehose COPYs it and the loader runs
    firehose(executor, tables, batch)
    first = run_loader(config, executor, RESOLVER, NOW)

    # THEN every natural event is in the table once, the earliest copy of each
    assert first.merged and first.stats.staged == len(batch)
    assert first.stats.inserted == len(expected) == first.stats.distinct_events
    assert first.stats.natural_duplicates == len(batch) - len(expected)
    assert set(keys(executor)) == expected and len(keys(executor)) == len(expected)
    earliest = min(e["collector_tstamp"] for e in batch if e["event_id"] == retries[0]["event_id"])
    stored = executor.query(
        "SELECT epoch_ms(collector_tstamp) FROM atomic.events WHERE event_id = ?", [retries[0]["event_id"]]
    )
    assert stored == [(earliest,)]
    assert executor.query("SELECT COUNT(*) FROM atomic.events_staging") == [(0,)]
    content = table_rows(executor)

    # WHEN Firehose delivers the same batch again (at-least-once) and the loader runs twice
    firehose(executor, tables, batch)
    second = run_loader(config, executor, RESOLVER, NOW)
    third = run_loader(config, executor, RESOLVER, NOW)

    # THEN nothing changes
    assert second.stats.inserted == 0 and second.stats.already_loaded == len(expected)
    assert not third.merged and third.stats.staged == 0
    assert table_rows(executor) == content


@pytest.mark.slow
def test_synthetic_duplicates_are_kept_under_deterministic_ids(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]]
) -> None:
    """Reliability catalogue F19: synthetic duplicates (same id, other payload) are all kept, under stable ids."""
    a, b, c = sample_events[0], sample_events[1], sample_events[2]
    executor = engine(tables)
    # GIVEN a first batch with a, b and c, and in the same batch a different event that
    # reuses c's id but was collected a second earlier
    c_rival = with_changes(
        c,
        event_fingerprint="rival-fingerprint",
        page_title="Another page",
        collector_tstamp=c["collector_tstamp"] - 1000,
    )
    firehose(executor, tables, [a, b, c, c_rival])
    first = run_loader(config, executor, RESOLVER, NOW)
    # THEN both are kept: the earliest keeps the id, the other gets uuid5(id, fingerprint)
    assert first.stats.inserted == 4 and first.stats.synthetic_duplicates == 1
    renamed_c = synthetic_event_id(c["event_id"], c["event_fingerprint"])
    assert set(keys(executor)) == {
        (a["event_id"], a["event_fingerprint"]),
        (b["event_id"], b["event_fingerprint"]),
        (c["event_id"], "rival-fingerprint"),
        (renamed_c, c["event_fingerprint"]),
    }

    # GIVEN a later batch: a different event reusing a's id, and b again
    a_rival = with_changes(a, event_fingerprint="other-payload", se_label="different")
    firehose(executor, tables, [a_rival, b])
    second = run_loader(config, executor, RESOLVER, NOW)
    # THEN the table's a keeps its id, the newcomer is stored under the SQL-computed uuid5
    renamed_a = synthetic_event_id(a["event_id"], "other-payload")
    assert second.stats.inserted == 1 and second.stats.synthetic_duplicates == 1
    assert executor.query("SELECT se_label FROM atomic.events WHERE event_id = ?", [renamed_a]) == [("different",)]
    assert executor.query("SELECT COUNT(*) FROM atomic.events WHERE event_id = ?", [a["event_id"]]) == [(1,)]

    # WHEN every version is delivered again, in any order
    content = table_rows(executor)
    firehose(executor, tables, [a_rival, c, b, a, c_rival])
    third = run_loader(config, executor, RESOLVER, NOW)
    # THEN the renamed ones map to the same ids and nothing is added
    assert third.stats.inserted == 0 and table_rows(executor) == content
    assert executor.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM atomic.events") == [(5, 5)]


def test_over_width_multibyte_strings_are_rejected_by_bytes_not_characters(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]]
) -> None:
    """Reliability catalogue F18: a row Redshift would refuse (width in bytes, CHAR) is rejected, not truncated."""
    base = sample_events[3]
    ids = iter(f"00000000-0000-4000-8000-00000000000{n}" for n in range(10))
    # 666 three-byte characters + 2 ASCII = 2000 bytes: fits VARCHAR(2000)
    fits = with_changes(base, event_id=next(ids), page_title="€" * 666 + "ab")
    # 667 three-byte characters = 2001 bytes (only 667 characters): does not fit
    over = with_changes(base, event_id=next(ids), page_title="€" * 667)
    emoji = with_changes(base, event_id=next(ids), refr_medium="😀" * 7)  # 28 bytes > VARCHAR(25)
    char_col = with_changes(base, event_id=next(ids), geo_country="É")  # 2 bytes, but CHAR takes ASCII only
    executor = engine(tables)

    staged_directly(executor, tables, [fits, over, emoji, char_col])
    first = run_loader(config, executor, RESOLVER, NOW)

    # THEN the fitting row is loaded intact, the others are rejected with their reason, not truncated
    assert (first.stats.inserted, first.stats.rejected) == (1, 3)
    stored = executor.query("SELECT page_title, strlen(page_title) FROM atomic.events")
    assert stored == [("€" * 666 + "ab", 2000)]
    rejected = dict(executor.query("SELECT event_id, reject_reason FROM atomic.events_rejected"))
    assert rejected == {
        over["event_id"]: "page_title: over 2000 bytes",
        emoji["event_id"]: "refr_medium: over 25 bytes",
        char_col["event_id"]: "geo_country: not ASCII (CHAR column)",
    }
    assert executor.query("SELECT page_title FROM atomic.events_rejected WHERE event_id = ?", [over["event_id"]]) == [
        ("€" * 667,)
    ]

    # WHEN the same rows arrive again THEN neither table grows
    staged_directly(executor, tables, [fits, over, emoji, char_col])
    second = run_loader(config, executor, RESOLVER, NOW)
    assert (second.stats.inserted, second.stats.rejected) == (0, 3)
    assert executor.query("SELECT COUNT(*) FROM atomic.events_rejected") == [(3,)]
    assert executor.query("SELECT COUNT(*) FROM atomic.events") == [(1,)]


def test_late_events_are_merged_when_they_arrive(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]]
) -> None:
    executor = engine(tables)
    firehose(executor, tables, sample_events[:20])
    run_loader(config, executor, RESOLVER, NOW)
    # GIVEN events collected three days earlier, arriving now with copies of loaded ones
    three_days = 3 * 24 * 3600 * 1000
    late = [
        with_changes(
            e,
            event_id=f"00000000-0000-4000-9000-{n:012d}",
            event_fingerprint=f"late-{n}",
            collector_tstamp=e["collector_tstamp"] - three_days,
        )
        for n, e in enumerate(sample_events[20:25])
    ]
    firehose(executor, tables, late + sample_events[:20])
    result = run_loader(config, executor, RESOLVER, NOW)
    assert result.stats.inserted == 5
    assert result.stats.min_collector_tstamp is not None and result.stats.min_collector_tstamp.startswith("2024-11-12")
    assert set(keys(executor)) == natural_keys(sample_events[:20]) | natural_keys(late)


def test_the_loader_reports_recent_firehose_copy_errors(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]]
) -> None:
    """Reliability catalogue F18: Firehose COPY errors (sys_load_error_detail) are reported and counted."""
    executor = engine(tables)
    firehose_file = f"s3://{config.resources.output_bucket}/{config.resources.firehose_prefix}2024/11/15/11/x.gz"
    for minutes_ago, file_name in ((2, firehose_file), (30, firehose_file), (1, "s3://elsewhere/other.gz")):
        executor.query(
            "INSERT INTO sys_load_error_detail (query_id, start_time, file_name, line_number, column_name, "
            "error_code, error_message) VALUES (7, TIMESTAMP '2024-11-15 12:00:00' - to_minutes(?), ?, 3, "
            "'txn_id', 1207, 'Invalid digit')",
            [minutes_ago, file_name],
        )
    # WHEN the loader runs with nothing staged
    result = run_loader(config, executor, RESOLVER, NOW)
    # THEN it merges nothing but reports the Firehose COPY error of its window only
    assert not result.merged
    assert [(e.file_name, e.line_number, e.error_code) for e in result.load_errors] == [(firehose_file, 3, 1207)]
    assert result.metrics()["LoadErrors"] == 1
    # (the schema is current, so preparing reads the columns only; the queue is empty, so the drain stops at its census)
    assert [s.label for s in executor.executed if not s.label.startswith(("create", "fill"))] == [
        "live_columns",
        "staged_count",
        "entity_census",
        "entity_junk",
        "load_errors",
    ]


# --------------------------------------------------------------------------- backfill path
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("dataset")
    assert main(["backfill", str(ROOT / "samples" / "cloudfront"), "--output", str(dest), "--workers", "1"]) == 0
    return dest


@pytest.fixture
def s3(dataset: Path) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for path in sorted((dataset / "events").rglob("*.parquet")):
            client.upload_file(str(path), BUCKET, f"events/{path.relative_to(dataset / 'events').as_posix()}")
        yield client


def dataset_events(dataset: Path) -> list[dict[str, Any]]:
    rows = ds.dataset(dataset / "events", partitioning="hive").to_table().drop_columns(["event_date", "event_hour"])
    events = []
    for row in rows.to_pylist():
        # Back to the canonical events stream 2 carries: epoch-ms timestamps, money as doubles.
        # (only the canonical columns: the typed entity columns are derived from the JSON ones)
        event = {
            k: (float(v) if isinstance(v, Decimal) else v) for k, v in row.items() if v is not None and k in CANONICAL
        }
        for name in TSTAMPS:
            if name in event:
                event[name] = int(event[name].timestamp() * 1000)
        events.append(event)
    return events


def redshift_load(executor: DuckDBExecutor, s3: Any, *args: str) -> tuple[int, str]:
    parsed = build_parser().parse_args(["redshift", "load", f"s3://{BUCKET}/events/", *args])
    out = io.StringIO()
    code = redshift_cli.run(parsed, s3=s3, executor=executor, out=out)
    return code, out.getvalue()


@pytest.mark.slow
def test_backfill_load_is_idempotent_and_agrees_with_the_stream_path(
    config: PipelineConfig, tables: RedshiftTables, dataset: Path, s3: Any
) -> None:
    """Reliability catalogue F20: loading an already-loaded window again skips it and adds no row."""
    executor = engine(tables, s3)
    events = dataset_events(dataset)
    partitions = {p.parent for p in (dataset / "events").rglob("*.parquet")}

    # WHEN the dataset is loaded
    code, output = redshift_load(executor, s3, "--json")
    summary = json.loads(output)
    # THEN every row is in the table once, every partition is in the ledger with its counts
    assert code == 0, output
    assert summary["metrics"]["PartitionsLoaded"] == len(partitions) == 3
    assert set(keys(executor)) == natural_keys(events) and len(keys(executor)) == len(events)
    ledger = executor.query(
        "SELECT prefix, files, rows_staged, rows_inserted, min_collector_tstamp, "
        "max_collector_tstamp FROM atomic.load_ledger ORDER BY prefix"
    )
    assert [row[0] for row in ledger] == sorted(
        f"s3://{BUCKET}/events/{p.relative_to(dataset / 'events').as_posix()}/" for p in partitions
    )
    assert sum(row[3] for row in ledger) == len(events) and all(row[1] == 1 for row in ledger)
    for prefix, _, _, _, low, high in ledger:
        hour = prefix.split("event_hour=")[1][:2]
        assert low.hour == high.hour == int(hour)
    manifests = s3.list_objects_v2(Bucket=BUCKET, Prefix=config.redshift.manifest_prefix)["KeyCount"]
    assert manifests == 3
    content = table_rows(executor)

    # WHEN it is loaded again THEN every partition is skipped and nothing changes
    code, output = redshift_load(executor, s3)
    assert code == 0 and [line.split()[0] for line in output.splitlines()[:-1]] == ["skipped"] * 3, output
    assert table_rows(executor) == content and len(executor.query("SELECT * FROM atomic.load_ledger")) == 3

    # WHEN the same events also come through the stream path THEN nothing is added either
    firehose(executor, tables, events)
    result = run_loader(config, executor, RESOLVER, NOW)
    assert result.stats.inserted == 0 and result.stats.already_loaded == len(events)
    assert table_rows(executor) == content


@pytest.mark.slow
def test_a_rewritten_partition_is_reloaded_and_only_its_late_events_inserted(
    tables: RedshiftTables, dataset: Path, s3: Any, config: PipelineConfig
) -> None:
    executor = engine(tables, s3)
    assert redshift_load(executor, s3)[0] == 0
    before = len(keys(executor))
    # GIVEN a backfill rerun rewrote the 09 partition with three late events added
    key = "events/event_date=2024-11-15/event_hour=09/part-00000.parquet"
    local = dataset / key
    rows = dataset_events_of(local)
    late = [
        with_changes(rows[n], event_id=f"00000000-0000-4000-a000-{n:012d}", event_fingerprint=f"late-{n}")
        for n in range(3)
    ]
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode_parquet(rows + late, config.load))
    # WHEN the load runs again
    code, output = redshift_load(executor, s3)
    # THEN only that partition is loaded, and only the late events are inserted
    assert code == 0, output
    statuses = [line.split()[0] for line in output.splitlines() if line.startswith(("loaded", "skipped", "FAILED"))]
    assert sorted(statuses) == ["loaded", "skipped", "skipped"], output
    assert "inserted 3 " in output
    assert len(keys(executor)) == before + 3
    assert len(executor.query("SELECT * FROM atomic.load_ledger WHERE prefix LIKE '%event_hour=09/'")) == 2


def dataset_events_of(path: Path) -> list[dict[str, Any]]:
    table = ds.dataset(path, format="parquet").to_table()
    events = []
    for row in table.to_pylist():
        # Back to the canonical events stream 2 carries: epoch-ms timestamps, money as doubles.
        # (only the canonical columns: the typed entity columns are derived from the JSON ones)
        event = {
            k: (float(v) if isinstance(v, Decimal) else v) for k, v in row.items() if v is not None and k in CANONICAL
        }
        for name in TSTAMPS:
            if name in event:
                event[name] = int(event[name].timestamp() * 1000)
        events.append(event)
    return events


@pytest.mark.slow
def test_a_file_copy_cannot_read_fails_its_partition_only_and_exits_1(
    tables: RedshiftTables, dataset: Path, s3: Any
) -> None:
    """Reliability catalogue F20: a failed partition stays out of the ledger, so the next run retries only it."""
    executor = engine(tables, s3)
    bad = "events/event_date=2024-11-16/event_hour=00/part-00000.parquet"
    s3.put_object(Bucket=BUCKET, Key=bad, Body=b"this is not parquet")
    code, output = redshift_load(executor, s3, "--json")
    summary = json.loads(output)
    assert code == 1
    failed = [p for p in summary["partitions"] if p["status"] == "load_error"]
    assert [p["prefix"] for p in failed] == [f"s3://{BUCKET}/events/event_date=2024-11-16/event_hour=00/"]
    # its footer is read before any COPY: the message names the file and what is wrong with it
    assert failed[0]["message"] == f"s3://{BUCKET}/{bad} does not end like a Parquet file"
    assert summary["metrics"]["PartitionsLoaded"] == 3 and summary["metrics"]["LoadErrors"] == 1
    # the failed partition left nothing behind and is not in the ledger: the next run retries it
    assert executor.query("SELECT COUNT(*) FROM atomic.events_backfill_staging") == [(0,)]
    assert executor.query("SELECT COUNT(*) FROM atomic.load_ledger WHERE prefix LIKE '%2024-11-16%'") == [(0,)]
    code, output = redshift_load(executor, s3)
    assert code == 1 and sorted(line.split()[0] for line in output.splitlines()[:-1] if not line.startswith(" ")) == [
        "FAILED",
        "skipped",
        "skipped",
        "skipped",
    ]


def test_dry_run_prints_the_plan_and_writes_nothing(tables: RedshiftTables, s3: Any, config: PipelineConfig) -> None:
    """Reliability catalogue F20: a dry run lists the plan and writes nothing."""
    executor = engine(tables, s3)
    code, output = redshift_load(executor, s3, "--dry-run", "--since", "2024-11-15", "--until", "2024-11-15")
    assert code == 0
    assert output.count("load  s3://") == 3 and "3 to load, 0 to skip" in output
    assert "copy" in output and "COPY" in output and "insert" in output
    assert [s.label for s in executor.executed if not s.label.startswith(("create", "fill"))] == ["ledger_lookup"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=config.redshift.manifest_prefix)["KeyCount"] == 0
    code, output = redshift_load(executor, s3, "--dry-run", "--since", "2024-11-16")
    assert code == 0 and "0 to load" in output


def test_since_after_until_is_a_usage_error(tables: RedshiftTables, s3: Any) -> None:
    executor = engine(tables, s3)
    assert redshift_load(executor, s3, "--since", "2024-11-16", "--until", "2024-11-15")[0] == 2
