"""One canonical path: the collector's stream-1 records and CloudFront log lines of the same
tracker requests give the same canonical events (only v_collector and the collector's
network user id differ).

The helpers here (a Function URL event, both paths to canonical events) serve the other
collector tests too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from extract.collector_protocol import COLLECTOR_VERSION, HttpRequest, payload_events, plan_request
from pipeline.config import PipelineConfig
from pipeline.formats.cloudfront import LEGACY_FIELDS
from pipeline.formats.collector import event_query
from pipeline.records import RawBatch, decode_raw
from tests.conftest import make_config
from transform.canonicalize import Canonicalizer
from transform.stage import LineFormats, transform_batch

RECEIVED_MS = 1_731_751_200_123  # 2024-11-16T10:00:00.123Z
TP2 = "/com.snowplowanalytics.snowplow/tp2"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
NUID = "8a1f7c2e-4b5d-4e6f-9a0b-1c2d3e4f5a6b"
CONFIG = make_config()


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CONTEXTS = {
    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
    "data": [
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
            "data": {"id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"},
        }
    ],
}
UNSTRUCT = {
    "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
    "data": {
        "schema": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
        "data": {"targetUrl": "https://www.example.com/a?b=c"},
    },
}
COMMON = {
    "tv": "js-4.1.0",
    "tna": "sp",
    "aid": "shop",
    "p": "web",
    "duid": "5b1c0b4e-2a4f-4a2b-9a3e-0c8f2b1a7d6e",
    "sid": "7c4f0a9e-3d2b-4c1a-8e7f-6a5b4c3d2e1f",
    "vid": "3",
    "tz": "Europe/London",
    "lang": "en-GB",
    "res": "1920x1080",
    "vp": "1280x720",
    "cs": "UTF-8",
    "url": "https://www.example.com/shop?utm_source=news&utm_medium=email",
    "refr": "https://www.google.com/search?q=shoes",
    "page": "Shoes & more",
    "dtm": "1731751199000",
    "stm": "1731751199500",
}


def tracker_events() -> list[dict[str, str]]:
    return [
        {**COMMON, "e": "pv", "eid": "11111111-1111-4111-8111-111111111111", "cx": b64(CONTEXTS)},
        {
            **COMMON,
            "e": "pp",
            "eid": "22222222-2222-4222-8222-222222222222",
            "pp_mix": "0",
            "pp_max": "10",
            "pp_miy": "5",
            "pp_may": "400",
        },
        {
            **COMMON,
            "e": "se",
            "eid": "33333333-3333-4333-8333-333333333333",
            "se_ca": "video",
            "se_ac": "play",
            "se_la": "intro clip",
            "se_va": "12.5",
        },
        {
            **COMMON,
            "e": "ue",
            "eid": "44444444-4444-4444-8444-444444444444",
            "ue_pr": json.dumps(UNSTRUCT),
            "co": json.dumps(CONTEXTS),
        },
    ]


def function_url_event(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[str] = (),
    source_ip: str = "203.0.113.77",
    request_id: str = "req-1",
    time_epoch: int = RECEIVED_MS,
) -> dict[str, Any]:
    """A Lambda Function URL event (payload format 2.0), as the front door sends it."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "user-agent": UA,
            "host": "c.example.com",
            "referer": "https://www.example.com/",
            **(headers or {}),
        },
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": UA},
            "requestId": request_id,
            "timeEpoch": time_epoch,
            "domainName": "c.example.com",
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = list(cookies)
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
    return event


