"""A new input format and a new enrichment step are each one module and one registry entry.

GIVEN the example modules in tests/examples
WHEN they are added to a copy of the registries
THEN the unchanged pipeline core reads the new format and runs the new step.
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from pipeline.app.process import process_stream
from pipeline.badrows import BadRow, SourceRef
from pipeline.formats import FORMATS, get_format, read_limits
from pipeline.summary import FileSummary
from pipeline.testing import tracker_query
from tests.conftest import make_config
from tests.examples.bot_flag_enrichment import BotFlag
from tests.examples.jsonl_format import JsonLines
from transform.canonicalize import Canonicalizer
from transform.enrichments import ENRICHMENTS, build_enrichments
from transform.enrichments.base import EnrichmentSetup
from transform.errors import TransformConfigError

EID = "0b9a8e3c-7f4d-4c1e-9a2b-3d4e5f607182"


def test_a_new_format_is_one_module_and_one_registry_line() -> None:
    formats = {**FORMATS, JsonLines.name: JsonLines}  # the one registry line
    log_format = formats["jsonl"]()
    hit = {"ts": 1_731_699_951_000, "path": "/i", "query": tracker_query({"e": "pv", "eid": EID}, logged=False)}
    data = (json.dumps(hit) + "\n" + "not json\n").encode()
    config = make_config()
    summary = FileSummary("hits.jsonl")
    out = list(
        process_stream(
            io.BytesIO(data),
            SourceRef("hits.jsonl"),
            log_format,
            Canonicalizer(config.transform),
            read_limits(config.extract),
            summary,
            0,
        )
    )
    events = [o for o in out if isinstance(o, dict)]
    bad = [o for o in out if isinstance(o, BadRow)]
    assert [e["event_id"] for e in events] == [EID]
    assert events[0]["collector_tstamp"] == 1_731_699_951_000
    assert events[0]["event"] == "page_view"
    assert [b.source.line for b in bad] == [2]
    assert summary.conserved


def test_a_new_enrichment_is_one_module_one_registry_line_and_its_name_in_config() -> None:
    registry = {**ENRICHMENTS, BotFlag.name: BotFlag.from_config}  # the one registry line
    base = make_config().transform
    config = dataclasses.replace(base, enrichments=(*base.enrichments, "bot_flag"))  # the config entry
    steps = build_enrichments(config, EnrichmentSetup(), registry)
    assert [s.name for s in steps] == ["campaign", "referer", "useragent", "ip", "fingerprint", "bot_flag"]
    from pipeline.testing import LogBuilder
    from tests.conftest import run_core

    log = LogBuilder(fields=33)
    log.add(query=tracker_query({"e": "pv"}), user_agent="Googlebot/2.1")
    run = run_core(log.to_bytes(), canonicalizer=Canonicalizer(config, enrichments=steps))
    assert run.event["etl_tags"] == "bot"


def test_steps_run_in_configured_order_and_disabled_ones_are_left_out() -> None:
    base = make_config({"transform.useragent.enabled": False}).transform
    config = dataclasses.replace(base, enrichments=("referer", "useragent", "ip", "fingerprint"))
    assert [s.name for s in build_enrichments(config, EnrichmentSetup())] == ["referer", "ip", "fingerprint"]


@pytest.mark.parametrize(
    ("enrichments", "message"),
    [
        (("campaign", "fingerprint", "geo"), "transform.enrichments: unknown enrichment 'geo'"),
        (("ip", "ip", "fingerprint"), "lists a step twice"),
        (("ip",), "must include fingerprint"),
        (("fingerprint", "ip"), "fingerprint must come after ip"),
        (("ip", "fingerprint", "pseudonymize"), "fingerprint must come after pseudonymize"),
    ],
)
def test_a_bad_step_list_names_the_key(enrichments: tuple[str, ...], message: str) -> None:
    config = dataclasses.replace(make_config().transform, enrichments=enrichments)
    with pytest.raises(TransformConfigError, match=message):
        build_enrichments(config, EnrichmentSetup())


def test_a_step_whose_set_up_fails_is_a_config_error_naming_its_section(tmp_path: object) -> None:
    with pytest.raises(TransformConfigError, match=r"transform\.ip: ipv4_prefix must be 0\.\.32, got 40"):
        Canonicalizer(make_config({"transform.ip.ipv4_prefix": 40}).transform)
    with pytest.raises(TransformConfigError, match=r"transform\.referer: cannot read /nonexistent/referers.json"):
        Canonicalizer(make_config({"transform.referer.dataset": "/nonexistent/referers.json"}).transform)


def test_get_format_makes_a_new_instance_and_refuses_unknown_names() -> None:
    assert get_format("cloudfront") is not get_format("cloudfront")
    with pytest.raises(Exception, match="unknown log format 'w3c'; known: cloudfront"):
        get_format("w3c")
