"""The canonical core of one file: read lines (extract), canonicalize them (transform).

:func:`process_stream` is pure over its inputs: a binary stream, the source name, the
limits and a :class:`~transform.canonicalize.Canonicalizer`.  It yields canonical events and
bad rows and fills a :class:`FileSummary` whose counts always conserve lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from pipeline.badrows import BadRow, SourceRef
from pipeline.config import ExtractConfig
from pipeline.errors import ConfigError
from pipeline.formats.cloudfront import FieldLayout, LogLine, ReadLimits, ReadStats, read_lines
from pipeline.schema import CanonicalEvent
from pipeline.summary import FileSummary
from transform.canonicalize import Canonicalizer, Skip


def read_limits(config: ExtractConfig) -> ReadLimits:
    """Extract limits from configuration (``default_fields`` parsed into a layout)."""
    spec = config.default_fields.strip()
    layout: FieldLayout | None = None
    if spec.startswith("legacy-"):
        try:
            layout = FieldLayout.legacy(int(spec.removeprefix("legacy-")))
        except ValueError as exc:
            raise ConfigError(f"extract.default_fields: {exc}") from exc
    elif spec:
        layout = FieldLayout.parse(spec)
    return ReadLimits(config.max_line_bytes, config.max_decompressed_bytes, layout)


def process_stream(
    stream: IO[bytes],
    source: SourceRef,
    canonicalizer: Canonicalizer,
    limits: ReadLimits,
    summary: FileSummary,
    etl_tstamp: int,
    *,
    expect_gzip: bool | None = None,
) -> Iterator[CanonicalEvent | BadRow]:
    """Yield the good events and bad rows of one log stream, counting into ``summary``."""
    stats = ReadStats()
    process = canonicalizer.process
    good = bad = 0
    bad_kinds = summary.bad_by_kind
    skipped = summary.skipped_by_reason
    try:
        for item in read_lines(stream, source, limits, stats, expect_gzip=expect_gzip):
            if type(item) is LogLine:
                result = process(item, source, etl_tstamp)
                if type(result) is dict:
                    good += 1
                    yield result
                elif type(result) is Skip:
                    skipped[result.reason] += 1
                else:
                    bad += 1
                    bad_kinds[result.kind.value] += 1  # type: ignore[union-attr]
                    yield result  # type: ignore[misc]
            else:
                bad += 1
                bad_kinds[item.kind.value] += 1  # type: ignore[union-attr]
                yield item  # type: ignore[misc]
    finally:
        skipped.update(stats.skipped)
        summary.good += good
        summary.bad += bad
        summary.lines_read += stats.lines_read
        summary.bytes_read += stats.bytes_read
        summary.skipped = sum(skipped.values())
