"""Extract core: streaming CloudFront logs (reliability catalogue A02-A10)."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.formats.base import LogLine, ReadLimits, ReadProgress, ReadStats
from pipeline.formats.cloudfront import GENERATIONS, LEGACY_FIELDS, legacy_layout, read_lines
from pipeline.testing import LogBuilder

SOURCE = SourceRef("s3://bucket/E2EXAMPLE.2024-11-15-19.abcd1234.gz")


def read_all(
    data: bytes, limits: ReadLimits | None = None, **kwargs: object
) -> tuple[list[LogLine], list[BadRow], ReadStats]:
    stats = ReadStats()
    lines: list[LogLine] = []
    bad: list[BadRow] = []
    for item in read_lines(io.BytesIO(data), SOURCE, limits, stats, **kwargs):  # type: ignore[arg-type]
        (lines if isinstance(item, LogLine) else bad).append(item)  # type: ignore[arg-type]
    assert stats.lines_read == len(lines) + len(bad) + sum(stats.skipped.values())
    return lines, bad, stats


def test_legacy_generations_have_the_documented_field_counts() -> None:
    assert len(LEGACY_FIELDS) == 33
    for count in GENERATIONS:
        assert legacy_layout(count).width == count
    with pytest.raises(ValueError):
        legacy_layout(20)


@pytest.mark.parametrize("count", GENERATIONS)
def test_header_binds_columns_by_name_for_every_generation(count: int) -> None:
    """Reliability catalogue A02: headers are counted as skipped and columns bound by name in every generation."""
    data = LogBuilder(fields=count).add().add().to_gzip()
    lines, bad, stats = read_all(data)
    assert not bad
    assert [line.line_no for line in lines] == [3, 4]
    assert lines[0].layout == legacy_layout(count)
    assert lines[0].layout is not None and lines[0].layout.index["cs-uri-stem"] == 7
    assert stats.skipped["header"] == 2


def test_v2_field_subset_in_any_order_is_bound_by_name() -> None:
    fields = ("cs-uri-query", "timestamp(ms)", "cs-uri-stem", "c-ip", "asn", "c-country")
    lines, bad, _ = read_all(b"#Fields: " + " ".join(fields).encode() + b"\nq\t1731699951183\t/i\t1.2.3.4\t16509\tBG\n")
    assert not bad
    assert lines[0].layout is not None and lines[0].layout.index["timestamp(ms)"] == 1


def test_second_fields_header_mid_file_rebinds_the_layout() -> None:
    text = legacy_layout(12).format() + "\n" + "a\t" * 11 + "a\n" + legacy_layout(15).format() + "\nb\n"
    lines, _, stats = read_all(text.encode())
    assert lines[0].layout == legacy_layout(12)
    assert lines[1].layout == legacy_layout(15)
    assert stats.skipped["header"] == 2


def test_lines_without_any_header_have_no_layout_unless_a_default_is_configured() -> None:
    lines, _, _ = read_all(b"x\ty\n")
    assert lines[0].layout is None
    lines, _, _ = read_all(b"x\ty\n", ReadLimits(default_layout=legacy_layout(33)))
    assert lines[0].layout == legacy_layout(33)


def test_only_newline_ends_a_line_and_trailing_cr_is_dropped() -> None:
    """Reliability catalogue A06: only LF (and a trailing CR) ends a line."""
    data = "#Fields: a b\r\nx\u2028y\tz\x85w\r\nlast\tbare\rcr".encode()
    lines, bad, _ = read_all(data)
    assert not bad
    assert [line.text for line in lines] == ["x\u2028y\tz\x85w", "last\tbare\rcr"]


def test_blank_lines_and_comments_are_counted_skips() -> None:
    _, _, stats = read_all(b"#Version: 1.0\n\n#Fields: a\n\n\nv\n")
    assert stats.lines_read == 6
    assert stats.skipped == {"header": 2, "blank": 3}


def test_invalid_utf8_line_is_a_bad_row_with_its_bytes_and_the_rest_is_read() -> None:
    """Reliability catalogue A05: an invalid UTF-8 line is a bad row with its bytes as base64."""
    data = b"#Fields: a b\nok\tline\nbad\xff\xfe\tline\nok2\tline\n"
    lines, bad, _ = read_all(data)
    assert [line.text for line in lines] == ["ok\tline", "ok2\tline"]
    assert len(bad) == 1 and bad[0].kind is FailureKind.INVALID_UTF8
    assert bad[0].raw == b"bad\xff\xfe\tline"
    assert bad[0].source.line == 3
    payload = bad[0].to_json()["data"]["payload"]
    assert payload["encoding"] == "base64"


@pytest.mark.parametrize("size", [64 * 1024 + 1, 5 * 1024 * 1024])
def test_huge_line_is_a_size_violation_with_truncated_payload_and_bounded_memory(size: int) -> None:
    """Reliability catalogue A07: a huge line is a truncated size_violation in bounded memory."""
    data = b"#Fields: a\nbefore\n" + b"x" * size + b"\nafter\n"
    tracemalloc.start()
    lines, bad, _ = read_all(gzip.compress(data), ReadLimits(max_line_bytes=64 * 1024))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [line.text for line in lines] == ["before", "after"]
    assert len(bad) == 1 and bad[0].kind is FailureKind.SIZE_VIOLATION
    assert bad[0].size == size and len(bad[0].raw) <= 64 * 1024
    assert bad[0].source.line == 3
    assert peak < 4 * 1024 * 1024 + 2 * 64 * 1024 + 2 * size // 50 + 2_000_000


def test_truncated_gzip_keeps_complete_lines_and_adds_one_file_bad_row() -> None:
    """Reliability catalogue A08: a truncated gzip keeps its complete lines and adds one file-level bad row."""
    body = b"#Fields: a\n" + b"".join(b"line%d\n" % i for i in range(2000))
    data = gzip.compress(body)
    lines, bad, stats = read_all(data[: len(data) // 2])
    assert len(lines) > 100
    assert [line.text for line in lines] == [f"line{i}" for i in range(len(lines))]
    assert len(bad) == 1 and bad[0].kind is FailureKind.CORRUPT_COMPRESSION
    assert "truncated" in bad[0].messages[0] and SOURCE.object in bad[0].messages[0]
    assert stats.lines_read == len(lines) + 2


def test_crc_error_is_corrupt_compression() -> None:
    data = bytearray(gzip.compress(b"#Fields: a\nx\n"))
    data[-8] ^= 0xFF  # CRC32 of the trailer
    _, bad, _ = read_all(bytes(data))
    assert [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION]


def test_plain_text_under_a_gz_name_is_corrupt_compression() -> None:
    lines, bad, stats = read_all(b"#Fields: a\nx\n", expect_gzip=True)
    assert not lines and [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION]
    assert stats.lines_read == 1


def test_trailing_garbage_after_gzip_member_is_reported_after_the_lines() -> None:
    lines, bad, _ = read_all(gzip.compress(b"#Fields: a\nx\ny\n") + b"garbage!")
    assert [line.text for line in lines] == ["x", "y"]
    assert [b.kind for b in bad] == [FailureKind.CORRUPT_COMPRESSION]


def test_zero_padding_after_gzip_is_tolerated() -> None:
    lines, bad, _ = read_all(gzip.compress(b"#Fields: a\nx\n") + b"\x00" * 512)
    assert [line.text for line in lines] == ["x"] and not bad


def test_multi_member_gzip_is_read_whole() -> None:
    """Reliability catalogue A09: every member of a concatenated gzip is read."""
    data = gzip.compress(b"#Fields: a\nx1\n") + gzip.compress(b"x2\n") + gzip.compress(b"x3\nx4\n")
    lines, bad, _ = read_all(data)
    assert [line.text for line in lines] == ["x1", "x2", "x3", "x4"] and not bad


def test_line_split_across_gzip_members_is_one_line() -> None:
    """Reliability catalogue A09: a line split across members is one line."""
    data = gzip.compress(b"#Fields: a\nfir") + gzip.compress(b"st\n")
    lines, _, _ = read_all(data)
    assert [line.text for line in lines] == ["first"]


def test_gzip_bomb_stops_at_the_decompressed_cap_with_bounded_memory() -> None:
    """Reliability catalogue A10: a gzip bomb stops at the decompressed cap with bounded memory."""
    line = b"z" * 99 + b"\n"
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b"#Fields: a\n" + line * (200 * 1024 * 1024 // 100)) + bomb.flush()
    assert len(data) < 2 * 1024 * 1024  # ~200 MiB -> well under 1 MiB compressed
    tracemalloc.start()
    lines, bad, stats = read_all(data, ReadLimits(max_decompressed_bytes=8 * 1024 * 1024))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [b.kind for b in bad] == [FailureKind.SIZE_VIOLATION]
    assert "decompressed size exceeds" in bad[0].messages[0]
    assert 0 < len(lines) <= 8 * 1024 * 1024 // 100
    assert stats.bytes_read <= 8 * 1024 * 1024 + 1
    assert peak < 64 * 1024 * 1024


def test_last_line_without_newline_is_read() -> None:
    lines, _, _ = read_all(b"#Fields: a\nx\ny")
    assert [line.text for line in lines] == ["x", "y"]


def test_start_line_skips_already_processed_lines_but_keeps_the_layout() -> None:
    data = LogBuilder(fields=15).add(uri_stem="/a").add(uri_stem="/b").add(uri_stem="/c").to_bytes()
    lines, _, stats = read_all(data, start_line=4)
    assert [line.line_no for line in lines] == [5]
    assert lines[0].layout == legacy_layout(15)
    assert stats.lines_read == 1


def test_empty_file_reads_nothing() -> None:
    lines, bad, stats = read_all(b"")
    assert not lines and not bad and stats.lines_read == 0
    lines, bad, stats = read_all(gzip.compress(b""))
    assert not lines and not bad and stats.lines_read == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.booleans())
def test_arbitrary_bytes_never_raise_and_lines_are_conserved(data: bytes, compress: bool) -> None:
    payload = gzip.compress(data) if compress else data
    read_all(payload, ReadLimits(max_line_bytes=512))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=1, max_value=400))
def test_truncated_gzip_of_arbitrary_data_never_raises(data: bytes, cut: int) -> None:
    payload = gzip.compress(data)
    read_all(payload[: max(1, len(payload) - cut)])


def test_resuming_after_the_file_level_bad_row_does_not_report_it_again() -> None:
    from pipeline.badrows import BadRow, SourceRef
    from pipeline.formats.base import ReadStats
    from pipeline.formats.cloudfront import read_lines

    data = gzip.compress(b"#Fields: a b\n" + b"x\ty\n" * 50, mtime=0)[:-12]  # truncated
    first = list(read_lines(io.BytesIO(data), SourceRef("f.gz")))
    [bad] = [i for i in first if isinstance(i, BadRow)]
    assert bad.source.line is not None
    stats = ReadStats()
    resumed = list(read_lines(io.BytesIO(data), SourceRef("f.gz"), stats=stats, start_line=bad.source.line))
    assert resumed == [] and stats.lines_read == 0


def test_resuming_past_an_invalid_utf8_fields_header_keeps_the_layout_a_fresh_read_uses() -> None:
    from pipeline.badrows import SourceRef
    from pipeline.formats.base import LogLine
    from pipeline.formats.cloudfront import read_lines

    data = b"#Fields: a b c\nl1\t1\t1\n#Fields: d e \xff\nl3\t3\t3\n"
    fresh = [i for i in read_lines(io.BytesIO(data), SourceRef("f")) if isinstance(i, LogLine)]
    resumed = [i for i in read_lines(io.BytesIO(data), SourceRef("f"), start_line=3) if isinstance(i, LogLine)]
    assert fresh[-1].layout == resumed[-1].layout and resumed[-1].layout is not None
    assert resumed[-1].layout.names == ("a", "b", "c")


# ---------------------------------------------------------------- newline bombs (audit item 9)
_LINE_KINDS = ["2024-11-15\t10:00:00\t/x", "#Version: 1.0", "#not a header", "\r", "x\r"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(_LINE_KINDS), st.integers(min_value=0, max_value=30_000)),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_runs_of_blank_lines_are_read_exactly_as_lines_one_by_one(segments: list[str | int], gzipped: bool) -> None:
    """The blank-run path (C-speed counting) gives the same lines, numbers and counts as the
    line-by-line definition; a stretch with nothing to yield ends with a ReadProgress."""
    lines = ["#Fields: date time cs-uri-stem"]
    for segment in segments:
        lines.extend([""] * segment if isinstance(segment, int) else [segment])
    payload = ("\n".join(lines) + "\n").encode()
    data = gzip.compress(payload) if gzipped else payload
    stats = ReadStats()
    items = list(read_lines(io.BytesIO(data), SOURCE, None, stats))
    expected_lines: list[int] = []
    expected_bad: list[int] = []
    blank = header = 0
    for number, text in enumerate(lines, start=1):
        stripped = text[:-1] if text.endswith("\r") else text
        if not stripped:
            blank += 1
        elif stripped.startswith(("#Fields:", "#Version:")):
            header += 1
        elif stripped.startswith("#"):
            expected_bad.append(number)
        else:
            expected_lines.append(number)
    assert [i.line_no for i in items if type(i) is LogLine] == expected_lines
    assert [i.source.line for i in items if isinstance(i, BadRow)] == expected_bad
    assert stats.skipped == {k: v for k, v in {"blank": blank, "header": header}.items() if v}
    assert stats.lines_read == len(lines)
    marks = [i.line_no for i in items if type(i) is ReadProgress]
    assert marks == sorted(marks) and all(0 < m <= len(lines) for m in marks)


def test_a_newline_bomb_is_counted_not_looped_and_says_where_it_is() -> None:
    """255 KB of gzip holding 250 million newlines took minutes one Python turn per line; the
    reader now yields ReadProgress marks through the stretch (what Extract looks at its clock on)."""
    payload = b"#Fields: date time cs-uri-stem\n" + b"\n" * 3_000_000 + b"2024-11-15\t10:00:00\t/x\n"
    stats = ReadStats()
    items = list(read_lines(io.BytesIO(gzip.compress(payload)), SOURCE, None, stats))
    marks = [i for i in items if type(i) is ReadProgress]
    assert len(marks) >= 2 and marks[-1].line_no <= 3_000_001
    assert [i.line_no for i in items if type(i) is LogLine] == [3_000_002]
    assert stats.skipped == {"blank": 3_000_000, "header": 1} and stats.lines_read == 3_000_002
