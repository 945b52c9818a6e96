"""Reader audit: out-of-range v2 timestamps, gzip cut short or corrupted, headers and line endings.

GIVEN CloudFront logs damaged or written in ways the reader used to let through silently
WHEN they are read (and, where it matters, transformed)
THEN every line ends as a LogLine, a bad row naming the problem, or a counted skip -- never lost.
"""

from __future__ import annotations

import gzip
import io
import random

import pytest

from pipeline.badrows import BadRow, FailureKind
from pipeline.formats.base import LogLine, ReadLimits, ReadStats
from pipeline.formats.cloudfront import read_lines
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import run_core
from tests.unit.test_extract_reader import SOURCE, read_all

MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
V2_FIELDS = ("timestamp(ms)", "c-ip", "cs-method", "cs-uri-stem", "sc-status", "cs-uri-query")


def _tracker_log(count: int) -> LogBuilder:
    log = LogBuilder()
    for i in range(count):
        log.add(query=tracker_query({"e": "pv", "url": f"https://www.example.com/page/{i}"}), request_id=f"req-{i}")
    return log


# =========================================================================== 1. v2 timestamp(ms) range
@pytest.mark.parametrize("millis", [str(MAX_EPOCH_MS + 1), "999999999999999"])
def test_given_v2_timestamp_ms_beyond_year_9999_when_parsed_then_field_invalid_naming_the_field(millis: str) -> None:
    data = LogBuilder(fields=V2_FIELDS).add({"timestamp(ms)": millis}, query=tracker_query({"e": "pv"})).to_bytes()
    run = run_core(data)
    assert not run.events
    [bad] = run.bad
    assert bad.kind is FailureKind.FIELD_INVALID
    assert any(m.startswith("timestamp(ms):") and "9999" in m for m in bad.messages), bad.messages


def test_given_v2_timestamp_ms_at_the_last_millisecond_of_9999_when_parsed_then_good() -> None:
    data = LogBuilder(fields=V2_FIELDS).add({"timestamp(ms)": str(MAX_EPOCH_MS)}, query=tracker_query({"e": "pv"}))
    assert run_core(data.to_bytes()).event["collector_tstamp"] == MAX_EPOCH_MS


def test_given_epoch_seconds_rounding_past_year_9999_when_parsed_then_field_invalid() -> None:
    fields = ("timestamp", "c-ip", "cs-method", "cs-uri-stem", "sc-status", "cs-uri-query")
    data = LogBuilder(fields=fields).add({"timestamp": "253402300799.9996"}, query=tracker_query({"e": "pv"}))
    run = run_core(data.to_bytes())
    assert not run.events and [b.kind for b in run.bad] == [FailureKind.FIELD_INVALID]


def test_given_leap_second_on_the_last_day_of_9999_when_parsed_then_field_invalid() -> None:
    data = LogBuilder().add(date="9999-12-31", time="23:59:60.500", query=tracker_query({"e": "pv"})).to_bytes()
    run = run_core(data)
    assert not run.events and [b.kind for b in run.bad] == [FailureKind.FIELD_INVALID]


# =========================================================================== 2. gzip cut short or corrupted
def test_given_gzip_cut_at_any_byte_when_read_then_one_corrupt_compression_row_after_a_prefix_of_lines() -> None:
    body = _tracker_log(3).to_bytes()
    data = gzip.compress(body, mtime=0)
    expected = body.decode().split("\n")
    for cut in range(2, len(data)):  # two bytes: the gzip magic; fewer is not recognised as gzip
        lines, bad, stats = read_all(data[:cut])
        assert [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION], cut
        assert "truncated" in bad[0].messages[0]
        assert [line.text for line in lines] == expected[2 : 2 + len(lines)], cut
        assert stats.lines_read >= 1


@pytest.mark.parametrize("cut", [2, 3, 10, 18, 40, 79])
def test_given_gzip_cut_within_its_first_80_bytes_when_processed_then_a_bad_row_not_an_empty_file(cut: int) -> None:
    data = gzip.compress(_tracker_log(2).to_bytes(), mtime=0)[:cut]
    run = run_core(data, expect_gzip=True)
    assert not run.events
    assert [b.kind for b in run.bad] == [FailureKind.CORRUPT_COMPRESSION]


def test_given_empty_file_or_empty_valid_gzip_when_read_then_nothing_and_no_bad_row() -> None:
    for data in (b"", gzip.compress(b""), gzip.compress(b"", mtime=0) + gzip.compress(b"", mtime=0)):
        lines, bad, stats = read_all(data)
        assert not lines and not bad and stats.lines_read == 0


@pytest.mark.parametrize("trailer_byte", [-8, -5, -4, -1])  # CRC32 first and last byte, ISIZE first and last
def test_given_corrupt_gzip_trailer_when_read_then_every_complete_line_is_yielded_or_in_the_payload(
    trailer_byte: int,
) -> None:
    body = _tracker_log(40).to_bytes()
    data = bytearray(gzip.compress(body, mtime=0))
    data[trailer_byte] ^= 0xFF
    lines, bad, stats = read_all(bytes(data))
    assert [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION]
    kept = {line.text for line in lines} | set(bad[0].raw.decode().split("\n"))
    for text in body.decode().split("\n")[2:]:
        assert not text or text in kept
    assert stats.skipped["header"] == 2


def test_given_corrupt_gzip_trailer_on_a_partial_last_line_when_read_then_it_is_the_payload() -> None:
    data = bytearray(gzip.compress(b"#Fields: a b\nx\ty\npartial\tlast", mtime=0))
    data[-8] ^= 0xFF
    lines, bad, _ = read_all(bytes(data))
    assert [line.text for line in lines] == ["x\ty"]
    assert [b.raw for b in bad] == [b"partial\tlast"]


