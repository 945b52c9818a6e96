"""The transform stage over stream records: pure, no AWS.

:func:`transform_raw_record` turns one stream-1 record into canonical events (encoded and
packed into stream-2 chunks with deterministic ids), bad rows and counted skips.  A record
that cannot be decoded is one bad row carrying its bytes; it never raises.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.badrows import BadRow, SourceRef, undecodable_record
from pipeline.formats import UnknownFormatError, get_format
from pipeline.formats.base import FieldLayout, LogFormat, LogLine, Request, Skip
from pipeline.records import RawBatch, RecordDecodeError, decode_raw, encode_event, event_chunk_id, pack_events
from pipeline.schema import CanonicalEvent
from transform.canonicalize import Canonicalizer


@dataclass
class TransformOutput:
    batch_id: str
    etl_tstamp: int
    lines: int = 0
    events: list[CanonicalEvent] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    """(chunk id, stream-2 record data) in order."""

    @property
    def conserved(self) -> bool:
        return self.lines == len(self.events) + len(self.bad) + sum(self.skipped.values())


class LineFormats:
    """One instance per input format, made on first use (formats hold bounded memos)."""

    def __init__(self) -> None:
        self._formats: dict[str, LogFormat] = {}

    def __getitem__(self, name: str) -> LogFormat:
        found = self._formats.get(name)
        if found is None:
            found = self._formats[name] = get_format(name)
        return found


def transform_batch(
    batch: RawBatch, canonicalizer: Canonicalizer, chunk_bytes: int, formats: LineFormats
) -> TransformOutput:
    """Parse and transform the lines of one stream-1 batch; pack the events into stream-2 chunks."""
    out = TransformOutput(batch.batch_id, batch.etl_tstamp, lines=len(batch.lines))
    layout = FieldLayout.parse(batch.fields) if batch.fields else None
    source = SourceRef(batch.object_uri, etag=batch.etag or None)
    process = canonicalizer.process
    parse = formats[batch.format].parse
    screen = canonicalizer.screens
    new_line = tuple.__new__  # LogLine(...) through its generated __new__ costs a Python call per line
    for number, text in zip(batch.line_numbers, batch.lines, strict=True):
        request = parse(new_line(LogLine, (number, text, layout)), source, screen)
        result = process(request, source, batch.etl_tstamp) if type(request) is Request else request
        if type(result) is dict:
            out.events.append(result)
        elif type(result) is Skip:
            out.skipped[result.reason] += 1
        else:
            out.bad.append(result)  # type: ignore[arg-type]
    chunks = pack_events((encode_event(event) for event in out.events), chunk_bytes)
    out.chunks = [(event_chunk_id(batch.batch_id, index), data) for index, data in enumerate(chunks)]
    return out


def transform_raw_record(
    data: bytes,
    canonicalizer: Canonicalizer,
    chunk_bytes: int,
    *,
    origin: str,
    arrival_ms: int,
    formats: LineFormats | None = None,
) -> TransformOutput:
    """Decode and transform one stream-1 record; an undecodable record becomes one bad row.

    ``origin`` names the record (stream, shard and sequence number) in that bad row.
    """
    formats = formats or LineFormats()
    try:
        batch = decode_raw(data)
        formats[batch.format]  # noqa: B018 - a format this version does not know makes the record undecodable
    except (RecordDecodeError, UnknownFormatError) as exc:
        out = TransformOutput(batch_id=_digest(origin), etl_tstamp=arrival_ms, lines=1)
        out.bad.append(undecodable_record(data, str(exc), origin))
        return out
    return transform_batch(batch, canonicalizer, chunk_bytes, formats)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
