"""The local dataset writer: staging, bounded-memory finalize, deterministic files."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from load.dataset import (
    CHUNK_ROWS,
    EVENTS_DIR,
    STAGING_DIR,
    PartitionStager,
    _bucket_ranges,
    _prefix_buckets,
    finalize_partition,
)
from load.parquet import events_to_table
from load.partitions import PartitionKey
from pipeline.config import load_config
from tests.dedupe_oracle import merge_and_dedupe

LOAD = load_config(environ={}).load
HOUR = PartitionKey("2024-11-15", 19)
HOUR_MS = 1731697200000  # 2024-11-15T19:00:00Z


def event(event_id: str, fingerprint: str, offset_ms: int, **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "event_fingerprint": fingerprint, "collector_tstamp": HOUR_MS + offset_ms, **extra}


def event_at(event_id: str, fingerprint: str, tstamp: int, **extra: object) -> dict[str, object]:
    """An event at an absolute collector_tstamp (epoch ms)."""
    return {"event_id": event_id, "event_fingerprint": fingerprint, "collector_tstamp": tstamp, **extra}


def eid(number: int) -> str:
    """Event ids spread over all hex prefixes, like real UUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-{number}"))


def stage(dest: Path, fragment: str, events: list[dict[str, object]], batch_rows: int = 1024) -> None:
    stager = PartitionStager(dest / STAGING_DIR, fragment, batch_rows=batch_rows)
    for item in events:
        stager.add(item)  # type: ignore[arg-type]
    stager.close()


def fragments(dest: Path, partition: PartitionKey = HOUR) -> list[Path]:
    return sorted((dest / STAGING_DIR / partition.format()).glob("*.arrow"))


def clear_staging(dest: Path) -> None:
    for path in (dest / STAGING_DIR).rglob("*.arrow"):
        path.unlink()


def folder(dest: Path, partition: PartitionKey = HOUR) -> Path:
    return dest / EVENTS_DIR / partition.format()


def parts(dest: Path, partition: PartitionKey = HOUR) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder(dest, partition).iterdir())}


def rows(dest: Path) -> list[dict[str, object]]:
    return pq.read_table(folder(dest)).to_pylist()


# A previous run left these rows; this run brings two fragments.
EXISTING = [
    *(event(eid(i), "f", 10 * i, app_id="old") for i in range(40)),
    event(eid(100), "f", 5, app_id="old-only"),
]
FRAGMENT_A = [
    *(event(eid(i), "f", 10 * i + 1, app_id="new-a") for i in range(0, 40, 2)),  # replace even existing rows
    event(eid(200), "f", 500, app_id="retry-late"),
    event(eid(200), "f", 400, app_id="retry-early"),  # natural duplicate: earliest collector time wins
    event(eid(300), "f1", 10, app_id="synthetic"),
    event(eid(300), "f2", 10, app_id="synthetic"),  # synthetic duplicate: kept
]
FRAGMENT_B = [
    event(eid(200), "f", 400, app_id="retry-b"),  # same time as in A: the first fragment wins
    *(event(eid(i), "f", 2000 + i, app_id=f"new-b-{i}") for i in range(1000, 1030)),
]


def prepare(dest: Path) -> None:
    stage(dest, "previous", EXISTING)
    finalize_partition(dest, HOUR, fragments(dest), LOAD)
    clear_staging(dest)
    stage(dest, "a-source", FRAGMENT_A, batch_rows=3)
    stage(dest, "b-source", FRAGMENT_B, batch_rows=7)


