"""Bad rows: one self-describing JSON object per failure, in the manner of Snowplow's.

Every input that cannot become a good event becomes a :class:`BadRow` carrying the failure
kind, every message, the source coordinates and the raw payload (text, or base64 when it is
not UTF-8; capped, with the actual size recorded).  Building a bad row is pure; the time
stamp and processor are added when it is serialised, so the core stays deterministic.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pipeline import ARTIFACT, __version__

SCHEMA_VENDOR: Final = "com.clickstream_etl.badrows"
RAW_PAYLOAD_CAP: Final = 64 * 1024


class FailureKind(StrEnum):
    """Why an input did not become a good event.  The value names the bad-row schema."""

    INVALID_UTF8 = "invalid_utf8"
    """A log line that is not valid UTF-8 (raw bytes kept as base64)."""
    SIZE_VIOLATION = "size_violation"
    """A line over the line cap, or a file over the decompressed-size cap (gzip bomb)."""
    CORRUPT_COMPRESSION = "corrupt_compression"
    """Truncated or corrupt gzip, trailing garbage, or non-gzip content where gzip was expected."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """No usable ``#Fields`` layout: no header, or a required field missing from it."""
    FIELD_COUNT = "field_count"
    """A line with more or fewer tab-separated fields than its ``#Fields`` header."""
    FIELD_INVALID = "field_invalid"
    """A log field with an invalid value (bad date, time, status, byte count)."""
    TRACKER_PROTOCOL = "tracker_protocol_violation"
    """A tracker request whose parameters break the tracker protocol (event type, eid, numbers, JSON)."""
    SCHEMA_VIOLATION = "schema_violation"
    """The canonical event failed validation (types, byte widths), or one of its
    self-describing entities failed its Iglu schema."""
    RESOLUTION_ERROR = "resolution_error"
    """An entity's Iglu schema is in no registry, and ``transform.unknown_schemas`` is ``reject``."""
    ENRICHMENT_FAILURE = "enrichment_failure"
    """An enrichment or a custom transform step raised on the event (Snowplow's enrichment_failures)."""
    RECORD_INVALID = "record_invalid"
    """A stream record that cannot be decoded (not written by this pipeline, or corrupted)."""

    @property
    def schema(self) -> str:
        return f"iglu:{SCHEMA_VENDOR}/{self.value}/jsonschema/1-0-0"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an input came from: the object (path or s3:// URI), its version and a line number."""

    object: str
    line: int | None = None
    etag: str | None = None

    def at(self, line: int) -> SourceRef:
        return SourceRef(self.object, line, self.etag)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object, "line": self.line}
        if self.etag is not None:
            out["etag"] = self.etag
        return out


@dataclass(frozen=True, slots=True)
class BadRow:
    """One failure: its kind, every message, where it came from and the raw payload."""

    kind: FailureKind
    messages: tuple[str, ...]
    source: SourceRef
    raw: str | bytes
    size: int | None = None
    """Actual size in bytes of the raw payload when ``raw`` was truncated or is unknown."""

    def to_json(self, *, timestamp: datetime | None = None) -> dict[str, Any]:
        """The self-describing JSON object (schema, data.processor, data.failure, data.payload)."""
        moment = timestamp or datetime.now(UTC)
        raw = self.raw
        if isinstance(raw, str):
            try:
                raw.encode("utf-8")
                payload_raw, encoding = raw, "utf-8"
            except UnicodeEncodeError:
                raw = raw.encode("utf-8", "surrogateescape")
        if isinstance(raw, bytes):
            try:
                payload_raw, encoding = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                payload_raw, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        raw_size = len(payload_raw.encode("utf-8")) if encoding == "utf-8" else len(raw)
        if raw_size > RAW_PAYLOAD_CAP and encoding == "utf-8":
            payload_raw = payload_raw.encode("utf-8")[:RAW_PAYLOAD_CAP].decode("utf-8", "ignore")
        actual = self.size if self.size is not None else raw_size
        return {
            "schema": self.kind.schema,
            "data": {
                "processor": {"artifact": ARTIFACT, "version": __version__},
                "failure": {
                    "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "kind": self.kind.value,
                    "messages": list(self.messages),
                },
                "payload": {
                    "raw": payload_raw,
                    "encoding": encoding,
                    "size": actual,
                    "truncated": actual > len(payload_raw.encode("utf-8") if encoding == "utf-8" else raw),
                    "source": self.source.to_json(),
                },
            },
        }

    def to_json_line(self, *, timestamp: datetime | None = None) -> str:
        return json.dumps(self.to_json(timestamp=timestamp), ensure_ascii=False, separators=(",", ":"))


def undecodable_record(data: bytes, reason: str, origin: str) -> BadRow:
    """The bad row of a stream record that cannot be decoded; ``origin`` names stream, shard and sequence."""
    return BadRow(FailureKind.RECORD_INVALID, (reason,), SourceRef(origin), raw=data[:RAW_PAYLOAD_CAP], size=len(data))
