"""The cost model's front-door line (issue 15): per million tracker requests, beside the AWS
clickstream solution's published ingestion figure."""

from __future__ import annotations

import pytest

from pipeline.app.cost import FRONT_DOORS, front_door_cost, load_cost_inputs, render_peers
from pipeline.errors import ConfigError
from pipeline.topology import functions
from tests.conftest import make_config

INPUTS = load_cost_inputs()


def test_a_function_url_costs_lambda_requests_and_duration_only() -> None:
    cost = front_door_cost(INPUTS, "function-url")
    items = dict(cost.items)
    assert not [item for item in items if item.startswith("API Gateway")]  # a Function URL has no price of its own
    assert items["Lambda requests"] == pytest.approx(0.20)
    assert 0 < cost.before_kinesis - 0.20 < 0.10  # the duration: a fraction of the request price
    assert cost.before_kinesis == pytest.approx(0.23, abs=0.05)


def test_the_api_front_doors_add_their_request_prices() -> None:
    url = front_door_cost(INPUTS, "function-url").before_kinesis
    assert front_door_cost(INPUTS, "http-api").before_kinesis == pytest.approx(url + 1.00)
    assert front_door_cost(INPUTS, "rest-api").before_kinesis == pytest.approx(url + 3.50)
    behind = front_door_cost(INPUTS, "function-url", cloudfront=True)
    assert behind.per_million == pytest.approx(front_door_cost(INPUTS, "function-url").per_million + 1.00)
    with pytest.raises(ConfigError):
        front_door_cost(INPUTS, "alb")


def test_every_front_door_but_rest_is_below_the_aws_clickstream_ingestion_figure() -> None:
    published = float(INPUTS.peers["aws_clickstream"]["per_million"])
    assert [d for d in FRONT_DOORS if front_door_cost(INPUTS, d).per_million >= published] == ["rest-api"]
    text = "\n".join(render_peers(INPUTS))
    assert "collector front door" in text and "$3.39" in text


def test_the_model_prices_the_memory_the_template_deploys() -> None:
    spec = functions(make_config())["CollectorFunction"]
    assert INPUTS.usage.a("collector_memory_mb") == spec.memory_mb
