"""The collector's stream-1 lines: one tracker event (or one bad request) per line, as JSON.

The Lambda collector (``extract/collector.py``) writes each request it accepts as a
:class:`~pipeline.records.RawBatch` in this format: one line per tracker event (a pixel
request is one event, a tp2 POST one per element of its ``payload_data``), carrying the
event's query string, the request headers that matter, the client address, the collector's
clock and the network user id it chose.  :class:`CollectorPayloads` turns a line into the same
:class:`~pipeline.formats.base.Request` a CloudFront log line of the same pixel request gives,
so Transform makes the same canonical event from either input; only ``v_collector`` (the
collector's name, sent as the protocol's ``cv``) differs, and ``network_userid`` is the
collector's cookie (CloudFront never sees it), sent as ``nuid`` unless the tracker sent one.

A request the collector could not accept is written too, as a line naming the failure
(``bad``), so that every rejected request leaves a bad row on the same durable path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, ClassVar, Final
from urllib.parse import quote

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.formats.base import LogLine, ReadLimits, ReadProgress, ReadStats, Request, RequestScreen, Skip

TRACKER_PATH: Final = "/i"
"""The path of every collector request as Transform sees it: a tracker-protocol pixel hit
(``transform.tracker_paths`` must list it, as the shipped configuration does)."""
ANONYMOUS_NUID: Final = "00000000-0000-0000-0000-000000000000"
"""The network user id of a request sent with ``SP-Anonymous`` (Snowplow's collector uses the same)."""
# encodeURIComponent's unreserved characters: a POSTed event's values are encoded as the
# JavaScript tracker encodes them in a GET, so both give the same tracker pairs (fingerprint).
_URI_COMPONENT_SAFE: Final = "-_.!~*'()"
_BAD_KINDS: Final = frozenset(kind.value for kind in FailureKind)


@dataclass(frozen=True, slots=True)
class CollectorPayload:
    """One line of a collector batch: a tracker event, or (``bad`` set) a request turned away."""

    tstamp: int
    """When the collector received the request, epoch milliseconds UTC."""
    request_id: str
    """Unique to the event (the request's id and the event's position in it)."""
    query: str | None = None
    """The event's tracker-protocol query string (a POSTed event re-encoded as its GET would be)."""
    useragent: str | None = None
    referer: str | None = None
    client_ip: str | None = None
    """The address the request came from (None for an ``SP-Anonymous`` request)."""
    forwarded_for: str | None = None
    host: str | None = None
    nuid: str | None = None
    """The network user id the collector chose (cookie, ``nuid`` override, or all zeros)."""
    version: str | None = None
    """The collector's name and version, v_collector of its events."""
    bad: str | None = None
    """A :class:`~pipeline.badrows.FailureKind` value when the request was turned away, else None."""
    messages: tuple[str, ...] = ()
    raw: str | None = None
    """What was received of a turned-away request (capped)."""
    size: int | None = None
    """The size in bytes of what was received, when ``raw`` is capped."""

    def to_line(self) -> str:
        """The compact JSON line (absent values left out)."""
        fields = {key: value for key, value in asdict(self).items() if value not in (None, ())}
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def event_query(event: Mapping[str, object]) -> str:
    """A POSTed tp2 event (``payload_data`` element) as the query string its GET would carry."""
    return "&".join(
        f"{quote(str(name), safe=_URI_COMPONENT_SAFE)}={quote(_text(value), safe=_URI_COMPONENT_SAFE)}"
        for name, value in event.items()
    )


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))  # a number, bool or nested JSON sent unquoted


def _has_param(query: str, name: str) -> bool:
    prefix = name + "="
    return any(pair.startswith(prefix) for pair in query.split("&"))


def _iso(tstamp: int) -> str:
    return datetime.fromtimestamp(tstamp / 1000, UTC).isoformat(timespec="milliseconds")


class CollectorPayloads:
    """The collector's lines: registered as ``collector`` in :data:`pipeline.formats.FORMATS`."""

    name: ClassVar[str] = "collector"

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
        """Lines of a file of collector lines (an export of stream 1); the collector never writes to S3."""
        stats = stats if stats is not None else ReadStats()
        for line_no, raw in enumerate(stream, 1):
            stats.lines_read += 1
            stats.bytes_read += len(raw)
            text = raw.rstrip(b"\r\n")
            if line_no <= start_line:
                continue
            if not text:
                stats.skipped["blank"] += 1
                continue
            try:
                yield LogLine(line_no, text.decode("utf-8"), None)
            except UnicodeDecodeError as exc:
                message = f"line is not valid UTF-8: {exc.reason}"
                yield BadRow(FailureKind.INVALID_UTF8, (message,), source.at(line_no), raw=text)

    def parse(self, line: LogLine, source: SourceRef, screen: RequestScreen | None = None) -> Request | BadRow | Skip:
        """The line's pixel request; its bad row when the collector turned the request away (never raises)."""
        payload = parse_line(line.text)
        if isinstance(payload, str):
            return BadRow(FailureKind.SCHEMA_MISMATCH, (payload,), source.at(line.line_no), raw=line.text)
        if payload.bad is not None:
            kind = FailureKind(payload.bad)
            return BadRow(kind, payload.messages, source.at(line.line_no), raw=payload.raw or "", size=payload.size)
        if screen is not None:
            skip = screen[("GET", TRACKER_PATH)]
            if skip is not None:
                return skip
        query = payload.query or ""
        extra = []
        if payload.nuid and not _has_param(query, "nuid") and not _has_param(query, "tnuid"):
            extra.append("nuid=" + quote(payload.nuid, safe=_URI_COMPONENT_SAFE))
        if payload.version:
            extra.append("cv=" + quote(payload.version, safe=_URI_COMPONENT_SAFE))
        if extra:
            query = "&".join([query, *extra]) if query else "&".join(extra)
        return Request(
            line.line_no,
            payload.tstamp,
            "GET",
            TRACKER_PATH,
            query or None,
            payload.referer,
            payload.useragent,
            payload.client_ip,
            payload.forwarded_for,
            payload.request_id,
            payload.host,
            "https",
            (_iso(payload.tstamp), TRACKER_PATH, payload.useragent or ""),
            line.text,
        )


def parse_line(text: str) -> CollectorPayload | str:  # noqa: PLR0911 - one answer per check
    """A line as a :class:`CollectorPayload`, or what is wrong with it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"collector line is not JSON: {exc}"
    if not isinstance(value, dict):
        return "collector line is not a JSON object"
    tstamp, request_id = value.get("tstamp"), value.get("request_id")
    if type(tstamp) is not int or tstamp < 0 or not isinstance(request_id, str):
        return "collector line lacks an integer tstamp or a request_id"
    strings = ("query", "useragent", "referer", "client_ip", "forwarded_for", "host", "nuid", "version", "raw")
    for name in strings:
        if value.get(name) is not None and not isinstance(value[name], str):
            return f"collector line: {name} is not a string"
    bad = value.get("bad")
    if bad is not None and bad not in _BAD_KINDS:
        return f"collector line: unknown failure kind {bad!r}"
    messages = value.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        return "collector line: messages is not a list of strings"
    size = value.get("size")
    if size is not None and type(size) is not int:
        return "collector line: size is not an integer"
    return CollectorPayload(
        tstamp,
        request_id,
        **{name: value.get(name) for name in strings},
        bad=bad,
        messages=tuple(messages),
        size=size,
    )
