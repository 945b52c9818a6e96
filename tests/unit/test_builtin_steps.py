"""The two built-in steps on the custom-step API (issue 13, item 3): ``bot_flag`` and the ``_sp`` linker.

GIVEN real crawler and browser user agents, and page URLs carrying Snowplow's cross-domain ``_sp``
WHEN events go through the transform with the steps on (and with their defaults)
THEN crawlers are tagged with the list's version (or dropped as counted skips), browsers are not;
     ``_sp`` fills refr_domain_userid and refr_dvce_tstamp as Snowplow's Enrich does, and a
     malformed timestamp is a bad row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.bundled import data_text
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.generate import USER_AGENTS
from tests.conftest import make_config, run_core
from transform.canonicalize import Canonicalizer
from transform.enrichments.bots import BOT_TAG, CRAWLER_LIST_VERSION, BotFlagEnrichment, CrawlerMatcher
from transform.enrichments.cross_navigation import linker_value, parse_linker

ROOT = Path(__file__).resolve().parents[2]
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CRAWLERS = json.loads(data_text("crawler-user-agents.json"))


@pytest.fixture(scope="module")
def matcher() -> CrawlerMatcher:
    return CrawlerMatcher.bundled()


def pixel(*hits: tuple[str, dict[str, str]]) -> bytes:
    log = LogBuilder(fields=33)
    for useragent, params in hits:
        log.add(query=tracker_query({"e": "pv", **params}), user_agent=useragent)
    return log.to_bytes()


def with_steps(*steps: str, **overrides: Any) -> Canonicalizer:
    return Canonicalizer(make_config({"transform.steps": list(steps), **overrides}).transform)


# ------------------------------------------------------------------ bot_flag
def test_the_vendored_list_is_the_one_its_provenance_names() -> None:
    provenance = (ROOT / "config" / "CRAWLERS.md").read_text("utf-8")
    digest = hashlib.sha256((ROOT / "config" / "crawler-user-agents.json").read_bytes()).hexdigest()
    assert f"`{digest}`" in provenance
    assert f"`{CRAWLER_LIST_VERSION}`" in provenance and BOT_TAG == f"bot:crawler-user-agents-{CRAWLER_LIST_VERSION}"


def test_every_real_crawler_user_agent_of_the_list_is_a_crawler(matcher: CrawlerMatcher) -> None:
    samples = [ua for entry in CRAWLERS for ua in entry.get("instances", [])]
    assert len(samples) > 2000
    assert [ua for ua in samples if not matcher.is_crawler(ua)] == []


def test_real_browsers_are_not_crawlers_and_the_generators_bots_are(matcher: CrawlerMatcher) -> None:
    browsers = [ua for ua, _, is_bot in USER_AGENTS if not is_bot]
    bots = [ua for ua, _, is_bot in USER_AGENTS if is_bot]
    assert len(browsers) >= 8 and len(bots) >= 2
    assert [ua for ua in browsers if matcher.is_crawler(ua)] == []
    assert all(matcher.is_crawler(ua) for ua in bots)


def test_bot_flag_is_off_by_default() -> None:
    run = run_core(pixel((GOOGLEBOT, {})))
    assert "etl_tags" not in run.event
    assert make_config().transform.steps == ()


def test_bot_flag_tags_crawlers_with_the_lists_version_and_keeps_other_tags() -> None:
    run = run_core(
        pixel(
            (GOOGLEBOT, {"url": "https://shop.example/?token=s3cret"}),  # the token is redacted: a tag already
            (CHROME, {}),
            (GOOGLEBOT, {}),
        ),
        canonicalizer=with_steps("bot_flag"),
    )
    redacted_bot, browser, bot = run.events
    assert redacted_bot["etl_tags"] == f"redacted:token,{BOT_TAG}"
    assert "etl_tags" not in browser
    assert bot["etl_tags"] == BOT_TAG and bot["br_type"] == "Robot"  # the enrichments ran first


def test_bot_flag_with_drop_skips_crawlers_counted_under_its_name() -> None:
    run = run_core(
        pixel((GOOGLEBOT, {}), (CHROME, {}), ("bingbot/2.0", {})),
        canonicalizer=with_steps("bot_flag", **{"transform.bot_flag.drop": True}),
    )
    assert [e["useragent"] for e in run.events] == [CHROME]
    assert run.summary.skipped_by_reason["step:bot_flag"] == 2 and run.summary.conserved


def test_bot_flag_judges_each_distinct_user_agent_once() -> None:
    calls: list[str] = []

    class CountingMatcher(CrawlerMatcher):
        def is_crawler(self, useragent: str) -> bool:
            calls.append(useragent)
            return super().is_crawler(useragent)

    step = BotFlagEnrichment(matcher=CountingMatcher(["Googlebot\\/"]))
    run = run_core(
        pixel(*[(GOOGLEBOT, {}), (CHROME, {})] * 3),
        canonicalizer=Canonicalizer(make_config().transform, steps=[step]),
    )
    assert [("etl_tags" in e) for e in run.events] == [True, False] * 3
    assert sorted(calls) == sorted([GOOGLEBOT, CHROME])


# ------------------------------------------------------------------ the _sp linker
@pytest.mark.parametrize(
    ("value", "columns"),
    [
        # Snowplow's ParseCrossDomainSpec and CrossNavigationEnrichmentSpec, case by case
        ("abc.1426245561368", {"refr_domain_userid": "abc", "refr_dvce_tstamp": 1_426_245_561_368}),
        ("abc", {"refr_domain_userid": "abc"}),
        (".1697398398279", {"refr_dvce_tstamp": 1_697_398_398_279}),
        (
            "abc.1697175843762.176ff68a-4769-4566-ad0e-3792c1c8148f.dGVzdGVy.c29tZVNvdXJjZUlk.web.dGVzdGluZ19yZWFzb24",
            {"refr_domain_userid": "abc", "refr_dvce_tstamp": 1_697_175_843_762},
        ),
        ("abc..176ff68a-4769-4566-ad0e-3792c1c8148f..", {"refr_domain_userid": "abc"}),
        ("abc.1697175843762.....", {"refr_domain_userid": "abc", "refr_dvce_tstamp": 1_697_175_843_762}),
        ("abc.1697175843762.176ff68a.dGVzdGVy.c29tZVNvdXJjZUlk.web.dGVzdGluZ19yZWFzb24...foo..bar...", {}),
        ("", {}),
        ("ab\tc.1", {"refr_domain_userid": "ab    c", "refr_dvce_tstamp": 1}),  # cleaned as Snowplow does
    ],
)
def test_a_linker_value_sets_what_snowplow_sets(value: str, columns: dict[str, Any]) -> None:
    assert parse_linker(value) == (columns, ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc.not-a-timestamp", "refr_dvce_tstamp: _sp timestamp 'not-a-timestamp' is not in the expected format"),
        ("abc.not-timestamp.176ff68a-4769-4566-ad0e-3792c1c8148f.", "'not-timestamp' is not in the expected format"),
        ("abc.1.5", None),  # a session id of "5": fine
        ("abc.99999999999999999999", "is not in the expected format: ms since epoch"),  # over a Java long
        ("abc.1111111111111111", "refr_dvce_tstamp: _sp timestamp 1111111111111111 is outside 1970-01-01..9999"),
        ("abc.-1", "is outside 1970-01-01..9999-12-31"),
        ("abc.1e3", "is not in the expected format"),
    ],
)
def test_a_malformed_linker_timestamp_sets_nothing_and_is_a_problem(value: str, message: str | None) -> None:
    columns, problems = parse_linker(value)
    if message is None:
        assert problems == () and columns["refr_dvce_tstamp"] == 1
    else:
        assert columns == {} and len(problems) == 1 and message in problems[0]


def test_the_linker_is_the_last_sp_parameter_decoded() -> None:
    assert linker_value("a=1&_sp=abc.1&b=2&_sp=def.2") == "def.2"
    assert linker_value("%5Fsp=abc%2E1") == "abc.1"
    assert linker_value("sp=abc&x_sp=1") is None
    assert linker_value("_sp") == ""


def test_the_linker_is_on_by_default_and_fills_the_referrer_columns_through_the_core() -> None:
    url = "https://shop.example/landing?utm_source=blog&_sp=6d2e3b0a-12f4-4c6e-9b1e-0f0e0d0c0b0a.1731699000000"
    run = run_core(pixel((CHROME, {"url": url}), (CHROME, {"url": "https://shop.example/landing"})))
    linked, plain = run.events
    assert linked["refr_domain_userid"] == "6d2e3b0a-12f4-4c6e-9b1e-0f0e0d0c0b0a"
    assert linked["refr_dvce_tstamp"] == 1_731_699_000_000
    assert linked["mkt_source"] == "blog"  # the campaign enrichment still reads the same query
    assert "refr_domain_userid" not in plain and "refr_dvce_tstamp" not in plain


def test_a_malformed_linker_is_a_schema_violation_bad_row_and_the_switch_turns_it_off() -> None:
    data = pixel((CHROME, {"url": "https://shop.example/?_sp=abc.yesterday"}), (CHROME, {}))
    run = run_core(data)
    [bad] = run.bad
    assert bad.kind.value == "schema_violation" and len(run.events) == 1
    assert bad.messages == (
        "refr_dvce_tstamp: _sp timestamp 'yesterday' is not in the expected format: ms since epoch",
    )
    off = Canonicalizer(make_config({"transform.cross_navigation.enabled": False}).transform)
    run = run_core(data, canonicalizer=off)
    assert not run.bad and "refr_domain_userid" not in run.events[0]


def test_pseudonymize_hashes_the_linked_domain_userid_when_it_is_listed() -> None:
    key = b"0123456789abcdef-test-key"
    config = make_config(
        {"transform.pseudonymize.enabled": True, "transform.pseudonymize.fields": ["refr_domain_userid"]}
    )
    run = run_core(
        pixel((CHROME, {"url": "https://shop.example/?_sp=abc.1731699000000"})),
        canonicalizer=Canonicalizer(config.transform, pseudonymization_key=key),
    )
    linked = run.event["refr_domain_userid"]
    assert linked != "abc" and len(linked) == 64
