"""The records that cross Kinesis: one typed definition and one codec each.

Stream 1 (raw) carries :class:`RawBatch`: many log lines of one object with their source
coordinates and the name of their input format, Avro-encoded (fastavro, schemaless) behind a
one-byte record version.  One small record per batch keeps Avro's per-record cost
negligible.  Version 1 records (written before formats had names) still decode, as
CloudFront W3C lines.

Stream 2 (events) carries canonical events as JSON lines: UTF-8, one event object per
line, timestamps as epoch milliseconds.  Firehose's Redshift COPY and its transformation
Lambda consume JSON, and JSON encoding measured cheaper per event than fastavro (see the
README, "Stream encodings").  Each stream-2 record's partition key is its
:func:`event_chunk_id`, deterministic for a given raw batch, so sinks can recognise a
replayed chunk.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from pipeline.errors import TerminalError
from pipeline.formats import DEFAULT_FORMAT
from pipeline.schema import CanonicalEvent

RAW_FORMAT_V1: Final = b"\x01"
"""Record version 1: no format name (CloudFront W3C)."""
RAW_FORMAT_V2: Final = b"\x02"
"""Record version 2: the batch names its input format."""
V1_FORMAT: Final = DEFAULT_FORMAT


class RecordDecodeError(TerminalError):
    """A stream record that cannot be decoded: a data error, never worth a retry."""


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Consecutive log lines of one S3 object (one ``#Fields`` layout), with coordinates."""

    bucket: str
    key: str
    etag: str
    etl_tstamp: int
    """Epoch ms stamped on the events (the object's LastModified, so replays are identical)."""
    fields: str
    """The ``#Fields`` layout of these lines, space-separated ("" when none preceded them)."""
    line_numbers: tuple[int, ...]
    lines: tuple[str, ...]
    format: str = V1_FORMAT
    """The name of the input format these lines are in (a key of ``pipeline.formats.FORMATS``)."""

    @property
    def object_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def batch_id(self) -> str:
        """Deterministic id of this batch: the object version and its first line."""
        first = self.line_numbers[0] if self.line_numbers else 0
        text = f"{self.bucket}\x00{self.key}\x00{self.etag}\x00{first}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


_V1_FIELDS: Final[tuple[dict[str, Any], ...]] = (
    {"name": "bucket", "type": "string"},
    {"name": "key", "type": "string"},
    {"name": "etag", "type": "string"},
    {"name": "etl_tstamp", "type": "long"},
    {"name": "fields", "type": "string"},
    {"name": "line_numbers", "type": {"type": "array", "items": "long"}},
    {"name": "lines", "type": {"type": "array", "items": "string"}},
)


@cache
def _raw_schema(version: bytes = RAW_FORMAT_V2) -> Any:
    import fastavro

    fields = list(_V1_FIELDS)
    if version == RAW_FORMAT_V2:
        fields.append({"name": "format", "type": "string"})
    return fastavro.parse_schema(
        {"type": "record", "name": "RawBatch", "namespace": "com.clickstream_etl", "fields": fields}
    )


def encode_raw(batch: RawBatch) -> bytes:
    import fastavro

    out = io.BytesIO()
    out.write(RAW_FORMAT_V2)
    fastavro.schemaless_writer(
        out,
        _raw_schema(),
        {
            "bucket": batch.bucket,
            "key": batch.key,
            "etag": batch.etag,
            "etl_tstamp": batch.etl_tstamp,
            "fields": batch.fields,
            "line_numbers": list(batch.line_numbers),
            "lines": list(batch.lines),
            "format": batch.format,
        },
    )
    return out.getvalue()


def decode_raw(data: bytes) -> RawBatch:
    """Decode a stream-1 record.  Raises RecordDecodeError on anything malformed."""
    import fastavro

    version = data[:1]
    if version not in (RAW_FORMAT_V1, RAW_FORMAT_V2):
        raise RecordDecodeError(f"unknown raw record version {version!r} (expected {RAW_FORMAT_V2!r})")
    stream = io.BytesIO(data)
    stream.seek(1)
    try:
        record = fastavro.schemaless_reader(stream, _raw_schema(version), None)
    except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError... on garbage
        raise RecordDecodeError(f"raw record is not a valid RawBatch: {type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(data):
        raise RecordDecodeError(f"raw record has {len(data) - stream.tell()} trailing bytes")
    assert isinstance(record, dict)
    if len(record["line_numbers"]) != len(record["lines"]):
        raise RecordDecodeError("raw record has different numbers of lines and line numbers")
    return RawBatch(
        record["bucket"],
        record["key"],
        record["etag"],
        record["etl_tstamp"],
        record["fields"],
        tuple(record["line_numbers"]),
        tuple(record["lines"]),
        record.get("format", V1_FORMAT),
    )


# ------------------------------------------------------------------------ stream 2: events
def encode_event(event: CanonicalEvent) -> bytes:
    """One event as a compact JSON line (without the newline)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def pack_events(encoded: Iterable[bytes], target_bytes: int) -> Iterator[bytes]:
    """Join encoded events into newline-separated chunks of about ``target_bytes`` at most.

    An event longer than the target gets a chunk of its own.
    """
    chunk: list[bytes] = []
    size = 0
    for item in encoded:
        if chunk and size + len(item) + 1 > target_bytes:
            yield b"\n".join(chunk) + b"\n"
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield b"\n".join(chunk) + b"\n"


def decode_events(data: bytes) -> list[CanonicalEvent]:
    """Decode a stream-2 record.  Raises RecordDecodeError when a line is not a JSON object."""
    events: list[CanonicalEvent] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise RecordDecodeError(f"event line {number} is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise RecordDecodeError(f"event line {number} is not a JSON object")
        events.append(value)
    return events


def event_chunk_id(batch_id: str, index: int) -> str:
    """Partition key and dedup id of the ``index``-th stream-2 chunk made from a raw batch."""
    return f"{batch_id}-{index:04d}"


def event_problems(event: CanonicalEvent) -> list[str]:
    """Why a decoded stream-2 object is not a canonical event a sink can write (empty: it is)."""
    problems = [f"missing {name}" for name in ("event_id", "collector_tstamp") if event.get(name) is None]
    if problems:
        return problems
    if type(event["collector_tstamp"]) is not int:
        return ["collector_tstamp is not epoch milliseconds"]
    from pipeline.schema import validate

    return validate(event)
