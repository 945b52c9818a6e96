"""CloudFront access logs (W3C): read lines from a gzipped or plain file object.

The reader streams any binary file object with bounded memory, binds columns by name from
the ``#Fields:`` header (every legacy generation from 12 to 33 fields, and the arbitrary
field subsets standard logging v2 writes), splits on ``\\n`` only and turns every problem
into a bad row.  Reference: shared/reference/cloudfront-logs.md.

Every physical line ends as exactly one of: a :class:`LogLine` (yielded), a
:class:`~pipeline.badrows.BadRow` (yielded) or a counted skip (``ReadStats.skipped``).
The unreadable remainder of a damaged file counts as one more line, carried by the one
file-level bad row that names the failure.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Final, NamedTuple

from pipeline.badrows import BadRow, FailureKind, SourceRef

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

GZIP_MAGIC: Final = b"\x1f\x8b"
_READ_SIZE: Final = 256 * 1024
_RAW_CAP: Final = 64 * 1024  # bytes of an oversized payload kept in its bad row


@dataclass(frozen=True)
class FieldLayout:
    """The column names of a ``#Fields:`` header, in order."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, header_line: str) -> FieldLayout:
        """Parse ``#Fields: a b c`` (the prefix is optional)."""
        text = header_line.strip()
        if text.startswith("#Fields:"):
            text = text[len("#Fields:") :]
        return cls(tuple(text.split()))

    @classmethod
    def legacy(cls, count: int = 33) -> FieldLayout:
        """The legacy layout of a given generation (12, 15, 18, 19, 23, 24, 26 or 33 fields)."""
        if count not in GENERATIONS:
            raise ValueError(f"no CloudFront legacy generation has {count} fields; known: {GENERATIONS}")
        return cls(LEGACY_FIELDS[:count])

    def format(self) -> str:
        return "#Fields: " + " ".join(self.names)

    @cached_property
    def index(self) -> dict[str, int]:
        """Column position by field name (first occurrence wins)."""
        positions: dict[str, int] = {}
        for position, name in enumerate(self.names):
            positions.setdefault(name, position)
        return positions

    @property
    def width(self) -> int:
        return len(self.names)


class LogLine(NamedTuple):
    """One complete, UTF-8 decoded log line (without its terminator)."""

    line_no: int
    text: str
    layout: FieldLayout | None
    """The layout in force, or None when no ``#Fields`` header (and no default) precedes it."""


@dataclass(frozen=True)
class ReadLimits:
    """Caps that keep memory and time bounded whatever the input."""

    max_line_bytes: int = 128 * 1024
    """Longer lines become size_violation bad rows (CloudFront caps URLs at 8 KiB, headers at 20 KiB)."""
    max_decompressed_bytes: int = 2 * 1024**3
    """Reading stops at this many decompressed bytes (gzip bombs): one size_violation bad row."""
    default_layout: FieldLayout | None = None
    """Layout for lines that precede any ``#Fields`` header; None makes them schema_mismatch bad rows."""


@dataclass
class ReadStats:
    """Counters of one read; ``lines_read`` covers every line, whatever became of it."""

    lines_read: int = 0
    bytes_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


class _CompressionError(Exception):
    pass


def _gzip_chunks(stream: IO[bytes], first: bytes, limit: int) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream chunk by chunk.

    Output is produced in bounded pieces (``decompress(..., max_length)``) so a bomb never
    materialises; raises _CompressionError on corrupt, truncated or trailing-garbage input.
    """
    decompressor = zlib.decompressobj(wbits=31)
    pending = first
    produced = 0
    while True:
        if not pending:
            pending = stream.read(_READ_SIZE)
            if not pending:
                if decompressor.eof or (produced == 0 and not decompressor.unconsumed_tail):
                    return
                raise _CompressionError("truncated gzip stream (unexpected end of file)")
        try:
            out = decompressor.decompress(pending, _READ_SIZE)
        except zlib.error as exc:
            raise _CompressionError(f"corrupt gzip data: {exc}") from exc
        pending = decompressor.unconsumed_tail
        if out:
            produced += len(out)
            yield out
        if decompressor.eof:
            rest = decompressor.unused_data + pending
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
) -> Iterator[LogLine | BadRow]:
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
    yield from _split_lines(chunks, source, limits, stats, start_line)


def _split_lines(
    chunks: Iterator[bytes],
    source: SourceRef,
    limits: ReadLimits,
    stats: ReadStats,
    start_line: int,
) -> Iterator[LogLine | BadRow]:
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
                lines: list[str] | list[bytes] = block.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                lines = block.split(b"\n")
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
                    yield LogLine(line_no, raw, layout)  # the common case, without _classify
                    continue
                if line_no <= start_line:
                    if type(raw) is str and raw.startswith("#Fields:"):
                        layout = FieldLayout.parse(raw)
                    elif type(raw) is bytes and raw.startswith(b"#Fields:"):
                        # As in _classify: a header that is not valid UTF-8 was a bad row, not a layout.
                        try:
                            layout = FieldLayout.parse(raw.decode("utf-8"))
                        except UnicodeDecodeError:
                            pass
                    continue
                item = _classify(raw, line_no, source, layout, max_line, skipped)
                if item is None:
                    continue
                if type(item) is FieldLayout:
                    layout = item
                    continue
                yield item  # type: ignore[misc]
            stats.lines_read = max(line_no - start_line, 0)
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
                    text: str | bytes = carry.decode("utf-8")
                except UnicodeDecodeError:
                    text = carry
                item = _classify(text, line_no, source, layout, max_line, skipped)
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
    """Turn one raw line into a LogLine, a bad row, a new layout (header) or None (skip)."""
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
    if text[0] == "#":
        if text.startswith("#Fields:"):
            skipped["header"] += 1
            return FieldLayout.parse(text)
        skipped["header"] += 1
        return None
    if len(text) > max_line // 4 and len(text.encode("utf-8")) > max_line:
        encoded = text.encode("utf-8")
        return _oversized(source, line_no, encoded[:_RAW_CAP], len(encoded), max_line)
    return LogLine(line_no, text, layout)
