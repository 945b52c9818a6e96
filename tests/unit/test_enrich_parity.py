"""Enrich semantics as Snowplow's (issue 10, section 3): one group of tests per rule.

Each test names its rule in its docstring.  The behaviour follows Snowplow's Enrich
(``ConversionUtils``, ``Transform``, the CloudFront loader it had until 2022) and
scala-referer-parser; where this pipeline deliberately differs, the test says so and
README's "Snowplow compatibility" says why.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.formats.cloudfront import LEGACY_FIELDS
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import CoreRun, make_config, run_core
from transform.canonicalize import Canonicalizer
from transform.enrichments.referer import RefererClass, RefererClassifier

ROOT = Path(__file__).resolve().parents[2]
PAGE_HOST = "shop.example.com"


@pytest.fixture(scope="module")
def canon() -> Canonicalizer:
    return Canonicalizer(make_config().transform)


def run_line(canon: Canonicalizer, params: dict[str, str] | None, fields: int = 33, **cells: str) -> CoreRun:
    """One tracker hit; ``cells`` (log field name -> raw text) replace cells as logged, unencoded."""
    log = LogBuilder(fields=fields)
    line = log.line(query=tracker_query(params) if params is not None else "e=pv").split("\t")
    for name, text in cells.items():
        line[LEGACY_FIELDS.index(name)] = text
    log.add_raw("\t".join(line))
    return run_core(log.to_bytes(), canonicalizer=canon)


def event_of(canon: Canonicalizer, params: dict[str, str] | None, fields: int = 33, **cells: str) -> dict[str, Any]:
    run = run_line(canon, params, fields, **cells)
    assert not run.bad, [(b.kind, b.messages) for b in run.bad]
    return run.event


# =========================================================================== rule 1: string columns
def test_given_tabs_and_control_characters_in_tracker_strings_when_transformed_then_cleaned(
    canon: Canonicalizer,
) -> None:
    """Rule 1: a tab becomes four spaces and other control characters (C0, DEL) are removed.

    GIVEN string parameters holding a tab, CR, LF, NUL, ESC and DEL WHEN transformed THEN
    each string column holds the text with the tab as four spaces and the rest removed.
    """
    dirty = "a\tb\r\nc\x00d\x1b[0m\x7fe"
    ev = event_of(canon, {"e": "se", "se_ca": dirty, "se_ac": "act\tion", "page": dirty, "tz": "Europe/\nParis"})
    assert ev["se_category"] == ev["page_title"] == "a    bcd[0me"
    assert ev["se_action"] == "act    ion"
    assert ev["os_timezone"] == "Europe/Paris"


def test_given_a_string_of_control_characters_only_when_transformed_then_null(canon: Canonicalizer) -> None:
    """Rule 1: a string left empty by the cleaning is null, as Snowplow's ``toTsvSafe`` makes it.

    GIVEN ``aid`` and ``cv`` made of control characters only WHEN transformed THEN
    ``app_id`` is null and ``v_collector`` keeps the collector's name.
    """
    ev = event_of(canon, {"e": "pv", "aid": "\r\n", "cv": "\x00"})
    assert "app_id" not in ev
    assert ev["v_collector"] == "cloudfront"


def test_given_control_characters_in_headers_when_transformed_then_useragent_and_page_url_cleaned(
    canon: Canonicalizer,
) -> None:
    """Rule 1: the User-Agent header and the page URL (the Referer header) are string columns too.

    GIVEN a User-Agent logged with ``%09`` and ``%0A`` and a Referer with ``%0D`` WHEN
    transformed THEN ``useragent``, ``page_url`` and ``page_urlpath`` are cleaned.
    """
    ev = event_of(
        canon,
        {"e": "pv"},
        **{"cs(User-Agent)": "Agent%09One%0A/1.0", "cs(Referer)": "https://www.example.com/a%0Db"},
    )
    assert ev["useragent"] == "Agent    One/1.0"
    assert ev["page_url"] == "https://www.example.com/ab"
    assert ev["page_urlpath"] == "/ab"


def test_given_control_characters_in_search_term_and_utm_value_when_enriched_then_cleaned(
    canon: Canonicalizer,
) -> None:
    """Rule 1: enrichment outputs are cleaned as well (Snowplow cleans ``refr_term`` and ``mkt_*``).

    GIVEN a Google referrer whose search term decodes to a tab and a page URL whose
    ``utm_source`` decodes to a newline WHEN enriched THEN ``refr_term`` and ``mkt_source``
    are cleaned.
    """
    ev = event_of(
        canon,
        {
            "e": "pv",
            "url": "https://shop.example.com/?utm_source=news%0Aletter&utm_medium=email",
            "refr": "https://www.google.com/search?q=red%09shoes",
        },
    )
    assert ev["refr_term"] == "red    shoes"
    assert ev["mkt_source"] == "newsletter"


def test_given_json_with_whitespace_when_transformed_then_json_columns_keep_their_json(
    canon: Canonicalizer,
) -> None:
    """Rule 1: the JSON columns are not string columns; their JSON text is kept as sent.

    GIVEN ``co`` and ``ue_px`` whose JSON has tabs and newlines between tokens WHEN
    transformed THEN ``contexts`` and ``unstruct_event`` are exactly that text.
    """
    contexts = (
        '{\n\t"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",\n\t"data": '
        '[{"schema": "iglu:com.acme/ctx/jsonschema/1-0-0", "data": {"k": "v"}}]\n}'
    )
    unstruct = (
        '{"schema":\t"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",\n'
        '"data": {"schema": "iglu:com.acme/click/jsonschema/1-0-0", "data": {}}}'
    )
    ue_px = base64.urlsafe_b64encode(unstruct.encode()).decode().rstrip("=")
    ev = event_of(canon, {"e": "ue", "co": contexts, "ue_px": ue_px})
    assert ev["contexts"] == contexts
    assert ev["unstruct_event"] == unstruct


# =========================================================================== rule 2: "null" numbers
def test_given_literal_null_in_numeric_params_when_transformed_then_null_not_bad_row(canon: Canonicalizer) -> None:
    """Rule 2: the JavaScript tracker's ``null`` in a number (any case) is null, not a bad row.

    GIVEN ``tid``, ``vid``, ``pp_mix`` (integers) and ``se_va``, ``tr_tt``, ``ti_pr``
    (decimals) sent as null, Null and NULL WHEN transformed THEN one good event without them.
    """
    ev = event_of(
        canon,
        {"e": "se", "se_ca": "c", "se_ac": "a", "tid": "null", "vid": "NULL", "pp_mix": "Null",
         "se_va": "null", "tr_tt": "NULL", "ti_pr": "null"},
    )  # fmt: skip
    for column in ("txn_id", "domain_sessionidx", "pp_xoffset_min", "se_value", "tr_total", "ti_price"):
        assert column not in ev, column


def test_given_number_then_null_for_the_same_param_when_transformed_then_last_value_wins(
    canon: Canonicalizer,
) -> None:
    """Rule 2: a repeated parameter's last value wins, a ``null`` too (as Snowplow sets the field to null)."""
    log = LogBuilder(fields=33).add(query="e=pv&tid=5&tid=null&vid=null&vid=3")
    ev = run_core(log.to_bytes(), canonicalizer=canon).event
    assert "txn_id" not in ev
    assert ev["domain_sessionidx"] == 3


