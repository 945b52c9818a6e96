"""The real-time counter on DynamoDB (moto): the collector marks visitors after stream 1 took
their events, and GET /realtime counts those inside the five-minute window (injected clock)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator

import pytest

from extract.collector import CollectorDeps, build_deps, handle
from extract.realtime import DynamoRealtimeCounter, RealtimeCounterAccessError, create_realtime_table
from pipeline.app.local.runtime import LocalChain, emulated_aws
from tests.conftest import make_config
from tests.unit.test_collector_parity import function_url_event

TABLE = "rt-functional"
NOW_MS = 1_732_000_000_000
QUERY = "e=pv&eid={eid}&aid=shop&p=web&tv=js-4.1.0"


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    with emulated_aws(server=False):
        overrides = {"collector.realtime_table": TABLE, "collector.realtime_salt": "s3cret"}
        local = LocalChain(make_config(overrides), shards=1)
        local.create_resources()
        create_realtime_table(local.dynamodb, TABLE)
        yield local


def visit(deps: CollectorDeps, nuid: str, age_s: int, n: int) -> None:
    event = function_url_event(
        "GET",
        "/i",
        query=QUERY.format(eid=f"11111111-1111-4111-8111-{n:012d}"),
        cookies=[f"sp={nuid}"],
        time_epoch=NOW_MS - age_s * 1000,
        request_id=f"req-{n}",
    )
    assert handle(event, deps)["statusCode"] == 200


def test_realtime_counts_the_visitors_of_the_last_five_minutes(chain: LocalChain) -> None:
    deps = build_deps(chain.config, kinesis=chain.kinesis, dynamodb=chain.dynamodb)
    deps = dataclasses.replace(deps, clock=lambda: NOW_MS / 1000)
    nuids = [f"8a1f7c2e-4b5d-4e6f-9a0b-{i:012d}" for i in range(4)]
    # GIVEN two visitors inside the window (one of them twice), one 6 minutes ago, one just now
    visit(deps, nuids[0], 240, 1)
    visit(deps, nuids[0], 30, 2)
    visit(deps, nuids[1], 299, 3)
    visit(deps, nuids[2], 360, 4)
    visit(deps, nuids[3], 0, 5)
    # WHEN the dashboard asks
    response = handle(function_url_event("GET", "/realtime", headers={"origin": "https://dash.example"}), deps)
    # THEN three visitors, as JSON with CORS, and the events all went to stream 1
    assert response["statusCode"] == 200
    assert json.loads(base64.b64decode(response["body"])) == {
        "visitors": 3,
        "window_s": 300,
        "as_of": "2024-11-19T07:06:40Z",
    }
    assert response["headers"]["Access-Control-Allow-Origin"] == "*"
    assert chain.run().events == 5
    # AND the table holds hashes, never the network user ids
    items = chain.dynamodb.scan(TableName=TABLE)["Items"]
    assert len(items) == 4
    assert not any(nuid in json.dumps(items) for nuid in nuids)


def test_a_missing_table_is_an_access_error_that_says_what_failed(chain: LocalChain) -> None:
    counter = DynamoRealtimeCounter(chain.dynamodb, "no-such-table")
    with pytest.raises(RealtimeCounterAccessError, match="DynamoDB Query"):
        counter.count(NOW_MS // 1000, 300)
