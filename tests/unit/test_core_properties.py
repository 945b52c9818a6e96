"""Properties of the canonical core over arbitrary input (hypothesis).

GIVEN any text as log lines (tabs, newlines, control characters, non-ASCII) or any query
string inside an otherwise valid line, WHEN the core runs, THEN it never raises, every line
is conserved (``run_core`` asserts ``lines_read == good + bad + skipped``), the output is
deterministic and every good event passes :func:`pipeline.schema.validate`.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.schema import validate
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import CoreRun, make_config, run_core
from transform.canonicalize import Canonicalizer

_CONFIGS = {
    "skip": make_config(),
    "page_view": make_config({"transform.non_tracker_policy": "page_view"}),
}
# Two canonicalizers per configuration, each fed every example in the same order, so their
# caches have the same history: output must match exactly.  (Building one costs ~0.3 s, too
# slow to do per example.)
_CANONS = {name: Canonicalizer(cfg.transform) for name, cfg in _CONFIGS.items()}
_TWINS = {name: Canonicalizer(cfg.transform) for name, cfg in _CONFIGS.items()}
_SOLO = Canonicalizer(_CONFIGS["skip"].transform)
_unique = itertools.count()
PROFILE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRACKER_PARAMS = [
    "e", "eid", "aid", "p", "tv", "cv", "dtm", "stm", "ttm", "uid", "duid", "nuid", "sid", "vid", "ip", "ua",
    "url", "refr", "page", "res", "vp", "ds", "se_ca", "se_ac", "se_la", "se_pr", "se_va", "ue_pr", "ue_px",
    "co", "cx", "tr_tt", "ti_qu", "ti_pr", "tr_cu", "cookie", "tz",
]  # fmt: skip
EVENT_TYPES = ["pv", "pp", "se", "ev", "ue", "tr", "ti", "zz", ""]


def _snapshot(run: CoreRun) -> tuple[list[dict[str, Any]], list[tuple[str, tuple[str, ...], Any]]]:
    return run.events, [(b.kind.value, b.messages, b.raw) for b in run.bad]


def _check(data: bytes, policy: str = "skip") -> CoreRun:
    """Run twice (on twin canonicalizers): same output; every good event valid."""
    config = _CONFIGS[policy]
    first = run_core(data, config=config, canonicalizer=_CANONS[policy])
    second = run_core(data, config=config, canonicalizer=_TWINS[policy])
    assert _snapshot(first) == _snapshot(second)
    for event in first.events:
        assert validate(event) == [], event
    return first


# --------------------------------------------------------------------------- arbitrary lines
@PROFILE
@given(
    lines=st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=300), max_size=6),
    policy=st.sampled_from(["skip", "page_view"]),
)
def test_given_arbitrary_text_lines_after_header_when_processed_then_never_raises(
    lines: list[str], policy: str
) -> None:
    data = (LogBuilder(fields=33).to_text() + "\n".join(lines)).encode("utf-8", "surrogatepass")
    _check(data, policy)


@PROFILE
@given(
    cells=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\t\n"), max_size=40),
        min_size=33,
        max_size=33,
    ),
    policy=st.sampled_from(["skip", "page_view"]),
)
def test_given_arbitrary_values_in_every_field_when_processed_then_one_outcome_per_line(
    cells: list[str], policy: str
) -> None:
    data = (LogBuilder(fields=33).to_text() + "\t".join(cells) + "\n").encode("utf-8", "surrogatepass")
    run = _check(data, policy)
    assert run.summary.lines_read == 3


@PROFILE
@given(data=st.binary(max_size=400))
def test_given_arbitrary_bytes_when_processed_then_never_raises(data: bytes) -> None:
    _check(LogBuilder(fields=33).to_bytes() + data)


# --------------------------------------------------------------------------- arbitrary queries
_query_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\t\n\r"), max_size=200)


@PROFILE
@given(query=_query_text)
def test_given_arbitrary_raw_query_in_tracker_line_when_processed_then_never_raises(query: str) -> None:
    log = LogBuilder(fields=33)
    log.add(query=query or "-")
    log.add(query="e=pv&" + query)
    run = _check(log.to_bytes())
    assert len(run.events) + len(run.bad) == 2


_percentish = st.text(alphabet="%25EFzZ0aA+=&", max_size=30)


@PROFILE
@given(
    params=st.dictionaries(
        st.sampled_from(TRACKER_PARAMS),
        st.one_of(st.text(max_size=60), _percentish, st.sampled_from(EVENT_TYPES)),
        max_size=10,
    ),
    e=st.sampled_from(EVENT_TYPES),
    raw_suffix=_percentish,
)
def test_given_arbitrary_tracker_params_when_processed_then_event_or_bad_row(
    params: dict[str, str], e: str, raw_suffix: str
) -> None:
    params = {"e": e, **params}
    log = LogBuilder(fields=33)
    log.add(query=tracker_query(params))
    log.add(query=tracker_query(params) + "&page=" + raw_suffix)
    run = _check(log.to_bytes())
    assert len(run.events) + len(run.bad) == 2
    for bad in run.bad:
        assert bad.messages
        assert bad.kind.value in {"tracker_protocol_violation", "schema_violation"}


@PROFILE
@given(value=st.text(max_size=80))
def test_given_any_string_param_value_when_round_tripped_then_decoded_exactly(value: str) -> None:
    log = LogBuilder(fields=33).add(query=tracker_query({"e": "se", "se_la": value, "page": value}))
    run = _check(log.to_bytes())
    # Decoded exactly, then cleaned as Snowplow does: tab -> four spaces, C0 controls and DEL gone, "" null.
    want = "".join("    " if c == "\t" else c for c in value if c == "\t" or not (c < " " or c == "\x7f")) or None
    if run.events:
        ev = run.event
        assert ev.get("se_label") == want
        assert ev.get("page_title") == want
    else:  # only possible when the value breaks the schema (e.g. lone surrogates)
        assert [b.kind.value for b in run.bad] == ["schema_violation"]


_xff = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\t\n\r"), max_size=40)


@PROFILE
@given(xff=_xff)
def test_given_any_xff_with_valid_c_ip_when_anonymizing_then_masked_never_full(xff: str) -> None:
    # a unique trailing junk entry keeps every XFF value new to the canonicalizer's cache
    """Reliability catalogue S06: whatever X-Forwarded-For holds, the address is masked."""
    xff = f"{xff},junk-{next(_unique)}"
    log = LogBuilder(fields=33).add(query="e=pv", forwarded_for=xff, client_ip="203.0.113.77")
    run = _check(log.to_bytes())
    ip = run.event.get("user_ipaddress")
    assert ip is not None  # XFF when it holds a valid address, else c-ip
    assert ip != "203.0.113.77"
    assert ip.endswith(".0") or ip.endswith("::")


@PROFILE
@given(xff=_xff)
def test_given_same_input_twice_on_one_canonicalizer_when_processed_then_same_output(xff: str) -> None:
    canon = _SOLO
    data = LogBuilder(fields=33).add(query="e=pv", forwarded_for=xff or "-", client_ip="203.0.113.77").to_bytes()
    assert _snapshot(run_core(data, canonicalizer=canon)) == _snapshot(run_core(data, canonicalizer=canon))