@pytest.mark.parametrize("bucket_rows", [2, 16, 10**9])
def test_dedupe_across_buckets_and_against_existing_parts_does_not_depend_on_bucket_size(
    tmp_path: Path, bucket_rows: int
) -> None:
    # GIVEN existing parts and two fragments with natural duplicates across all of them
    reference, bucketed = tmp_path / "reference", tmp_path / "bucketed"
    prepare(reference)
    prepare(bucketed)
    # WHEN one finalize ranks all keys at once and the other bucket by bucket
    expected = finalize_partition(reference, HOUR, fragments(reference), LOAD, bucket_rows=10**9)
    result = finalize_partition(bucketed, HOUR, fragments(bucketed), LOAD, bucket_rows=bucket_rows)
    # THEN the files are byte-identical and the counts agree
    assert parts(bucketed) == parts(reference)
    assert result == expected
    written = rows(bucketed)
    assert len(written) == result.rows_written == 40 + 1 + 1 + 2 + 30
    assert result.duplicates_dropped == 2  # the late retry of A and the retry of B
    assert result.replaced_rows == 20  # even existing rows lost to this run's rows
    by_key = {(r["event_id"], r["event_fingerprint"]): r["app_id"] for r in written}
    assert len(by_key) == len(written), "one row per natural event"
    assert by_key[(eid(0), "f")] == "new-a" and by_key[(eid(1), "f")] == "old"
    assert by_key[(eid(100), "f")] == "old-only"
    assert by_key[(eid(200), "f")] == "retry-early"
    assert by_key[(eid(300), "f1")] == by_key[(eid(300), "f2")] == "synthetic"


def test_finalize_keeps_the_rows_the_in_memory_merge_keeps(tmp_path: Path) -> None:
    prepare(tmp_path)
    finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD, bucket_rows=2)
    oracle = merge_and_dedupe(
        [events_to_table(FRAGMENT_A), events_to_table(FRAGMENT_B)],  # type: ignore[arg-type]
        [events_to_table(EXISTING)],  # type: ignore[arg-type]
    ).table

    def multiset(table_rows: list[dict[str, object]]) -> Counter[str]:
        return Counter(repr(sorted(row.items())) for row in table_rows)

    assert multiset(rows(tmp_path)) == multiset(oracle.to_pylist())


@pytest.mark.parametrize("bucket_rows", [1, 10**9])
def test_missing_keys_are_equal_to_each_other_like_in_the_in_memory_merge(tmp_path: Path, bucket_rows: int) -> None:
    events = [
        event(eid(1), None, 5),  # type: ignore[arg-type]
        event(eid(1), None, 3),  # type: ignore[arg-type]
        event(eid(1), "f", 4),
        event(None, "f", 2),  # type: ignore[arg-type]
        event(None, "f", 1),  # type: ignore[arg-type]
        event(None, None, 1),  # type: ignore[arg-type]
    ]
    stage(tmp_path, "source", events)
    result = finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD, bucket_rows=bucket_rows)
    expected = merge_and_dedupe([events_to_table(events)]).table  # type: ignore[arg-type]
    written = [(r["event_id"], r["event_fingerprint"], r["collector_tstamp"]) for r in rows(tmp_path)]
    assert sorted(written, key=repr) == sorted(
        ((r["event_id"], r["event_fingerprint"], r["collector_tstamp"]) for r in expected.to_pylist()), key=repr
    )
    assert result.rows_written == 4 and result.duplicates_dropped == 2


def test_existing_rows_come_first_then_fragments_in_name_order(tmp_path: Path) -> None:
    stage(tmp_path, "previous", [event(eid(1), "f", 900)])
    finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD)
    clear_staging(tmp_path)
    stage(tmp_path, "zz-source", [event(eid(2), "f", 100)])
    stage(tmp_path, "aa-source", [event(eid(3), "f", 500), event(eid(4), "f", 50)])
    finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD)
    assert [r["event_id"] for r in rows(tmp_path)] == [eid(1), eid(3), eid(4), eid(2)]


def test_rerun_rewrites_byte_identical_files_and_removes_stale_parts(tmp_path: Path) -> None:
    small_files = replace(LOAD, max_rows_per_file=10, row_group_size=4)
    events = [event(eid(i), "f", i) for i in range(35)] + [event(eid(3), "f", 3)]

    def run(config: object) -> dict[str, bytes]:
        clear_staging(tmp_path)
        stage(tmp_path, "source", events, batch_rows=6)
        finalize_partition(tmp_path, HOUR, fragments(tmp_path), config, bucket_rows=8)  # type: ignore[arg-type]
        return parts(tmp_path)

    first = run(small_files)
    assert list(first) == [f"part-{n:05d}.parquet" for n in range(4)]  # no temporary file is left
    assert run(small_files) == first
    again = run(LOAD)  # bigger files: the old part-00001.. are stale
    assert list(again) == ["part-00000.parquet"]
    assert pq.read_metadata(folder(tmp_path) / "part-00000.parquet").num_rows == 35


