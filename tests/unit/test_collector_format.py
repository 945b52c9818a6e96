"""The collector's stream-1 lines (pipeline/formats/collector.py): registered, parsed, never raising."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.formats import FORMATS, get_format
from pipeline.formats.base import LogLine, Request, Skip
from pipeline.formats.collector import TRACKER_PATH, CollectorPayload, CollectorPayloads, event_query, parse_line

SOURCE = SourceRef("s3://collector/pixel/abc/0")


def line(text: str) -> LogLine:
    return LogLine(1, text, None)


def test_the_format_is_registered_by_name() -> None:
    assert FORMATS["collector"] is CollectorPayloads and get_format("collector").name == "collector"


def test_a_payload_round_trips_and_parses_into_a_pixel_request_with_nuid_and_cv() -> None:
    payload = CollectorPayload(
        1_700_000_000_000, "req-0", "e=pv&aid=x", "UA", None, "198.51.100.7", nuid="n-1", version="c-1"
    )
    assert parse_line(payload.to_line()) == payload
    request = CollectorPayloads().parse(line(payload.to_line()), SOURCE)
    assert isinstance(request, Request)
    assert (request.method, request.path, request.query) == ("GET", TRACKER_PATH, "e=pv&aid=x&nuid=n-1&cv=c-1")
    assert (request.collector_tstamp, request.client_ip, request.request_id) == (
        1_700_000_000_000,
        "198.51.100.7",
        "req-0",
    )


def test_a_tracker_nuid_or_tnuid_is_kept_over_the_collectors() -> None:
    for query in ("e=pv&tnuid=t", "e=pv&nuid=q"):
        payload = CollectorPayload(1, "r", query, nuid="cookie")
        request = CollectorPayloads().parse(line(payload.to_line()), SOURCE)
        assert isinstance(request, Request) and "nuid=cookie" not in (request.query or "")


def test_a_turned_away_request_is_its_bad_row() -> None:
    payload = CollectorPayload(1, "r", bad="size_violation", messages=("too big",), raw="e=pv", size=999)
    row = CollectorPayloads().parse(line(payload.to_line()), SOURCE)
    assert isinstance(row, BadRow) and row.kind is FailureKind.SIZE_VIOLATION and row.size == 999


def test_the_screen_can_skip_collector_requests() -> None:
    payload = CollectorPayload(1, "r", "e=pv")
    skip = Skip("not_tracker")
    assert CollectorPayloads().parse(line(payload.to_line()), SOURCE, {("GET", TRACKER_PATH): skip}) is skip


@given(st.text(max_size=300))
def test_any_line_parses_into_a_request_or_a_bad_row(text: str) -> None:
    assert isinstance(CollectorPayloads().parse(line(text), SOURCE), Request | BadRow)


def test_read_yields_lines_and_counts_blanks() -> None:
    data = CollectorPayload(1, "r", "e=pv").to_line().encode() + b"\n\n\xff\n"
    items = list(CollectorPayloads().read(io.BytesIO(data), SOURCE))
    assert [type(i).__name__ for i in items] == ["LogLine", "BadRow"]


def test_event_query_encodes_as_encode_uri_component() -> None:
    assert event_query({"e": "se", "se_la": "a b&c", "x": "(ok)!*'~"}) == "e=se&se_la=a%20b%26c&x=(ok)!*'~"
    assert event_query({"n": 5}) == "n=5"
