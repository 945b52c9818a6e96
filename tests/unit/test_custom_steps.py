"""Custom transform steps (issue 13, item 3): ``transform.steps`` import paths run after the enrichments.

GIVEN steps named by import path in ``[transform] steps`` (the functions and classes below)
WHEN logs are transformed through the core, the Lambda stage's batch function and the backfill CLI
THEN a step changes fields, drops events as counted skips named after it, turns its own exception
     into a bad row naming it (and the batch goes on), has its output validated, runs in order, and a
     path that cannot be resolved is a configuration error naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.badrows import BadRow
from pipeline.config import TransformConfig
from pipeline.records import RawBatch, encode_raw
from pipeline.schema import CanonicalEvent
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import make_config, run_core
from transform.canonicalize import Canonicalizer
from transform.enrichments import build_enrichments
from transform.enrichments.base import EnrichmentSetup, Hit, Part
from transform.errors import TransformConfigError
from transform.stage import transform_raw_record
from transform.steps import STEP_FAILURE_KIND, DropEvent, FunctionStep, build_steps

HERE = "tests.unit.test_custom_steps"


# ------------------------------------------------------------------ steps the tests name by import path
def tag_checkout(event: CanonicalEvent, hit: Hit) -> dict[str, Any] | None:
    """Returns fields to set: a derived field from the page path."""
    if (event.get("page_urlpath") or "").startswith("/checkout"):
        return {"se_label": "checkout", "page_title": None}
    return None


def drop_internal(event: CanonicalEvent, hit: Hit) -> None:
    """Drops internal traffic (the tracker's app id says so)."""
    if event.get("app_id") == "internal":
        raise DropEvent("internal traffic")


def explode_on_boom(event: CanonicalEvent, hit: Hit) -> None:
    """A step with a bug that data triggers."""
    if event.get("se_action") == "boom":
        raise KeyError("no such campaign rule")


def write_bad_value(event: CanonicalEvent, hit: Hit) -> None:
    """Writes a value of the wrong type and one too wide for its column."""
    if event.get("se_action") == "invalid":
        event["se_value"] = "not a number"
        event["se_category"] = "x" * 1300


def edit_in_place(event: CanonicalEvent, hit: Hit) -> None:
    """Changes the event in place: a control character to clean, a field nulled, one emptied."""
    event["se_label"] = "a\tb\x07"
    event["page_title"] = None
    event["se_property"] = "\x00"


def first(event: CanonicalEvent, hit: Hit) -> None:
    event["se_label"] = "first"


def second(event: CanonicalEvent, hit: Hit) -> None:
    event["se_label"] = (event.get("se_label") or "") + ">second"


def needs_three_arguments(event: CanonicalEvent, hit: Hit, extra: int) -> None:
    """Not callable as (event, hit)."""


NOT_CALLABLE = 42


class LabelByBrowser:
    """A step class with the enrichments' factory: it reads an enrichment's column and the config."""

    name = "label_by_browser"

    def __init__(self, collector: str) -> None:
        self.collector = collector

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> LabelByBrowser:
        return cls(config.collector_name)

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        return Part({"se_property": f"{event.get('br_family')}@{self.collector}"}, ())


class LeftOut:
    """A factory that disables itself."""

    name = "left_out"

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> None:
        return None

    def apply(self, event: CanonicalEvent, hit: Hit) -> None:  # pragma: no cover - never built
        raise AssertionError("a disabled step ran")


class NoFactory:
    name = "no_factory"

    def apply(self, event: CanonicalEvent, hit: Hit) -> None:  # pragma: no cover - refused
        pass


# ------------------------------------------------------------------ helpers
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def canonicalizer(*steps: str) -> Canonicalizer:
    return Canonicalizer(make_config({"transform.steps": list(steps)}).transform)


def log(*hits: dict[str, str]) -> bytes:
    builder = LogBuilder(fields=33)
    for params in hits:
        builder.add(query=tracker_query(params), user_agent=CHROME)
    return builder.to_bytes()


def pv(eid_suffix: str, **params: str) -> dict[str, str]:
    return {"e": "pv", "eid": f"0b9a8e3c-7f4d-4c1e-9a2b-3d4e5f60{eid_suffix:0>4}", **params}


def se(eid_suffix: str, action: str, **params: str) -> dict[str, str]:
    return {"e": "se", "se_ca": "test", "se_ac": action, **pv(eid_suffix), **params}


# ------------------------------------------------------------------ tests
def test_a_step_changes_fields_by_returning_them_and_sees_the_enriched_event() -> None:
    run = run_core(
        log(
            pv("1", url="https://shop.example/checkout/pay", page="Pay"),
            pv("2", url="https://shop.example/home", page="Home"),
        ),
        canonicalizer=canonicalizer(f"{HERE}:tag_checkout", f"{HERE}:LabelByBrowser"),
    )
    checkout, home = run.events
    assert checkout["se_label"] == "checkout" and "page_title" not in checkout  # None deleted the field
    assert "se_label" not in home and home["page_title"] == "Home"
    # the class step saw the useragent enrichment's column and its own configuration
    assert checkout["se_property"] == home["se_property"] == "Chrome@cloudfront"


def test_fields_a_step_changes_in_place_are_cleaned_like_every_string_column() -> None:
    run = run_core(log(pv("1", page="Home")), canonicalizer=canonicalizer(f"{HERE}:edit_in_place"))
    event = run.event
    assert event["se_label"] == "a    b"  # a tab is four spaces, other control characters go
    assert "page_title" not in event and "se_property" not in event  # None and "" are null: absent


def test_a_step_that_drops_counts_a_skip_named_after_it_and_the_lines_are_conserved() -> None:
    run = run_core(
        log(pv("1", aid="internal"), pv("2", aid="shop"), pv("3", aid="internal")),
        canonicalizer=canonicalizer(f"{HERE}:drop_internal"),
    )
    assert [e["app_id"] for e in run.events] == ["shop"]
    assert run.summary.skipped_by_reason == {"step:drop_internal": 2, "header": 2}  # #Version, #Fields
    assert run.summary.lines_read == 5 and run.summary.conserved and not run.bad


def test_a_step_that_raises_makes_one_bad_row_naming_it_and_the_batch_goes_on() -> None:
    data = log(pv("1"), se("2", "boom"), pv("3"))
    run = run_core(data, canonicalizer=canonicalizer(f"{HERE}:explode_on_boom"))
    assert len(run.events) == 2
    [bad] = run.bad
    assert isinstance(bad, BadRow) and bad.kind is STEP_FAILURE_KIND and bad.kind.value == "enrichment_failure"
    assert run.summary.bad_by_kind == {STEP_FAILURE_KIND.value: 1}
    assert bad.messages == ("step 'explode_on_boom' failed: KeyError: 'no such campaign rule'",)
    assert bad.source.line == 4 and "se_ac=boom" in str(bad.raw)  # after #Version and #Fields
    payload = bad.to_json()["data"]["payload"]
    assert payload["source"]["line"] == 4 and payload["raw"] == data.decode().splitlines()[3]


def test_a_step_writing_invalid_values_makes_a_validation_bad_row_listing_each() -> None:
    run = run_core(log(se("1", "invalid"), se("2", "fine")), canonicalizer=canonicalizer(f"{HERE}:write_bad_value"))
    assert [e["se_action"] for e in run.events] == ["fine"]
    [bad] = run.bad
    assert bad.kind.value == "schema_violation"
    assert any(m.startswith("se_value: expected double") for m in bad.messages)
    assert any(m.startswith("se_category: 1300 bytes exceeds") for m in bad.messages)


def test_an_enrichment_on_the_same_api_may_drop_or_fail_too() -> None:
    # GIVEN steps injected among the built-in enrichments (the same interface, run in their loop)
    config = make_config().transform
    enrichments = build_enrichments(config, EnrichmentSetup())
    dropping = Canonicalizer(config, enrichments=[*enrichments, FunctionStep("drop_internal", drop_internal)])
    failing = Canonicalizer(config, enrichments=[FunctionStep("explode_on_boom", explode_on_boom), *enrichments])
    data = log(pv("1", aid="internal"), se("2", "boom"), pv("3"))
    # WHEN a log goes through each THEN the outcome is the same as from transform.steps
    dropped = run_core(data, canonicalizer=dropping)
    assert dropped.summary.skipped_by_reason["step:drop_internal"] == 1 and len(dropped.events) == 2
    failed = run_core(data, canonicalizer=failing)
    assert [b.messages for b in failed.bad] == [("step 'explode_on_boom' failed: KeyError: 'no such campaign rule'",)]
    assert len(failed.events) == 2 and failed.summary.conserved


def test_the_readme_example_step_does_what_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    section = readme.split("### Custom transform steps", 1)[1]
    namespace: dict[str, Any] = {}
    exec(section.split("```python", 1)[1].split("```", 1)[0], namespace)  # noqa: S102 - our own README
    step = FunctionStep("drop_internal", namespace["drop_internal"])
    config = make_config({"transform.ip.anonymize": False}).transform
    builder = LogBuilder(fields=33)
    for ip, url in (("10.1.2.3", "https://shop.example/"), ("203.0.113.9", "https://shop.example/checkout")):
        builder.add(query=tracker_query(pv("1", url=url)), user_agent=CHROME, c_ip=ip)
    run = run_core(builder.to_bytes(), canonicalizer=Canonicalizer(config, steps=[step]))
    assert run.summary.skipped_by_reason["step:drop_internal"] == 1
    assert run.event["se_label"] == "checkout"


def test_steps_run_in_the_listed_order() -> None:
    ab = run_core(log(pv("1")), canonicalizer=canonicalizer(f"{HERE}:first", f"{HERE}:second"))
    ba = run_core(log(pv("1")), canonicalizer=canonicalizer(f"{HERE}:second", f"{HERE}:first"))
    assert ab.event["se_label"] == "first>second"
    assert ba.event["se_label"] == "first"


def test_without_steps_the_output_is_what_it_was() -> None:
    data = log(pv("1", url="https://shop.example/checkout/pay", page="Pay", aid="internal"))
    plain = run_core(data).event
    assert "se_label" not in plain and plain["page_title"] == "Pay"
    assert Canonicalizer(make_config().transform).steps == ()


def test_a_factory_returning_none_leaves_its_step_out() -> None:
    steps = build_steps(
        make_config({"transform.steps": [f"{HERE}:LeftOut", f"{HERE}:first"]}).transform, EnrichmentSetup()
    )
    assert [s.name for s in steps] == ["first"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_such_pkg.steps:drop", r"transform\.steps: cannot import 'no_such_pkg\.steps'.*ModuleNotFoundError"),
        (f"{HERE}:missing", r"transform\.steps: .*has no attribute 'missing'"),
        (f"{HERE}:NOT_CALLABLE", r"transform\.steps: .*NOT_CALLABLE' is a int, not a function"),
        (f"{HERE}:needs_three_arguments", r"transform\.steps: .*cannot be called as \(event, hit\)"),
        (f"{HERE}:NoFactory", r"transform\.steps: .*is a class without a from_config"),
        ("drop_internal", r"transform\.steps: 'drop_internal' is neither a built-in step \(bot_flag\) nor an import"),
        (f"{HERE}:", r"neither a built-in step"),
    ],
)
def test_a_step_that_cannot_be_resolved_is_a_config_error_naming_the_key(entry: str, message: str) -> None:
    with pytest.raises(TransformConfigError, match=message):
        canonicalizer(entry)


