"""Build CloudFront log lines and files the way CloudFront writes them (see :mod:`pipeline.testing`).

Values are encoded as CloudFront encodes them: the tracker's own percent-encoding is kept
and CloudFront encodes ``%`` once more (``%3A`` is logged as ``%253A``); spaces in headers
become ``%20``.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
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
