"""Parsing S3 notifications however they arrive (direct, SQS, EventBridge), pure."""

from __future__ import annotations

import json

from extract.handler import continuation_event
from extract.notifications import ObjectNotice, parse_notifications
from pipeline.testing.lambda_events import (
    eventbridge_object_created,
    s3_object_created_event,
    s3_test_event,
    sqs_wrapped,
)


def test_direct_sqs_and_eventbridge_notices_decode_keys_exactly_once() -> None:
    """Reliability catalogue A15: keys are form-decoded exactly once."""
    key = "logs/a b+c%/ü.gz"
    direct = s3_object_created_event("b", key, etag="e1", size=10)
    notices = parse_notifications(direct).objects + parse_notifications(sqs_wrapped(direct)).objects
    notices += parse_notifications(eventbridge_object_created("b", key, "e1", 10)).objects
    assert [n.key for n in notices] == [key, key, key]
    assert {n.etag for n in notices} == {"e1"}


def test_test_events_removals_and_garbage_are_counted_not_raised() -> None:
    """Reliability catalogue A16: parsing counts test events, removals and garbage; the handler refuses the garbage."""
    removed = s3_object_created_event("b", "k", event_name="ObjectRemoved:Delete")
    events = [
        s3_test_event("b"),
        sqs_wrapped(s3_test_event("b")),
        removed,
        {"Records": [{"eventSource": "aws:sqs", "body": "not json"}]},
        {"Records": "nope"},
        ["not", "a", "mapping"],
        {"Records": [{"s3": {}, "eventName": "ObjectCreated:Put"}]},
    ]
    ignored = {}
    for event in events:
        result = parse_notifications(event)
        assert result.objects == []
        for reason, count in result.ignored.items():
            ignored[reason] = ignored.get(reason, 0) + count
    assert ignored["s3:TestEvent"] == 2
    assert ignored["event:ObjectRemoved:Delete"] == 1
    assert ignored["malformed_sqs_body"] == 1 and ignored["malformed_record"] == 1 and ignored["malformed_event"] == 2


def test_sqs_batches_keep_order_and_repeats_are_kept_for_the_ledger_to_judge() -> None:
    events = [s3_object_created_event("b", f"k{i % 2}", etag=f"e{i % 2}") for i in range(4)]
    notices = parse_notifications(sqs_wrapped(events)).objects
    assert [n.key for n in notices] == ["k0", "k1", "k0", "k1"]


def test_continuation_events_round_trip() -> None:
    notice = ObjectNotice("b", "logs/x y+z.gz", "etag", 5)
    [parsed] = parse_notifications(json.loads(json.dumps(continuation_event(notice)))).objects
    assert parsed == ObjectNotice("b", "logs/x y+z.gz", "etag", 5)
