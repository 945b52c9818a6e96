"""The canonical event is declared once; every shape derives from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import fastavro
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.schema import (
    ATOMIC_FIELDS,
    BY_NAME,
    FIELD_NAMES,
    FIELDS,
    INT32_MAX,
    INT32_MIN,
    MAX_EPOCH_MS,
    MIN_EPOCH_MS,
    _problems,
    avro_schema,
    to_json_record,
    validate,
)

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


# The values that matter for the fast pass: on both sides of each width (in characters and in
# UTF-8 bytes), of the int and timestamp ranges, and of finiteness and the DECIMAL limits.
_NAMES = st.sampled_from([*FIELD_NAMES, "not_a_field"])


@st.composite
def _values(draw: st.DrawFn, name: str) -> object:
    field = BY_NAME.get(name)
    width = (field.max_bytes if field is not None else None) or 64
    text = st.text(
        alphabet=st.one_of(
            st.characters(max_codepoint=0x7F),
            st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF),  # surrogates included
            st.sampled_from(["é", "€", "😀", "\x00", "\u200b", "\ud800"]),
        ),
        max_size=min(width + 2, 80),
    )
    near_width = st.integers(max(width // 4 - 2, 0), width + 2).map(
        lambda n: draw(st.sampled_from(["a", "é", "€", "😀"])) * n
    )
    bounds = st.sampled_from([INT32_MIN - 1, INT32_MIN, -1, 0, INT32_MAX, INT32_MAX + 1, MIN_EPOCH_MS - 1])
    return draw(
        st.one_of(
            text,
            near_width,
            st.integers(),
            bounds,
            st.integers(MAX_EPOCH_MS - 2, MAX_EPOCH_MS + 2),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([1e16, -1e16, 9999999999999999.995, 0.005, -0.0]),
            st.booleans(),
            st.none(),
            st.just([1]),
        )
    )


@st.composite
def _events(draw: st.DrawFn) -> dict[str, object]:
    names = draw(st.lists(_NAMES, max_size=12, unique=True))
    return {name: draw(_values(name)) for name in names}


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(_events())
@example({"page_title": "é\ud800"})  # printable is what rules out a lone surrogate
@example({"geo_country": "É"})  # CHAR columns: ASCII only, whatever the length
@example({"page_title": "😀" * 501})  # a quarter of the width in characters, and one more
def test_validates_fast_pass_never_changes_the_verdict(event: dict[str, object]) -> None:
    """validate's first pass only accepts what the full check accepts, and reports the same problems."""
    assert validate(event) == _problems(event)  # type: ignore[arg-type]
