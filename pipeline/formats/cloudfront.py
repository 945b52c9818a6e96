"""CloudFront access logs (W3C, standard logging legacy and v2): read lines, parse requests.

The reader streams any binary file object with bounded memory, binds columns by name from
the ``#Fields:`` header (every legacy generation from 12 to 33 fields, and the arbitrary
field subsets standard logging v2 writes), splits on ``\\n`` only (on ``\\r`` in a file that
has no ``\\n`` at all) and turns every problem into a bad row.  Lines are tab-separated;
CloudFront URL-encodes the header values it logs (``cs(User-Agent)``, ``cs(Referer)``,
``x-forwarded-for``) and encodes ``%`` in ``cs-uri-query`` once more (a tracker's ``%3A``
is logged as ``%253A``), which :class:`CloudFrontW3C` undoes exactly once when it parses a
line into a :class:`~pipeline.formats.base.Request`.  The generations of 2013-2014
(:data:`DOUBLE_ENCODED_GENERATIONS`) encoded the user agent and referer twice as well
(``%2520`` for a space); those decode to the same value as a single-encoded one.

Every physical line ends as exactly one of: a :class:`LogLine` (yielded), a
:class:`~pipeline.badrows.BadRow` (yielded) or a counted skip (``ReadStats.skipped``).
The unreadable remainder of a damaged file counts as one more line, carried by the one
file-level bad row that names the failure.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import IO, ClassVar, Final
from urllib.parse import unquote

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.cache import BoundedCache
from pipeline.formats.base import (
    NO_LAYOUT,
    FieldLayout,
    LogLine,
    ReadLimits,
    ReadProgress,
    ReadStats,
    Request,
    RequestScreen,
    Skip,
)
from pipeline.percent import unquote_strict
from pipeline.schema import MAX_EPOCH_MS

# The 33 fields of standard logging (legacy), in order.
LEGACY_FIELDS: Final[tuple[str, ...]] = (
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
)

# Field counts of the legacy generations (the header is the source of truth, never the count).
GENERATIONS: Final[tuple[int, ...]] = (12, 15, 18, 19, 23, 24, 26, 33)
# The generations CloudFront wrote while it encoded the '%' of cs(User-Agent) and cs(Referer) a
# second time (from 14 September 2013, in the 15-field generation, until the 23-field one of
# 1 July 2014): a space in a user agent is logged "%2520" there, "%20" before and since.
# Snowplow's CloudFront loader collapsed "%25XX" to "%XX" in these fields for the same reason.
DOUBLE_ENCODED_GENERATIONS: Final[tuple[int, ...]] = (15, 18, 19)

GZIP_MAGIC: Final = b"\x1f\x8b"
_READ_SIZE: Final = 256 * 1024
_RAW_CAP: Final = 64 * 1024  # bytes of an oversized payload kept in its bad row


def legacy_layout(count: int = 33) -> FieldLayout:
    """The layout of a legacy generation (12, 15, 18, 19, 23, 24, 26 or 33 fields)."""
    if count not in GENERATIONS:
        raise ValueError(f"no CloudFront legacy generation has {count} fields; known: {GENERATIONS}")
    return FieldLayout(LEGACY_FIELDS[:count])


class _CompressionError(Exception):
    pass


def _gzip_chunks(stream: IO[bytes], first: bytes, limit: int) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream chunk by chunk.

    Output is produced in bounded pieces (``decompress(..., max_length)``) so a bomb never
    materialises; raises _CompressionError on corrupt, truncated or trailing-garbage input,
    after yielding all the output decompressed before the failure.  A stream cut anywhere
    before the end of its last member -- even inside the gzip header, before any output --
    is truncated: only an empty stream, or complete members, read as an empty file.
    """
    decompressor = zlib.decompressobj(wbits=31)
    pending = first
    produced = 0
    while True:
        if not pending:
            pending = stream.read(_READ_SIZE)
            if not pending:  # a finished member is handled below: this one is cut short
                rest = decompressor.flush()  # what the member's complete input so far decodes to
                if rest:
                    yield rest
                raise _CompressionError("truncated gzip stream (unexpected end of file)")
        before = decompressor.copy()
        try:
            out = decompressor.decompress(pending, _READ_SIZE)
        except zlib.error as exc:
            # zlib drops the output of a call that fails (a bad CRC fails the call that decodes
            # the member's last block): decode that input again up to the failing byte.
            yield from _salvage(before, pending)
            raise _CompressionError(f"corrupt gzip data: {exc}") from exc
        pending = decompressor.unconsumed_tail
        if out:
            produced += len(out)
            yield out
        if decompressor.eof:
            # Every byte after the member is in unused_data.  After an output-limited call
            # unconsumed_tail may still hold the same bytes (CPython 3.11), so reading it too
            # decoded the next member twice, and a member over _READ_SIZE without end.
            rest = decompressor.unused_data
            # A new member may follow (multi-member gzip); zero padding is tolerated.
            while True:
                if rest.strip(b"\x00"):
                    break
                more = stream.read(_READ_SIZE)
                if not more:
                    return
                rest = more
            if not rest.lstrip(b"\x00").startswith(GZIP_MAGIC[:1]):
                raise _CompressionError("trailing garbage after the last gzip member")
            decompressor = zlib.decompressobj(wbits=31)
            pending = rest.lstrip(b"\x00")
        if produced > limit:
            return