def test_given_null_in_timestamp_or_boolean_params_when_transformed_then_still_bad_row(canon: Canonicalizer) -> None:
    """Rule 2: only numbers take ``null``: Snowplow rejects it in timestamps and flags too."""
    run = run_line(canon, {"e": "pv", "dtm": "null", "f_pdf": "null"})
    assert not run.events and len(run.bad) == 1
    assert sorted(m.split(":")[0] for m in run.bad[0].messages) == ["dtm", "f_pdf"]


# =========================================================================== rule 3: double encoding
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/120.0"
UA_ONCE = "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20Firefox/120.0"
UA_TWICE = UA_ONCE.replace("%", "%25")


@pytest.mark.parametrize("fields", [15, 18, 19])
def test_given_double_encoded_headers_of_2013_generations_when_parsed_then_same_as_single_encoded(
    canon: Canonicalizer, fields: int
) -> None:
    """Rule 3: the 2013-2014 generations' ``%2520`` decodes as the ``%20`` of single-encoded logs.

    GIVEN a 15-, 18- or 19-field log whose User-Agent and Referer are encoded twice WHEN
    parsed THEN ``useragent`` and ``page_url`` equal those of the single-encoded 33-field line.
    """
    referer_once = "https://www.example.com/caf%C3%A9%20menu?x=50%25"
    twice = event_of(
        canon, {"e": "pv"}, fields, **{"cs(User-Agent)": UA_TWICE, "cs(Referer)": referer_once.replace("%", "%25")}
    )
    once = event_of(canon, {"e": "pv"}, **{"cs(User-Agent)": UA_ONCE, "cs(Referer)": referer_once})
    assert twice["useragent"] == once["useragent"] == UA
    assert twice["page_url"] == once["page_url"] == "https://www.example.com/café menu?x=50%"
    assert twice["br_family"] == once["br_family"] == "Firefox"


