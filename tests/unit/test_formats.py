"""The CloudFront W3C format parses a line into one typed request, or a bad row; records name their format."""

from __future__ import annotations

import io
import re

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.cache import BoundedCache
from pipeline.config import ExtractConfig
from pipeline.formats import DEFAULT_FORMAT, FORMATS, get_format, read_limits
from pipeline.formats.base import DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_LINE_BYTES, LogLine, ReadLimits, Request
from pipeline.formats.cloudfront import legacy_layout, time_ms
from pipeline.records import RAW_FORMAT_V1, RawBatch, _raw_schema, decode_raw, encode_raw
from pipeline.testing import LogBuilder
from tests.conftest import make_config
from transform.canonicalize import Canonicalizer
from transform.stage import transform_raw_record

SOURCE = SourceRef("s3://logs/E2EXAMPLE.2024-11-15-19.abcd1234.gz")


def _line(fields: int = 33, **values: str) -> LogLine:
    log = LogBuilder(fields=fields)
    log.add(**values)
    [line] = [item for item in get_format().read(io.BytesIO(log.to_bytes()), SOURCE) if isinstance(item, LogLine)]
    return line


def test_a_cloudfront_line_becomes_one_typed_request_with_cloudfront_encoding_undone() -> None:
    line = _line(
        query="e=pv&url=https%253A%252F%252Fexample.com%252F",
        user_agent="Mozilla/5.0 (X11)",
        referer="https://search.example/?q=a b",
    )
    request = get_format().parse(line, SOURCE)
    assert isinstance(request, Request)
    assert request.collector_tstamp == 1_731_699_951_000
    assert (request.method, request.path) == ("GET", "/i")
    assert request.query == "e=pv&url=https%3A%2F%2Fexample.com%2F"  # CloudFront's extra %25 undone once
    assert request.useragent == "Mozilla/5.0 (X11)"
    assert request.referer == "https://search.example/?q=a b"
    assert request.client_ip == "203.0.113.77"
    assert request.request_id is None  # logged as "-"
    assert request.raw == line.text
    with pytest.raises(AttributeError):
        request.path = "/x"  # type: ignore[misc]


def test_fields_the_layout_lacks_are_none() -> None:
    request = get_format().parse(_line(fields=12), SOURCE)
    assert isinstance(request, Request)
    assert request.useragent is not None  # the 12 fields of the first generation end with the query
    assert (request.request_id, request.forwarded_for, request.scheme) == (None, None, None)


@pytest.mark.parametrize(
    ("values", "kind", "message"),
    [
        ({"date": "2024-13-01"}, FailureKind.FIELD_INVALID, "is not a valid YYYY-MM-DD date"),
        ({"time": "25:00:00"}, FailureKind.FIELD_INVALID, "is not a valid HH:MM:SS time"),
        ({"status": "20x"}, FailureKind.FIELD_INVALID, "is not a 3-digit HTTP status"),
    ],
)
def test_invalid_fields_are_bad_rows_saying_what_is_wrong(
    values: dict[str, str], kind: FailureKind, message: str
) -> None:
    bad = get_format().parse(_line(**values), SOURCE)
    assert isinstance(bad, BadRow) and bad.kind is kind
    assert message in " ".join(bad.messages)
    assert bad.source.line == 3  # after #Version and #Fields


def test_a_line_without_a_layout_or_with_the_wrong_width_is_a_bad_row() -> None:
    assert get_format().parse(LogLine(1, "a\tb", None), SOURCE).kind is FailureKind.SCHEMA_MISMATCH  # type: ignore[union-attr]
    wrong = get_format().parse(LogLine(1, "a\tb", legacy_layout(12)), SOURCE)
    assert isinstance(wrong, BadRow) and wrong.kind is FailureKind.FIELD_COUNT


