"""Which notifications come back when an object is busy (reliability catalogue F07), pure."""

from __future__ import annotations

import pytest

from extract.errors import ObjectBusyError
from extract.notifications import parse_notifications
from extract.stage import RETRY_LATER, ExtractResult, Outcome, redelivery
from pipeline.aws.ledger import ObjectId
from pipeline.testing.lambda_events import eventbridge_object_created, s3_object_created_event, sqs_wrapped


def results(notices: list[ObjectId], outcomes: list[Outcome]) -> list[ExtractResult]:
    return [ExtractResult(obj, outcome) for obj, outcome in zip(notices, outcomes, strict=True)]


def test_sqs_notices_remember_their_message_and_direct_ones_have_none() -> None:
    event = sqs_wrapped([s3_object_created_event("b", "k0"), s3_object_created_event("b", "k1")])
    notices = parse_notifications(event).objects
    assert [n.sqs_message_id for n in notices] == [r["messageId"] for r in event["Records"]]
    direct = parse_notifications(s3_object_created_event("b", "k")).objects
    bridged = parse_notifications(eventbridge_object_created("b", "k")).objects
    assert [n.sqs_message_id for n in direct + bridged] == ["", ""]
    [through_sqs_bridge] = parse_notifications(sqs_wrapped(eventbridge_object_created("b", "k"))).objects
    assert through_sqs_bridge.sqs_message_id


def test_busy_sqs_notices_are_batch_item_failures_and_the_rest_is_acknowledged() -> None:
    event = sqs_wrapped([s3_object_created_event("b", f"k{i}") for i in range(4)])
    notices = parse_notifications(event).objects
    objects = [ObjectId(n.bucket, n.key, n.etag) for n in notices]
    retry = redelivery(notices, results(objects, ["busy", "complete", "duplicate", "busy"]))
    ids = [r["messageId"] for r in event["Records"]]
    assert retry.batch_item_failures() == [{"itemIdentifier": ids[0]}, {"itemIdentifier": ids[3]}]
    assert retry.direct == ()
    retry.raise_for_direct()  # an SQS batch answers item by item: no error


def test_a_busy_direct_notice_fails_the_invocation_with_a_retryable_error() -> None:
    notices = parse_notifications(s3_object_created_event("b", "logs/x.gz", etag="e")).objects
    retry = redelivery(notices, results([ObjectId("b", "logs/x.gz", "e")], ["busy"]))
    assert retry.batch_item_failures() == []
    with pytest.raises(ObjectBusyError, match="s3://b/logs/x.gz") as busy:
        retry.raise_for_direct()
    assert busy.value.retryable


@pytest.mark.parametrize("outcome", ["complete", "continued", "deferred", "duplicate", "failed", "ignored"])
def test_every_other_outcome_consumes_its_notification(outcome: Outcome) -> None:
    assert outcome not in RETRY_LATER
    for event in (s3_object_created_event("b", "k"), sqs_wrapped(s3_object_created_event("b", "k"))):
        notices = parse_notifications(event).objects
        retry = redelivery(notices, results([ObjectId("b", "k", notices[0].etag)], [outcome]))
        assert retry.batch_item_failures() == [] and retry.direct == ()