@pytest.mark.parametrize("fields", [12, 23, 33])
def test_given_percent_25_in_headers_of_other_generations_when_parsed_then_decoded_once(
    canon: Canonicalizer, fields: int
) -> None:
    """Rule 3: other generations encode once, so ``%2520`` there is a ``%20`` the client sent.

    GIVEN a 12-, 23- or 33-field log whose User-Agent holds ``%2520`` WHEN parsed THEN
    ``useragent`` keeps ``%20`` (CloudFront encoded the client's ``%`` once).
    """
    ev = event_of(canon, {"e": "pv"}, fields, **{"cs(User-Agent)": "Tiny%2520Tiny%2520RSS/23"})
    assert ev["useragent"] == "Tiny%20Tiny%20RSS/23"


# =========================================================================== rule 4: trailing %
@pytest.mark.parametrize(
    ("logged", "page_url"),
    [
        ("https://www.example.com/page%", "https://www.example.com/page"),
        ("https://www.example.com/a%20b?q=1%", "https://www.example.com/a b?q=1"),
    ],
)
def test_given_trailing_percent_on_referer_when_parsed_then_stripped(
    canon: Canonicalizer, logged: str, page_url: str
) -> None:
    """Rule 4: the bare ``%`` CloudFront leaves at the end of some ``cs(Referer)`` values is dropped.

    GIVEN a logged referer ending in ``%`` WHEN parsed THEN ``page_url`` ends without it.
    """
    ev = event_of(canon, {"e": "pv"}, **{"cs(Referer)": logged})
    assert ev["page_url"] == page_url


# =========================================================================== rule 5: referer lookup
@pytest.fixture(scope="module")
def clf() -> RefererClassifier:
    return RefererClassifier.from_file()


@pytest.mark.parametrize(
    ("host", "path", "source"),
    [
        ("www.google.fr", "/imgres", "Google Images"),
        ("www.google.de", "/imgres", "Google Images"),
        ("www.google.com", "/shopping/product", "Google Shopping"),
        ("www.google.fr", "/search", "Google"),
        ("www.google.fr", "/imgresults", "Google"),
    ],
)
def test_given_path_rule_one_level_below_listed_host_when_classified_then_path_rule_wins(
    clf: RefererClassifier, host: str, path: str, source: str
) -> None:
    """Rule 5: path rules at every host level come before any bare host (referer-parser's order).

    GIVEN ``www.google.fr`` (listed under Google) with the path ``/imgres`` (listed as
    ``google.fr/imgres`` under Google Images) WHEN classified THEN Google Images.
    """
    assert clf.classify(host, path, "q=cat", PAGE_HOST) == RefererClass("search", source, "cat")


