"""The merge as a plan: one locked transaction, synthetic ids, its statistics."""

from __future__ import annotations

import uuid

import pytest

from load.redshift.identifiers import RedshiftTables
from load.redshift.merge import MergeStats, stream_merge_plan
from tests.redshift_support import SYNTHETIC_ID_NAMESPACE, synthetic_event_id


def test_the_merge_is_one_transaction_and_touches_the_tables_it_locks(tables: RedshiftTables) -> None:
    plan = stream_merge_plan(tables)
    labels = [s.label for s in plan.statements]
    assert labels == [
        "lock",
        "rejects",
        "batch",
        "rows",
        "stats",
        "queue_entities",
        "insert",
        "clear_staging",
        "drop_rows",
        "drop_batch",
    ]
    assert not any(s.parameters for s in plan.statements)
    assert "TRUNCATE" not in " ".join(s.sql for s in plan.statements)  # TRUNCATE would commit mid-plan
    assert plan.statements[0].sql == (
        'LOCK "atomic"."events", "atomic"."events_staging", "atomic"."events_rejected", "atomic"."events_entity_queue"'
    )


def test_synthetic_event_id_is_a_deterministic_uuid5() -> None:
    original = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
    new = synthetic_event_id(original, "fp-b")
    assert uuid.UUID(new).version == 5 and uuid.UUID(new).variant == uuid.RFC_4122
    assert new == synthetic_event_id(original, "fp-b") != synthetic_event_id(original, "fp-c")
    assert new == str(uuid.uuid5(SYNTHETIC_ID_NAMESPACE, f"{original}/fp-b"))
    assert SYNTHETIC_ID_NAMESPACE.bytes == b"clickstream-etl:"


def test_merge_stats_parse_and_derive() -> None:
    stats = MergeStats.from_row((10, 1, 7, 2, 5, "2024-11-15 09:00:00", "2024-11-15 09:59:59"))
    assert (stats.natural_duplicates, stats.already_loaded) == (2, 2)
    assert stats.to_json()["inserted"] == 5
    with pytest.raises(Exception, match="unexpected merge statistics"):
        MergeStats.from_row(("x",))
