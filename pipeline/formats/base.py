"""What every input format provides: lines from a stream, and a typed request from a line.

A format module implements :class:`LogFormat` and adds one line to the registry in
:mod:`pipeline.formats`.  Extract uses :meth:`LogFormat.read` (object bytes to lines, every
problem a bad row); Transform uses :meth:`LogFormat.parse` (a line to a :class:`Request`),
so the transform depends on :class:`Request` and never on how a format lays out its lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Final, NamedTuple, Protocol

from pipeline.badrows import BadRow, SourceRef

DEFAULT_MAX_LINE_BYTES: Final = 128 * 1024
DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 4 * 1024**3

NO_LAYOUT: Final = "no #Fields header precedes this line"
"""The message of the bad row a line gets when nothing says how to split it: the file is
probably not a log of the format at all, which the run reports per file."""


@dataclass(frozen=True)
class FieldLayout:
    """The column names of a delimited format (CloudFront's ``#Fields:`` header), in order."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, header_line: str) -> FieldLayout:
        """Parse ``#Fields: a b c`` (the prefix is optional)."""
        text = header_line.strip()
        if text.startswith("#Fields:"):
            text = text[len("#Fields:") :]
        return cls(tuple(text.split()))

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
    """The layout in force, or None when no header (and no default) precedes it."""


@dataclass(frozen=True)
class ReadLimits:
    """Caps that keep memory and time bounded whatever the input.

    The defaults here serve direct callers (tests, the testing kit); the pipeline builds its
    limits from ``[extract]`` in configuration, whose shipped values a test pins to these.
    """

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """Longer lines become size_violation bad rows (CloudFront caps URLs at 8 KiB, headers at 20 KiB)."""
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    """Reading stops at this many decompressed bytes (gzip bombs): one size_violation bad row."""
    default_layout: FieldLayout | None = None
    """Layout for lines that precede any header; None makes them schema_mismatch bad rows."""


@dataclass
class ReadStats:
    """Counters of one read; ``lines_read`` covers every line, whatever became of it."""

    lines_read: int = 0
    bytes_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


class ReadProgress(NamedTuple):
    """What a reader yields after a stretch of lines that gave nothing to yield (blank lines,
    headers): every line up to ``line_no`` has been read and counted.  A consumer may look at
    its clock or checkpoint there; it is neither a line nor a bad row, and counts nothing."""

    line_no: int


class Request(NamedTuple):
    """One HTTP request as the transform needs it, whatever format logged it.

    Values are decoded from the format's own escaping (CloudFront URL-encodes header values
    once more); ``None`` means the format did not log the value (or logged it as empty).
    """

    line_no: int
    collector_tstamp: int
    """When the collector (CloudFront's edge) received the request, epoch milliseconds UTC."""
    method: str
    path: str
    """The request path, decoded ("/" when the format logged none); tracker paths are matched on it."""
    query: str | None
    """The query string without its ``?``, with the tracker's own percent-encoding kept."""
    referer: str | None
    useragent: str | None
    client_ip: str | None
    forwarded_for: str | None
    """The X-Forwarded-For list, as the client sent it."""
    request_id: str | None
    """An id unique to the request (CloudFront's x-edge-request-id): the base of derived event ids."""
    host: str | None
    """The Host the client asked for (the site's own name where the format logs it)."""
    scheme: str | None
    identity: Sequence[str]
    """The logged fields that identify the request, for the fingerprint of an event built from it.

    Leave out the client address, the query and the referrer (and anything else a privacy
    step masks): the fingerprint adds those in their output form, so that it never reveals
    what the pipeline anonymizes."""
    raw: str
    """The line as logged: the payload of a bad row made from this request."""


class Skip(NamedTuple):
    """A request deliberately not turned into an event (counted under ``reason``)."""

    reason: str


class RequestScreen(Protocol):
    """``screen[(method, decoded path)]``: a :class:`Skip` when the consumer does not want the request, else None.

    A format applies it after checking the line's fields and before building the
    :class:`Request`, so lines that would be skipped (assets, pages, anything but tracker
    hits) cost no decoding.  It is a mapping so that a memo (a
    :class:`~pipeline.cache.BoundedCache`) answers a repeated path with a dict lookup.
    """

    def __getitem__(self, request: tuple[str, str], /) -> Skip | None: ...


class LogFormat(Protocol):
    """An input format: how to read its lines, and how to turn a line into a :class:`Request`.

    ``read`` never raises for bad data: every physical line ends as exactly one of a
    :class:`LogLine` (yielded), a :class:`~pipeline.badrows.BadRow` (yielded) or a counted
    skip in ``stats.skipped``.  ``parse`` never raises either: a line it cannot read is a bad
    row.  Instances may memoise (bounded); make one per consumer with :func:`pipeline.formats.get_format`.
    """

    @property
    def name(self) -> str:
        """The format's name in the registry and on stream-1 records (a class variable)."""
        ...

    def read(
        self,
        stream: IO[bytes],
        source: SourceRef,
        limits: ReadLimits | None = None,
        stats: ReadStats | None = None,
        *,
        expect_gzip: bool | None = None,
        start_line: int = 0,
    ) -> Iterator[LogLine | BadRow | ReadProgress]: ...

    def parse(self, line: LogLine, source: SourceRef, screen: RequestScreen | None = None) -> Request | BadRow | Skip:
        """The line's request; a bad row when the line cannot be read; ``screen``'s Skip when it is not wanted."""
        ...
