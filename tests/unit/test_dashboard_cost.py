"""The dashboard's table of ``clickstream-etl cost`` (issue 16): the rollup every stack runs, the hosted site."""

from __future__ import annotations

import json

import pytest

from pipeline.app.cli import main
from pipeline.app.cost import dashboard_cost, dashboard_estimate, is_hosted_site_item, load_cost_inputs

INPUTS = load_cost_inputs()
TEN_MILLION_A_MONTH = 10e6 / (INPUTS.prices.hours_per_month * 3600)
"""The event rate of 10 million events a month, the issue's figure."""


def test_the_estimate_splits_the_rollup_from_the_hosted_site_and_adds_up() -> None:
    d = dashboard_estimate(10e6, INPUTS)
    assert d.items == tuple(dashboard_cost(10e6, INPUTS))
    site = {i.item for i in d.items if is_hosted_site_item(i)}
    assert site == {"site requests", "basic-auth function", "site transfer", "site GETs (cache misses)"}
    assert d.total == pytest.approx(sum(i.monthly for i in d.items))
    assert d.rollup > 0 and d.site > 0 and d.total < 3.0  # "within a few dollars a month"
    # the site's part does not grow with the events; the rollup's does
    more = dashboard_estimate(100e6, INPUTS)
    assert more.site == pytest.approx(d.site) and more.rollup > d.rollup


def test_the_cost_command_prints_the_dashboards_table_with_its_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--events-per-second", f"{TEN_MILLION_A_MONTH:.6f}", "--mode", "direct"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("dashboard (issue 16) at 10,000,000 events a month") :]
    table = table[: table.index("\n\n")]
    expected = dashboard_estimate(10e6, INPUTS)
    for line, figure in (
        ("rollup (every stack: RollupFunction)", expected.rollup),
        ("hosted site (Dashboard enabled)", expected.site),
        ("TOTAL", expected.total),
    ):
        (row,) = [r for r in table.splitlines() if line in r]
        assert row.split()[-1] == f"{figure:,.2f}", row
    assert "basic-auth function" in table and "rollup duration" in table


def test_the_cost_command_as_json_has_the_dashboard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--events-per-second", "10", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    dashboard = document["dashboard"]
    assert dashboard["events_per_month"] == document["estimates"][0]["events_per_month"]
    assert dashboard["total_usd"] == pytest.approx(dashboard["rollup_usd"] + dashboard["hosted_site_usd"], abs=1e-3)
    assert {i["item"] for i in dashboard["items"]} >= {"rollup duration", "site requests"}
