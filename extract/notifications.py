"""S3 object-created notifications, however they arrive: direct, through SQS, or EventBridge.

Pure: a Lambda event in, :class:`ObjectNotice` values and counted ignores out.  Keys in S3
notifications are form-encoded (space as ``+``, a literal ``+`` as ``%2B``; moto also
encodes ``/``), so they are decoded with ``unquote_plus`` exactly once; EventBridge keys
arrive decoded.  The replay state machine's Distributed Map (``template.yaml``, ``ReplayStateMachine``)
sends batches of its manifest's items, ``{"Items": [{"key", "etag", "size"}...], "BatchInput":
{"bucket", "pace"}}``; ``pace`` is this invocation's share of stream 1's write limits
(:mod:`pipeline.pacing`), which the notices carry, and a continuation keeps.  A notice remembers
the SQS message that carried it, so the handler can report that message as a batch item failure
when its object must be tried again later.
Something that is not a notification (reliability catalogue A16) is counted and remembered by
the message that carried it, so the handler can refuse it instead of succeeding silently.
:func:`object_created_event` builds the S3-shaped event the pipeline sends itself
(continuations, re-drives by the reconciler).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from pipeline.pacing import PacingError, RateLimits

PACE_KEY = "clickstreamPace"
"""Where a continuation of a paced object carries its pace, beside the S3 record's fields."""


@dataclass(frozen=True, slots=True)
class ObjectNotice:
    bucket: str
    key: str
    etag: str
    size: int | None
    sequencer: str = ""
    sqs_message_id: str = ""
    """The SQS message that delivered this notice; "" when Lambda was invoked directly (S3,
    EventBridge, a continuation or a re-drive), where only a failed invocation brings it back."""
    pace: RateLimits | None = None
    """This invocation's share of stream 1's write limits, when a replay sent it (``None``: unpaced)."""


@dataclass
class Notices:
    objects: list[ObjectNotice] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    malformed_messages: list[str] = field(default_factory=list)
    """SQS messages (ids) holding something that is not a notification: the handler reports them as
    batch item failures, so the queue's redrive policy moves them to its dead-letter queue."""
    malformed_direct: int = 0
    """Malformed parts of a directly invoked event: the handler fails the invocation for them."""


def _malformed(out: Notices, reason: str, message_id: str) -> None:
    out.ignored[reason] += 1
    if not message_id:
        out.malformed_direct += 1
    elif message_id not in out.malformed_messages:
        out.malformed_messages.append(message_id)


def _strip_etag(etag: str) -> str:
    return etag.strip('"')


def _from_s3_record(record: Mapping[str, Any], out: Notices, message_id: str) -> None:
    name = str(record.get("eventName", ""))
    if not name.startswith("ObjectCreated:"):
        out.ignored[f"event:{name or 'unknown'}"] += 1
        return
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    if not bucket or "key" not in obj:
        _malformed(out, "malformed_record", message_id)
        return
    out.objects.append(
        ObjectNotice(
            bucket,
            unquote_plus(obj["key"]),
            _strip_etag(str(obj.get("eTag") or obj.get("etag") or "")),
            obj.get("size"),
            str(obj.get("sequencer", "")),
            message_id,
            _pace(record.get(PACE_KEY), out, message_id) if PACE_KEY in record else None,
        )
    )


def _pace(document: Any, out: Notices, message_id: str) -> RateLimits | None:
    if not isinstance(document, Mapping):
        _malformed(out, "malformed_pace", message_id)
        return None
    try:
        return RateLimits.from_json(document)
    except PacingError:
        _malformed(out, "malformed_pace", message_id)
        return None


def _item_field(item: Mapping[str, Any], *names: str) -> Any:
    # The manifest the CLI writes uses lower-case names; an S3 ListObjectsV2 or inventory item reader
    # gives ``Key``, ``Etag`` (or ``ETag``) and ``Size``.
    for name in names:
        if name in item:
            return item[name]
    return None