def test_stream_1_records_name_their_format_and_old_records_still_decode() -> None:
    batch = RawBatch("b", "k.gz", "e", 1, "date time", (1,), ("x",))
    assert batch.format == DEFAULT_FORMAT and decode_raw(encode_raw(batch)) == batch
    # A record written before formats had names (version 1, no format field) decodes as CloudFront.
    out = io.BytesIO()
    out.write(RAW_FORMAT_V1)
    record = {"bucket": "b", "key": "k.gz", "etag": "e", "etl_tstamp": 1, "fields": "date time"}
    fastavro.schemaless_writer(out, _raw_schema(RAW_FORMAT_V1), {**record, "line_numbers": [1], "lines": ["x"]})
    assert decode_raw(out.getvalue()) == batch


def test_a_record_in_a_format_this_version_does_not_know_is_one_bad_row() -> None:
    data = encode_raw(RawBatch("b", "k.gz", "e", 1, "", (1, 2), ("x", "y"), "future-format"))
    out = transform_raw_record(data, Canonicalizer(make_config().transform), 1 << 18, origin="arn/1", arrival_ms=5)
    assert [b.kind for b in out.bad] == [FailureKind.RECORD_INVALID]
    assert "unknown log format 'future-format'" in out.bad[0].messages[0]
    assert out.events == []


def test_read_limits_come_from_config_and_code_defaults_equal_the_shipped_ones() -> None:
    shipped = make_config().extract
    assert (DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES) == (
        shipped.max_line_bytes,
        shipped.max_decompressed_bytes,
    )
    assert ReadLimits() == read_limits(shipped)
    limits = read_limits(ExtractConfig("cloudfront", 10, 20, "legacy-12"))
    assert limits == ReadLimits(10, 20, legacy_layout(12))
    with pytest.raises(Exception, match="extract.default_fields: no CloudFront legacy generation has 13 fields"):
        read_limits(ExtractConfig("cloudfront", 10, 20, "legacy-13"))


def test_formats_registry_lists_cloudfront() -> None:
    assert DEFAULT_FORMAT in FORMATS
    assert get_format().name == DEFAULT_FORMAT


def test_bounded_cache_forgets_when_full_and_skips_long_keys() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2, max_key_length=3)
    assert cache.put("a", 1) == 1 and cache.put("b", 2) == 2
    assert cache.put("c", 3) == 3
    assert dict(cache) == {"c": 3}  # cleared when full, then kept
    assert cache.put("long", 4) == 4 and "long" not in cache
    with pytest.raises(ValueError, match="at least one entry"):
        BoundedCache(0)


# ------------------------------------------------------------------------------ time of day
_CLOCK = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?")


def _reference_time_ms(text: str) -> int | None:
    """CloudFront's time field read the plain way: HH:MM:SS[.f{1,6}], hours < 24, minutes < 60,
    seconds <= 60 (a leap second), the fraction's first three digits as milliseconds."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 60:
        return None
    return (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1000 + int(((fraction or "") + "000")[:3])


@given(st.text(alphabet="0123456789:.+- a\u0661\uff11", min_size=0, max_size=16))
@settings(max_examples=3000)
def test_time_of_day_matches_the_plain_reading_on_any_text(text: str) -> None:
    assert time_ms(text) == _reference_time_ms(text)


@given(
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".", ".5", ".123", ".123456", ".1234567"]),
)
def test_time_of_day_matches_the_plain_reading_on_clock_shapes(
    hours: int, minutes: int, seconds: int, fraction: str
) -> None:
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}"
    assert time_ms(text) == _reference_time_ms(text)


def test_time_of_day_examples() -> None:
    assert time_ms("00:00:00") == 0
    assert time_ms("23:59:60") == 86_400_000  # a leap second
    assert time_ms("12:34:56.789") == 45_296_789
    assert time_ms("12:34:56.7") == 45_296_700
    for invalid in (
        "24:00:00",
        "00:60:00",
        "00:00:61",
        "1:00:00",
        "00:00:00.",
        "00:00:00.1234567",
        "１２:00:00",
        "+1:00:00",
    ):
        assert time_ms(invalid) is None, invalid
