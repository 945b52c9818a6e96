"""The canonical event is declared once; every shape derives from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import fastavro

from pipeline.schema import ATOMIC_FIELDS, BY_NAME, FIELD_NAMES, FIELDS, avro_schema, to_json_record, validate

REFERENCE = Path(__file__).resolve().parents[2] / "pipeline" / "canonical_event.tsv"


def test_field_table_is_snowplows_131_atomic_fields_in_order() -> None:
    rows = list(csv.reader(io.StringIO(REFERENCE.read_text()), delimiter="\t"))[1:]
    assert FIELD_NAMES == tuple(row[1] for row in rows)
    assert len(FIELDS) == 131
    assert FIELD_NAMES[:4] == ("app_id", "platform", "etl_tstamp", "collector_tstamp")
    assert FIELD_NAMES[-1] == "true_tstamp"


def test_widths_are_parsed_in_bytes_from_redshift_types() -> None:
    assert BY_NAME["event_id"].max_bytes == 36 and BY_NAME["event_id"].redshift_is_char
    assert BY_NAME["page_url"].max_bytes == 10000
    assert BY_NAME["geo_country"].max_bytes == 2
    assert BY_NAME["se_value"].max_bytes is None
    assert BY_NAME["tr_total_base"].max_bytes is None


def test_json_columns_are_not_in_the_atomic_table() -> None:
    names = {f.name for f in ATOMIC_FIELDS}
    assert {"contexts", "unstruct_event", "derived_contexts"}.isdisjoint(names)
    assert len(ATOMIC_FIELDS) == 128


def test_avro_schema_is_derived_from_the_field_table_and_round_trips() -> None:
    schema = avro_schema()
    assert [f["name"] for f in schema["fields"]] == list(FIELD_NAMES)
    event = {
        "event_id": "9f2b1c3e-1a2b-4c3d-8e9f-0123456789ab",
        "collector_tstamp": 1731699951000,
        "vid": None,
    }
    event.pop("vid")
    event["domain_sessionidx"] = 3
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema, return_record_name=False)
    assert decoded["event_id"] == event["event_id"]
    assert decoded["domain_sessionidx"] == 3
    assert decoded["collector_tstamp"].year == 2024


def test_validate_accepts_a_minimal_event() -> None:
    assert (
        validate({"event_id": "9f2b1c3e-1a2b-4c3d-8e9f-0123456789ab", "collector_tstamp": 1, "br_cookies": True}) == []
    )


def test_validate_counts_utf8_bytes_not_characters() -> None:
    """Reliability catalogue F18: the validator measures widths in UTF-8 bytes, as Redshift does (error 1204)."""
    title_ok = "é" * 1000  # 2000 bytes
    title_over = "é" * 1001  # 2002 bytes, 1001 characters
    assert validate({"page_title": title_ok}) == []
    errors = validate({"page_title": title_over})
    assert errors == ["page_title: 2002 bytes exceeds the column width of 2000 bytes"]


def test_validate_reports_every_problem_at_once() -> None:
    errors = validate(
        {
            "page_title": "x" * 2001,
            "domain_sessionidx": 2**31,
            "br_cookies": "yes",
            "se_value": float("nan"),
            "geo_country": "ÉÉ",
            "not_a_field": 1,
            "collector_tstamp": "2024-01-01",
        }
    )
    assert len(errors) == 8  # geo_country breaks both its width and its ASCII-only rule
    assert any("CHAR columns accept ASCII only" in e for e in errors)
    assert any("32-bit" in e for e in errors)


def test_validate_rejects_lone_surrogates() -> None:
    """Reliability catalogue A05: a lone surrogate never passes validation on its way to Parquet or Redshift."""
    errors = validate({"page_title": "a\udcff" * 200})
    assert errors == ["page_title: contains characters that are not valid Unicode"]


def test_json_record_has_every_field_in_order_with_formatted_timestamps() -> None:
    record = to_json_record({"collector_tstamp": 1731699951183, "event": "page_view"})
    assert list(record) == list(FIELD_NAMES)
    assert record["collector_tstamp"] == "2024-11-15 19:45:51.183"
    assert record["app_id"] is None
    assert "contexts" not in to_json_record({}, atomic_only=True)
