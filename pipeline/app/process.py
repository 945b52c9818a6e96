"""The canonical core of one file: read lines, parse requests, canonicalize them.

:func:`process_stream` is pure over its inputs: a binary stream, the source name, the input
format, the limits and a :class:`~transform.canonicalize.Canonicalizer`.  It yields canonical
events and bad rows and fills a :class:`FileSummary` whose counts always conserve lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from pipeline.badrows import BadRow, SourceRef
from pipeline.formats.base import NO_LAYOUT, LogFormat, LogLine, ReadLimits, ReadProgress, ReadStats, Request, Skip
from pipeline.schema import CanonicalEvent
from pipeline.summary import FileSummary
from transform.canonicalize import Canonicalizer


def process_stream(
    stream: IO[bytes],
    source: SourceRef,
    log_format: LogFormat,
    canonicalizer: Canonicalizer,
    limits: ReadLimits,
    summary: FileSummary,
    etl_tstamp: int,
    *,
    expect_gzip: bool | None = None,
) -> Iterator[CanonicalEvent | BadRow]:
    """Yield the good events and bad rows of one log stream, counting into ``summary``."""
    stats = ReadStats()
    parse = log_format.parse
    process = canonicalizer.process
    screen = canonicalizer.screens
    good = bad = 0
    bad_kinds = summary.bad_by_kind
    skipped = summary.skipped_by_reason
    notices_before = canonicalizer.notices.copy()
    try:
        for item in log_format.read(stream, source, limits, stats, expect_gzip=expect_gzip):
            if type(item) is LogLine:
                request = parse(item, source, screen)
                result = process(request, source, etl_tstamp) if type(request) is Request else request
                if type(result) is dict:
                    good += 1
                    yield result
                elif type(result) is Skip:
                    skipped[result.reason] += 1
                else:
                    bad += 1
                    bad_kinds[result.kind.value] += 1  # type: ignore[union-attr]
                    if result.messages[0] == NO_LAYOUT:  # type: ignore[union-attr]
                        summary.lines_without_layout += 1
                    yield result  # type: ignore[misc]
            elif type(item) is not ReadProgress:
                bad += 1
                bad_kinds[item.kind.value] += 1  # type: ignore[union-attr]
                yield item  # type: ignore[misc]
    finally:
        summary.notices.update(canonicalizer.notices - notices_before)
        skipped.update(stats.skipped)
        summary.good += good
        summary.bad += bad
        summary.lines_read += stats.lines_read
        summary.bytes_read += stats.bytes_read
        summary.skipped = sum(skipped.values())
