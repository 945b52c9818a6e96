"""Build CloudFront log lines and files the way CloudFront writes them (see :mod:`pipeline.testing`).

Values are encoded as CloudFront encodes them: the tracker's own percent-encoding is kept
and CloudFront encodes ``%`` once more (``%3A`` is logged as ``%253A``); spaces in headers
become ``%20``.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from pipeline.formats.base import FieldLayout
from pipeline.formats.cloudfront import legacy_layout

DEFAULT_VALUES: Final[dict[str, str]] = {
    "date": "2024-11-15",
    "time": "19:45:51",
    "x-edge-location": "SOF50-P2",
    "sc-bytes": "520",
    "c-ip": "203.0.113.77",
    "cs-method": "GET",
    "cs(Host)": "d111111abcdef8.cloudfront.net",
    "cs-uri-stem": "/i",
    "sc-status": "200",
    "cs(Referer)": "https://www.example.com/",
    "cs(User-Agent)": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "cs-uri-query": "-",
    "cs(Cookie)": "-",
    "x-edge-result-type": "Hit",
    "x-edge-request-id": "-",
    "x-host-header": "www.example.com",
    "cs-protocol": "https",
    "cs-bytes": "300",
    "time-taken": "0.001",
    "x-forwarded-for": "-",
    "ssl-protocol": "TLSv1.3",
    "ssl-cipher": "TLS_AES_128_GCM_SHA256",
    "x-edge-response-result-type": "Hit",
    "cs-protocol-version": "HTTP/2.0",
    "fle-status": "-",
    "fle-encrypted-fields": "-",
    "c-port": "55000",
    "time-to-first-byte": "0.001",
    "x-edge-detailed-result-type": "Hit",
    "sc-content-type": "image/gif",
    "sc-content-len": "43",
    "sc-range-start": "-",
    "sc-range-end": "-",
}
# Header fields CloudFront URL-encodes when it writes them.
_ENCODED_FIELDS: Final = frozenset({"cs(User-Agent)", "cs(Referer)", "cs(Cookie)"})


def cloudfront_encode(value: str) -> str:
    """Encode a header value as CloudFront logs it (spaces, '%' and controls percent-encoded)."""
    return quote(value, safe="/:;,()=?&.+-_~!*'@$[]")


def tracker_query(params: Mapping[str, str], *, logged: bool = True) -> str:
    """A tracker query string; ``logged=True`` applies CloudFront's extra encoding of '%'."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return query.replace("%", "%25") if logged else query


@dataclass
class LogBuilder:
    """Accumulates lines of one CloudFront log file for a given layout."""

    __test__ = False  # not a pytest test class

    fields: int | tuple[str, ...] = 33
    lines: list[str] = field(default_factory=list)

    @property
    def layout(self) -> FieldLayout:
        if isinstance(self.fields, int):
            return legacy_layout(self.fields)
        return FieldLayout(self.fields)

    def line(self, values: Mapping[str, str] | None = None, **by_keyword: str) -> str:
        """One tab-separated line from raw values (headers are CloudFront-encoded here).

        Keywords use underscores (``uri_stem`` -> ``cs-uri-stem``); ``values`` takes field names.
        """
        merged = dict(DEFAULT_VALUES)
        merged.update(values or {})
        merged.update({_keyword_field(k): v for k, v in by_keyword.items()})
        for key in _ENCODED_FIELDS:
            if merged.get(key, "-") != "-":
                merged[key] = cloudfront_encode(merged[key])
        return "\t".join(merged.get(name, "-") for name in self.layout.names)

    def add(self, values: Mapping[str, str] | None = None, **by_keyword: str) -> LogBuilder:
        self.lines.append(self.line(values, **by_keyword))
        return self

    def add_raw(self, text: str) -> LogBuilder:
        self.lines.append(text)
        return self

    def to_text(self, *, header: bool = True) -> str:
        head = f"#Version: 1.0\n{self.layout.format()}\n" if header else ""
        return head + "".join(line + "\n" for line in self.lines)

    def to_bytes(self, *, header: bool = True) -> bytes:
        return self.to_text(header=header).encode("utf-8")

    def to_gzip(self, *, header: bool = True) -> bytes:
        return gzip.compress(self.to_bytes(header=header), mtime=0)


