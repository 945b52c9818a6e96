"""Unit tests for transform.enrichments.referer (Snowplow referer-parser semantics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transform.enrichments.referer import RefererClass, RefererClassifier

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = REPO_ROOT / "config" / "referers.json"
PAGE = "shop.example.com"


@pytest.fixture(scope="module")
def clf() -> RefererClassifier:
    return RefererClassifier.from_file(internal_domains=["example.com", "Partner.Example.ORG"])


# --- bundled dataset -------------------------------------------------------


def test_given_bundled_dataset_when_loaded_then_has_core_media_and_many_search_engines() -> None:
    data: dict[str, Any] = json.loads(BUNDLED.read_text(encoding="utf-8"))
    assert {"search", "social", "email", "chatbot", "paid", "unknown"} <= set(data)
    assert "internal" not in data
    assert len(data["search"]) >= 15
    assert "Google" in data["search"] and "q" in data["search"]["Google"]["parameters"]
    for medium, sources in data.items():
        for source, entry in sources.items():
            assert entry["domains"], (medium, source)
            assert entry["domains"] == sorted(set(entry["domains"])), (medium, source)
            assert all(d == d.lower() for d in entry["domains"]), (medium, source)


def test_given_no_path_when_from_file_then_loads_bundled_resource_same_as_explicit_path() -> None:
    from_resource = RefererClassifier.from_file()
    from_path = RefererClassifier.from_file(BUNDLED)
    args = ("www.google.com", "/search", "q=x", PAGE)
    assert from_resource.classify(*args) == from_path.classify(*args) == RefererClass("search", "Google", "x")


def test_given_bundled_file_when_rendered_by_update_script_rules_then_it_is_canonical() -> None:
    text = BUNDLED.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


# --- search ------------------------------------------------------------------


def test_given_google_search_with_q_when_classified_then_search_google_with_term(
    clf: RefererClassifier,
) -> None:
    assert clf.classify("www.google.com", "/search", "q=running+shoes&hl=en", PAGE) == RefererClass(
        "search", "Google", "running shoes"
    )


def test_given_bing_when_classified_then_search_bing(clf: RefererClassifier) -> None:
    assert clf.classify("www.bing.com", "/search", "form=QBLH&q=cheap+flights", PAGE) == RefererClass(
        "search", "Bing", "cheap flights"
    )


def test_given_bing_images_path_when_classified_then_path_rule_wins_over_host(
    clf: RefererClassifier,
) -> None:
    result = clf.classify("www.bing.com", "/images/search", "q=cats", PAGE)
    assert result == RefererClass("search", "Bing Images", "cats")


def test_given_google_imgres_path_when_classified_then_host_path_rule_before_host(
    clf: RefererClassifier,
) -> None:
    # google.co.uk/imgres is a host+path rule, tried before the bare google.co.uk
    assert clf.classify("google.co.uk", "/imgres", "q=dog&imgurl=x", PAGE) == RefererClass(
        "search", "Google Images", "dog"
    )
    # referer-parser semantics: host+path rules at every level before any bare host, so
    # google.co.uk/imgres one level down wins over the exact www.google.co.uk entry (Google)
    assert clf.classify("www.google.co.uk", "/imgres", "q=dog", PAGE) == RefererClass("search", "Google Images", "dog")
    assert clf.classify("www.google.co.uk", "/search", "q=dog", PAGE) == RefererClass("search", "Google", "dog")


def test_given_yahoo_with_p_param_when_classified_then_term_from_p(clf: RefererClassifier) -> None:
    assert clf.classify("search.yahoo.com", "/search", "ei=UTF-8&p=red%20wine", PAGE) == RefererClass(
        "search", "Yahoo!", "red wine"
    )


def test_given_percent_and_plus_encoded_term_when_classified_then_fully_decoded(
    clf: RefererClassifier,
) -> None:
    result = clf.classify("www.google.de", "/search", "q=caf%C3%A9+%26+cr%C3%A8me%2B1", PAGE)
    assert result is not None and result.term == "café & crème+1"


def test_given_search_without_term_parameter_when_classified_then_term_none(
    clf: RefererClassifier,
) -> None:
    assert clf.classify("www.google.com", "/url", "sa=t&source=web", PAGE) == RefererClass("search", "Google", None)
    assert clf.classify("www.google.com", "/", None, PAGE) == RefererClass("search", "Google", None)


def test_given_empty_term_when_classified_then_term_none(clf: RefererClassifier) -> None:
    assert clf.classify("duckduckgo.com", "/", "q=&t=h_", PAGE) == RefererClass("search", "DuckDuckGo", None)


def test_given_first_matching_parameter_in_query_order_when_classified_then_its_value_is_the_term(
    clf: RefererClassifier,
) -> None:
    # Startpage lists query and q; the first one present in the query string wins
    result = clf.classify("www.startpage.com", "/do/search", "query=first&q=second", PAGE)
    assert result is not None and result.term == "first"


def test_given_leading_question_mark_and_fragment_when_classified_then_ignored(
    clf: RefererClassifier,
) -> None:
    result = clf.classify("www.google.com", "/search", "?q=abc#frag", PAGE)
    assert result is not None and result.term == "abc"


# --- social / email / paid / unknown -----------------------------------------


@pytest.mark.parametrize(
    ("host", "source"),
    [("www.facebook.com", "Facebook"), ("l.facebook.com", "Facebook"), ("t.co", "Twitter")],
)
def test_given_social_network_when_classified_then_social_without_term(
    clf: RefererClassifier, host: str, source: str
) -> None:
    assert clf.classify(host, "/", "q=ignored", PAGE) == RefererClass("social", source, None)


def test_given_gmail_when_classified_then_email_gmail(clf: RefererClassifier) -> None:
    assert clf.classify("mail.google.com", "/mail/u/0/", None, PAGE) == RefererClass("email", "Gmail", None)


def test_given_non_search_medium_with_parameters_when_classified_then_no_term() -> None:
    # A paid source may list a parameter in the data, but terms are only for search
    clf = RefererClassifier({"paid": {"Ad Network": {"domains": ["ads.test"], "parameters": ["leadid"]}}})
    assert clf.classify("ads.test", "/", "leadid=123", PAGE) == RefererClass("paid", "Ad Network", None)


def test_given_unknown_host_when_classified_then_unknown(clf: RefererClassifier) -> None:
    assert clf.classify("blog.some-random-site.io", "/post", "q=x", PAGE) == RefererClass("unknown", None, None)


def test_given_known_unknown_medium_entry_when_classified_then_unknown_with_source(
    clf: RefererClassifier,
) -> None:
    assert clf.classify("support.google.com", "/", None, PAGE) == RefererClass("unknown", "Google", None)


# --- internal ------------------------------------------------------------------


def test_given_referer_equal_to_page_host_when_classified_then_internal(clf: RefererClassifier) -> None:
    assert clf.classify("www.acme.test", "/a", "q=1", "WWW.ACME.TEST") == RefererClass("internal", None, None)


def test_given_configured_internal_domain_when_classified_then_internal(clf: RefererClassifier) -> None:
    assert clf.classify("example.com", "/", None, "other.test") == RefererClass("internal", None, None)


def test_given_subdomain_of_internal_domain_when_classified_then_internal(clf: RefererClassifier) -> None:
    assert clf.classify("a.b.example.com", "/", None, "other.test").medium == "internal"  # type: ignore[union-attr]
    assert clf.classify("x.partner.example.org", "/", None, "other.test").medium == "internal"  # type: ignore[union-attr]


def test_given_lookalike_of_internal_domain_when_classified_then_not_internal(
    clf: RefererClassifier,
) -> None:
    assert clf.classify("notexample.com", "/", None, "other.test") == RefererClass("unknown", None, None)
    assert clf.classify("example.org", "/", None, "other.test") == RefererClass("unknown", None, None)


def test_given_internal_domain_covering_search_engine_when_classified_then_internal_wins() -> None:
    clf = RefererClassifier.from_file(internal_domains=["google.com"])
    assert clf.classify("www.google.com", "/search", "q=x", "site.test") == RefererClass("internal", None, None)


# --- host normalisation ----------------------------------------------------------


def test_given_deep_subdomain_when_classified_then_labels_stripped_until_match(
    clf: RefererClassifier,
) -> None:
    # only "google.co.uk" / "www.google.co.uk" are listed
    assert clf.classify("foo.bar.google.co.uk", "/search", "q=a", PAGE) == RefererClass("search", "Google", "a")


def test_given_www_prefixed_host_only_listed_without_www_when_classified_then_matched(
    clf: RefererClassifier,
) -> None:
    # duckduckgo.com is listed, www.duckduckgo.com is not
    assert clf.classify("www.duckduckgo.com", "/", "q=z", PAGE) == RefererClass("search", "DuckDuckGo", "z")


def test_given_mixed_case_host_with_port_and_trailing_dot_when_classified_then_matched(
    clf: RefererClassifier,
) -> None:
    assert clf.classify("WWW.Google.COM", "/search", "q=Up", PAGE) == RefererClass("search", "Google", "Up")
    assert clf.classify("www.google.com.:443", "/search", "q=a", PAGE) == RefererClass("search", "Google", "a")


@pytest.mark.parametrize("host", [None, "", "   "])
def test_given_no_referer_host_when_classified_then_none(clf: RefererClassifier, host: str | None) -> None:
    assert clf.classify(host, "/x", "q=1", PAGE) is None


# --- custom datasets / cache ------------------------------------------------------


def test_given_custom_dataset_when_path_rule_needs_segment_boundary_then_prefix_only_on_segments() -> None:
    clf = RefererClassifier(
        {
            "search": {"Site Search": {"domains": ["portal.test/search/"], "parameters": ["s"]}},
            "social": {"Portal": {"domains": ["portal.test"]}},
        }
    )
    assert clf.classify("portal.test", "/search", "s=a", "x.test") == RefererClass("search", "Site Search", "a")
    assert clf.classify("portal.test", "/search/deep", "s=a", "x.test") == RefererClass("search", "Site Search", "a")
    assert clf.classify("portal.test", "/searchable", "s=a", "x.test") == RefererClass("social", "Portal", None)
    assert clf.classify("portal.test", None, None, "x.test") == RefererClass("social", "Portal", None)


def test_given_repeated_hosts_when_classified_then_cache_is_consistent_with_varying_path_and_query() -> None:
    clf = RefererClassifier.from_file()
    first = clf.classify("www.bing.com", "/images/search", "q=a", PAGE)
    second = clf.classify("www.bing.com", "/search", "q=b", PAGE)
    third = clf.classify("www.bing.com", "/images/search", "q=c", PAGE)
    assert first == RefererClass("search", "Bing Images", "a")
    assert second == RefererClass("search", "Bing", "b")
    assert third == RefererClass("search", "Bing Images", "c")


def test_given_many_distinct_hosts_when_classified_then_cache_stays_bounded() -> None:
    clf = RefererClassifier.from_file()
    for i in range(10_000):
        clf.classify(f"h{i}.example.net", "/", None, PAGE)
    assert len(clf._cache) <= 4096


@pytest.mark.parametrize(
    "dataset",
    [[], {"search": []}, {"search": {"X": {"parameters": ["q"]}}}, {"internal": {"X": {"domains": ["a.b"]}}}],
)
def test_given_malformed_dataset_when_constructing_then_value_error(dataset: Any) -> None:
    with pytest.raises(ValueError):
        RefererClassifier(dataset)


# --- property ---------------------------------------------------------------------

_text = st.one_of(st.none(), st.text(max_size=60))
_hostish = st.one_of(
    _text,
    st.sampled_from(["www.google.com", "bing.com", "t.co", "example.com", "a..b", ".", ":", "[::1]:80"]),
)


@settings(max_examples=400, deadline=None)
@given(host=_hostish, path=_text, query=_text, page=_hostish)
def test_given_arbitrary_text_when_classified_then_never_raises(
    clf: RefererClassifier, host: str | None, path: str | None, query: str | None, page: str | None
) -> None:
    result = clf.classify(host, path, query, page)
    assert result is None or isinstance(result, RefererClass)
    if result is not None and result.medium != "search":
        assert result.term is None
