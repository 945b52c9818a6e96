"""Per-parameter tests of the Snowplow tracker protocol (GET /i, /ice.png) through the whole core.

Every test builds a CloudFront-encoded log line with :class:`pipeline.testing.LogBuilder`
(the tracker's percent-encoding kept, CloudFront's extra ``%`` -> ``%25`` applied), runs it
through ``run_core`` and checks the canonical event against Snowplow's tracker protocol
(parameter names and types as Snowplow's documentation of the protocol gives them).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import CoreRun, run_core
from transform.canonicalize import Canonicalizer

SP = "com.snowplowanalytics.snowplow"
COLLECTOR_MS = 1_731_699_951_000  # 2024-11-15 19:45:51 UTC, LogBuilder's default date/time
UUID_A = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"


@pytest.fixture(scope="module")
def canon() -> Canonicalizer:
    from tests.conftest import make_config

    return Canonicalizer(make_config().transform)


def run_params(canon: Canonicalizer, params: dict[str, str], *, stem: str = "/i", **line_values: str) -> CoreRun:
    log = LogBuilder(fields=33)
    log.add(uri_stem=stem, query=tracker_query(params), **line_values)
    return run_core(log.to_bytes(), canonicalizer=canon)


def event_of(canon: Canonicalizer, params: dict[str, str], **line_values: str) -> dict[str, Any]:
    run = run_params(canon, params, **line_values)
    assert not run.bad, [(b.kind, b.messages) for b in run.bad]
    return run.event


def bad_of(canon: Canonicalizer, params: dict[str, str], **line_values: str) -> tuple[str, tuple[str, ...]]:
    run = run_params(canon, params, **line_values)
    assert not run.events, run.events
    assert len(run.bad) == 1
    return run.bad[0].kind.value, run.bad[0].messages


# --------------------------------------------------------------------------- event types
@pytest.mark.parametrize(
    ("e", "event", "vendor", "name"),
    [
        ("pv", "page_view", SP, "page_view"),
        ("pp", "page_ping", SP, "page_ping"),
        ("se", "struct", "com.google.analytics", "event"),
        ("ev", "struct", "com.google.analytics", "event"),
        ("tr", "transaction", SP, "transaction"),
        ("ti", "transaction_item", SP, "transaction_item"),
    ],
)
def test_given_builtin_event_type_when_decoded_then_event_and_naming_follow_the_table(
    canon: Canonicalizer, e: str, event: str, vendor: str, name: str
) -> None:
    ev = event_of(canon, {"e": e, "p": "web", "tv": "js-3.0.0"})
    assert ev["event"] == event
    assert (ev["event_vendor"], ev["event_name"], ev["event_format"], ev["event_version"]) == (
        vendor,
        name,
        "jsonschema",
        "1-0-0",
    )


@pytest.mark.parametrize("stem", ["/i", "/ice.png"])
def test_given_both_tracker_paths_when_get_then_tracker_event(canon: Canonicalizer, stem: str) -> None:
    run = run_params(canon, {"e": "pv"}, stem=stem)
    assert run.event["event"] == "page_view"


@pytest.mark.parametrize("e", ["zz", "PV", "page_view", "s e"])
def test_given_unknown_event_type_when_decoded_then_tracker_protocol_bad_row(canon: Canonicalizer, e: str) -> None:
    kind, messages = bad_of(canon, {"e": e})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith("e:") for m in messages)


def test_given_no_event_type_when_decoded_then_tracker_protocol_bad_row(canon: Canonicalizer) -> None:
    kind, messages = bad_of(canon, {"p": "web", "aid": "shop"})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith("e:") for m in messages)


# --------------------------------------------------------------------------- plain strings
STRING_CASES = [
    ("aid", "app_id"),
    ("tv", "v_tracker"),
    ("tna", "name_tracker"),
    ("uid", "user_id"),
    ("duid", "domain_userid"),
    ("nuid", "network_userid"),
    ("tnuid", "network_userid"),
    ("fp", "user_fingerprint"),
    ("tz", "os_timezone"),
    ("lang", "br_lang"),
    ("cs", "doc_charset"),
    ("page", "page_title"),
    ("se_ca", "se_category"),
    ("se_ac", "se_action"),
    ("se_la", "se_label"),
    ("se_pr", "se_property"),
    ("ev_ca", "se_category"),
    ("ev_ac", "se_action"),
    ("ev_la", "se_label"),
    ("ev_pr", "se_property"),
    ("tr_id", "tr_orderid"),
    ("tr_af", "tr_affiliation"),
    ("tr_ci", "tr_city"),
    ("tr_st", "tr_state"),
    ("tr_co", "tr_country"),
    ("ti_id", "ti_orderid"),
    ("ti_sk", "ti_sku"),
    ("ti_nm", "ti_name"),
    ("ti_na", "ti_name"),
    ("ti_ca", "ti_category"),
]
TRICKY_VALUES = [
    "plain",
    "two words",
    "Europe/London",
    "a&b=c?d#e",
    "100% sure",
    "100%25 literally",
    "caf\u00e9 \u2713 \u65e5\u672c",
    "plus+sign",
]


@pytest.mark.parametrize(("param", "field"), STRING_CASES)
@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_given_string_param_when_decoded_then_field_holds_exact_value(
    canon: Canonicalizer, param: str, field: str, value: str
) -> None:
    ev = event_of(canon, {"e": "pv", param: value})
    assert ev[field] == value


def test_given_sid_uuid_when_decoded_then_domain_sessionid(canon: Canonicalizer) -> None:
    ev = event_of(canon, {"e": "pv", "sid": UUID_A})
    assert ev["domain_sessionid"] == UUID_A


@pytest.mark.parametrize(("param", "field"), [("tr_cu", "tr_currency"), ("ti_cu", "ti_currency")])
def test_given_currency_when_decoded_then_three_letter_code(canon: Canonicalizer, param: str, field: str) -> None:
    assert event_of(canon, {"e": "tr", param: "EUR"})[field] == "EUR"


@pytest.mark.parametrize(("cv", "expected"), [(None, "cloudfront"), ("clj-1.1.0-tom-0.2.0", "clj-1.1.0-tom-0.2.0")])
def test_given_cv_or_not_when_decoded_then_v_collector(canon: Canonicalizer, cv: str | None, expected: str) -> None:
    params = {"e": "pv"} | ({"cv": cv} if cv else {})
    assert event_of(canon, params)["v_collector"] == expected


@pytest.mark.parametrize("p", ["web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"])
def test_given_valid_platform_when_decoded_then_platform(canon: Canonicalizer, p: str) -> None:
    assert event_of(canon, {"e": "pv", "p": p})["platform"] == p


def test_given_invalid_platform_when_decoded_then_tracker_protocol_bad_row(canon: Canonicalizer) -> None:
    kind, messages = bad_of(canon, {"e": "pv", "p": "toaster"})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith("p:") for m in messages)


# --------------------------------------------------------------------------- CloudFront double encoding
@pytest.mark.parametrize(
    ("logged_value", "expected"),
    [
        ("a%2520b", "a b"),  # %20 encoded once more by CloudFront -> one space
        ("100%2525", "100%"),  # a literal % -> %25 (tracker) -> %2525 (CloudFront)
        ("%252525", "%25"),  # user typed "%25": tracker %2525, CloudFront %252525
        ("caf%25C3%25A9", "caf\u00e9"),
        ("x%2526y%253Dz", "x&y=z"),  # encoded separators stay inside the value
        ("no-encoding", "no-encoding"),
    ],
)
def test_given_cloudfront_double_encoded_query_when_decoded_then_undone_exactly_once(
    canon: Canonicalizer, logged_value: str, expected: str
) -> None:
    log = LogBuilder(fields=33)
    log.add(query=f"e=pv&page={logged_value}")
    ev = run_core(log.to_bytes(), canonicalizer=canon).event
    assert ev["page_title"] == expected


def test_given_tracker_query_helper_when_space_then_log_holds_2520(canon: Canonicalizer) -> None:
    line = LogBuilder(fields=33).line(query=tracker_query({"e": "pv", "page": "a b"}))
    assert "page=a%2520b" in line
    assert event_of(canon, {"e": "pv", "page": "a b"})["page_title"] == "a b"


def test_given_duplicate_param_when_decoded_then_last_value_wins_as_in_snowplow(canon: Canonicalizer) -> None:
    # Enrich builds its parameter map with Scala's toMap: a later pair overrides an earlier one.
    log = LogBuilder(fields=33).add(query="e=pv&aid=first&aid=second")
    assert run_core(log.to_bytes(), canonicalizer=canon).event["app_id"] == "second"


def test_given_empty_param_value_when_decoded_then_field_absent(canon: Canonicalizer) -> None:
    log = LogBuilder(fields=33).add(query="e=pv&aid=&uid=&vid=")
    ev = run_core(log.to_bytes(), canonicalizer=canon).event
    assert ev.get("app_id") is None and ev.get("user_id") is None and ev.get("domain_sessionidx") is None


# --------------------------------------------------------------------------- typed numbers
@pytest.mark.parametrize(
    ("param", "raw", "field", "expected"),
    [
        ("vid", "1", "domain_sessionidx", 1),
        ("vid", "42", "domain_sessionidx", 42),
        ("vid", "2147483647", "domain_sessionidx", 2_147_483_647),
        ("pp_mix", "-10", "pp_xoffset_min", -10),
        ("pp_max", "300", "pp_xoffset_max", 300),
        ("pp_miy", "0", "pp_yoffset_min", 0),
        ("pp_may", "1200", "pp_yoffset_max", 1200),
        ("ti_qu", "3", "ti_quantity", 3),
        ("tr_tt", "12.50", "tr_total", 12.5),
        ("tr_tx", "2.5", "tr_tax", 2.5),
        ("tr_sh", "0", "tr_shipping", 0.0),
        ("ti_pr", "9.99", "ti_price", 9.99),
        ("se_va", "1.5", "se_value", 1.5),
        ("se_va", "-3", "se_value", -3.0),
        ("ev_va", "7.25", "se_value", 7.25),
    ],
)
def test_given_numeric_param_when_decoded_then_typed_value(
    canon: Canonicalizer, param: str, raw: str, field: str, expected: float
) -> None:
    ev = event_of(canon, {"e": "se", param: raw})
    assert ev[field] == expected
    assert type(ev[field]) is type(expected)


@pytest.mark.parametrize(
    ("param", "raw"),
    [
        ("vid", "abc"),
        ("vid", "1.5"),
        ("vid", "2147483648"),
        ("ti_qu", "two"),
        ("ti_qu", "1.5"),
        ("tr_tt", "abc"),
        ("tr_tt", "nan"),
        ("ti_pr", "inf"),
        ("se_va", "ten"),
        ("dtm", "yesterday"),
        ("stm", "-5"),
        ("ttm", "1.5e12"),
    ],
)
def test_given_malformed_numeric_param_when_decoded_then_tracker_protocol_bad_row_naming_it(
    canon: Canonicalizer, param: str, raw: str
) -> None:
    """Reliability catalogue A11: non-numeric values and 32-bit overflows are bad rows naming the parameter."""
    kind, messages = bad_of(canon, {"e": "se", param: raw})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith(f"{param}:") for m in messages), messages


@pytest.mark.parametrize(
    ("param", "raw", "field", "expected"),
    [
        ("cookie", "1", "br_cookies", True),
        ("cookie", "0", "br_cookies", False),
        ("f_pdf", "1", "br_features_pdf", True),
    ],
)
def test_given_boolean_param_when_decoded_then_bool(
    canon: Canonicalizer, param: str, raw: str, field: str, expected: bool
) -> None:
    assert event_of(canon, {"e": "pv", param: raw})[field] is expected


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    ("param", "fields"),
    [
        ("res", ("dvce_screenwidth", "dvce_screenheight")),
        ("vp", ("br_viewwidth", "br_viewheight")),
        ("ds", ("doc_width", "doc_height")),
    ],
)
def test_given_size_param_when_decoded_then_width_and_height_ints(
    canon: Canonicalizer, param: str, fields: tuple[str, str]
) -> None:
    ev = event_of(canon, {"e": "pv", param: "1920x1080"})
    assert (ev[fields[0]], ev[fields[1]]) == (1920, 1080)


@pytest.mark.parametrize("raw", ["big", "1920", "1920x", "x1080", "axb", "-1x5", "1920*1080"])
@pytest.mark.parametrize("param", ["res", "vp", "ds"])
def test_given_malformed_size_when_decoded_then_tracker_protocol_bad_row(
    canon: Canonicalizer, param: str, raw: str
) -> None:
    kind, messages = bad_of(canon, {"e": "pv", param: raw})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith(f"{param}:") for m in messages)


# --------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize(
    ("param", "field"),
    [("dtm", "dvce_created_tstamp"), ("stm", "dvce_sent_tstamp"), ("ttm", "true_tstamp")],
)
def test_given_epoch_ms_param_when_decoded_then_timestamp_ms(canon: Canonicalizer, param: str, field: str) -> None:
    ev = event_of(canon, {"e": "pv", param: "1731699950123"})
    assert ev[field] == 1_731_699_950_123


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # true_tstamp wins whatever else is sent
        ({"ttm": "1731699000000", "dtm": "1731699940000", "stm": "1731699950000"}, 1_731_699_000_000),
        # created 10 s before sent -> collector minus the 10 s the device held it
        ({"dtm": "1731699940000", "stm": "1731699950000"}, COLLECTOR_MS - 10_000),
        # device clock far off: only the difference matters
        ({"dtm": "1000", "stm": "4000"}, COLLECTOR_MS - 3_000),
        # created after sent (nonsense) -> collector
        ({"dtm": "1731699960000", "stm": "1731699950000"}, COLLECTOR_MS),
        # created == sent -> collector
        ({"dtm": "1731699950000", "stm": "1731699950000"}, COLLECTOR_MS),
        ({"dtm": "1731699940000"}, COLLECTOR_MS),
        ({"stm": "1731699940000"}, COLLECTOR_MS),
        ({}, COLLECTOR_MS),
    ],
)
def test_given_device_timestamps_when_decoded_then_derived_tstamp_as_snowplow(
    canon: Canonicalizer, params: dict[str, str], expected: int
) -> None:
    ev = event_of(canon, {"e": "pv", **params})
    assert ev["collector_tstamp"] == COLLECTOR_MS
    assert ev["derived_tstamp"] == expected


# --------------------------------------------------------------------------- URLs
URL_CASES = [
    (
        "https://www.example.com/a/b?x=1&y=2#frag",
        ("https", "www.example.com", 443, "/a/b", "x=1&y=2", "frag"),
    ),
    ("http://example.com/", ("http", "example.com", 80, "/", None, None)),
    ("http://example.com:8080/p", ("http", "example.com", 8080, "/p", None, None)),
    (
        "https://shop.example.co.uk:8443/cart?id=7",
        ("https", "shop.example.co.uk", 8443, "/cart", "id=7", None),
    ),
    ("https://example.com/search?q=a%20b#top", ("https", "example.com", 443, "/search", "q=a%20b", "top")),
]


@pytest.mark.parametrize(("url", "parts"), URL_CASES)
def test_given_url_param_when_decoded_then_split_into_page_url_columns(
    canon: Canonicalizer, url: str, parts: tuple[Any, ...]
) -> None:
    ev = event_of(canon, {"e": "pv", "url": url})
    assert ev["page_url"] == url
    got = tuple(ev.get(f"page_url{p}") for p in ("scheme", "host", "port", "path", "query", "fragment"))
    assert got == parts


@pytest.mark.parametrize(("url", "parts"), URL_CASES)
def test_given_refr_param_when_decoded_then_split_into_refr_columns(
    canon: Canonicalizer, url: str, parts: tuple[Any, ...]
) -> None:
    ev = event_of(canon, {"e": "pv", "url": "https://page.example.net/", "refr": url})
    assert ev["page_referrer"] == url
    got = tuple(ev.get(f"refr_url{p}") for p in ("scheme", "host", "port", "path", "query", "fragment"))
    assert got == parts


def test_given_no_url_param_when_decoded_then_page_url_from_referer_header(canon: Canonicalizer) -> None:
    ev = event_of(canon, {"e": "pv"}, referer="https://www.example.com/landing?utm_source=x")
    assert ev["page_url"] == "https://www.example.com/landing?utm_source=x"
    assert ev["page_urlhost"] == "www.example.com"
    assert ev["page_urlpath"] == "/landing"


# --------------------------------------------------------------------------- eid
@pytest.mark.parametrize("eid", [UUID_A, UUID_A.upper(), "C6EF3124-b53a-4B13-A233-0088f79dcbcb"])
def test_given_eid_uuid_when_decoded_then_event_id_lowercased(canon: Canonicalizer, eid: str) -> None:
    assert event_of(canon, {"e": "pv", "eid": eid})["event_id"] == UUID_A


@pytest.mark.parametrize("eid", ["not-a-uuid", "c6ef3124b53a4b13a2330088f79dcbcb", UUID_A + "0", "{" + UUID_A + "}"])
def test_given_eid_not_uuid_when_decoded_then_tracker_protocol_bad_row(canon: Canonicalizer, eid: str) -> None:
    kind, messages = bad_of(canon, {"e": "pv", "eid": eid})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith("eid:") for m in messages)


# --------------------------------------------------------------------------- self-describing JSON
INNER = {"schema": "iglu:com.acme/link_click/jsonschema/1-0-1", "data": {"targetUrl": "https://x.test/???"}}
UE = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": INNER}
CONTEXTS = {
    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
    "data": [{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"tier": "gold????"}}],
}


def _b64url(doc: dict[str, Any], *, padded: bool) -> str:
    text = base64.urlsafe_b64encode(json.dumps(doc).encode("utf-8")).decode("ascii")
    return text if padded else text.rstrip("=")


def _needs_padding(doc: dict[str, Any]) -> bool:
    return len(json.dumps(doc).encode("utf-8")) % 3 != 0


def test_fixture_documents_exercise_padding_and_urlsafe_alphabet() -> None:
    for doc in (UE, CONTEXTS):
        assert _needs_padding(doc)
        encoded = _b64url(doc, padded=True)
        assert "=" in encoded and ("-" in encoded or "_" in encoded)


@pytest.mark.parametrize("padded", [True, False])
def test_given_ue_px_base64url_when_decoded_then_unstruct_and_naming_from_inner_schema(
    canon: Canonicalizer, padded: bool
) -> None:
    ev = event_of(canon, {"e": "ue", "ue_px": _b64url(UE, padded=padded)})
    assert ev["event"] == "unstruct"
    assert json.loads(ev["unstruct_event"]) == UE
    assert (ev["event_vendor"], ev["event_name"], ev["event_format"], ev["event_version"]) == (
        "com.acme",
        "link_click",
        "jsonschema",
        "1-0-1",
    )


def test_given_ue_pr_json_when_decoded_then_unstruct_and_naming(canon: Canonicalizer) -> None:
    ev = event_of(canon, {"e": "ue", "ue_pr": json.dumps(UE)})
    assert json.loads(ev["unstruct_event"]) == UE
    assert ev["event_name"] == "link_click"
    assert ev["event_vendor"] == "com.acme"


@pytest.mark.parametrize("padded", [True, False])
def test_given_cx_base64url_when_decoded_then_contexts(canon: Canonicalizer, padded: bool) -> None:
    ev = event_of(canon, {"e": "pv", "cx": _b64url(CONTEXTS, padded=padded)})
    assert json.loads(ev["contexts"]) == CONTEXTS


def test_given_co_json_when_decoded_then_contexts(canon: Canonicalizer) -> None:
    ev = event_of(canon, {"e": "pv", "co": json.dumps(CONTEXTS)})
    assert json.loads(ev["contexts"]) == CONTEXTS


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ue_px", "!!!not base64!!!"),
        ("ue_pr", "{not json"),
        ("ue_pr", json.dumps({"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": INNER})),
        ("ue_pr", json.dumps({"schema": UE["schema"], "data": {"schema": "not-iglu", "data": {}}})),
        ("cx", base64.urlsafe_b64encode(b"[1,2]").decode()),
        ("co", json.dumps({"schema": CONTEXTS["schema"], "data": {"not": "an array"}})),
    ],
)
def test_given_invalid_self_describing_json_when_decoded_then_tracker_protocol_bad_row(
    canon: Canonicalizer, param: str, value: str
) -> None:
    e = "ue" if param.startswith("ue") else "pv"
    kind, messages = bad_of(canon, {"e": e, param: value})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith(f"{param}:") for m in messages), messages


def test_given_ue_without_payload_when_decoded_then_tracker_protocol_bad_row(canon: Canonicalizer) -> None:
    kind, _ = bad_of(canon, {"e": "ue"})
    assert kind == "tracker_protocol_violation"


# --------------------------------------------------------------------------- ip / ua params
def test_given_ip_param_when_decoded_then_it_overrides_xff_and_c_ip(canon: Canonicalizer) -> None:
    ev = event_of(canon, {"e": "pv", "ip": "198.51.100.23"}, forwarded_for="192.0.2.5", client_ip="203.0.113.77")
    assert ev["user_ipaddress"] == "198.51.100.0"


def test_given_ua_param_when_decoded_then_it_overrides_header(canon: Canonicalizer) -> None:
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ev = event_of(canon, {"e": "pv", "ua": ua})
    assert ev["useragent"] == ua
    assert ev["dvce_type"] == "Robot"


# --------------------------------------------------------------------------- all errors at once
def test_given_three_protocol_errors_when_decoded_then_one_bad_row_with_three_messages(
    canon: Canonicalizer,
) -> None:
    kind, messages = bad_of(canon, {"e": "zz", "vid": "abc", "res": "big"})
    assert kind == "tracker_protocol_violation"
    assert len(messages) == 3
    assert sorted(m.split(":", 1)[0] for m in messages) == ["e", "res", "vid"]


def test_given_eid_uuid_with_trailing_newline_when_decoded_then_tracker_protocol_bad_row(
    canon: Canonicalizer,
) -> None:
    kind, messages = bad_of(canon, {"e": "pv", "eid": UUID_A + "\n"})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith("eid:") for m in messages)


@pytest.mark.parametrize(("param", "raw"), [("tr_tt", "1_000"), ("se_va", "1_0"), ("ti_pr", " 49.95")])
def test_given_non_decimal_number_syntax_when_decoded_then_tracker_protocol_bad_row(
    canon: Canonicalizer, param: str, raw: str
) -> None:
    kind, messages = bad_of(canon, {"e": "tr", param: raw})
    assert kind == "tracker_protocol_violation"
    assert any(m.startswith(f"{param}:") for m in messages)
