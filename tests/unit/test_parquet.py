"""Load core: Arrow schema, partitions, natural-duplicate merge, deterministic files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from load.dataset import PartitionStager, finalize_partition
from load.parquet import PartitionKey, arrow_schema, encode_parquet, events_to_table, merge_and_dedupe
from pipeline.config import load_config
from pipeline.schema import FIELD_NAMES

LOAD = load_config(environ={}).load


def event(event_id: str, fingerprint: str, tstamp: int, **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "event_fingerprint": fingerprint, "collector_tstamp": tstamp, **extra}


def test_arrow_schema_is_derived_from_the_canonical_fields() -> None:
    schema = arrow_schema()
    assert schema.names == list(FIELD_NAMES)
    assert schema.field("collector_tstamp").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("domain_sessionidx").type == pa.int32()
    assert schema.field("br_cookies").type == pa.bool_()
    assert schema.field("se_value").type == pa.float64()


def test_partition_key_round_trips_and_uses_collector_hour() -> None:
    key = PartitionKey.of(1731699951000)  # 2024-11-15 19:45:51 UTC
    assert key == PartitionKey("2024-11-15", 19)
    assert key.format() == "event_date=2024-11-15/event_hour=19"
    assert PartitionKey.parse(key.format()) == key
    with pytest.raises(ValueError):
        PartitionKey.parse("date=2024/hour=1")


def test_parquet_bytes_decode_to_the_same_values() -> None:
    data = encode_parquet([event("a", "f", 1731699951183, page_title="Café", br_cookies=True)], LOAD)
    table = pq.read_table(pa.BufferReader(data))
    row = table.to_pylist()[0]
    assert row["page_title"] == "Café" and row["br_cookies"] is True
    assert row["collector_tstamp"].isoformat() == "2024-11-15T19:45:51.183000+00:00"


def test_natural_duplicates_are_kept_once_and_synthetic_duplicates_are_all_kept() -> None:
    first = events_to_table([event("a", "f1", 2000), event("a", "f1", 1000), event("b", "f2", 500)])
    second = events_to_table([event("a", "f9", 3000), event("b", "f2", 400)])
    result = merge_and_dedupe([first, second])
    rows = result.table.to_pylist()
    assert [(r["event_id"], r["event_fingerprint"]) for r in rows] == [("b", "f2"), ("a", "f1"), ("a", "f9")]
    # among natural duplicates the earliest collector_tstamp wins
    assert [r["collector_tstamp"].timestamp() for r in rows] == [0.4, 1.0, 3.0]
    assert result.duplicates_dropped == 2


def test_merge_result_does_not_depend_on_input_order() -> None:
    tables = [events_to_table([event(str(i % 7), "f", 1000 + i)]) for i in range(20)]
    forward = merge_and_dedupe(tables).table
    backward = merge_and_dedupe(list(reversed(tables))).table
    assert forward.equals(backward)


def test_this_runs_rows_replace_existing_rows_of_the_same_event() -> None:
    existing = events_to_table([event("a", "f", 1000, app_id="old"), event("z", "f", 1000, app_id="kept")])
    new = events_to_table([event("a", "f", 1000, app_id="new")])
    result = merge_and_dedupe([new], [existing])
    assert {r["event_id"]: r["app_id"] for r in result.table.to_pylist()} == {"a": "new", "z": "kept"}
    assert result.replaced_rows == 1 and result.duplicates_dropped == 0


def test_stage_then_finalize_writes_deterministic_files_and_rerun_rewrites(tmp_path: Path) -> None:
    def stage_and_finalize() -> bytes:
        stager = PartitionStager(tmp_path / "_staging", "source-1", batch_rows=2)
        for i in range(5):
            stager.add(event(f"id{i}", "f", 1731699951000 + i))
        stager.add(event("id0", "f", 1731699951000))  # natural duplicate
        stager.add(event("late", "f", 1731600000000))  # another hour
        touched = stager.close()
        assert [k.format() for k in touched] == [
            "event_date=2024-11-14/event_hour=16",
            "event_date=2024-11-15/event_hour=19",
        ]
        for key in touched:
            fragments = sorted((tmp_path / "_staging" / key.format()).glob("*.arrow"))
            finalize_partition(tmp_path, key, fragments, LOAD)
        part = tmp_path / "events" / "event_date=2024-11-15" / "event_hour=19" / "part-00000.parquet"
        return part.read_bytes()

    once = stage_and_finalize()
    twice = stage_and_finalize()
    assert once == twice
    dataset = ds.dataset(tmp_path / "events", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 6
    assert sorted(set(table.column("event_hour").to_pylist())) == [16, 19]
    files = sorted(p.name for p in (tmp_path / "events").rglob("*.parquet"))
    assert files == ["part-00000.parquet", "part-00000.parquet"]
