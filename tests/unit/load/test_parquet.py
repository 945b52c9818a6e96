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
