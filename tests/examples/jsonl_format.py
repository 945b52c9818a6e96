"""An example input format: one JSON object per line (as a custom collector might write).

It shows what a new format takes: this module, and one line in ``pipeline.formats.FORMATS``
(here the tests build a registry with it).  Lines look like::

    {"ts": 1731699951000, "method": "GET", "path": "/i", "query": "e=pv&url=...", "ua": "...", "ip": "..."}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.formats.base import LogLine, ReadLimits, ReadProgress, ReadStats, Request, RequestScreen, Skip
from pipeline.formats.cloudfront import read_lines


class JsonLines:
    name = "jsonl"

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
        # Line splitting, gzip and the caps are the same as CloudFront's; only the parse differs.
        return read_lines(stream, source, limits, stats, expect_gzip=expect_gzip, start_line=start_line)

    def parse(self, line: LogLine, source: SourceRef, screen: RequestScreen | None = None) -> Request | BadRow | Skip:
        try:
            hit = json.loads(line.text)
            ts = hit["ts"]
        except (ValueError, KeyError, TypeError) as exc:
            return BadRow(FailureKind.FIELD_INVALID, (f"not a JSON hit: {exc}",), source.at(line.line_no), line.text)
        if type(ts) is not int or ts < 0:
            return BadRow(FailureKind.FIELD_INVALID, ("ts: not epoch ms",), source.at(line.line_no), line.text)
        method, path = hit.get("method", "GET"), hit.get("path", "/")
        skip = screen[(method, path)] if screen is not None else None
        if skip is not None:
            return skip
        return Request(
            line_no=line.line_no,
            collector_tstamp=ts,
            method=method,
            path=path,
            query=hit.get("query") or None,
            referer=hit.get("referer"),
            useragent=hit.get("ua"),
            client_ip=hit.get("ip"),
            forwarded_for=None,
            request_id=hit.get("id"),
            host=hit.get("host"),
            scheme="https",
            # Not the whole line: it holds the client IP, which the fingerprint must not reveal.
            identity=(str(ts), method, path, hit.get("ua") or ""),
            raw=line.text,
        )