def test_files_roll_at_max_rows_per_file_with_fixed_row_groups_whatever_the_batches(tmp_path: Path) -> None:
    config = replace(LOAD, max_rows_per_file=5, row_group_size=2)
    events = [event(eid(i), "f", i, page_title=f"page {i}") for i in range(12)]
    layouts = []
    for batch_rows in (1, 4, 1000):
        dest = tmp_path / f"batches-{batch_rows}"
        stage(dest, "source", events[:7], batch_rows=batch_rows)
        stage(dest, "source-2", events[7:], batch_rows=batch_rows)
        result = finalize_partition(dest, HOUR, fragments(dest), config)
        assert result.files == ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet")
        metadata = [pq.read_metadata(folder(dest) / name) for name in result.files]
        assert [[m.row_group(g).num_rows for g in range(m.num_row_groups)] for m in metadata] == [
            [2, 2, 1],
            [2, 2, 1],
            [2],
        ]
        layouts.append(parts(dest))
    assert layouts[0] == layouts[1] == layouts[2]


def test_row_groups_also_close_at_the_byte_cap(tmp_path: Path) -> None:
    events = [event(eid(i), "f", i % 3_600_000) for i in range(CHUNK_ROWS * 2 + 100)]
    stage(tmp_path, "source", events, batch_rows=5000)
    finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD, row_group_max_bytes=1)
    metadata = pq.read_metadata(folder(tmp_path) / "part-00000.parquet")
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [CHUNK_ROWS, CHUNK_ROWS, 100]


def test_stager_bounds_its_buffers_without_changing_the_output(tmp_path: Path) -> None:
    hours = [event(eid(i), "f", 3_600_000 * (i % 6) + i) for i in range(60)]
    outputs = []
    for limit in (1, 10_000):
        dest = tmp_path / f"limit-{limit}"
        stager = PartitionStager(dest / STAGING_DIR, "source", batch_rows=100, max_buffered_rows=limit)
        for item in hours:
            stager.add(item)  # type: ignore[arg-type]
            if limit == 1:  # nothing waits in memory
                assert not any(stager._buffers.values())
        touched = stager.close()
        assert len(touched) == 6
        for key in touched:
            finalize_partition(dest, key, fragments(dest, key), LOAD)
        outputs.append({key: parts(dest, key) for key in touched})
    assert outputs[0] == outputs[1]


def test_an_existing_part_of_an_older_schema_is_read_with_nulls(tmp_path: Path) -> None:
    folder(tmp_path).mkdir(parents=True)
    old = pa.table(
        {
            "event_id": [eid(1), eid(2)],
            "event_fingerprint": ["f", "f"],
            "collector_tstamp": pa.array([HOUR_MS, HOUR_MS + 1], pa.timestamp("ms", tz="UTC")),
        }
    )
    pq.write_table(old, folder(tmp_path) / "part-00000.parquet")
    stage(tmp_path, "source", [event(eid(2), "f", 1, app_id="new")])
    result = finalize_partition(tmp_path, HOUR, fragments(tmp_path), LOAD)
    assert [(r["event_id"], r["app_id"]) for r in rows(tmp_path)] == [(eid(1), None), (eid(2), "new")]
    assert result.replaced_rows == 1


def test_bucket_ranges_cover_every_prefix_and_respect_the_size() -> None:
    assert _bucket_ranges([3, 3, 3, 3], 6) == [(0, 2), (2, 4)]
    assert _bucket_ranges([0, 10, 0, 1], 4) == [(0, 2), (2, 4)]  # a prefix bigger than a bucket stands alone
    assert _bucket_ranges([0, 0], 1) == [(0, 2)]
    ids = pa.array(["00a1", "FFF0", "abc-", "x", None, ""])
    assert _prefix_buckets(ids).to_pylist() == [0x00A, 0xFFF, 0xABC, 0, 0, 0]


def test_stage_then_finalize_writes_deterministic_files_and_rerun_rewrites(tmp_path: Path) -> None:
    def stage_and_finalize() -> bytes:
        stager = PartitionStager(tmp_path / "_staging", "source-1", batch_rows=2)
        for i in range(5):
            stager.add(event_at(f"id{i}", "f", 1731699951000 + i))
        stager.add(event_at("id0", "f", 1731699951000))  # natural duplicate
        stager.add(event_at("late", "f", 1731600000000))  # another hour
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