def test_a_step_listed_twice_or_two_steps_of_one_name_are_config_errors() -> None:
    with pytest.raises(TransformConfigError, match="transform.steps lists a step twice"):
        canonicalizer(f"{HERE}:first", f"{HERE}:first")
    with pytest.raises(TransformConfigError, match="are both named 'drop_internal'"):
        canonicalizer(f"{HERE}:drop_internal", f"{HERE}:drop_internal_alias")


drop_internal_alias = drop_internal  # the same function under another attribute: one name, two entries


def test_the_lambda_stage_counts_a_dropped_event_as_a_skip_and_conserves_lines() -> None:
    builder = LogBuilder(fields=33)
    for params in (pv("1", aid="internal"), pv("2"), se("3", "boom")):
        builder.add(query=tracker_query(params), user_agent=CHROME)
    batch = RawBatch(
        bucket="logs",
        key="E2EXAMPLE.2024-11-15-19.abcd1234.gz",
        etag="etag",
        etl_tstamp=1_731_700_000_000,
        fields=builder.layout.format(),
        line_numbers=(3, 4, 5),
        lines=tuple(builder.lines),
    )
    out = transform_raw_record(
        encode_raw(batch),
        canonicalizer(f"{HERE}:drop_internal", f"{HERE}:explode_on_boom"),
        262_144,
        origin="stream/shard/1",
        arrival_ms=0,
    )
    assert out.skipped == {"step:drop_internal": 1}
    assert len(out.events) == 1 and [b.source.line for b in out.bad] == [5]
    assert out.conserved and len(out.chunks) == 1


