"""Parquet encoding: the Arrow schema from the canonical fields, events -> Parquet bytes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from load.parquet import arrow_schema, encode_parquet
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


def test_parquet_bytes_decode_to_the_same_values() -> None:
    data = encode_parquet([event("a", "f", 1731699951183, page_title="Café", br_cookies=True)], LOAD)
    table = pq.read_table(pa.BufferReader(data))
    row = table.to_pylist()[0]
    assert row["page_title"] == "Café" and row["br_cookies"] is True
    assert row["collector_tstamp"].isoformat() == "2024-11-15T19:45:51.183000+00:00"


def test_events_to_batch_equals_arrows_row_conversion_on_real_events() -> None:
    """GIVEN the events of generated logs (every event type) WHEN converted as one struct array
    THEN the batch equals pyarrow's RecordBatch.from_pylist of the same events, schema metadata included."""
    from load.parquet import events_to_batch
    from pipeline.testing import GenerateOptions, iter_log_lines
    from pipeline.testing.generate import encode_bytes
    from tests.conftest import make_config, run_core

    options = GenerateOptions(files=1, lines_per_file=600, seed=5, malformed_ratio=0.0)
    data = b"".join(encode_bytes(line) + b"\n" for line in iter_log_lines(options, 0))
    events = run_core(data, config=make_config({"transform.non_tracker_policy": "page_view"})).events
    assert len(events) > 300
    events += [{}, {"event_id": "x", "not_a_column": 1}]  # all-null rows; keys outside the schema are ignored
    batch = events_to_batch(events)
    assert batch.equals(pa.RecordBatch.from_pylist(events, schema=arrow_schema()))
    assert batch.schema.equals(arrow_schema(), check_metadata=True)
    assert events_to_batch([]).num_rows == 0