_KEYWORDS: Final = {
    "uri_stem": "cs-uri-stem",
    "query": "cs-uri-query",
    "method": "cs-method",
    "status": "sc-status",
    "referer": "cs(Referer)",
    "user_agent": "cs(User-Agent)",
    "host": "cs(Host)",
    "host_header": "x-host-header",
    "request_id": "x-edge-request-id",
    "forwarded_for": "x-forwarded-for",
    "client_ip": "c-ip",
    "protocol": "cs-protocol",
}


def _keyword_field(keyword: str) -> str:
    return _KEYWORDS.get(keyword, keyword.replace("_", "-"))


# --------------------------------------------------------------------------------------------
# One-call builders: a line, a tracker hit, a file, self-describing JSON
# --------------------------------------------------------------------------------------------


def _underscored(name: str) -> str:
    """``cs(User-Agent)`` -> ``cs_user_agent``: a field name as a Python keyword."""
    return name.lower().replace("(", "_").replace(")", "").replace("-", "_")


LOG_FIELD_KEYWORDS: Final[dict[str, str]] = {
    **{_underscored(name): name for name in DEFAULT_VALUES},
    **_KEYWORDS,
    "edge_location": "x-edge-location",
    "content_type": "sc-content-type",
}
"""The keywords :func:`cloudfront_line` and :func:`tracker_hit` read as log fields, by field name.

Every one of the 33 fields by its underscored name (``cs_user_agent``, ``x_edge_location``,
``c_ip``...), plus short aliases: ``date``, ``time``, ``client_ip``, ``user_agent``, ``referer``,
``host``, ``host_header``, ``uri_stem``, ``query``, ``method``, ``status``, ``request_id``,
``forwarded_for``, ``protocol``, ``edge_location``, ``content_type``.  None is a tracker parameter
name (``cookie`` is one, so the Cookie header is ``cs_cookie``)."""

UNSTRUCT_EVENT_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
"""The envelope of a self-describing event (``ue_pr``/``ue_px``)."""
CONTEXTS_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
"""The envelope of the context entities of an event (``co``/``cx``)."""


def _layout_of(fields: int | tuple[str, ...]) -> FieldLayout:
    return legacy_layout(fields) if isinstance(fields, int) else FieldLayout(fields)


def _log_values(keywords: Mapping[str, object]) -> dict[str, str]:
    unknown = sorted(k for k in keywords if k not in LOG_FIELD_KEYWORDS)
    if unknown:
        raise TypeError(f"not log fields: {unknown}; see pipeline.testing.LOG_FIELD_KEYWORDS for the names")
    return {LOG_FIELD_KEYWORDS[k]: str(v) for k, v in keywords.items()}


def cloudfront_line(*, fields: int | tuple[str, ...] = 33, **values: object) -> str:
    """One access-log line exactly as CloudFront writes it: tab-separated, ``-`` for empty.

    Every field defaults to :data:`DEFAULT_VALUES` (a pixel ``GET /i`` on 15 November 2024);
    keywords override them by the names of :data:`LOG_FIELD_KEYWORDS` (``date="2024-12-01"``,
    ``user_agent="curl/8.0"``, ``client_ip="198.51.100.7"``, ``status=404``).  Header values
    (user agent, referer, cookie) are given as the browser sent them and percent-encoded the way
    CloudFront logs them; ``query`` is written as given (already as logged, see :func:`tracker_query`).
    ``fields`` is the layout: a legacy generation's field count (12 ... 33) or the field names.
    An unknown keyword raises ``TypeError``.
    """
    return LogBuilder(fields=fields).line(_log_values(values))