def _salvage(decompressor: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """The output of ``data`` up to the byte where decompressing it fails.

    Byte by byte (once per damaged file): each byte decodes to a few KiB at most.
    """
    for position in range(len(data)):
        try:
            out = decompressor.decompress(data[position : position + 1])
        except zlib.error:
            return
        if out:
            yield out
        if decompressor.eof:  # pragma: no cover - the failure is inside this member
            return


def _bare_cr_as_lf(chunks: Iterator[bytes], max_line: int) -> Iterator[bytes]:
    """``chunks``, with every ``\\r`` made a line end when the file's first ``max_line`` bytes have no ``\\n``.

    A file with bare CR line endings (classic Mac OS) would otherwise be one oversized line,
    or one skipped header.  Any log of acceptable lines has a ``\\n`` within its first
    ``max_line`` bytes, so that is where the decision is made; it depends only on the bytes,
    so a resumed read numbers lines as a fresh one does.  CRLF and LF files pass unchanged.
    """
    head: list[bytes] = []
    size = 0
    failure: _CompressionError | None = None
    try:
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if b"\n" in chunk or size > max_line:
                break
    except _CompressionError as exc:
        failure = exc
    data = b"".join(head)
    bare_cr = b"\r" in data and b"\n" not in data
    if data:
        yield data.replace(b"\r", b"\n") if bare_cr else data
    if failure is not None:
        raise failure
    if not bare_cr:
        yield from chunks
        return
    for chunk in chunks:
        yield chunk.replace(b"\r", b"\n")


def _plain_chunks(stream: IO[bytes], first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := stream.read(_READ_SIZE):
        yield chunk


def read_lines(
    stream: IO[bytes],
    source: SourceRef,
    limits: ReadLimits | None = None,
    stats: ReadStats | None = None,
    *,
    expect_gzip: bool | None = None,
    start_line: int = 0,
) -> Iterator[LogLine | BadRow | ReadProgress]:
    """Stream the lines of a CloudFront log.

    ``stream`` is any binary file object; gzip is recognised by its magic bytes.
    ``expect_gzip=True`` (e.g. a ``.gz`` name) makes non-gzip content a corrupt_compression
    bad row instead of plain text.  Lines up to ``start_line`` are counted but not yielded
    (resuming after a checkpoint).  Counters accumulate in ``stats``.
    """
    limits = limits or ReadLimits()
    stats = stats if stats is not None else ReadStats()
    first = stream.read(_READ_SIZE)
    is_gzip = first.startswith(GZIP_MAGIC)
    if expect_gzip and not is_gzip and first:
        stats.lines_read = 1
        yield BadRow(
            FailureKind.CORRUPT_COMPRESSION,
            (f"{source.object}: expected gzip content but the file does not start with the gzip magic bytes",),
            source.at(1),
            raw=first[:_RAW_CAP],
            size=None,
        )
        return
    chunks = _gzip_chunks(stream, first, limits.max_decompressed_bytes) if is_gzip else _plain_chunks(stream, first)
    yield from _split_lines(_bare_cr_as_lf(chunks, limits.max_line_bytes), source, limits, stats, start_line)


_NON_BLANK: Final = re.compile(r"[^\n]+")
# The head of a block searched for runs of blank lines; a quarter of it blank takes the
# blank-run path (a real log has none, so the probe costs one C scan of 64 KiB per block).
_BLANK_PROBE: Final = 65536
# A block of at least this many lines that gave nothing to yield ends with a ReadProgress.
_QUIET_LINES: Final = 4096


def _split_lines(  # noqa: PLR0912, PLR0915 - the reader's hot loop, inlined for throughput (see the benchmark)
    chunks: Iterator[bytes],
    source: SourceRef,
    limits: ReadLimits,
    stats: ReadStats,
    start_line: int,
) -> Iterator[LogLine | BadRow | ReadProgress]:
    layout = limits.default_layout
    line_no = 0
    carry = b""
    overlong_size = 0  # >0 while discarding the rest of an oversized line
    overlong_head = b""
    max_line = limits.max_line_bytes
    quarter_line = max_line // 4  # a str of at most this many characters fits max_line in UTF-8
    cap = limits.max_decompressed_bytes
    skipped = stats.skipped
    over_cap = False
    try:
        for chunk in chunks:
            if over_cap:
                raise _SizeCap()
            if stats.bytes_read + len(chunk) > cap:
                # Keep the complete lines within the cap, then stop with one bad row.
                chunk = chunk[: max(cap - stats.bytes_read, 0)]
                cut = chunk.rfind(b"\n")
                chunk = chunk[: cut + 1] if cut >= 0 else b""
                over_cap = True
            stats.bytes_read += len(chunk)
            if overlong_size:
                newline = chunk.find(b"\n")
                if newline < 0:
                    overlong_size += len(chunk)
                    continue
                overlong_size += newline
                line_no += 1
                stats.lines_read = max(line_no - start_line, 0)
                if line_no > start_line:
                    yield _oversized(source, line_no, overlong_head, overlong_size, max_line)
                overlong_size, overlong_head = 0, b""
                chunk = chunk[newline + 1 :]
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > max_line:
                    overlong_head, overlong_size, carry = carry[:_RAW_CAP], len(carry), b""
                continue
            carry = data[cut + 1 :]
            block = data[:cut]
            if len(carry) > max_line:
                overlong_head, overlong_size, carry = carry[:_RAW_CAP], len(carry), b""
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                lines: list[str] | list[bytes] = block.split(b"\n")
            else:
                if line_no >= start_line and text.count("\n\n", 0, _BLANK_PROBE) * 4 > min(len(text), _BLANK_PROBE):
                    # Mostly blank lines (a newline bomb): step from one non-blank line to the
                    # next and count the blank ones in C, instead of a Python turn for each.
                    base, newlines, position, kept, quiet = line_no, 0, 0, 0, True
                    for match in _NON_BLANK.finditer(text):
                        start = match.start()
                        newlines += text.count("\n", position, start)
                        position = start
                        kept += 1
                        item = _classify(match.group(), base + newlines + 1, source, layout, max_line, skipped)
                        if type(item) is FieldLayout:
                            layout = item
                        elif item is not None:
                            quiet = False
                            yield item  # type: ignore[misc]
                    line_no = base + text.count("\n") + 1
                    skipped["blank"] += line_no - base - kept
                    stats.lines_read = max(line_no - start_line, 0)
                    if quiet and line_no - base >= _QUIET_LINES:
                        yield ReadProgress(line_no)
                    continue
                lines = text.split("\n")
            skipped_before = skipped.total()
            for raw in lines:
                line_no += 1
                if (
                    type(raw) is str
                    and line_no > start_line
                    and raw
                    and raw[0] != "#"
                    and raw[-1] != "\r"
                    and len(raw) <= quarter_line
                ):
                    yield _new_tuple(LogLine, (line_no, raw, layout))  # the common case, without _classify
                    continue
                if line_no <= start_line:
                    if (type(raw) is str and raw.startswith("#Fields:")) or (
                        type(raw) is bytes and raw.startswith(b"#Fields:")
                    ):
                        # The layout a fresh read takes from this line (none when it was a bad
                        # row: not valid UTF-8, or oversized).
                        header = _classify(raw, line_no, source, layout, max_line, Counter())
                        if type(header) is FieldLayout:
                            layout = header
                    continue
                item = _classify(raw, line_no, source, layout, max_line, skipped)
                if item is None:
                    continue
                if type(item) is FieldLayout:
                    layout = item
                    continue
                yield item  # type: ignore[misc]
            stats.lines_read = max(line_no - start_line, 0)
            if len(lines) >= _QUIET_LINES and skipped.total() - skipped_before == len(lines) and line_no > start_line:
                yield ReadProgress(line_no)  # a block of skips only (headers): let the consumer look at its clock
        if over_cap:
            raise _SizeCap()
        if overlong_size:
            line_no += 1
            stats.lines_read = max(line_no - start_line, 0)
            if line_no > start_line:
                yield _oversized(source, line_no, overlong_head, overlong_size, max_line)
        if carry:
            # A last line without a terminating newline is still a complete line.
            line_no += 1
            stats.lines_read = max(line_no - start_line, 0)
            if line_no > start_line:
                try:
                    last: str | bytes = carry.decode("utf-8")
                except UnicodeDecodeError:
                    last = carry
                item = _classify(last, line_no, source, layout, max_line, skipped)
                if type(item) is not FieldLayout and item is not None:
                    yield item  # type: ignore[misc]
    except _CompressionError as exc:
        stats.lines_read = max(line_no + 1 - start_line, 0)
        if line_no + 1 <= start_line:
            return  # reported before the checkpoint this run resumes from
        yield BadRow(
            FailureKind.CORRUPT_COMPRESSION,
            (f"{source.object}: {exc}; {line_no} complete lines were read before the failure",),
            source.at(line_no + 1),
            raw=carry[:_RAW_CAP],
            size=len(carry),
        )
    except _SizeCap:
        stats.lines_read = max(line_no + 1 - start_line, 0)
        if line_no + 1 <= start_line:
            return  # reported before the checkpoint this run resumes from
        yield BadRow(
            FailureKind.SIZE_VIOLATION,
            (
                f"{source.object}: decompressed size exceeds the cap of {cap} bytes "
                f"(gzip bomb or oversized log); reading stopped after line {line_no}",
            ),
            source.at(line_no + 1),
            raw=b"",
            size=None,
        )


class _SizeCap(Exception):
    pass


def _oversized(source: SourceRef, line_no: int, head: bytes, size: int, cap: int) -> BadRow:
    return BadRow(
        FailureKind.SIZE_VIOLATION,
        (f"line is {size} bytes, over the {cap}-byte cap",),
        source.at(line_no),
        raw=head,
        size=size,
    )


def _classify(
    raw: str | bytes,
    line_no: int,
    source: SourceRef,
    layout: FieldLayout | None,
    max_line: int,
    skipped: Counter[str],
) -> LogLine | BadRow | FieldLayout | None:
    """Turn one raw line into a LogLine, a bad row, a new layout (header) or None (skip).

    Only ``#Version:`` and ``#Fields:`` lines are headers (counted skips); another line
    starting with ``#`` is a schema_mismatch bad row, and a header over the line cap a
    size_violation, like any line.
    """
    if type(raw) is bytes:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return BadRow(
                FailureKind.INVALID_UTF8,
                (f"line is not valid UTF-8: {exc.reason} at byte {exc.start}",),
                source.at(line_no),
                raw=raw[:_RAW_CAP],
                size=len(raw),
            )
        raw = raw.decode("utf-8")  # pragma: no cover - decoded above; keeps the type checker honest
    text: str = raw  # type: ignore[assignment]
    if text.endswith("\r"):
        text = text[:-1]
    if not text:
        skipped["blank"] += 1
        return None
    if len(text) > max_line // 4 and len(text.encode("utf-8")) > max_line:
        encoded = text.encode("utf-8")
        return _oversized(source, line_no, encoded[:_RAW_CAP], len(encoded), max_line)
    if text[0] == "#":
        return _hash_line(text, line_no, source, skipped)
    return LogLine(line_no, text, layout)


def _hash_line(text: str, line_no: int, source: SourceRef, skipped: Counter[str]) -> BadRow | FieldLayout | None:
    """A line starting with ``#``: a header (a counted skip; ``#Fields:`` sets the layout) or a bad row."""
    if text.startswith("#Fields:"):
        skipped["header"] += 1
        return FieldLayout.parse(text)
    if text.startswith("#Version:"):
        skipped["header"] += 1
        return None
    return BadRow(
        FailureKind.SCHEMA_MISMATCH,
        ("line starts with '#' but is not a CloudFront header (#Version: or #Fields:)",),
        source.at(line_no),
        raw=text,
    )


# ---------------------------------------------------------------------------- parsing lines
@dataclass(frozen=True, slots=True)
class _Binding:
    """Column positions of one ``#Fields`` layout (-1 where the layout lacks the field)."""

    width: int
    date: int
    time: int
    timestamp_ms: int
    timestamp_s: int
    c_ip: int
    method: int
    host: int
    stem: int
    status: int
    referer: int
    useragent: int
    query: int
    request_id: int
    host_header: int
    protocol: int
    forwarded_for: int
    sc_bytes: int
    double_encoded: bool
    """The layout is a generation that encoded the user agent's and referer's '%' twice."""
    identity: Callable[[list[str]], Sequence[str]]
    """The fields that identify a request (those the layout has), in a fixed order."""
    missing: tuple[str, ...]


def _bind(layout: FieldLayout) -> _Binding:
    index = layout.index

    def at(name: str) -> int:
        return index.get(name, -1)

    missing = []
    has_time = ("date" in index and "time" in index) or "timestamp(ms)" in index or "timestamp" in index
    if not has_time:
        missing.append("date+time (or timestamp)")
    if "cs-uri-stem" not in index:
        missing.append("cs-uri-stem")
    # The client address, query and referrer are not here: the fingerprint hashes them as they
    # leave the pipeline (masked, redacted), never as logged.
    identity = ("date", "time", "cs-uri-stem", "cs(User-Agent)")
    return _Binding(
        width=layout.width,
        date=at("date"),
        time=at("time"),
        timestamp_ms=at("timestamp(ms)"),
        timestamp_s=at("timestamp"),
        c_ip=at("c-ip"),
        method=at("cs-method"),
        host=at("cs(Host)"),
        stem=at("cs-uri-stem"),
        status=at("sc-status"),
        referer=at("cs(Referer)"),
        useragent=at("cs(User-Agent)"),
        query=at("cs-uri-query"),
        request_id=at("x-edge-request-id"),
        host_header=at("x-host-header"),
        protocol=at("cs-protocol"),
        forwarded_for=at("x-forwarded-for"),
        sc_bytes=at("sc-bytes"),
        double_encoded=layout.names in _DOUBLE_ENCODED_LAYOUTS,
        identity=_getter(tuple(index[name] for name in identity if name in index)),
        missing=tuple(missing),
    )


def _getter(positions: tuple[int, ...]) -> Callable[[list[str]], Sequence[str]]:
    """The fields at ``positions`` of a split line, as a sequence (``itemgetter`` does it in C)."""
    if len(positions) == 1:
        single = positions[0]
        return lambda fields: (fields[single],)
    if not positions:
        return lambda fields: ()
    return itemgetter(*positions)


# LogLine(...) or Request(...) through their generated __new__ costs a Python call per line.
_new_tuple: Final = tuple.__new__

_DAYS_BEFORE_MONTH: Final = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MAX_EPOCH_S: Final = 253_402_300_800  # 10000-01-01T00:00:00Z
_LATEST: Final = "9999-12-31T23:59:59.999Z"  # MAX_EPOCH_MS


def date_ms(text: str) -> int | None:
    """``YYYY-MM-DD`` (1970 to 9999) to epoch milliseconds at midnight UTC, or None."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii():
        y, m, d = text[:4], text[5:7], text[8:]
        if y.isdigit() and m.isdigit() and d.isdigit():
            year, month, day = int(y), int(m), int(d)
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
            if 1970 <= year <= 9999 and 1 <= month <= 12 and 1 <= day <= month_days[month - 1]:
                y1 = year - 1
                days = 365 * (year - 1970) + (y1 // 4 - y1 // 100 + y1 // 400) - 477
                days += _DAYS_BEFORE_MONTH[month] + (1 if leap and month > 2 else 0) + day - 1
                return days * 86_400_000
    return None


# Each two-digit field's milliseconds: a lookup both checks and converts it (seconds to 60, a leap second).
_HOUR_MS: Final = {f"{hour:02d}": hour * 3_600_000 for hour in range(24)}
_MINUTE_MS: Final = {f"{minute:02d}": minute * 60_000 for minute in range(60)}
_SECOND_MS: Final = {f"{second:02d}": second * 1000 for second in range(61)}


def time_ms(text: str) -> int | None:
    """``HH:MM:SS`` (optionally ``.fff``) to milliseconds after midnight, or None.

    Computed for every line (a third of a microsecond for ``HH:MM:SS``): a log's times are
    nearly all distinct, so a memo of them mostly missed, and it held megabytes.
    """
    if len(text) == 8 and text[2] == ":" and text[5] == ":":
        hours, minutes, seconds = _HOUR_MS.get(text[:2]), _MINUTE_MS.get(text[3:5]), _SECOND_MS.get(text[6:])
        if hours is None or minutes is None or seconds is None:
            return None
        return hours + minutes + seconds
    if len(text) > 8 and text[5] == ":" and text.isascii():  # HH:MM:SS.fff
        whole, fraction = time_ms(text[:8]), text[8:]
        if whole is not None and fraction[0] == "." and fraction[1:].isdigit() and len(fraction) <= 7:
            return whole + int((fraction[1:] + "000")[:3])
    return None


class CloudFrontW3C:
    """CloudFront's W3C access logs: the first entry of :data:`pipeline.formats.FORMATS`.

    Memoises (bounded) what repeats within a log: layouts' bindings, dates and decoded
    header values.
    """

    name: ClassVar[str] = "cloudfront"

    def __init__(self) -> None:
        self._bindings: BoundedCache[FieldLayout, _Binding] = BoundedCache(256, _bind)
        self._last_layout: FieldLayout | None = None
        self._last_binding = _bind(FieldLayout(()))
        self._dates: BoundedCache[str, int | None] = BoundedCache(10_000, date_ms)
        # Referers and user agents: 20,000 of up to 2 KiB each hold a log's repeated values; distinct
        # ones (a referer per visit) miss whatever the size, so a larger memo only costs memory.
        self._decoded: BoundedCache[str, str] = BoundedCache(20_000, _unescape, max_key_length=2048)
        self._decoded_twice: BoundedCache[str, str] = BoundedCache(20_000, _unescape_twice, max_key_length=2048)

    def read(
        self,
        stream: IO[bytes],
        source: SourceRef,
        limits: ReadLimits | None = None,
        stats: ReadStats | None = None,
        *,
        expect_gzip: bool | None = None,
        start_line: int = 0,
    ) -> Iterator[LogLine | BadRow | ReadProgress]:
        return read_lines(stream, source, limits, stats, expect_gzip=expect_gzip, start_line=start_line)

    def parse(self, line: LogLine, source: SourceRef, screen: RequestScreen | None = None) -> Request | BadRow | Skip:  # noqa: PLR0912, PLR0915 - runs once per log line: inlined for throughput
        """Bind the line's fields by its layout, check and convert them (never raises)."""
        line_no, text, layout = line  # unpacked once: each named-field access is a lookup
        if layout is None:
            return _bad(FailureKind.SCHEMA_MISMATCH, [NO_LAYOUT], line, source)
        if layout is self._last_layout:  # layouts change only at a #Fields header
            b = self._last_binding
        else:
            b = self._bindings[layout]
            self._last_layout, self._last_binding = layout, b
        if b.missing:
            return _bad(
                FailureKind.SCHEMA_MISMATCH,
                [f"the #Fields header lacks required field(s): {', '.join(b.missing)}"],
                line,
                source,
            )
        f = text.split("\t")
        if len(f) != b.width:
            return _bad(
                FailureKind.FIELD_COUNT,
                [f"expected {b.width} tab-separated fields as the #Fields header declares, found {len(f)}"],
                line,
                source,
            )
        collector: int | None = None
        if b.date >= 0 and b.time >= 0 and b.timestamp_ms < 0:
            day, clock = self._dates[f[b.date]], time_ms(f[b.time])  # dates: a memo, computed on a first sight
            if day is not None and clock is not None and day + clock <= MAX_EPOCH_MS:
                collector = day + clock
        if collector is not None:
            errors: list[str] = []
        else:  # another time field, or an invalid value: say what is wrong
            collector, errors = self._collector_tstamp(f, b)
        if b.status >= 0:
            status = f[b.status]
            if not (len(status) == 3 and status.isdigit() and status.isascii()) and status != "-":
                errors.append(f"sc-status: {status[:50]!r} is not a 3-digit HTTP status")
        if b.sc_bytes >= 0:
            sc_bytes = f[b.sc_bytes]
            if not (sc_bytes.isdigit() and sc_bytes.isascii()) and sc_bytes != "-":
                errors.append(f"sc-bytes: {sc_bytes[:50]!r} is not a byte count")
        if errors or collector is None:
            return _bad(FailureKind.FIELD_INVALID, errors, line, source)
        value = self._value
        method = f[b.method] if b.method >= 0 else "GET"
        stem = f[b.stem]
        path = (stem if "%" not in stem and stem != "-" else value(stem)) or "/"
        if screen is not None:
            skip = screen[(method, path)]
            if skip is not None:
                return skip
        # The common cases inline (absent, or no escapes); escaped values through the memo.
        decoded = self._decoded
        headers = self._decoded_twice if b.double_encoded else decoded
        query = f[b.query] if b.query >= 0 else "-"
        referer: str | None = f[b.referer] if b.referer >= 0 else None
        if referer == "-" or not referer:
            referer = None
        elif "%" in referer:
            # CloudFront leaves a bare '%' at the end of some referers: dropped, as Snowplow's loader did.
            referer = headers[referer[:-1] if referer[-1] == "%" else referer] or None
        useragent: str | None = f[b.useragent] if b.useragent >= 0 else None
        if useragent == "-" or not useragent:
            useragent = None
        elif "%" in useragent:
            useragent = headers[useragent]
        forwarded: str | None = f[b.forwarded_for] if b.forwarded_for >= 0 else None
        if forwarded == "-" or not forwarded:
            forwarded = None
        elif "%" in forwarded:
            forwarded = unquote(forwarded)
        c_ip = f[b.c_ip] if b.c_ip >= 0 else "-"
        request_id = f[b.request_id] if b.request_id >= 0 else "-"
        protocol = f[b.protocol] if b.protocol >= 0 else "-"
        host: str | None = f[b.host_header] if b.host_header >= 0 else "-"
        if host == "-" or not host:
            host = value(f[b.host]) if b.host >= 0 else None
        elif "%" in host:
            host = decoded[host]
        return _new_tuple(
            Request,
            (
                line_no,
                collector,
                method,
                path,
                # CloudFront percent-encodes '%' once more when it writes the log: undo exactly once.
                query.replace("%25", "%") if query and query != "-" else None,
                referer,
                useragent,
                c_ip if c_ip != "-" else None,
                forwarded,
                request_id if request_id and request_id != "-" else None,
                host,
                protocol if protocol != "-" else None,
                b.identity(f),
                text,
            ),
        )

    def _value(self, text: str) -> str | None:
        """A header field with CloudFront's own URL-encoding undone once; ``-`` means absent."""
        if text == "-" or not text:
            return None
        if "%" not in text:
            return text
        return self._decoded[text]

    def _collector_tstamp(self, f: list[str], b: _Binding) -> tuple[int | None, list[str]]:
        """The request time from the layout's time fields, or None and what is wrong with them."""
        if b.timestamp_ms >= 0:
            millis, error = _epoch_millis(f[b.timestamp_ms])
        elif b.date >= 0 and b.time >= 0:
            return self._date_time(f[b.date], f[b.time])
        else:
            millis, error = _epoch_seconds(f[b.timestamp_s])
        return millis, [error] if error else []

    def _date_time(self, date_text: str, time_text: str) -> tuple[int | None, list[str]]:
        errors: list[str] = []
        day, clock = self._dates[date_text], time_ms(time_text)
        if day is None:
            errors.append(f"date: {date_text[:50]!r} is not a valid YYYY-MM-DD date")
        if clock is None:
            errors.append(f"time: {time_text[:50]!r} is not a valid HH:MM:SS time")
        if day is None or clock is None:
            return None, errors
        if day + clock > MAX_EPOCH_MS:  # a leap second on 9999-12-31
            errors.append(f"date+time: '{date_text} {time_text[:50]}' is after {_LATEST}")
            return None, errors
        return day + clock, errors


def _epoch_millis(text: str) -> tuple[int | None, str | None]:
    """Standard logging v2's ``timestamp(ms)``: the time, or None and what is wrong."""
    if text.isascii() and text.isdigit() and len(text) <= 15:
        millis = int(text)
        if millis <= MAX_EPOCH_MS:
            return millis, None
        return None, f"timestamp(ms): {text!r} is after {_LATEST}, the latest time an event can hold"
    return None, f"timestamp(ms): {text[:50]!r} is not epoch milliseconds"


def _epoch_seconds(text: str) -> tuple[int | None, str | None]:
    """Standard logging v2's ``timestamp`` (epoch seconds, fractional): milliseconds, or None and what is wrong."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < _MAX_EPOCH_S or not text.isascii():
        return None, f"timestamp: {text[:50]!r} is not epoch seconds"
    millis = round(seconds * 1000)
    if millis > MAX_EPOCH_MS:  # within the last millisecond of 9999, rounded up
        return None, f"timestamp: {text[:50]!r} is after {_LATEST}"
    return millis, None


_DOUBLE_ENCODED_PERCENT: Final = re.compile(r"%25([0-9A-Fa-f]{2})")
_DOUBLE_ENCODED_LAYOUTS: Final = frozenset(LEGACY_FIELDS[:count] for count in DOUBLE_ENCODED_GENERATIONS)


def _unescape_twice(text: str) -> str:
    """A header value of a :data:`DOUBLE_ENCODED_GENERATIONS` log: ``%25XX`` made ``%XX``, then :func:`_unescape`."""
    return _unescape(_DOUBLE_ENCODED_PERCENT.sub(r"%\1", text))


def _unescape(text: str) -> str:
    """CloudFront's URL-encoding of a header value undone once (a value that does not decode is kept as logged)."""
    try:
        return unquote_strict(text)
    except UnicodeDecodeError:
        return text  # not decodable: keep the logged form rather than invent characters


def _bad(kind: FailureKind, messages: list[str], line: LogLine, source: SourceRef) -> BadRow:
    return BadRow(kind, tuple(messages), source.at(line.line_no), raw=line.text)
