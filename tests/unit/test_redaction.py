"""Secrets and personal data in URLs and user ids (audit item 12 of issue 9; catalogue S08).

Query and fragment parameters that commonly carry secrets or personal data are redacted from
page and referrer URLs by default, counted in ``etl_tags`` and in the run summary; e-mail-shaped
``user_id`` values are flagged in the summary with a pointer to pseudonymization.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.app.process import process_stream
from pipeline.badrows import SourceRef
from pipeline.formats import get_format, read_limits
from pipeline.summary import FileSummary
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import ETL_TSTAMP, make_config, run_core
from transform.canonicalize import Canonicalizer
from transform.urls import REDACTED, Redaction

SECRET = "s3cr3t-Value-42"
KEY = b"0123456789abcdef-test-key"


def event_of(params: dict[str, str], canon: Canonicalizer | None = None, **values: str) -> dict[str, Any]:
    log = LogBuilder(fields=33)
    log.add(query=tracker_query(params), **values)
    run = run_core(log.to_bytes(), canonicalizer=canon)
    assert not run.bad, [(b.kind, b.messages) for b in run.bad]
    return run.event


@pytest.mark.parametrize("name", ["email", "token", "password", "code", "access_token", "Email", "API_KEY"])
def test_given_a_sensitive_page_parameter_when_transformed_then_its_value_is_nowhere_in_the_event(name: str) -> None:
    """Reliability catalogue S08: denylisted query values are redacted."""
    url = f"https://shop.example/account?lang=en&{name}={SECRET}"
    event = event_of({"e": "pv", "url": url})
    assert SECRET not in json.dumps(event)
    assert event["page_url"] == f"https://shop.example/account?lang=en&{name}={REDACTED}"
    assert event["page_urlquery"] == f"lang=en&{name}={REDACTED}"
    assert f"redacted:{name.lower()}" in event["etl_tags"].split(",")


def test_given_a_secret_in_the_referrer_and_the_fragment_when_transformed_then_both_are_redacted() -> None:
    event = event_of(
        {
            "e": "pv",
            "url": "https://shop.example/cb#access_token=" + SECRET + "&state=1",
            "refr": "https://login.example/?password=" + SECRET,
        }
    )
    assert SECRET not in json.dumps(event)
    assert event["page_urlfragment"] == f"access_token={REDACTED}&state=1"
    assert event["refr_urlquery"] == f"password={REDACTED}"
    assert set(event["etl_tags"].split(",")) == {"redacted:access_token", "redacted:password"}


def test_given_an_email_under_any_parameter_name_when_transformed_then_it_is_redacted() -> None:
    event = event_of({"e": "pv", "url": "https://shop.example/?contact=alice%40example.com&q=shoes"})
    assert "alice" not in json.dumps(event)
    assert event["page_urlquery"] == f"contact={REDACTED}&q=shoes"


def test_given_the_referer_header_of_a_plain_request_when_made_a_page_view_then_it_is_redacted() -> None:
    canon = Canonicalizer(make_config({"transform.non_tracker_policy": "page_view"}).transform)
    log = LogBuilder(fields=33)
    log.add(uri_stem="/reset", query=f"token={SECRET}", referer="https://mail.example/?email=bob%40example.com")
    run = run_core(log.to_bytes(), canonicalizer=canon)
    assert SECRET not in json.dumps(run.event) and "bob" not in json.dumps(run.event)
    assert "redacted:token" in run.event["etl_tags"]


def test_given_ordinary_parameters_when_transformed_then_urls_are_untouched() -> None:
    url = "https://shop.example/p?utm_source=news&utm_medium=email&q=a%40b&page=2#section"
    event = event_of({"e": "pv", "url": url})
    assert event["page_url"] == url
    assert event["mkt_medium"] == "email"
    assert "etl_tags" not in event


def test_given_redaction_configured_off_or_other_names_when_transformed_then_that_holds() -> None:
    url = f"https://shop.example/?token={SECRET}&ref={SECRET}"
    off = Canonicalizer(make_config({"transform.redact.enabled": False}).transform)
    assert event_of({"e": "pv", "url": url}, off)["page_url"] == url
    custom = Canonicalizer(make_config({"transform.redact.query_params": ["ref"]}).transform)
    assert event_of({"e": "pv", "url": url}, custom)["page_urlquery"] == f"token={SECRET}&ref={REDACTED}"


def test_given_a_redacted_url_when_fingerprinted_then_the_secret_does_not_change_the_fingerprint() -> None:
    """Otherwise a short secret (a six-digit code) could be brute-forced from the fingerprint."""
    fingerprints = {
        event_of({"e": "pv", "url": f"https://shop.example/verify?code={code:06d}"})["event_fingerprint"]
        for code in (0, 1, 123456, 999999)
    }
    assert len(fingerprints) == 1


@given(
    st.text(st.characters(blacklist_characters="?#"), max_size=40),
    st.text(st.characters(blacklist_characters="&#="), min_size=1, max_size=40),
    st.text(max_size=40),
)
def test_redaction_replaces_any_listed_value_and_never_raises(path: str, value: str, anything: str) -> None:
    redaction = Redaction(frozenset({"token"}), emails=True)
    url, names = redaction.apply(f"https://a.example/{path}?token={value}")
    if value != REDACTED:
        assert url == f"https://a.example/{path}?token={REDACTED}"
        assert names == ("token",)
    redaction.apply(anything)  # arbitrary text: never an exception


# ------------------------------------------------------------------- e-mail-shaped user ids
def summary_of(data: bytes, canon: Canonicalizer) -> FileSummary:
    summary = FileSummary("s3://bucket/logs/E2EXAMPLE.2024-11-15-19.abcd1234.gz")
    config = make_config()
    list(
        process_stream(
            io.BytesIO(data),
            SourceRef(summary.source),
            get_format(config.extract.format),
            canon,
            read_limits(config.extract),
            summary,
            ETL_TSTAMP,
        )
    )
    return summary


def test_given_email_shaped_user_ids_when_processed_then_the_summary_counts_them() -> None:
    log = LogBuilder(fields=33)
    for uid in ("alice@example.com", "bob@example.org", "customer-17"):
        log.add(query=tracker_query({"e": "pv", "uid": uid}))
    log.add(query=tracker_query({"e": "pv", "url": f"https://shop.example/?token={SECRET}"}))
    summary = summary_of(log.to_bytes(), Canonicalizer(make_config().transform))
    assert summary.notices == {"email_shaped_user_id": 2, "redacted_url_parameters": 1}
    assert summary.to_json()["notices"] == {"email_shaped_user_id": 2, "redacted_url_parameters": 1}


def test_given_pseudonymization_on_when_processed_then_email_user_ids_are_not_flagged() -> None:
    config = make_config({"transform.pseudonymize.enabled": True})
    log = LogBuilder(fields=33)
    log.add(query=tracker_query({"e": "pv", "uid": "alice@example.com"}))
    summary = summary_of(log.to_bytes(), Canonicalizer(config.transform, pseudonymization_key=KEY))
    assert summary.notices == {}
