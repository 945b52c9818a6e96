"""The real Snowplow JavaScript tracker, in headless Chromium, against ``run-local --collector``'s
server in front of the emulated chain: every event lands once with the right values, and the
same requests through the CloudFront-log path give equal canonical events.

The page (web/tracker-page, the tracker from npm, pinned and bundled) must be built first:
``cd web/tracker-page && npm ci && npm run build`` (``.ci/run`` does).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from extract.collector import build_deps, parse_http_event
from pipeline.app.local.collector_server import ObservedChain, serving
from pipeline.app.local.runtime import emulated_aws
from tests.browser_support import chromium
from tests.conftest import make_config
from tests.unit.test_collector_parity import assert_same_events, cloudfront_events

pytestmark = pytest.mark.e2e

PAGE = Path(__file__).resolve().parents[2] / "web" / "tracker-page" / "dist"
SETTLE_S = 30


@contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """The built page on its own origin (another port): the tracker's requests are cross-origin, as on a real site."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_the_javascript_tracker_lands_every_event_once_equal_to_the_cloudfront_path() -> None:
    if not (PAGE / "tracker-page.js").is_file():
        pytest.fail("the tracker page is not built: cd web/tracker-page && npm ci && npm run build")
    config = make_config()
    landed: list[dict[str, Any]] = []
    exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with emulated_aws(server=False):
        chain = ObservedChain(config, shards=2, on_events=landed.extend)
        chain.create_resources()
        deps = build_deps(config, kinesis=chain.kinesis)
        with (
            serving(chain, deps, observer=lambda event, response: exchanges.append((event, response))) as collector,
            static_site(PAGE) as site,
            chromium() as driver,
        ):
            # GIVEN the page with two trackers, one sending by POST and one by GET
            driver.get(f"{site}/index.html?collector={collector.url}")
            # WHEN it has tracked its events and the collector acknowledged each
            deadline = time.monotonic() + SETTLE_S
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                # None until the page's script has run: on a loaded machine, after get() returns.
                state = driver.execute_script("return window.trackerPage") or {}
                if state.get("done") and state["acknowledged"] >= len(state["tracked"]):
                    break
                time.sleep(0.2)
            assert state.get("done"), f"the page did not settle in {SETTLE_S}s: {state}"
        report = chain.run()

    tracked = state["tracked"]
    kinds = Counter(payload["e"] for payload in tracked)
    # THEN both trackers sent a page view, a structured and a self-describing event, and pings
    assert kinds["pv"] == 2 and kinds["se"] == 2 and kinds["ue"] == 2 and kinds["pp"] >= 2, kinds
    assert state["failures"] == [] and state["acknowledged"] == len(tracked)
    methods = Counter((e["requestContext"]["http"]["method"], e["rawPath"]) for e, _ in exchanges)
    assert methods[("POST", "/com.snowplowanalytics.snowplow/tp2")] >= 4 and methods[("GET", "/i")] >= 4, methods
    assert methods[("OPTIONS", "/com.snowplowanalytics.snowplow/tp2")] >= 1  # the POST's CORS preflight
    # ...and each landed exactly once, in the dataset too
    by_id = Counter(event["event_id"] for event in landed)
    assert sorted(by_id) == sorted(payload["eid"] for payload in tracked) and set(by_id.values()) == {1}
    assert (report.parquet_rows, report.parquet_distinct_events, report.bad_rows) == (len(tracked), len(tracked), 0)
    events = {event["event_id"]: event for event in landed}
    for payload in tracked:
        event = events[payload["eid"]]
        assert event["app_id"] == "tracker-page" and event["platform"] == "web"
        assert event["page_url"].startswith(site) and event["user_ipaddress"] == "127.0.0.0"
        contexts = json.loads(event["contexts"])["data"]  # JSON columns, as the sinks store them
        assert any(e["schema"].endswith("/web_page/jsonschema/1-0-0") for e in contexts)
        if payload["e"] == "se":
            assert (event["se_category"], event["se_action"], event["se_label"]) == ("video", "play", "intro clip")
            assert event["se_property"] == "hd" and float(event["se_value"]) == 12.5
        if payload["e"] == "ue":
            assert json.loads(event["unstruct_event"])["data"]["data"] == {
                "targetUrl": "https://www.example.com/a?b=c",
                "elementId": "buy",
            }
            assert any(e["data"] == {"type": "product", "language": "en-GB"} for e in contexts)
        if payload["e"] == "pp":
            assert event["event"] == "page_ping"
    # ...and the CloudFront-log path gives the same canonical events for the same requests
    compared = 0
    for http_event, response in exchanges:
        request = parse_http_event(http_event)
        if request.method == "OPTIONS":
            continue
        assert response["statusCode"] == 200
        theirs = cloudfront_events(request, etl_tstamp=request.received_ms)
        ours = [events[event["event_id"]] for event in theirs]
        assert_same_events(ours, theirs, nuid=None)
        compared += len(theirs)
    assert compared == len(tracked)