@pytest.mark.parametrize(
    "host",
    ["bigcommerce%20wordpress%20plugin", "bigcommerce wordpress plugin", "exa_mple.com", "a..b", "-x.com", "x-.com"],
)
def test_given_unparseable_referer_host_when_classified_then_none(clf: RefererClassifier, host: str) -> None:
    """Rule 5: a referer host that is no host name gives no referer (nulls), not ``unknown``."""
    assert clf.classify(host, "/", None, PAGE_HOST) is None


@pytest.mark.parametrize("scheme", ["ftp", "file", "chrome-extension"])
def test_given_scheme_referer_parser_does_not_classify_when_classified_then_none(
    clf: RefererClassifier, scheme: str
) -> None:
    """Rule 5: referer-parser classifies http, https and android-app referers only."""
    assert clf.classify("www.google.com", "/search", "q=x", PAGE_HOST, scheme=scheme) is None
    assert clf.classify("www.google.com", "/search", "q=x", PAGE_HOST, scheme="android-app") is not None


def test_given_unparseable_referrer_host_when_enriched_then_referer_columns_null(canon: Canonicalizer) -> None:
    """Rule 5, through the transform: ``refr_medium``, ``refr_source`` and ``refr_term`` stay null.

    GIVEN a referrer ``http://bigcommerce%20wordpress%20plugin/`` (and one over ``ftp``)
    WHEN enriched THEN the page referrer is kept and no referer class is set.
    """
    for refr in ("http://bigcommerce%20wordpress%20plugin/", "ftp://www.google.com/search?q=x"):
        ev = event_of(canon, {"e": "pv", "url": "https://shop.example.com/", "refr": refr})
        assert ev["page_referrer"] == refr
        assert {"refr_medium", "refr_source", "refr_term"}.isdisjoint(ev)
    ok = event_of(canon, {"e": "pv", "url": "https://shop.example.com/", "refr": "https://www.google.fr/imgres?q=x"})
    assert (ok["refr_medium"], ok["refr_source"], ok["refr_term"]) == ("search", "Google Images", "x")


def test_given_ip_literal_referrer_when_classified_then_unknown(clf: RefererClassifier) -> None:
    """Rule 5: an IP address is a host (Java's URI gives it), so its referer is ``unknown``."""
    assert clf.classify("203.0.113.9", "/", None, PAGE_HOST) == RefererClass("unknown", None, None)
    assert clf.classify("[2001:db8::1]", "/", None, PAGE_HOST) == RefererClass("unknown", None, None)


# =========================================================================== rule 6: ue, ip
@pytest.mark.parametrize("ip", ["203.0.113.7 198.51.100.1", "203.0.113.7|198.51.100.1", "203.0.113.7, 198.51.100.1"])
def test_given_tracker_ip_list_with_snowplow_separators_when_enriched_then_first_address(
    canon: Canonicalizer, ip: str
) -> None:
    """Rule 6: the tracker's ``ip`` is split on commas, ``|`` and spaces, as Enrich splits it.

    GIVEN ``ip`` listing two addresses separated by a space, ``|`` or a comma WHEN enriched
    THEN ``user_ipaddress`` is the first one, masked (not the X-Forwarded-For fallback).
    """
    ev = event_of(canon, {"e": "pv", "ip": ip}, **{"x-forwarded-for": "192.0.2.5", "c-ip": "192.0.2.9"})
    assert ev["user_ipaddress"] == "203.0.113.0"


