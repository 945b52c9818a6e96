"""The dashboard's line of the cost model (pipeline/app/cost.py dashboard_cost, issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.app.cost import ROLLUP_ALARMS, ROLLUP_METRICS, dashboard_cost, load_cost_inputs

ROOT = Path(__file__).resolve().parents[2]


def test_the_whole_dashboard_costs_a_few_dollars_a_month_at_ten_million_events() -> None:
    inputs = load_cost_inputs()
    items = dashboard_cost(10e6, inputs)
    total = sum(item.monthly for item in items)
    assert 0.5 < total < 3.0, [(i.item, round(i.monthly, 3)) for i in items]
    assert all(item.monthly >= 0 for item in items)
    duration = {i.item: i.monthly for i in dashboard_cost(100e6, inputs)}["rollup duration"]
    assert duration > 9 * {i.item: i.monthly for i in items}["rollup duration"]  # grows with the events


def test_the_counted_metrics_and_alarms_are_the_handlers_and_the_templates() -> None:
    handler = (ROOT / "load/rollup_handler.py").read_text("utf-8")
    assert len(set(re.findall(r'name="([A-Za-z]+)"', handler))) == ROLLUP_METRICS
    template = (ROOT / "template.yaml").read_text("utf-8")
    assert len(re.findall(r"Value: !Ref RollupFunction\}", template)) == ROLLUP_ALARMS
