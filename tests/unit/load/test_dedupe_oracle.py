"""The in-memory dedupe oracle (tests/dedupe_oracle.py) holds the rules finalize is checked against."""

from __future__ import annotations

from load.parquet import events_to_table
from tests.dedupe_oracle import merge_and_dedupe


def event(event_id: str, fingerprint: str, tstamp: int, **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "event_fingerprint": fingerprint, "collector_tstamp": tstamp, **extra}


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