def test_given_large_gzip_with_corrupt_crc_when_read_then_all_lines_of_the_last_chunk_come_out() -> None:
    rng = random.Random(7)
    rows = [f"{i}\t{rng.getrandbits(128):032x}" for i in range(40_000)]  # ~1.5 MB: several decompressed chunks
    body = ("#Fields: n v\n" + "".join(row + "\n" for row in rows)).encode()
    data = bytearray(gzip.compress(body, mtime=0))
    data[-7] ^= 0x01
    lines, bad, _ = read_all(bytes(data))
    assert [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION]
    assert [line.text for line in lines] == rows


def test_given_gzip_corrupted_mid_stream_when_read_then_lines_are_conserved_and_one_file_row_is_last() -> None:
    rng = random.Random(11)
    body = ("#Fields: n v\n" + "".join(f"{i}\t{rng.getrandbits(64):016x}\n" for i in range(20_000))).encode()
    clean = gzip.compress(body, mtime=0)
    for position in (len(clean) // 3, len(clean) // 2, len(clean) - 40):
        data = bytearray(clean)
        data[position] ^= 0x5A
        items = list(read_lines(io.BytesIO(bytes(data)), SOURCE, None, ReadStats()))
        assert isinstance(items[-1], BadRow) and items[-1].kind is FailureKind.CORRUPT_COMPRESSION


# =========================================================================== 3. headers and line endings
def test_given_hash_line_that_is_not_a_cloudfront_header_when_read_then_bad_row_not_a_skip() -> None:
    lines, bad, stats = read_all(b"#Version: 1.0\n#Fields: a b\n# a comment\nx\ty\n#Remark: hello\n")
    assert [line.text for line in lines] == ["x\ty"]
    assert [(b.kind, b.source.line) for b in bad] == [
        (FailureKind.SCHEMA_MISMATCH, 3),
        (FailureKind.SCHEMA_MISMATCH, 5),
    ]
    assert all("not a CloudFront header" in b.messages[0] for b in bad)
    assert bad[0].raw == "# a comment"
    assert stats.skipped == {"header": 2}


def test_given_hash_line_with_crlf_when_read_then_header_recognised_and_others_bad() -> None:
    lines, bad, stats = read_all(b"#Version: 1.0\r\n#Fields: a b\r\n#x\r\nx\ty\r\n")
    assert [line.text for line in lines] == ["x\ty"]
    assert [b.kind for b in bad] == [FailureKind.SCHEMA_MISMATCH]
    assert stats.skipped == {"header": 2}


def test_given_oversized_header_line_when_read_then_size_violation_not_a_skip() -> None:
    data = b"#Version: 1.0\n#Fields: a b\n#Version: " + b"9" * 100_000 + b"\nx\ty\n"
    lines, bad, stats = read_all(data, ReadLimits(max_line_bytes=64 * 1024))
    assert [line.text for line in lines] == ["x\ty"]
    assert [(b.kind, b.source.line) for b in bad] == [(FailureKind.SIZE_VIOLATION, 3)]
    assert stats.skipped == {"header": 2}


def test_given_oversized_fields_header_when_resumed_past_it_then_layout_as_in_a_fresh_read() -> None:
    data = b"#Fields: a b\nx\ty\n#Fields: " + b"c " * 40_000 + b"\nz\tw\n"
    limits = ReadLimits(max_line_bytes=64 * 1024)
    fresh = [i for i in read_lines(io.BytesIO(data), SOURCE, limits) if isinstance(i, LogLine)]
    resumed = [i for i in read_lines(io.BytesIO(data), SOURCE, limits, start_line=3) if isinstance(i, LogLine)]
    assert fresh[-1] == resumed[-1]
    assert resumed[-1].layout is not None and resumed[-1].layout.names == ("a", "b")


@pytest.mark.parametrize("compress", [False, True])
def test_given_bare_cr_line_endings_when_processed_then_events_come_out(compress: bool) -> None:
    log = _tracker_log(3)
    data = log.to_text().replace("\n", "\r").encode()
    run = run_core(gzip.compress(data, mtime=0) if compress else data)
    assert len(run.events) == 3 and not run.bad
    assert run.summary.skipped_by_reason == {"header": 2}


def test_given_bare_cr_file_larger_than_a_line_when_read_then_every_line_comes_out() -> None:
    rows = [f"{i}\t{'v' * 100}" for i in range(5000)]  # ~0.5 MB, over the 64 KiB line cap and two read chunks
    data = ("#Version: 1.0\r#Fields: n v\r" + "".join(row + "\r" for row in rows)).encode()
    for payload in (data, gzip.compress(data, mtime=0)):
        lines, bad, stats = read_all(payload, ReadLimits(max_line_bytes=64 * 1024))
        assert not bad
        assert [line.text for line in lines] == rows
        assert [line.line_no for line in lines[:2]] == [3, 4]
        assert stats.skipped == {"header": 2}


def test_given_bare_cr_file_when_resumed_then_line_numbers_match_a_fresh_read() -> None:
    data = _tracker_log(4).to_text().replace("\n", "\r").encode()
    fresh = [i for i in read_lines(io.BytesIO(data), SOURCE) if isinstance(i, LogLine)]
    resumed = [i for i in read_lines(io.BytesIO(data), SOURCE, start_line=4) if isinstance(i, LogLine)]
    assert resumed == fresh[2:]


def test_given_crlf_file_when_processed_then_unchanged() -> None:
    data = _tracker_log(3).to_text().replace("\n", "\r\n").encode()
    run = run_core(data)
    assert len(run.events) == 3 and not run.bad
    assert run.summary.skipped_by_reason == {"header": 2}