def _from_map_batch(event: Mapping[str, Any], out: Notices, message_id: str) -> None:
    batch_input = event.get("BatchInput")
    items = event.get("Items")
    bucket = batch_input.get("bucket") if isinstance(batch_input, Mapping) else None
    if not isinstance(bucket, str) or not bucket or not isinstance(items, list):
        _malformed(out, "malformed_map_batch", message_id)
        return
    assert isinstance(batch_input, Mapping)  # narrowed by the test above
    pace = _pace(batch_input["pace"], out, message_id) if "pace" in batch_input else None
    for item in items:
        key = _item_field(item, "key", "Key") if isinstance(item, Mapping) else None
        size = _item_field(item, "size", "Size") if isinstance(item, Mapping) else None
        if not isinstance(key, str) or not key or not (size is None or isinstance(size, int)):
            _malformed(out, "malformed_map_item", message_id)
            continue
        assert isinstance(item, Mapping)
        etag = _strip_etag(str(_item_field(item, "etag", "Etag", "ETag") or ""))
        out.objects.append(ObjectNotice(bucket, key, etag, size, "", message_id, pace))


def _from_eventbridge(event: Mapping[str, Any], out: Notices, message_id: str) -> None:
    if event.get("detail-type") != "Object Created":
        out.ignored[f"eventbridge:{event.get('detail-type')}"] += 1
        return
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    if not bucket or "key" not in obj:
        _malformed(out, "malformed_record", message_id)
        return
    out.objects.append(
        ObjectNotice(
            bucket,
            obj["key"],
            _strip_etag(str(obj.get("etag", ""))),
            obj.get("size"),
            str(obj.get("sequencer", "")),
            message_id,
        )
    )


def _walk(event: Any, out: Notices, depth: int = 0, message_id: str = "") -> None:
    if depth > 3 or not isinstance(event, Mapping):
        _malformed(out, "malformed_event", message_id)
        return
    if event.get("Event") == "s3:TestEvent":
        out.ignored["s3:TestEvent"] += 1
        return
    if "detail-type" in event:
        _from_eventbridge(event, out, message_id)
        return
    if "BatchInput" in event or "Items" in event:
        _from_map_batch(event, out, message_id)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        _malformed(out, "malformed_event", message_id)
        return
    for record in records:
        if not isinstance(record, Mapping):
            _malformed(out, "malformed_record", message_id)
        elif record.get("eventSource") == "aws:sqs" or ("body" in record and "s3" not in record):
            # An SQS record without a messageId (not Lambda's shape) is treated as direct.
            sqs_message_id = str(record.get("messageId") or message_id)
            try:
                body = json.loads(record.get("body") or "")
            except (TypeError, ValueError):  # not JSON, or not even a string
                _malformed(out, "malformed_sqs_body", sqs_message_id)
                continue
            _walk(body, out, depth + 1, sqs_message_id)
        elif "s3" in record:
            _from_s3_record(record, out, message_id)
        else:
            _malformed(out, "malformed_record", message_id)


def parse_notifications(event: Any) -> Notices:
    """Every object-created notice in a Lambda event, in order, and what was ignored (counted)."""
    out = Notices()
    _walk(event, out)
    return out


def object_created_event(notice: ObjectNotice, *, event_name: str = "ObjectCreated:Continuation") -> dict[str, Any]:
    """An S3-shaped event for one object, as the pipeline sends it to a fresh Extract invocation.

    ``event_name`` (after ``ObjectCreated:``) says why in the logs: a continuation of a
    checkpointed object, or a re-drive by the reconciler.  The key is form-encoded like S3's.  A
    paced notice's pace goes with it, so a continuation stays within the replay's share.
    """
    record: dict[str, Any] = {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {
            "bucket": {"name": notice.bucket},
            "object": {"key": quote_plus(notice.key, safe="/"), "eTag": notice.etag, "size": notice.size},
        },
    }
    if notice.pace is not None:
        record[PACE_KEY] = notice.pace.to_json()
    return {"Records": [record]}