def test_backfill_applies_a_configured_step_and_counts_its_skips(tmp_path: Path) -> None:
    # GIVEN generated logs and an overlay listing two steps (one drops page pings, one tags page views)
    from pipeline.app.cli import main
    from pipeline.testing.generate import GenerateOptions, generate_logs

    generate_logs(tmp_path / "logs", GenerateOptions(files=1, lines_per_file=300, seed=5, hours=1))
    overlay = tmp_path / "steps.toml"
    overlay.write_text(f'[transform]\nsteps = ["{HERE}:drop_pings", "{HERE}:tag_page_views"]\n')
    dest = tmp_path / "out"
    # WHEN the backfill CLI runs with it
    code = main(["backfill", str(tmp_path / "logs"), "--output", str(dest), "--workers", "1", "--config", str(overlay)])
    # THEN pings are skipped under the step's name, page views carry the tag, and lines are conserved
    assert code == 0
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["skipped_by_reason"]["step:drop_pings"] > 0
    assert summary["lines_read"] == summary["good"] + summary["bad"] + summary["skipped"]
    import pyarrow.dataset as ds

    rows = ds.dataset(dest / "events", format="parquet", partitioning="hive").to_table(columns=["event", "se_property"])
    events = rows.to_pylist()
    assert events and not [e for e in events if e["event"] == "page_ping"]
    page_views = [e for e in events if e["event"] == "page_view"]
    assert page_views and all(e["se_property"] == "tagged" for e in page_views)


