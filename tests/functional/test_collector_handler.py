"""The collector handler in front of the emulated chain (moto): durable before 200, 503 in an
outage, and each event stored once after the tracker's retries."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from extract.collector import CollectorDeps, build_deps, handle
from extract.collector_protocol import PIXEL
from pipeline.app.local.runtime import LocalChain, emulated_aws
from tests.conftest import make_config
from tests.unit.test_collector_parity import NUID, TP2, function_url_event, tp2_body, tracker_events


class FlakyKinesis:
    """A Kinesis client whose PutRecords is throttled while ``down`` (the stream-1 outage)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.down = False
        self.refused = 0

    def put_records(self, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected outage"}}
            raise ClientError(error, "PutRecords")  # type: ignore[arg-type]
        return self._real.put_records(**kwargs)


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    with emulated_aws(server=False):
        local = LocalChain(make_config(), shards=2)
        local.create_resources()
        yield local


def deps_on(chain: LocalChain) -> tuple[CollectorDeps, FlakyKinesis]:
    kinesis = FlakyKinesis(chain.kinesis)
    return build_deps(chain.config, kinesis=kinesis, sleep=lambda _seconds: None), kinesis


def post(deps: CollectorDeps, events: list[dict[str, str]], request_id: str) -> dict[str, Any]:
    body = tp2_body(events)
    return handle(function_url_event("POST", TP2, body=body, cookies=[f"sp={NUID}"], request_id=request_id), deps)


def test_a_pixel_request_is_on_stream_1_before_its_gif_and_lands_once(chain: LocalChain) -> None:
    deps, _ = deps_on(chain)
    query = (
        "e=pv&eid=11111111-1111-4111-8111-111111111111&aid=shop&p=web&tv=js-4.1.0&url=https%3A%2F%2Fwww.example.com%2F"
    )
    response = handle(function_url_event("GET", "/i", query=query), deps)
    assert response["statusCode"] == 200 and base64.b64decode(response["body"]) == PIXEL
    assert response["cookies"][0].startswith("sp=")
    report = chain.run()
    assert (report.events, report.parquet_rows, report.bad_rows) == (1, 1, 0)


def test_an_outage_answers_503_and_the_retries_store_each_event_once(chain: LocalChain) -> None:
    deps, kinesis = deps_on(chain)
    events = tracker_events()
    # GIVEN stream 1 refuses every put
    kinesis.down = True
    # WHEN the tracker posts: the collector retries within its budget, then answers 503
    failed = post(deps, events, "req-1")
    assert failed["statusCode"] == 503 and failed["cookies"] == []
    assert kinesis.refused == chain.config.collector.put_max_attempts
    assert chain.run().events == 0  # nothing was acknowledged, nothing is stored
    # THEN once the stream is back the tracker's retry (stm restamped) is stored...
    kinesis.down = False
    retry = [{**event, "stm": str(int(event["stm"]) + 30_000)} for event in events]
    assert post(deps, retry, "req-2")["statusCode"] == 200
    # ...and a second retry (the 200 was lost on the way back) lands on the same chunks, which the sink skips
    assert post(deps, retry, "req-3")["statusCode"] == 200
    report = chain.run()
    assert report.parquet_rows == len(events) and report.parquet_distinct_events == len(events)
    assert report.bad_rows == 0


def test_a_malformed_request_answers_400_and_its_bad_row_reaches_s3(chain: LocalChain) -> None:
    deps, _ = deps_on(chain)
    response = handle(function_url_event("POST", TP2, body="{not json"), deps)
    assert response["statusCode"] == 400
    report = chain.run()
    assert report.events == 0 and dict(report.bad_by_kind) == {"tracker_protocol_violation": 1}


def test_the_local_response_shape_is_a_function_url_response(chain: LocalChain) -> None:
    deps, _ = deps_on(chain)
    origin = {"origin": "https://www.example.com"}
    response = handle(function_url_event("OPTIONS", TP2, headers=origin), deps)
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://www.example.com"
    ok = post(deps, tracker_events()[:1], "req-9")
    assert base64.b64decode(ok["body"]) == b"ok" and json.dumps(ok)  # JSON-serialisable, as Lambda returns it