def tp2_body(events: Iterable[Mapping[str, str]]) -> str:
    return json.dumps(
        {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": list(events)}
    )


def http_request(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    cookies: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpRequest:
    return HttpRequest(
        method,
        path,
        query,
        {"user-agent": UA, "host": "c.example.com", "referer": "https://www.example.com/", **(headers or {})},
        dict(cookies or {}),
        body,
        "203.0.113.77",
        "req-1",
        RECEIVED_MS,
    )


def batches_of(records: Iterable[Any]) -> list[RawBatch]:
    return [decode_raw(record.data) for record in records]


def transform(batches: Iterable[RawBatch], config: PipelineConfig = CONFIG) -> tuple[list[dict[str, Any]], list[Any]]:
    canonicalizer, formats = Canonicalizer(config.transform), LineFormats()
    events: list[dict[str, Any]] = []
    bad: list[Any] = []
    for batch in batches:
        out = transform_batch(batch, canonicalizer, 1 << 20, formats)
        events += out.events
        bad += out.bad
    return events, bad


def cloudfront_line(
    query: str, *, received_ms: int, client_ip: str, useragent: str, referer: str, request_id: str
) -> str:
    """The CloudFront standard log line (33 fields) of ``GET /i?<query>`` with those headers."""
    moment = datetime.fromtimestamp(received_ms / 1000, UTC)
    values = dict.fromkeys(LEGACY_FIELDS, "-")
    values.update(
        {
            "date": moment.strftime("%Y-%m-%d"),
            "time": moment.strftime("%H:%M:%S.") + f"{received_ms % 1000:03d}",
            "x-edge-location": "LHR50-P1",
            "sc-bytes": "480",
            "c-ip": client_ip,
            "cs-method": "GET",
            "cs(Host)": "d111111abcdef8.cloudfront.net",
            "cs-uri-stem": "/i",
            "sc-status": "200",
            "cs(Referer)": quote(referer, safe=":/?=&"),
            "cs(User-Agent)": quote(useragent, safe="()/;,:"),
            "cs-uri-query": query.replace("%", "%25"),  # CloudFront encodes the tracker's '%' once more
            "x-edge-result-type": "Hit",
            "x-edge-request-id": request_id,
            "x-host-header": "c.example.com",
            "cs-protocol": "https",
        }
    )
    return "\t".join(values[name] for name in LEGACY_FIELDS)


def cloudfront_events(request: HttpRequest, etl_tstamp: int) -> list[dict[str, Any]]:
    """The canonical events the CloudFront-log path gives for the same request (each POSTed event as its GET)."""
    if request.method == "POST":
        parsed = payload_events(request.body)
        assert not isinstance(parsed, str), parsed
        queries = [event_query(event) for event in parsed]
    else:
        queries = [request.query]
    lines = tuple(
        cloudfront_line(
            query,
            received_ms=request.received_ms,
            client_ip=request.source_ip or "-",
            useragent=request.headers["user-agent"],
            referer=request.headers["referer"],
            request_id=f"{request.request_id}-{index}",
        )
        for index, query in enumerate(queries)
    )
    batch = RawBatch(
        "logs",
        "cf/E2EXAMPLE.2024-11-16-10.abcd.gz",
        "etag",
        etl_tstamp,
        " ".join(LEGACY_FIELDS),
        tuple(range(1, len(lines) + 1)),
        lines,
    )
    events, bad = transform([batch])
    assert not bad, bad
    return events


def assert_same_events(collector: list[dict[str, Any]], cloudfront: list[dict[str, Any]], nuid: str | None) -> None:
    """Equal field by field but v_collector and network_userid (``nuid``; any when None)."""
    assert len(collector) == len(cloudfront)
    for ours, theirs in zip(
        sorted(collector, key=lambda e: e["event_id"]), sorted(cloudfront, key=lambda e: e["event_id"]), strict=True
    ):
        assert ours["v_collector"] == COLLECTOR_VERSION
        assert ours["network_userid"] == nuid or (nuid is None and ours["network_userid"])
        assert "network_userid" not in theirs  # CloudFront never sees the collector's cookie
        differences = {
            name: (ours.get(name), theirs.get(name))
            for name in set(ours) | set(theirs)
            if name not in ("v_collector", "network_userid") and ours.get(name) != theirs.get(name)
        }
        assert differences == {}, differences


def test_get_requests_give_the_events_of_their_cloudfront_log_lines() -> None:
    # GIVEN each tracker event sent by GET, with the visitor's collector cookie
    for event in tracker_events():
        request = http_request("GET", "/i", query=event_query(event), cookies={"sp": NUID})
        # WHEN it goes through the collector and Transform, and its log line through Transform
        plan = plan_request(request, CONFIG.collector, record_target_bytes=CONFIG.stream.record_target_bytes)
        batches = batches_of(plan.records)
        collector, bad = transform(batches)
        # THEN the events are equal field by field (but v_collector and network_userid)
        assert not bad, bad
        assert_same_events(collector, cloudfront_events(request, batches[0].etl_tstamp), NUID)
        assert collector[0]["collector_tstamp"] == RECEIVED_MS


def test_a_tp2_post_gives_the_events_of_the_same_events_sent_by_get() -> None:
    request = http_request("POST", TP2, body=tp2_body(tracker_events()).encode(), cookies={"sp": NUID})
    plan = plan_request(request, CONFIG.collector, record_target_bytes=CONFIG.stream.record_target_bytes)
    batches = batches_of(plan.records)
    collector, bad = transform(batches)
    assert not bad, bad
    assert [e["event"] for e in collector] == ["page_view", "page_ping", "struct", "unstruct"]
    assert collector[0]["contexts"] and collector[3]["unstruct_event"]
    assert collector[2]["se_label"] == "intro clip" and collector[0]["page_title"] == "Shoes & more"
    assert_same_events(collector, cloudfront_events(request, batches[0].etl_tstamp), NUID)