@pytest.mark.parametrize("ip", ["not-an-ip", "777.2.23", "unknown, 203.0.113.7"])
def test_given_invalid_tracker_ip_when_enriched_then_next_valid_address_deliberately(
    canon: Canonicalizer, ip: str
) -> None:
    """Rule 6, a deliberate difference: Enrich stores the first item of ``ip`` whatever it is
    (and masks it as text); here ``user_ipaddress`` only ever holds a valid, masked address.

    GIVEN an ``ip`` whose first item is no address WHEN enriched THEN the next valid address
    of ``ip``, else of X-Forwarded-For, masked.
    """
    ev = event_of(canon, {"e": "pv", "ip": ip}, **{"x-forwarded-for": "198.51.100.40", "c-ip": "192.0.2.9"})
    assert ev["user_ipaddress"] == ("203.0.113.0" if "203.0.113.7" in ip else "198.51.100.0")


def test_given_ue_without_ue_pr_or_ue_px_when_transformed_then_bad_row_deliberately(canon: Canonicalizer) -> None:
    """Rule 6, a deliberate difference: Enrich keeps ``e=ue`` without a payload as an unnamed
    ``unstruct`` event with no data; here it is a bad row that keeps the request.

    GIVEN ``e=ue`` with neither ``ue_pr`` nor ``ue_px`` WHEN transformed THEN one
    tracker_protocol_violation naming the missing parameters.
    """
    run = run_line(canon, {"e": "ue", "aid": "app"})
    assert not run.events and len(run.bad) == 1
    assert run.bad[0].kind.value == "tracker_protocol_violation"
    assert run.bad[0].messages == ("ue: a self-describing event needs ue_pr or ue_px",)


# =========================================================================== rule 7: the dataset
def test_given_shipped_referer_dataset_when_hashed_then_matches_its_recorded_provenance() -> None:
    """Rule 7: ``config/referers.json`` is the file ``config/REFERERS.md`` records (SHA-256, licence).

    GIVEN the provenance table of REFERERS.md WHEN the shipped JSON is hashed THEN the
    SHA-256 is the recorded one, and the licence is a permissive one (the project's own):
    Snowplow's GPL-3.0 database is not bundled, users point transform.referer.dataset at it.
    """
    record = (ROOT / "config" / "REFERERS.md").read_text("utf-8")
    recorded = re.search(r"^\| SHA-256 of `config/referers\.json` \| `([0-9a-f]{64})` \|$", record, re.MULTILINE)
    assert recorded, "REFERERS.md records no SHA-256 of config/referers.json"
    shipped = hashlib.sha256((ROOT / "config" / "referers.json").read_bytes()).hexdigest()
    assert shipped == recorded.group(1)
    assert re.search(r"^\| Licence \| Apache License 2\.0", record, re.MULTILINE)


def test_given_shipped_referer_dataset_when_loaded_then_it_has_the_2025_chatbot_medium(
    clf: RefererClassifier,
) -> None:
    """Rule 7: the dataset is upstream's newest: the ``chatbot`` medium and the 2025 social hosts."""
    data = json.loads((ROOT / "config" / "referers.json").read_text("utf-8"))
    assert {"ChatGPT", "Claude.ai", "Perplexity.ai"} <= set(data["chatbot"])
    assert clf.classify("chatgpt.com", "/", None, PAGE_HOST) == RefererClass("chatbot", "ChatGPT", None)
    assert clf.classify("go.bsky.app", "/", None, PAGE_HOST) == RefererClass("social", "Bluesky", None)
    assert clf.classify("www.threads.com", "/", None, PAGE_HOST) == RefererClass("social", "Threads", None)


def test_given_chatbot_referrer_when_enriched_then_event_validates_with_chatbot_medium(canon: Canonicalizer) -> None:
    """Rule 7: ``chatbot`` is a valid ``refr_medium`` (the schema does not restrict its values)."""
    ev = event_of(canon, {"e": "pv", "url": "https://shop.example.com/", "refr": "https://claude.ai/chat/1"})
    assert (ev["refr_medium"], ev["refr_source"]) == ("chatbot", "Claude.ai")
