"""Parquet encoding: the Arrow schema from the canonical fields, events -> Parquet bytes."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from load.parquet import arrow_schema, encode_parquet
from pipeline.config import load_config
from pipeline.schema import FIELD_NAMES, FIELDS

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
    money = [f.name for f in FIELDS if f.decimal is not None]
    as_decimals = [
        {
            k: (Decimal(repr(v)).quantize(Decimal("0.01"), ROUND_HALF_UP) if k in money and v is not None else v)
            for k, v in event.items()
        }
        for event in events
    ]
    assert any(event.get("tr_total") is not None for event in events)  # transactions are among them
    assert batch.equals(pa.RecordBatch.from_pylist(as_decimals, schema=arrow_schema()))
    assert batch.schema.equals(arrow_schema(), check_metadata=True)
    assert events_to_batch([]).num_rows == 0


def test_money_columns_are_decimals_as_in_redshift_and_round_half_away_from_zero(tmp_path: Path) -> None:
    """Issue 10: tr_total, tr_tax, tr_shipping, ti_price and their *_base columns are DECIMAL(18,2)
    in Parquet as in Redshift, so both warehouses hold the same amounts; pyarrow and DuckDB read them."""
    import duckdb

    from load.parquet import events_to_batch

    money = [f.name for f in FIELDS if f.decimal is not None]
    assert sorted(money) == sorted(
        [
            "tr_total",
            "tr_tax",
            "tr_shipping",
            "ti_price",
            "tr_total_base",
            "tr_tax_base",
            "tr_shipping_base",
            "ti_price_base",
        ]
    )
    assert all(arrow_schema().field(name).type == pa.decimal128(18, 2) for name in money)
    events = [
        {"event_id": "a", "tr_total": 0.125, "tr_tax": -0.125, "ti_price": 19.99},
        {"event_id": "b", "tr_total": 1e15},
    ]
    path = tmp_path / "money.parquet"
    pq.write_table(pa.Table.from_batches([events_to_batch(events)]), path)
    rows = pq.read_table(path, columns=["tr_total", "tr_tax", "ti_price"]).to_pylist()
    assert rows[0] == {"tr_total": Decimal("0.13"), "tr_tax": Decimal("-0.13"), "ti_price": Decimal("19.99")}
    assert rows[1]["tr_total"] == Decimal("1000000000000000.00")
    typed = duckdb.sql(f"SELECT any_value(typeof(tr_total)), sum(tr_total) FROM read_parquet('{path}')").fetchall()
    assert typed == [("DECIMAL(18,2)", Decimal("1000000000000000.13"))]


def test_an_amount_too_large_for_its_decimal_is_a_bad_row_not_a_failed_batch() -> None:
    from pipeline.badrows import FailureKind
    from pipeline.testing import LogBuilder, tracker_query
    from tests.conftest import run_core

    log = LogBuilder(fields=33)
    log.add(query=tracker_query({"e": "tr", "tr_id": "o1", "tr_tt": "1e17"}))
    log.add(query=tracker_query({"e": "tr", "tr_id": "o2", "tr_tt": "99.99"}))
    run = run_core(log.to_bytes())
    [bad] = run.bad
    assert bad.kind is FailureKind.SCHEMA_VIOLATION and "tr_total: 1e+17 does not fit dec(18,2)" in bad.messages
    assert [e["tr_total"] for e in run.events] == [99.99]
