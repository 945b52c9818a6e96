"""S3 object-created notifications, however they arrive: direct, through SQS, or EventBridge.

Pure: a Lambda event in, :class:`ObjectNotice` values and counted ignores out.  Keys in S3
notifications are form-encoded (space as ``+``, a literal ``+`` as ``%2B``; moto also
encodes ``/``), so they are decoded with ``unquote_plus`` exactly once; EventBridge keys
arrive decoded.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True, slots=True)
class ObjectNotice:
    bucket: str
    key: str
    etag: str
    size: int | None
    sequencer: str = ""


@dataclass
class Notices:
    objects: list[ObjectNotice] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


def _strip_etag(etag: str) -> str:
    return etag.strip('"')


def _from_s3_record(record: Mapping[str, Any], out: Notices) -> None:
    name = str(record.get("eventName", ""))
    if not name.startswith("ObjectCreated:"):
        out.ignored[f"event:{name or 'unknown'}"] += 1
        return
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    if not bucket or "key" not in obj:
        out.ignored["malformed_record"] += 1
        return
    out.objects.append(
        ObjectNotice(
            bucket,
            unquote_plus(obj["key"]),
            _strip_etag(str(obj.get("eTag") or obj.get("etag") or "")),
            obj.get("size"),
            str(obj.get("sequencer", "")),
        )
    )


def _from_eventbridge(event: Mapping[str, Any], out: Notices) -> None:
    if event.get("detail-type") != "Object Created":
        out.ignored[f"eventbridge:{event.get('detail-type')}"] += 1
        return
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    if not bucket or "key" not in obj:
        out.ignored["malformed_record"] += 1
        return
    out.objects.append(
        ObjectNotice(
            bucket, obj["key"], _strip_etag(str(obj.get("etag", ""))), obj.get("size"), str(obj.get("sequencer", ""))
        )
    )


def _walk(event: Any, out: Notices, depth: int = 0) -> None:
    if depth > 3 or not isinstance(event, Mapping):
        out.ignored["malformed_event"] += 1
        return
    if event.get("Event") == "s3:TestEvent":
        out.ignored["s3:TestEvent"] += 1
        return
    if "detail-type" in event:
        _from_eventbridge(event, out)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        out.ignored["malformed_event"] += 1
        return
    for record in records:
        if not isinstance(record, Mapping):
            out.ignored["malformed_record"] += 1
        elif record.get("eventSource") == "aws:sqs" or ("body" in record and "s3" not in record):
            try:
                body = json.loads(record.get("body") or "")
            except ValueError:
                out.ignored["malformed_sqs_body"] += 1
                continue
            _walk(body, out, depth + 1)
        elif "s3" in record:
            _from_s3_record(record, out)
        else:
            out.ignored["malformed_record"] += 1


def parse_notifications(event: Any) -> Notices:
    """Every object-created notice in a Lambda event, in order, and what was ignored (counted)."""
    out = Notices()
    _walk(event, out)
    return out
