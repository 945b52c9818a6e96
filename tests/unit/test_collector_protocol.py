"""The collector protocol as pure decisions: routes, status codes, cookies, sizes, keys."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from extract.collector_protocol import (
    PIXEL,
    CollectorPlan,
    HttpRequest,
    plan_request,
    unavailable,
)
from pipeline.badrows import FailureKind
from pipeline.config import CollectorConfig
from pipeline.formats.collector import ANONYMOUS_NUID, event_query, parse_line
from tests.unit.test_collector_parity import (
    CONFIG,
    NUID,
    TP2,
    batches_of,
    http_request,
    tp2_body,
    tracker_events,
    transform,
)

NEW_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
ORIGIN = "https://www.example.com"


def plan(request: HttpRequest, config: CollectorConfig | None = None, **changes: Any) -> CollectorPlan:
    config = dataclasses.replace(config or CONFIG.collector, **changes)
    return plan_request(request, config, record_target_bytes=CONFIG.stream.record_target_bytes, new_id=lambda: NEW_ID)


def payloads(result: CollectorPlan) -> list[Any]:
    return [parse_line(line) for batch in batches_of(result.records) for line in batch.lines]


def pv_query(**extra: str) -> str:
    return event_query({**tracker_events()[0], **extra})


# ------------------------------------------------------------------ routes and status codes
@pytest.mark.parametrize("path", ["/i", "/ice.png"])
def test_pixel_routes_answer_the_43_byte_gif_uncached_and_store_the_event(path: str) -> None:
    result = plan(http_request("GET", path, query=pv_query()))
    assert result.response.status == 200 and result.response.body == PIXEL and len(PIXEL) == 43
    assert result.response.headers["Content-Type"] == "image/gif"
    assert "no-store" in result.response.headers["Cache-Control"] and result.response.headers["Pragma"] == "no-cache"
    assert result.events == 1 and len(result.records) == 1


def test_head_pixel_answers_without_a_body() -> None:
    result = plan(http_request("HEAD", "/i", query=pv_query()))
    assert (result.response.status, result.response.body, result.events) == (200, b"", 1)


def test_tp2_post_answers_ok_and_stores_every_event_and_get_answers_the_pixel() -> None:
    post = plan(http_request("POST", TP2, body=tp2_body(tracker_events()).encode()))
    assert (post.response.status, post.response.body, post.events) == (200, b"ok", 4)
    get = plan(http_request("GET", TP2, query=pv_query()))
    assert (get.response.status, get.response.body, get.events) == (200, PIXEL, 1)


def test_health_answers_ok_and_stores_nothing() -> None:
    result = plan(http_request("GET", "/health"))
    assert (result.response.status, result.response.body, result.records) == (200, b"ok", ())


def test_unknown_paths_and_methods_store_nothing() -> None:
    assert plan(http_request("GET", "/nope")).response.status == 404
    wrong = plan(http_request("POST", "/i", body=b"x"))
    assert (wrong.response.status, wrong.records) == (405, ())


def test_preflight_echoes_an_allowed_origin_with_credentials() -> None:
    result = plan(http_request("OPTIONS", TP2, headers={"origin": ORIGIN}))
    headers = result.response.headers
    assert result.response.status == 200 and result.records == ()
    assert headers["Access-Control-Allow-Origin"] == ORIGIN and headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type, SP-Anonymous"
    refused = plan(http_request("OPTIONS", TP2, headers={"origin": "https://evil.test"}), cors_origins=(ORIGIN,))
    assert "Access-Control-Allow-Origin" not in refused.response.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"schema":"iglu:com.acme/other/jsonschema/1-0-0","data":[{}]}',
        b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":"x"}',
    ],
)
def test_a_malformed_post_answers_400_and_leaves_one_bad_row(body: bytes) -> None:
    result = plan(http_request("POST", TP2, body=body))
    assert result.response.status == 400  # the JavaScript tracker does not retry 400
    (payload,) = payloads(result)
    assert payload.bad == FailureKind.TRACKER_PROTOCOL.value and payload.raw == body.decode()
    events, bad = transform(batches_of(result.records))
    assert events == [] and [row.kind for row in bad] == [FailureKind.TRACKER_PROTOCOL]


def test_an_oversized_event_is_a_size_violation_bad_row_and_the_rest_are_stored() -> None:
    events = tracker_events()
    events[1]["se_la"] = "x" * 200_000
    result = plan(http_request("POST", TP2, body=tp2_body(events).encode()))
    assert (result.response.status, result.events, result.bad) == (200, 3, 1)
    good, bad = transform(batches_of(result.records))
    assert len(good) == 3 and [row.kind for row in bad] == [FailureKind.SIZE_VIOLATION]
    assert bad[0].size > CONFIG.collector.max_event_bytes and len(bad[0].raw) <= 4096


def test_a_body_over_the_hard_cap_answers_413_with_a_size_violation_bad_row() -> None:
    result = plan(http_request("POST", TP2, body=b"{" + b" " * 2000), max_request_bytes=1000)
    assert result.response.status == 413
    (payload,) = payloads(result)
    assert payload.bad == FailureKind.SIZE_VIOLATION.value and payload.size == 2001


def test_the_put_failing_answers_503_without_a_cookie() -> None:
    result = plan(http_request("GET", "/i", query=pv_query(), headers={"origin": ORIGIN}))
    assert result.response.cookies  # the planned answer sets the cookie...
    failed = unavailable(result)
    assert failed.status == 503 and failed.cookies == ()  # ...the 503 does not, and trackers retry 503
    assert failed.headers["Access-Control-Allow-Origin"] == ORIGIN


# ------------------------------------------------------------------ redirects
def test_redirects_are_off_by_default_and_never_open() -> None:
    off = plan(http_request("GET", "/r/tp2", query="u=https%3A%2F%2Fshop.example.com%2Fx"))
    assert off.response.status == 400 and "Location" not in off.response.headers
    allowed = ("example.com",)
    ok = plan(
        http_request("GET", "/r/tp2", query="e=pv&u=https%3A%2F%2Fshop.example.com%2Fx"), redirect_domains=allowed
    )
    assert ok.response.status == 302 and ok.response.headers["Location"] == "https://shop.example.com/x"
    assert ok.events == 1
    for target in ("https%3A%2F%2Fevil.test%2F", "https%3A%2F%2Fexample.com.evil.test%2F", "javascript%3Aalert(1)"):
        refused = plan(http_request("GET", "/r/tp2", query="u=" + target), redirect_domains=allowed)
        assert refused.response.status == 400 and "Location" not in refused.response.headers
        assert payloads(refused)[0].bad == FailureKind.TRACKER_PROTOCOL.value


# ------------------------------------------------------------------ cookies and the network user id
def cookie_attributes(result: CollectorPlan) -> dict[str, str]:
    (cookie,) = result.response.cookies
    parts = [part.partition("=") for part in cookie.split("; ")]
    return {name: value for name, _, value in parts}


def test_a_new_visitor_gets_a_uuid_cookie_for_365_days_secure_httponly_samesite_none() -> None:
    result = plan(http_request("GET", "/i", query=pv_query()))
    attributes = cookie_attributes(result)
    assert attributes["sp"] == NEW_ID and attributes["Max-Age"] == str(365 * 86400)
    assert attributes["Expires"] == "Sun, 16 Nov 2025 10:00:00 GMT"
    assert {"Secure", "HttpOnly"} <= set(attributes) and attributes["SameSite"] == "None"
    assert "Domain" not in attributes  # no allow-listed domain: host-only
    assert payloads(result)[0].nuid == NEW_ID


def test_a_returning_visitor_keeps_the_cookie_id_and_an_invalid_one_is_replaced() -> None:
    assert payloads(plan(http_request("GET", "/i", query=pv_query(), cookies={"sp": NUID})))[0].nuid == NUID
    assert payloads(plan(http_request("GET", "/i", query=pv_query(), cookies={"sp": "garbage"})))[0].nuid == NEW_ID


def test_the_cookie_domain_comes_from_the_allow_list_by_origin() -> None:
    domains = ("example.org", "example.com")
    result = plan(
        http_request("GET", "/i", query=pv_query(), headers={"origin": "https://shop.example.com"}),
        cookie_domains=domains,
    )
    assert cookie_attributes(result)["Domain"] == "example.com"
    other = plan(
        http_request("GET", "/i", query=pv_query(), headers={"origin": "https://other.test"}), cookie_domains=domains
    )
    assert "Domain" not in cookie_attributes(other)


def test_the_nuid_parameter_overrides_the_cookie() -> None:
    override = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    result = plan(http_request("GET", "/i", query=pv_query(nuid=override), cookies={"sp": NUID}))
    assert cookie_attributes(result)["sp"] == override
    (event,), _ = transform(batches_of(result.records))
    assert event["network_userid"] == override


def test_sp_anonymous_zeroes_the_nuid_drops_the_ip_and_sets_no_cookie() -> None:
    request = http_request(
        "GET",
        "/i",
        query=pv_query(),
        cookies={"sp": NUID},
        headers={"sp-anonymous": "*", "x-forwarded-for": "198.51.100.1"},
    )
    result = plan(request)
    assert result.response.cookies == ()
    (payload,) = payloads(result)
    assert payload.nuid == ANONYMOUS_NUID and payload.client_ip is None and payload.forwarded_for is None
    assert result.records[0].partition_key == tracker_events()[0]["eid"]  # never the constant all-zero id
    (event,), _ = transform(batches_of(result.records))
    assert event["network_userid"] == ANONYMOUS_NUID and "user_ipaddress" not in event


def test_the_do_not_track_cookie_answers_200_and_stores_nothing() -> None:
    result = plan(http_request("GET", "/i", query=pv_query(), cookies={"optout": "1"}), do_not_track_cookie="optout=1")
    assert (result.response.status, result.records, result.response.cookies) == (200, (), ())
    stored = plan(http_request("GET", "/i", query=pv_query(), cookies={"optout": "0"}), do_not_track_cookie="optout=1")
    assert stored.events == 1


def test_cookies_switched_off_are_neither_read_nor_set() -> None:
    result = plan(http_request("GET", "/i", query=pv_query(), cookies={"sp": NUID}), cookie_enabled=False)
    assert result.response.cookies == () and payloads(result)[0].nuid == NEW_ID


def test_path_aliases_serve_the_same_routes() -> None:
    aliases = {"pixel_paths": ("/p.gif",), "tp2_paths": ("/collect",)}
    assert plan(http_request("GET", "/p.gif", query=pv_query()), **aliases).response.body == PIXEL
    assert plan(http_request("POST", "/collect", body=tp2_body(tracker_events()).encode()), **aliases).events == 4
    assert plan(http_request("GET", "/i", query=pv_query()), **aliases).response.status == 404


# ------------------------------------------------------------------ keys and batch ids
def test_partition_keys_spread_by_visitor() -> None:
    keys = {
        plan(http_request("GET", "/i", query=pv_query(), cookies={"sp": nuid})).records[0].partition_key
        for nuid in (NUID, NEW_ID, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
    }
    assert len(keys) == 3


def test_a_retried_request_makes_the_same_batch_ids_so_sinks_skip_its_chunks() -> None:
    first = tracker_events()
    retry = [{**event, "stm": "1731751260000"} for event in first]  # the tracker restamps stm on a retry
    one = batches_of(plan(http_request("POST", TP2, body=tp2_body(first).encode())).records)
    two = batches_of(
        plan(dataclasses.replace(http_request("POST", TP2, body=tp2_body(retry).encode()), request_id="req-2")).records
    )
    assert [b.batch_id for b in one] == [b.batch_id for b in two]


def test_a_large_request_is_split_into_records_within_the_target_size() -> None:
    events = [
        {**tracker_events()[2], "eid": f"{i:08d}-1111-4111-8111-111111111111", "se_pr": "y" * 200} for i in range(300)
    ]
    result = plan_request(
        http_request("POST", TP2, body=tp2_body(events).encode()), CONFIG.collector, record_target_bytes=50_000
    )
    assert len(result.records) > 1 and all(r.size < 100_000 for r in result.records)
    stored, bad = transform(batches_of(result.records))
    assert not bad and sorted(e["event_id"] for e in stored) == sorted(e["eid"] for e in events)
    assert json.loads(batches_of(result.records)[0].lines[0])["request_id"] == "req-1-0"
