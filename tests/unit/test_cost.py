"""The cost model (``clickstream-etl cost``): list prices with their date and source, both modes, the peers.

GIVEN config/prices.toml
WHEN the monthly cost is modeled at an event rate
THEN fixed and per-event costs add up, the sink's per-event manifest (the former design, still
     shown as the "before" line) is its own line at the DynamoDB write price, the compactor that
     replaced it is itemized, the direct mode has no streams, and the peers' figures convert.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.app.cli import main
from pipeline.app.cost import (
    BEFORE,
    COMPACTION_ITEMS,
    COMPACTOR_METRICS,
    DEDUPE_ITEMS,
    MODES,
    StreamSettings,
    cost_inputs,
    estimate,
    load_cost_inputs,
    peer_figures,
    without_dedupe,
)
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = tomllib.loads((ROOT / "config" / "prices.toml").read_text("utf-8"))
INPUTS = cost_inputs(DOCUMENT)
MONTH_S = 730 * 3600


def test_every_price_has_its_source_and_the_file_its_date() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", DOCUMENT["meta"]["as_of"])
    assert DOCUMENT["meta"]["region"] == "us-east-1"
    for service, table in DOCUMENT["prices"].items():
        assert table["source"].startswith("https://aws.amazon.com/"), service
        assert all(value > 0 for key, value in table.items() if key != "source"), service
    for peer in DOCUMENT["peers"].values():
        assert peer["source"].startswith("https://")


def test_the_shipped_prices_are_package_data() -> None:
    assert load_cost_inputs().prices.as_of == DOCUMENT["meta"]["as_of"]


def test_the_measured_figures_say_how_they_were_measured() -> None:
    text = (ROOT / "config" / "prices.toml").read_text("utf-8")
    assert "clickstream-etl cost --measure" in text and "benchmarks/run.py" in text
    measured = DOCUMENT["measured"]
    for key in ("extract_cpu_us", "transform_cpu_us", "sink_cpu_us", "direct_cpu_us", "stream2_bytes"):
        assert measured[key] > 0
    assert measured["machine"]


@pytest.mark.parametrize("mode", MODES)
def test_with_no_events_only_the_fixed_costs_remain(mode: str) -> None:
    e = estimate(mode, 0, INPUTS)  # type: ignore[arg-type]
    assert e.fixed > 0
    assert e.per_event == pytest.approx(sum(i.monthly for i in e.items if i.group == "per event"))
    assert e.per_event < 0.5  # the floor's per-object work (the minimum of log objects an hour)


def test_two_provisioned_streams_cost_about_22_dollars_before_any_event() -> None:
    e = estimate("streaming", 1, INPUTS)
    [shards] = [i for i in e.items if i.service == "Kinesis" and i.group == "fixed"]
    assert shards.monthly == pytest.approx(2 * 730 * 0.015)


def test_on_demand_streams_bill_hours_and_gigabytes_instead() -> None:
    e = estimate("streaming", 100, INPUTS, stream_capacity="on-demand")
    items = {i.item: i for i in e.items if i.service == "Kinesis"}
    assert items["on-demand stream hours"].monthly == pytest.approx(2 * 730 * 0.04)
    assert "on-demand data in" in items and "on-demand data out" in items
    assert not [i for i in e.items if "PUT payload" in i.item]


def test_the_direct_mode_has_no_streams_no_sink_claims_and_a_small_floor() -> None:
    e = estimate("direct", 1, INPUTS)
    assert not [i for i in e.items if i.service in ("Kinesis", "Firehose")]
    assert e.dedupe == 0
    assert e.total < 10  # the issue: the seed's small-site analytics ran for under $5 a month


@pytest.mark.parametrize("rate", [1, 10, 100, 1000])
def test_the_sinks_event_manifest_is_one_write_request_unit_per_event(rate: float) -> None:
    e = estimate("streaming", rate, INPUTS, stream=StreamSettings(cross_batch_dedupe=True))
    [writes] = [i for i in e.items if i.item == DEDUPE_ITEMS[0]]
    assert writes.quantity == pytest.approx(rate * MONTH_S)
    assert e.per_million(writes.monthly) == pytest.approx(0.625)
    off = without_dedupe(INPUTS, e)
    assert not [i for i in off.items if i.item in DEDUPE_ITEMS]
    assert off.total == pytest.approx(e.total - e.dedupe)


def test_the_manifests_storage_grows_with_the_dedupe_window() -> None:
    short = estimate("streaming", 100, INPUTS, stream=StreamSettings(cross_batch_dedupe=True, dedupe_window_days=1))
    long = estimate("streaming", 100, INPUTS, stream=StreamSettings(cross_batch_dedupe=True, dedupe_window_days=30))
    [a] = [i for i in short.items if i.item == DEDUPE_ITEMS[1]]
    [b] = [i for i in long.items if i.item == DEDUPE_ITEMS[1]]
    assert b.monthly == pytest.approx(30 * a.monthly)


def test_redshift_adds_firehose_and_the_loader() -> None:
    plain = estimate("streaming", 10, INPUTS)
    with_redshift = estimate("streaming", 10, INPUTS, redshift=True)
    items = {i.item for i in with_redshift.items}
    assert {"ingestion (5 KB rounding)", "firehose duration", "loader schedule"} <= items
    assert with_redshift.total > plain.total


def test_the_peers_figures_convert_to_monthly_and_per_million() -> None:
    peers = {p.name.split(" ")[0]: p for p in peer_figures(INPUTS)}
    assert peers["Clickstream"].monthly == pytest.approx(3.39 * 10 * MONTH_S / 1e6)
    assert peers["Snowplow"].per_million == pytest.approx(200 / (100 * MONTH_S) * 1e6)


def test_the_custom_metrics_of_the_footprint_are_the_metric_names_the_handlers_emit() -> None:
    def names(path: str) -> set[str]:
        return set(re.findall(r'name="([A-Za-z]+)"', (ROOT / path).read_text("utf-8")))

    streaming = sum(
        len(names(f))
        for f in ("extract/handler.py", "extract/reconciler.py", "transform/handler.py", "load/sink_handler.py")
    )
    assert INPUTS.footprints["streaming"].custom_metrics == streaming
    # The compactor's are their own line (both modes run it).
    assert len(names("load/compact_handler.py")) == COMPACTOR_METRICS


def test_a_prices_document_without_a_price_the_model_needs_is_a_config_error() -> None:
    document = json.loads(json.dumps(DOCUMENT))
    del document["prices"]["dynamodb"]["write_request_units_per_million"]
    with pytest.raises(ConfigError, match="write_request_units_per_million"):
        estimate("streaming", 1, cost_inputs(document))


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(min_value=0, max_value=5000), mode=st.sampled_from(MODES), redshift=st.booleans())
def test_every_item_is_non_negative_and_the_total_grows_with_the_rate(rate: float, mode: str, redshift: bool) -> None:
    e = estimate(mode, rate, INPUTS, redshift=redshift)  # type: ignore[arg-type]
    assert all(i.monthly >= 0 and i.quantity >= 0 for i in e.items)
    assert e.total >= e.fixed > 0
    assert estimate(mode, rate * 2 + 1, INPUTS, redshift=redshift).total >= e.total  # type: ignore[arg-type]


def test_the_cost_command_prints_both_modes_and_the_peers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--events-per-second", "10"]) == 0
    out = capsys.readouterr().out
    assert "streaming mode at 10 events/s" in out and "direct mode at 10 events/s" in out
    assert "event manifest" in out or "per-event manifest" in out
    assert "cross_batch_dedupe = false" in out
    assert "before (the sink's per-event manifest, stream.cross_batch_dedupe = true, no compaction)" in out
    assert "the compactor (natural duplicates across batches" in out
    assert "Clickstream Analytics on AWS" in out and "Snowplow" in out


def test_the_cost_command_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--events-per-second", "100", "--mode", "direct", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    [direct] = document["estimates"]
    assert direct["mode"] == "direct" and direct["events_per_month"] == 100 * MONTH_S
    assert direct["before_usd"] is None and direct["compaction_usd"] > 0
    assert document["as_of"] == DOCUMENT["meta"]["as_of"] and len(document["peers"]) == 2


def test_the_cost_command_needs_a_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost"]) == 2
    assert "--events-per-second" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the compactor (issue 11, item 6)
def items(e: object, names: tuple[str, ...]) -> dict[str, object]:
    return {i.item: i for i in e.items if i.item in names}  # type: ignore[attr-defined]


def without_logs(e: object) -> float:
    """The total but CloudWatch Logs (which the compactor's runs add to, a tenth of a cent)."""
    return sum(i.monthly for i in e.items if i.item != "Logs ingestion")  # type: ignore[attr-defined]


@pytest.mark.parametrize("rate", [1, 10, 100, 1000])
def test_the_default_streaming_design_has_no_per_event_writes_and_shows_the_former_as_before(rate: float) -> None:
    e = estimate("streaming", rate, INPUTS)
    assert not items(e, DEDUPE_ITEMS) and e.dedupe == 0
    assert set(items(e, COMPACTION_ITEMS)) == set(COMPACTION_ITEMS)
    dynamodb = [i for i in e.items if i.service == "DynamoDB"]
    assert {i.item for i in dynamodb} == {
        "object ledger",
        "sink batch records",
        "sink chunk claims",
        "sink batch and chunk storage",
    }
    assert e.before is not None and e.before.before is None
    former = estimate("streaming", rate, INPUTS, stream=BEFORE)
    assert e.before.total == pytest.approx(former.total)
    assert e.before.dedupe > 0 and not items(e.before, COMPACTION_ITEMS)
    # The new design costs the old one without its manifest, plus the compactor.
    assert without_logs(e) == pytest.approx(without_logs(former) - former.dedupe + e.compaction)
    assert e.to_json()["before_usd"] == round(former.total, 2)


@pytest.mark.parametrize("rate", [10, 100, 1000])
def test_the_compactor_costs_a_fraction_of_the_per_event_manifest(rate: float) -> None:
    e = estimate("streaming", rate, INPUTS)
    assert e.before is not None
    assert e.compaction < 0.1 * e.before.dedupe
    assert e.total < e.before.total


def test_the_compactor_reads_and_deletes_every_parquet_object_once_and_writes_one_file_per_million_rows() -> None:
    e = estimate("streaming", 1000, INPUTS)
    found = items(e, COMPACTION_ITEMS)
    [puts] = [i for i in e.items if i.item == "Parquet and bad-row PUTs"]
    usage = INPUTS.usage
    share = usage.a("hour_objects_per_batch") / (
        usage.a("hour_objects_per_batch") + usage.a("bad_row_objects_per_batch")
    )
    gets, deletes = found[COMPACTION_ITEMS[3]], found[COMPACTION_ITEMS[5]]
    assert gets.quantity == pytest.approx(puts.quantity * share)  # type: ignore[attr-defined]
    assert deletes.quantity == gets.quantity and deletes.monthly == 0  # type: ignore[attr-defined]
    # 3.6 M rows an hour at 1,000 events/s: four files of at most 1 M rows per partition.
    assert found[COMPACTION_ITEMS[4]].quantity == 730 * 4  # type: ignore[attr-defined]
    small = estimate("streaming", 1000, INPUTS, stream=StreamSettings(max_rows_per_file=10_000_000))
    assert items(small, COMPACTION_ITEMS)[COMPACTION_ITEMS[4]].quantity == 730  # type: ignore[attr-defined]
    assert found[COMPACTION_ITEMS[0]].quantity == 730  # type: ignore[attr-defined]  # rate(1 hour)


def test_the_compactors_duration_follows_its_measured_rate() -> None:
    def duration(document: dict[str, object]) -> float:
        e = estimate("streaming", 100, cost_inputs(document))
        return float(items(e, COMPACTION_ITEMS)[COMPACTION_ITEMS[6]].quantity)  # type: ignore[attr-defined]

    faster = json.loads(json.dumps(DOCUMENT))
    faster["measured"]["compact_rows_per_s"] *= 2
    base, quick = duration(DOCUMENT), duration(faster)
    cpu = 100 * MONTH_S / DOCUMENT["measured"]["compact_rows_per_s"] * 1769 / 1024  # one full vCPU at 1,769 MB
    assert base - quick == pytest.approx(cpu / 2)
    assert DOCUMENT["measured"]["compact_rows_per_s"] > 0 and DOCUMENT["usage"]["memory_mb"]["compactor"] == 1769


def test_without_compaction_the_compactors_items_are_gone() -> None:
    for mode in MODES:
        on = estimate(mode, 100, INPUTS)
        off = estimate(mode, 100, INPUTS, stream=StreamSettings(compaction=False))
        assert on.compaction > 0 and off.compaction == 0 and not items(off, COMPACTION_ITEMS)
        assert without_logs(off) == pytest.approx(without_logs(on) - on.compaction)


def test_the_direct_mode_runs_the_compactor_and_has_no_before_line() -> None:
    e = estimate("direct", 100, INPUTS)
    assert e.compaction > 0 and e.before is None and e.dedupe == 0