def tracker_hit(e: str = "pv", url: str | None = None, *, fields: int | tuple[str, ...] = 33, **params: object) -> str:
    """One CloudFront line of a tracker pixel request (``GET /i?...``) carrying tracker ``params``.

    Keywords are tracker-protocol parameters (``eid``, ``aid``, ``p``, ``tv``, ``ue_px``...) given
    with their plain values; the query is encoded as the tracker encodes it and then a second
    time, as CloudFront logs it (``%`` becomes ``%25``), so ``url="https://a.example/?q=%2F"``
    reaches the pipeline's ``page_url`` unchanged.  Keywords named in :data:`LOG_FIELD_KEYWORDS`
    (``date``, ``time``, ``user_agent``, ``client_ip``...) set log fields instead; ``query``
    cannot be given (it is built here).  ``url=None`` leaves ``url`` out.
    """
    if "query" in params:
        raise TypeError("tracker_hit builds the query from its tracker parameters; use cloudfront_line(query=...)")
    log_keywords = {k: v for k, v in params.items() if k in LOG_FIELD_KEYWORDS}
    tracker = {"e": e, **({"url": url} if url is not None else {})}
    tracker.update({k: str(v) for k, v in params.items() if k not in LOG_FIELD_KEYWORDS})
    values = _log_values(log_keywords)
    values.setdefault("cs-uri-stem", "/i")
    values["cs-uri-query"] = tracker_query(tracker)
    return LogBuilder(fields=fields).line(values)


def cloudfront_log(lines: Iterable[str], fields: int | tuple[str, ...] = 33) -> str:
    """A whole log file's text: ``#Version: 1.0``, the ``#Fields:`` header of ``fields``, then ``lines``.

    Lines are written as given, one per line (a trailing newline is dropped first), so a
    deliberately malformed line stays malformed.  ``gzip.compress(text.encode())`` -- or
    :func:`gzip_log` -- makes the ``.gz`` object CloudFront delivers.
    """
    if isinstance(lines, str):
        raise TypeError("cloudfront_log takes a list of lines, not one string")
    head = f"#Version: 1.0\n{_layout_of(fields).format()}\n"
    return head + "".join(line.rstrip("\n") + "\n" for line in lines)


def gzip_log(text: str | bytes) -> bytes:
    """``text`` gzipped as a CloudFront log object (deterministic: no timestamp in the header)."""
    return gzip.compress(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text, mtime=0)


def _b64url_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # The JavaScript tracker's encoding: base64url without padding.
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def entity(schema: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A self-describing JSON entity ``{"schema": schema, "data": data}`` (for :func:`contexts`)."""
    return {"schema": schema, "data": dict(data)}


def self_describing_event(schema: str, data: Mapping[str, Any], *, base64url: bool = True) -> dict[str, str]:
    """The tracker parameter of a self-describing event, to splat into :func:`tracker_hit`.

    ``{"ue_px": <base64url>}`` (``{"ue_pr": <JSON>}`` with ``base64url=False``) of the
    ``unstruct_event`` envelope around ``{"schema": schema, "data": data}``::

        tracker_hit(e="ue", **self_describing_event("iglu:com.acme/signup/jsonschema/1-0-0", {"plan": "pro"}))
    """
    envelope = {"schema": UNSTRUCT_EVENT_SCHEMA, "data": entity(schema, data)}
    if base64url:
        return {"ue_px": _b64url_json(envelope)}
    return {"ue_pr": json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))}


def contexts(*entities: Mapping[str, Any], base64url: bool = True) -> dict[str, str]:
    """The tracker parameter carrying context ``entities`` (see :func:`entity`), to splat into :func:`tracker_hit`.

    ``{"cx": <base64url>}`` (``{"co": <JSON>}`` with ``base64url=False``) of the ``contexts`` envelope.
    """
    envelope = {"schema": CONTEXTS_SCHEMA, "data": [dict(e) for e in entities]}
    if base64url:
        return {"cx": _b64url_json(envelope)}
    return {"co": json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))}
