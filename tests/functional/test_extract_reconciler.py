"""The Extract reconciler on moto: lost notifications (F08) and abandoned leases are re-driven."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from extract.handler import handle as extract
from extract.notifications import ObjectNotice, parse_notifications
from extract.reconciler import ReconcileDeps, ReconcileSettings, handle, redrive_event
from pipeline.aws.ledger import Ledger, ObjectId
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, s3_object_created_event
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.aws_chain import page_view_log as log


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def object_id(notice: ObjectNotice) -> ObjectId:
    return ObjectId(notice.bucket, notice.key, notice.etag)


class Setup:
    """A chain, a fake clock at the real time (S3's LastModified is real), and a recording re-drive."""

    def __init__(self, **settings: Any) -> None:
        self.chain = Chain.create(chain_config())
        self.clock = FakeClock(time.time())
        self.ledger = self.chain.ledger(clock=self.clock.now)
        self.redriven: list[ObjectNotice] = []
        self.settings = ReconcileSettings(self.chain.config.resources.log_bucket, "cf/", **settings)

    def deps(self, ledger: Ledger | None = None) -> ReconcileDeps:
        return ReconcileDeps(self.chain.config, self.chain.s3, ledger or self.ledger, redrive=self.redriven.append)

    def reconcile(self, remaining_ms: int = 300_000) -> dict[str, Any]:
        context = FakeLambdaContext(remaining_ms=remaining_ms, clock=self.clock.now)
        return handle({"source": "aws.events"}, context, self.settings, self.deps())

    def extract(self, event: dict[str, Any]) -> dict[str, Any]:
        deps = self.chain.extract_deps(ledger=self.ledger)
        return extract(event, FakeLambdaContext(clock=self.clock.now), deps)


def test_f08_lost_and_abandoned_objects_are_redriven_and_live_or_complete_ones_are_left_alone(aws: None) -> None:
    """Reliability catalogue F08 (a notification lost) and F05/F16 (a lease abandoned by a killed invocation).

    GIVEN under cf/: two objects put without notification, one IN_PROGRESS whose lease expired, one
          IN_PROGRESS whose lease is live, one COMPLETE, and a folder marker
    WHEN the reconciler runs (two keys per listing page)
    THEN it re-drives exactly the lost and the abandoned objects, which Extract then completes,
         and a second run finds nothing left to do.
    """
    setup = Setup(page_size=2, min_age_ms=60_000)
    chain = setup.chain
    lost = [chain.upload(f"cf/lost-{index}.gz", log(3)) for index in range(2)]
    abandoned = chain.upload("cf/abandoned.gz", log(4))
    live = chain.upload("cf/live.gz", log(5))
    done = chain.upload("cf/done.gz", log(6))
    chain.upload("cf/folder/", b"")
    setup.ledger.claim(object_id(abandoned), "killed-invocation", lease_ms=60_000)
    setup.ledger.claim(object_id(live), "working-invocation", lease_ms=3_600_000)
    [complete] = setup.extract(s3_object_created_event(done.bucket, done.key, etag=done.etag))["objects"]
    assert complete["outcome"] == "complete"
    setup.clock.advance(120)  # the abandoned lease expires; the lost objects are older than min_age

    summary = setup.reconcile()
    assert summary["redriven"] == {"lease_expired": 1, "unrecorded": 2}
    assert summary["stopped"] == "end" and summary["start_after"] == "" and summary["listed"] == 6
    assert sorted(n.key for n in setup.redriven) == sorted([abandoned.key, *(n.key for n in lost)])

    for notice in setup.redriven:  # what the deployed re-drive sends to Extract
        [result] = setup.extract(redrive_event(notice))["objects"]
        assert result["outcome"] == "complete"
    shipped = Counter(b.key for b in chain.raw_batches() for _ in b.lines)
    assert shipped == {lost[0].key: 3, lost[1].key: 3, abandoned.key: 4, done.key: 6}
    live_entry = setup.ledger.get(object_id(live))
    assert live_entry is not None and live_entry.owner == "working-invocation"

    setup.redriven.clear()
    again = setup.reconcile()
    assert again["redriven"] == {} and setup.redriven == []


def test_f08_an_object_younger_than_min_age_waits_for_its_notification(aws: None) -> None:
    """Reliability catalogue F08: the reconciler does not race a notification that is merely on its way."""
    setup = Setup(min_age_ms=60_000)
    notice = setup.chain.upload("cf/just-put.gz", log(2))
    assert setup.reconcile()["redriven"] == {}
    setup.clock.advance(61)
    assert setup.reconcile()["redriven"] == {"unrecorded": 1}
    assert [(n.key, n.etag) for n in setup.redriven] == [(notice.key, notice.etag)]


def test_a_run_stops_at_max_objects_and_the_next_run_goes_on_from_there(aws: None) -> None:
    """Reliability catalogue L07 (listing part): pages of the listing, a bound per run, and resumption."""
    setup = Setup(page_size=2, max_objects=2, min_age_ms=0)
    keys = [setup.chain.upload(f"cf/k{index}.gz", log(1)).key for index in range(5)]
    setup.clock.advance(5)  # S3 stamps LastModified with the real time, after the fake clock started
    runs = [setup.reconcile() for _ in range(3)]
    assert [r["stopped"] for r in runs] == ["max_objects", "max_objects", "end"]
    assert [r["started_after"] for r in runs] == ["", keys[1], keys[3]]
    assert [n.key for n in setup.redriven] == keys  # each once, in key order
    setup.reconcile()  # after the end the listing starts over: still unprocessed, so re-driven again
    assert [n.key for n in setup.redriven[5:]] == keys[:2]


def test_a_run_stops_before_its_timeout_and_saves_where_it_stopped(aws: None) -> None:
    setup = Setup(page_size=1, min_age_ms=0, stop_margin_ms=10_000)
    keys = [setup.chain.upload(f"cf/t{index}.gz", log(1)).key for index in range(4)]
    setup.clock.advance(5)  # S3 stamps LastModified with the real time, after the fake clock started

    def slow_redrive(notice: ObjectNotice) -> None:
        setup.redriven.append(notice)
        setup.clock.advance(2)  # each re-drive takes two seconds of the run

    deps = ReconcileDeps(setup.chain.config, setup.chain.s3, setup.ledger, redrive=slow_redrive)
    context = FakeLambdaContext(remaining_ms=13_000, clock=setup.clock.now)
    first = handle({}, context, setup.settings, deps)
    assert first["stopped"] == "time" and first["start_after"] == keys[1]
    second = handle({}, FakeLambdaContext(remaining_ms=300_000, clock=setup.clock.now), setup.settings, deps)
    assert second["stopped"] == "end" and [n.key for n in setup.redriven] == keys


def test_redrive_events_are_notifications_extract_reads_directly() -> None:
    notice = ObjectNotice("b", "cf/a b+c.gz", "etag", 5)
    [parsed] = parse_notifications(redrive_event(notice)).objects
    assert parsed == notice and parsed.sqs_message_id == ""