def test_backfill_with_an_unimportable_step_exits_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.app.cli import main

    overlay = tmp_path / "bad.toml"
    overlay.write_text('[transform]\nsteps = ["no_such_pkg.steps:drop"]\n')
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "E2EXAMPLE.2024-11-15-19.abcd1234").write_bytes(log(pv("1")))
    dest = tmp_path / "out"
    assert main(["backfill", str(logs), "--output", str(dest), "--workers", "1", "--config", str(overlay)]) == 2
    assert "transform.steps: cannot import 'no_such_pkg.steps'" in capsys.readouterr().err
    assert not (dest / "events").exists()


def drop_pings(event: CanonicalEvent, hit: Hit) -> None:
    if event.get("event") == "page_ping":
        raise DropEvent("pings are not analysed")


def tag_page_views(event: CanonicalEvent, hit: Hit) -> dict[str, str] | None:
    return {"se_property": "tagged"} if event.get("event") == "page_view" else None


def test_a_step_module_in_the_current_folder_imports_as_python_m_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A console script does not put the current folder on the path; the step resolver looks there last."""
    import sys

    from transform.steps import _import

    (tmp_path / "cwd_steps_for_test.py").write_text("def tag(event, hit):\n    event['etl_tags'] = 'tagged'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    module = _import("cwd_steps_for_test")
    assert module.__file__ == str(tmp_path / "cwd_steps_for_test.py")
    assert sys.path[-1] == str(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="no_such_steps_module"):
        _import("no_such_steps_module")
    assert sys.path.count(str(tmp_path)) == 1
    sys.modules.pop("cwd_steps_for_test", None)
