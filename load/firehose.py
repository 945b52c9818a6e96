"""The Firehose data-transformation contract, pure: stream-2 records -> Redshift JSON lines.

Every input ``recordId`` comes back exactly once with ``result`` Ok, Dropped or
ProcessingFailed (https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html).
Ok data is one JSON object per line whose keys are the staging table's columns (nulls left
out): the ``atomic.events`` columns and the entities' JSON (``contexts``, ``unstruct_event``,
``derived_contexts``, which the loader shreds into the entity tables), with timestamps as
``YYYY-MM-DD HH:MM:SS.mmm`` (what the COPY's ``TIMEFORMAT`` reads).  An entity envelope longer
than a staging column holds (65,535 bytes of UTF-8) would fail Firehose's whole COPY, so it
is left out of the line and counted (``oversize_entities``); the Parquet dataset keeps it.
A record that is not ours (undecodable) is ProcessingFailed: Firehose keeps it under its
``processing-failed`` error prefix, so nothing is lost.  The response stays under the
6 MB synchronous-invocation limit: records beyond the budget are returned as
ProcessingFailed too, rather than failing the whole invocation.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipeline.records import RecordDecodeError, decode_events, event_problems
from pipeline.schema import CanonicalEvent, to_json_record

MAX_RESPONSE_BYTES: Final = 6 * 1000 * 1000
STAGING_VARCHAR_BYTES: Final = 65535
_ENTITY_COLUMNS: Final = ("contexts", "unstruct_event", "derived_contexts")
_RESPONSE_MARGIN: Final = 64 * 1024


@dataclass
class FirehoseCounts:
    records: int = 0
    ok: int = 0
    dropped: int = 0
    failed: int = 0
    events: int = 0
    oversize_entities: int = 0
    """Entity envelopes left out of the Redshift lines (longer than a staging column)."""


def _staging_row(event: CanonicalEvent) -> tuple[dict[str, Any], int]:
    # Null columns are left out: COPY ... JSON 'auto' loads a missing key as NULL, and the
    # response stays about as small as the request (the 6 MB limit).
    row = {k: v for k, v in to_json_record(event).items() if v is not None}
    oversize = 0
    for name in _ENTITY_COLUMNS:
        text = row.get(name)
        if isinstance(text, str) and len(text) * 3 > STAGING_VARCHAR_BYTES:
            if len(text.encode("utf-8")) > STAGING_VARCHAR_BYTES:
                del row[name]
                oversize += 1
    return row, oversize


def _redshift_lines(data: bytes) -> tuple[bytes, int, int]:
    events = decode_events(data)
    for event in events:
        problems = event_problems(event)
        if problems:
            raise RecordDecodeError("not a canonical event: " + "; ".join(problems))
    lines = []
    oversize = 0
    for event in events:
        row, left_out = _staging_row(event)
        oversize += left_out
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b"", len(lines), oversize


def transform_records(
    records: Sequence[Mapping[str, Any]], *, max_response_bytes: int = MAX_RESPONSE_BYTES
) -> tuple[list[dict[str, Any]], FirehoseCounts]:
    """The output records for a Firehose transformation invocation, and their counts."""
    counts = FirehoseCounts(records=len(records))
    out: list[dict[str, Any]] = []
    budget = max_response_bytes - _RESPONSE_MARGIN
    used = 0
    for record in records:
        record_id = str(record.get("recordId", ""))
        events = oversize = 0
        try:
            data = base64.b64decode(str(record.get("data", "")), validate=True)
            payload, events, oversize = _redshift_lines(data)
        except (binascii.Error, RecordDecodeError, ValueError, TypeError, OverflowError):
            # Not our events (or corrupted): Firehose keeps the record under processing-failed/.
            item = {"recordId": record_id, "result": "ProcessingFailed", "data": record.get("data", "")}
        else:
            if not events:
                item = {"recordId": record_id, "result": "Dropped", "data": ""}
            else:
                item = {"recordId": record_id, "result": "Ok", "data": base64.b64encode(payload).decode("ascii")}
        size = len(record_id) + len(str(item["data"])) + 64
        if used + size > budget:
            # Over the response limit: hand the record back as failed (kept by Firehose) instead.
            item = {"recordId": record_id, "result": "ProcessingFailed", "data": ""}
            size = len(record_id) + 64
        used += size
        out.append(item)
        if item["result"] == "Ok":
            counts.ok += 1
            counts.events += events
            counts.oversize_entities += oversize
        elif item["result"] == "Dropped":
            counts.dropped += 1
        else:
            counts.failed += 1
    return out, counts
