"""The real-time counter's pure rules: the visitor hash, which requests count, the window and
the /realtime answer; and that a failing counter never fails a tracker request."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from extract.collector import CollectorDeps, handle
from extract.collector_protocol import PIXEL
from extract.realtime import (
    MemoryRealtimeCounter,
    RealtimeCounterError,
    RealtimeSettings,
    VisitorMark,
    plan_mark,
    realtime_response_parts,
    visitor_hash,
)
from pipeline.aws.kinesis import OutRecord
from tests.conftest import make_config
from tests.unit.test_collector_parity import NUID, RECEIVED_MS, function_url_event

SETTINGS = RealtimeSettings("rt", "salt-a", 300, 900, ("https://dash.example.com",))
NOW_S = 1_700_000_000
QUERY = "e=pv&eid=11111111-1111-4111-8111-111111111111&aid=shop&p=web&tv=js-4.1.0"


def test_the_visitor_hash_is_salted_truncated_and_never_the_id() -> None:
    digest = visitor_hash(NUID, "salt-a")
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest == visitor_hash(NUID, "salt-a")
    assert digest != visitor_hash(NUID, "salt-b")
    assert NUID.replace("-", "")[:16] not in digest


def test_a_mark_needs_the_counter_on_and_a_known_visitor() -> None:
    mark = plan_mark(NUID, False, NOW_S * 1000 + 999, SETTINGS)
    assert mark == VisitorMark(visitor_hash(NUID, "salt-a"), NOW_S, NOW_S + 900)
    assert plan_mark(NUID, True, NOW_S * 1000, SETTINGS) is None  # SP-Anonymous
    assert plan_mark(None, False, NOW_S * 1000, SETTINGS) is None
    off = RealtimeSettings("", "salt-a", 300, 900, ())
    assert plan_mark(NUID, False, NOW_S * 1000, off) is None


def test_the_window_counts_each_visitor_once_by_their_last_request() -> None:
    counter = MemoryRealtimeCounter()
    for nuid, age_s in (("a", 10), ("b", 299), ("b", 1), ("c", 301), ("d", 300)):
        mark = plan_mark(nuid, False, (NOW_S - age_s) * 1000, SETTINGS)
        assert mark is not None
        if nuid == "b" and age_s == 1:
            assert mark.visitor_hash in counter.items  # the same visitor: one item, moved forward
        counter.mark(mark)
    assert counter.count(NOW_S, 300) == 3  # a, b, d (300 s old is still inside); c is out


def test_realtime_answers_the_count_as_json_with_cors_for_the_dashboard() -> None:
    counter = MemoryRealtimeCounter()
    counter.mark(VisitorMark("00ff", NOW_S - 5, NOW_S + 900))
    status, headers, body = realtime_response_parts("GET", "https://dash.example.com", SETTINGS, counter, lambda: NOW_S)
    assert status == 200
    assert json.loads(body) == {"visitors": 1, "window_s": 300, "as_of": "2023-11-14T22:13:20Z"}
    assert headers["Access-Control-Allow-Origin"] == "https://dash.example.com"
    _, other, _ = realtime_response_parts("GET", "https://evil.example", SETTINGS, counter, lambda: NOW_S)
    assert "Access-Control-Allow-Origin" not in other
    assert realtime_response_parts("POST", None, SETTINGS, counter, lambda: NOW_S)[0] == 405


def test_realtime_is_404_when_the_counter_is_off() -> None:
    off = RealtimeSettings("", "", 300, 900, ("*",))
    assert realtime_response_parts("GET", None, off, None, lambda: NOW_S)[0] == 404


class FailingCounter:
    def __init__(self) -> None:
        self.attempts = 0

    def mark(self, mark: VisitorMark) -> None:
        self.attempts += 1
        raise RealtimeCounterError("DynamoDB PutItem failed: throttled (retry)")

    def count(self, now_s: int, window_s: int) -> int:
        raise RealtimeCounterError("DynamoDB Query failed: throttled (retry)")


class ListWriter:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    def put(self, records: Any) -> None:
        self.records.extend(records)


def deps_with(counter: Any) -> tuple[CollectorDeps, ListWriter]:
    config = make_config({"collector.realtime_table": "rt", "collector.realtime_salt": "s"})
    writer = ListWriter()
    deps = CollectorDeps(config.collector, writer, config.stream.record_target_bytes, counter=counter)
    return deps, writer


def test_a_failing_counter_write_neither_fails_the_request_nor_loses_the_event() -> None:
    counter = FailingCounter()
    deps, writer = deps_with(counter)
    response = handle(function_url_event("GET", "/i", query=QUERY, cookies=[f"sp={NUID}"]), deps)
    assert response["statusCode"] == 200 and base64.b64decode(response["body"]) == PIXEL
    assert len(writer.records) == 1 and counter.attempts == 1
    # and a failing read answers 503 (retry), not 500
    assert handle(function_url_event("GET", "/realtime"), deps)["statusCode"] == 503


def test_one_mark_per_request_and_none_for_anonymous_or_opted_out_requests() -> None:
    counter = MemoryRealtimeCounter()
    deps, writer = deps_with(counter)
    handle(function_url_event("GET", "/i", query=QUERY, cookies=[f"sp={NUID}"], time_epoch=RECEIVED_MS), deps)
    assert list(counter.items) == [visitor_hash(NUID, "s")]
    handle(function_url_event("GET", "/i", query=QUERY, headers={"sp-anonymous": "*"}), deps)
    assert len(counter.items) == 1 and len(writer.records) == 2  # stored, but not counted


def test_the_cost_model_prices_one_write_per_request_and_the_tiles_reads() -> None:
    from pipeline.app.cost import load_cost_inputs, realtime_counter_cost

    inputs = load_cost_inputs()
    writes, reads = realtime_counter_cost(inputs)
    assert writes == pytest.approx(0.625, abs=0.05)  # one WRU ($0.625 a million) and a few ms of waiting
    assert 0 < reads < 1  # the tile's Queries stay cents a month
