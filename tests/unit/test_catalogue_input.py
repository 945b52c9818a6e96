"""Reliability catalogue, bad input (A01-A17): the cases no older test pinned down.

Each test names its catalogue ID in its docstring; the README's reliability table points
here.  GIVEN input damaged the way the catalogue describes WHEN the core (or Extract on
moto) reads it THEN every line is a good event, a bad row naming the problem, or a counted
skip, and what reaches Parquet, JSON and the logs is intact.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from extract.errors import MalformedNotificationError
from extract.handler import handle as extract
from extract.notifications import ObjectNotice, parse_notifications
from load.parquet import encode_parquet
from load.partitions import PartitionKey
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import ObjectId
from pipeline.badrows import FailureKind
from pipeline.formats.cloudfront import GENERATIONS, LEGACY_FIELDS, legacy_layout
from pipeline.records import (
    RawBatch,
    RecordDecodeError,
    decode_events,
    decode_raw,
    encode_event,
    encode_raw,
    pack_events,
)
from pipeline.schema import to_json_record
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import FakeLambdaContext, s3_object_created_event, s3_test_event, sqs_wrapped
from tests.conftest import make_config, run_core
from tests.functional.aws_chain import Chain, chain_config
from transform.canonicalize import Canonicalizer
from transform.stage import transform_raw_record

CONFIG = make_config()
CANON = Canonicalizer(CONFIG.transform)
LOAD = CONFIG.load
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAGE = "https://www.example.com/shop"


def tracker_line(n: int = 0, **values: str) -> str:
    """A 33-field tracker line (page view) with its own request id."""
    return LogBuilder(fields=33).line(
        query=tracker_query({"e": "pv", "url": f"{PAGE}/{n}", "page": f"Page {n}"}), request_id=f"req-{n}", **values
    )


def log_of(lines: list[str], fields: int | tuple[str, ...] = 33) -> bytes:
    return LogBuilder(fields=fields, lines=list(lines)).to_bytes()


def stored(text: str) -> str:
    """How a string column keeps ``text``: Snowplow's cleaning (a tab is four spaces, C0 controls and DEL go)."""
    return "".join("    " if c == "\t" else c for c in text if c == "\t" or not (c < " " or c == "\x7f"))


def string_values(event: dict[str, Any]) -> Iterator[str]:
    return (value for value in event.values() if isinstance(value, str))


def parquet_round_trip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events through the Parquet encoder and back (pyarrow refuses lone surrogates and bad types)."""
    return list(pq.read_table(pa.BufferReader(encode_parquet(events, LOAD))).to_pylist())


# ================================================================================ A01
@PROFILE
@given(
    plan=st.lists(
        st.one_of(
            st.just(("good", ())),
            st.tuples(st.just("fewer"), st.sets(st.integers(0, 31), min_size=1)),
            st.tuples(st.just("more"), st.lists(st.integers(0, 32), min_size=1, max_size=4)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a01_any_delimiter_mutation_is_a_field_count_row_naming_both_counts_and_the_rest_is_processed(
    plan: list[tuple[str, Any]],
) -> None:
    """Reliability catalogue A01: tabs removed or added anywhere in a line.

    GIVEN a file whose lines are good, or good lines with some TABs turned into spaces or extra
    TABs inserted WHEN processed THEN each mutated line is one field_count bad row at its line
    number whose message names the declared and the found count, and every other line is an event.
    """
    lines: list[str] = []
    expected_bad: dict[int, int] = {}
    for n, (kind, where) in enumerate(plan):
        cells = tracker_line(n).split("\t")
        if kind == "fewer":  # the TAB after cell i becomes a space
            text = "".join(c + (" " if i in where else "\t") for i, c in enumerate(cells))[:-1]
            expected_bad[n + 3] = 33 - len(where)
        elif kind == "more":  # a TAB inside cell i
            for i in where:
                cells[i] = cells[i][:1] + "\t" + cells[i][1:]
            text = "\t".join(cells)
            expected_bad[n + 3] = 33 + len(where)
        else:
            text = "\t".join(cells)
        lines.append(text)
    run = run_core(log_of(lines), canonicalizer=CANON)
    assert {b.source.line: b.kind for b in run.bad} == dict.fromkeys(expected_bad, FailureKind.FIELD_COUNT)
    for row in run.bad:
        [message] = row.messages
        assert "expected 33 " in message and message.endswith(f"found {expected_bad[row.source.line]}")
    assert len(run.events) == len(plan) - len(expected_bad)
    assert run.summary.skipped_by_reason == {"header": 2}


# ================================================================================ A02
@pytest.mark.parametrize("count", GENERATIONS)
def test_a02_future_trailing_fields_are_ignored_in_every_generation(count: int) -> None:
    """Reliability catalogue A02: a layout that grew fields CloudFront has not invented yet.

    GIVEN each field generation (12 to 33) WHEN its header and lines gain two unknown trailing
    fields THEN the events are exactly those of the same lines without them (bound by name).
    """
    names = legacy_layout(count).names
    plain, grown = LogBuilder(fields=count), LogBuilder(fields=(*names, "x-future-a", "x-future-b"))
    for n in range(3):
        values = {"x-future-a": "new", "x-future-b": f"v{n}"}
        query = tracker_query({"e": "pv", "url": f"{PAGE}/{n}"})
        plain.add(query=query, request_id=f"r-{n}")
        grown.add(values, query=query, request_id=f"r-{n}")
    before, after = run_core(plain.to_bytes(), canonicalizer=CANON), run_core(grown.to_bytes(), canonicalizer=CANON)
    assert len(before.events) == 3 and not before.bad
    assert after.events == before.events and not after.bad


# ================================================================================ A04
@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _count_put_records(chain: Chain) -> list[int]:
    calls: list[int] = []
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", lambda **_: calls.append(1))
    return calls


def _extract(chain: Chain, key: str, body: bytes) -> tuple[ObjectNotice, dict[str, Any]]:
    notice = chain.upload(key, body)
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    [result] = extract(event, FakeLambdaContext(), chain.extract_deps())["objects"]
    return notice, dict(result)


@pytest.mark.parametrize(
    ("key", "body", "skipped"),
    [
        ("cf/E1.2024-11-15-10.empty.gz", b"", 0),
        ("cf/E1.2024-11-15-10.empty-gzip.gz", gzip.compress(b"", mtime=0), 0),
        ("cf/E1.2024-11-15-10.headers.gz", LogBuilder().to_gzip(), 2),
    ],
)
def test_a04_empty_and_header_only_objects_complete_with_no_line_shipped_and_no_put_records(
    aws: None, key: str, body: bytes, skipped: int
) -> None:
    """Reliability catalogue A04: nothing to ship is an answer, not a failure.

    GIVEN an empty object, an empty gzip, or a log with headers only WHEN Extract is notified
    THEN the object is COMPLETE in the ledger with 0 lines shipped (headers counted as skipped)
    and no PutRecords call is made.
    """
    chain = Chain.create(chain_config())
    puts = _count_put_records(chain)
    notice, result = _extract(chain, key, body)
    assert result["outcome"] == "complete"
    assert (result["lines_read"], result["lines_shipped"], result["bad"], result["skipped"]) == (skipped, 0, 0, skipped)
    assert result["records"] == 0 and puts == [] and chain.raw_batches() == []
    entry = chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status == "COMPLETE" and entry.counts["lines_shipped"] == 0


def test_a04_a_folder_key_is_ignored_unread_and_a_log_under_another_suffix_is_read_by_its_content(
    aws: None,
) -> None:
    """Reliability catalogue A04: the 0-byte ``prefix/`` key, and keys that do not end in ``.gz``.

    GIVEN a folder placeholder key WHEN notified THEN it is ignored: no ledger entry, no
    PutRecords.  GIVEN a plain-text log named ``.log`` and a gzipped one named ``.txt`` THEN
    both are read (gzip is recognised by its magic bytes, not the name) and shipped.
    """
    chain = Chain.create(chain_config())
    puts = _count_put_records(chain)
    notice, folder = _extract(chain, "cf/2024/", b"")
    assert folder["outcome"] == "ignored" and puts == []
    assert chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag)) is None
    _, plain = _extract(chain, "cf/E1.2024-11-15-10.plain.log", log_of([tracker_line(1)]))
    _, gzipped = _extract(chain, "cf/E1.2024-11-15-10.gzipped.txt", gzip.compress(log_of([tracker_line(2)]), mtime=0))
    assert [(r["outcome"], r["lines_shipped"], r["bad"]) for r in (plain, gzipped)] == [("complete", 1, 0)] * 2
    assert len(puts) == 2


# ================================================================================ A05
_field_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b""))


@PROFILE
@given(st.lists(_field_bytes, min_size=1, max_size=6), st.sampled_from(["cs(User-Agent)", "cs-uri-query"]))
def test_a05_any_bytes_in_a_field_are_an_invalid_utf8_row_or_an_event_parquet_accepts(
    injected: list[bytes], field_name: str
) -> None:
    """Reliability catalogue A05: arbitrary bytes, so invalid UTF-8 and encoded surrogates too.

    GIVEN tracker lines with arbitrary bytes appended to a field WHEN processed THEN a line that
    is not UTF-8 is an invalid_utf8 bad row whose base64 payload is exactly its bytes, every other
    line is one outcome, and the good events hold no lone surrogate: Parquet and JSON encode them.
    """
    index = LEGACY_FIELDS.index(field_name)
    raw_lines: list[bytes] = []
    for n, extra in enumerate(injected):
        cells = [c.encode() for c in tracker_line(n).split("\t")]
        cells[index] += extra
        raw_lines.append(b"\t".join(cells))
    data = LogBuilder(fields=33).to_bytes() + b"".join(line + b"\n" for line in raw_lines)
    run = run_core(data, canonicalizer=CANON)
    invalid = {b.source.line: b for b in run.bad if b.kind is FailureKind.INVALID_UTF8}
    for number, line in enumerate(raw_lines, start=3):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            payload = invalid.pop(number).to_json()["data"]["payload"]
            assert payload["encoding"] == "base64" and base64.b64decode(payload["raw"]) == line
    assert invalid == {}
    assert len(run.events) + len(run.bad) == len(raw_lines)
    for event in run.events:
        for value in string_values(event):
            value.encode("utf-8")  # raises on a lone surrogate
        json.dumps(to_json_record(event), ensure_ascii=False).encode("utf-8")
    if run.events:
        assert len(parquet_round_trip(run.events)) == len(run.events)


def test_a05_escaped_surrogates_in_tracker_values_never_become_lone_surrogates() -> None:
    """Reliability catalogue A05: surrogates smuggled in as ``%ED%A0%80`` or a JSON ``\\ud800``.

    GIVEN a percent-encoded surrogate in a string parameter and a ``\\ud800`` escape inside a
    self-describing event WHEN transformed THEN the first is kept as logged and flagged, the
    second stays an escape in the JSON text, and Parquet writes both.
    """
    inner = {"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": {"s": "\\ud800 lone"}}
    ue = json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": inner})
    ue = ue.replace("\\\\ud800", "\\ud800")  # a JSON escape of a lone surrogate, as a tracker could send it
    assert "\\ud800" in ue and "\\\\" not in ue
    log = LogBuilder(fields=33)
    log.add(query="e=pv&page=a%25ED%25A0%2580b", request_id="r-1")
    log.add(query=tracker_query({"e": "ue", "ue_pr": ue}), request_id="r-2")
    run = run_core(log.to_bytes(), canonicalizer=CANON)
    assert not run.bad
    titled, unstruct = run.events
    assert titled["page_title"] == "a%ED%A0%80b" and "invalid_percent_encoding:page" in titled["etl_tags"]
    assert "\\ud800" in unstruct["unstruct_event"]
    back = parquet_round_trip(run.events)
    assert back[0]["page_title"] == "a%ED%A0%80b" and back[1]["unstruct_event"] == unstruct["unstruct_event"]


# ================================================================================ A06
_SPLITLINES_PITFALLS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@PROFILE
@given(st.lists(st.lists(st.sampled_from(_SPLITLINES_PITFALLS), min_size=1, max_size=3), min_size=1, max_size=5))
def test_a06_only_newline_ends_a_line_whatever_separators_fields_hold(separators: list[list[str]]) -> None:
    """Reliability catalogue A06: what ``str.splitlines`` would split on, inside fields.

    GIVEN newline-terminated tracker lines whose user agent holds bare CR, VT, FF, FS/GS/RS, NEL,
    LINE and PARAGRAPH SEPARATOR WHEN processed THEN each line is one event (no field_count row,
    no extra line) and the user agent is kept, cleaned of C0 controls only as Snowplow cleans it
    (NEL and the Unicode separators stay); CRLF files read the same.
    """
    lines, agents = [], []
    for n, chars in enumerate(separators):
        agent = "Agent" + "".join(f"{c}part{i}" for i, c in enumerate(chars))
        cells = tracker_line(n).split("\t")
        cells[LEGACY_FIELDS.index("cs(User-Agent)")] = agent
        lines.append("\t".join(cells))
        agents.append(stored(agent))
    data = log_of(lines)
    for payload in (data, data.replace(b"\n", b"\r\n")):
        run = run_core(payload, canonicalizer=CANON)
        assert not run.bad and run.summary.lines_read == len(lines) + 2
        assert [e["useragent"] for e in run.events] == agents


# ================================================================================ A07
def test_a07_a_line_over_the_kinesis_record_limit_is_a_truncated_size_violation_in_s3(aws: None) -> None:
    """Reliability catalogue A07: a 2 MiB line, twice what one Kinesis record may hold.

    GIVEN a log with a 2 MiB line between good ones WHEN Extract ships it THEN the line is one
    size_violation bad row in S3 with its real size and a payload truncated to 64 KiB, the other
    lines are shipped, and every record on stream 1 is within 1 MiB.
    """
    chain = Chain.create(chain_config())
    huge = "x" * (2 * 1024 * 1024)
    data = gzip.compress(log_of([tracker_line(1), huge, tracker_line(2)]))
    _, result = _extract(chain, "cf/E1.2024-11-15-10.huge.gz", data)
    assert (result["outcome"], result["lines_shipped"], result["bad"]) == ("complete", 2, 1)
    [(key, body)] = chain.objects(chain.config.resources.bad_prefix).items()
    assert key.startswith("bad/size_violation/")
    payload = json.loads(body)["data"]["payload"]
    assert payload["size"] == len(huge) and payload["truncated"] is True
    assert len(payload["raw"].encode()) <= 64 * 1024 and payload["source"]["line"] == 4
    records = chain.stream_records(chain.config.resources.raw_stream)
    assert records and all(len(r.data) + len(r.partition_key.encode()) <= 1024 * 1024 for r in records)


# ================================================================================ A08
def _corrupt(kind: str) -> bytes:
    data = gzip.compress(log_of([tracker_line(n) for n in range(30)]), mtime=0)
    if kind == "truncated":
        return data[: len(data) * 2 // 3]
    if kind == "crc":
        damaged = bytearray(data)
        damaged[-8] ^= 0xFF  # the trailer's CRC32
        return bytes(damaged)
    if kind == "trailing_garbage":
        return data + b"not gzip at all"
    return log_of([tracker_line(n) for n in range(30)])  # plain text under a .gz name


@pytest.mark.parametrize("kind", ["truncated", "crc", "trailing_garbage", "plain_text"])
def test_a08_bad_gzip_is_one_file_level_bad_row_after_the_lines_before_it_and_is_not_retried(
    aws: None, kind: str
) -> None:
    """Reliability catalogue A08: truncated, CRC error, trailing garbage, plain text named .gz.

    GIVEN a damaged gzip object WHEN Extract reads it THEN the complete lines before the damage
    are shipped (a prefix of the file, in order), one corrupt_compression bad row naming the
    object is written, every line is accounted for, the ledger says COMPLETE, and a second
    notification is a no-op: the object is not retried forever.
    """
    chain = Chain.create(chain_config())
    key = f"cf/E1.2024-11-15-10.{kind}.gz"
    notice = chain.upload(key, _corrupt(kind))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    [result] = extract(event, FakeLambdaContext(), chain.extract_deps())["objects"]
    assert result["outcome"] == "complete" and result["bad"] == 1
    assert result["lines_read"] == result["lines_shipped"] + result["bad"] + result["skipped"]
    shipped = sorted(n for b in chain.raw_batches() for n in b.line_numbers)
    assert shipped == list(range(3, 3 + result["lines_shipped"]))
    if kind in ("crc", "trailing_garbage"):
        assert result["lines_shipped"] == 30
    elif kind == "truncated":
        assert 0 < result["lines_shipped"] < 30
    [(bad_key, body)] = chain.objects(chain.config.resources.bad_prefix).items()
    row = json.loads(body)
    assert bad_key.startswith("bad/corrupt_compression/") and row["data"]["failure"]["kind"] == "corrupt_compression"
    assert row["data"]["payload"]["source"]["object"] == f"s3://{notice.bucket}/{key}"
    entry = chain.ledger().get(ObjectId(notice.bucket, key, notice.etag))
    assert entry is not None and entry.status == "COMPLETE"
    [again] = extract(event, FakeLambdaContext(), chain.extract_deps())["objects"]
    assert again["outcome"] == "duplicate"


# ================================================================================ A11
_status_like = st.one_of(
    st.sampled_from(
        ["200", "404", "-", "abc", "20", "2000", "٢٠٠", "²⁰⁰", "２００", " 200", "-1", "99999999999999999999"]
    ),
    st.text(alphabet="0123456789٠١٢३४５²-x ", max_size=6),
)


@PROFILE
@given(status=_status_like, sc_bytes=_status_like)
def test_a11_status_and_byte_count_are_ascii_numbers_or_a_field_invalid_row_naming_them(
    status: str, sc_bytes: str
) -> None:
    """Reliability catalogue A11: ``sc-status`` and ``sc-bytes`` of any shape, Unicode digits too.

    GIVEN any value of the two numeric log fields WHEN processed THEN the line is an event exactly
    when ``sc-status`` is three ASCII digits (or ``-``) and ``sc-bytes`` is ASCII digits (or ``-``);
    otherwise it is one field_invalid row naming each bad field.  Events encode to Parquet.
    """
    line = tracker_line(0, status="200").split("\t")
    line[LEGACY_FIELDS.index("sc-status")] = status or "-"
    line[LEGACY_FIELDS.index("sc-bytes")] = sc_bytes or "-"
    run = run_core(log_of(["\t".join(line)]), canonicalizer=CANON)

    def ascii_digits(text: str) -> bool:
        return text.isascii() and text.isdigit()

    status_ok = status in ("", "-") or (len(status) == 3 and ascii_digits(status))
    bytes_ok = sc_bytes in ("", "-") or ascii_digits(sc_bytes)
    if status_ok and bytes_ok:
        assert len(run.events) == 1 and not run.bad
        parquet_round_trip(run.events)
    else:
        [row] = run.bad
        assert row.kind is FailureKind.FIELD_INVALID
        named = {m.split(":", 1)[0] for m in row.messages}
        assert named == {name for name, ok in (("sc-status", status_ok), ("sc-bytes", bytes_ok)) if not ok}


# ================================================================================ A12
_percentish = st.text(alphabet="%25EFzZ0aA+ ", max_size=24)


@PROFILE
@given(value=_percentish)
def test_a12_any_percent_sequence_decodes_deterministically_or_is_kept_and_flagged(value: str) -> None:
    """Reliability catalogue A12: ``%2520``, ``%zz``, truncated ``%E2%82``, ``+``, in any mix.

    GIVEN a logged query value made of percent signs, hex digits and ``+`` WHEN transformed
    twice THEN it never crashes, both runs agree, and once CloudFront's doubled ``%25`` is undone
    the value is either form-decoded (an invalid escape such as ``%zz`` left as it is) or, when
    its escapes are not UTF-8, kept exactly as logged and tagged ``invalid_percent_encoding:page``.
    """
    data = log_of([LogBuilder(fields=33).line(query=f"e=pv&page={value}", request_id="r-1")])
    first, second = run_core(data, canonicalizer=CANON), run_core(data, canonicalizer=CANON)
    assert first.events == second.events and not first.bad
    event = first.event
    undone = value.replace("%25", "%")
    flagged = "invalid_percent_encoding:page" in (event.get("etl_tags") or "").split(",")
    try:
        decoded = unquote_plus(undone, errors="strict")
    except UnicodeDecodeError:
        assert flagged and event["page_title"] == undone
    else:
        assert not flagged and event.get("page_title") == (stored(decoded) or None)
    parquet_round_trip([event])


def test_a12_plus_is_a_space_in_query_values_and_literal_when_encoded_or_in_a_path() -> None:
    """Reliability catalogue A12: ``+`` in a query value against ``+`` in a path.

    GIVEN ``page=a+b``, ``page=a%2Bb`` and a page URL whose path and query both hold ``%2B``
    WHEN transformed THEN ``+`` in a form value is a space, an encoded ``+`` is a ``+``, and the
    URL's path keeps its ``+`` (a path is not form-encoded).
    """
    url = "https%3A%2F%2Fshop.example%2Fa%2Bb%20c%3Fq%3Da%2Bb"
    log = LogBuilder(fields=33)
    for n, query in enumerate(["e=pv&page=a+b", "e=pv&page=a%2Bb", f"e=pv&url={url}"]):
        log.add(query=query.replace("%", "%25"), request_id=f"r-{n}")
    spaced, plus, located = run_core(log.to_bytes(), canonicalizer=CANON).events
    assert (spaced["page_title"], plus["page_title"]) == ("a b", "a+b")
    assert located["page_urlpath"] == "/a+b c" and located["page_urlquery"] == "q=a+b"


# ================================================================================ A13
INJECTIONS = [
    "tab\there", "new\nline", "carriage\rreturn", "quote\" and 'single'", "pipe|pipe", "back\\slash",
    "nul\x00byte", "=cmd|'/C calc'!A0", "'; DROP TABLE x;--", "${jndi:ldap://x}", "\x1b[31mred\x1b[0m",
    "\u2028line separator", "{\"json\": true}",
]  # fmt: skip


def test_a13_injection_strings_survive_parquet_and_the_stream_2_json_lines_intact() -> None:
    """Reliability catalogue A13: stored as data, one record per input line, columns intact.

    GIVEN tracker hits whose category, title, user agent and referrer carry control characters,
    quotes, pipes, NUL, spreadsheet formulas, SQL, JNDI lookups and ANSI escapes WHEN transformed,
    packed as stream-2 JSON lines and written to Parquet THEN each stream-2 chunk has exactly one
    line per event, every value is kept (only control characters cleaned, as Snowplow does), and
    decoding either output gives back exactly the event's values.
    """
    log = LogBuilder(fields=33)
    for n, s in enumerate(INJECTIONS):
        log.add(
            query=tracker_query(
                {"e": "se", "se_ca": s, "se_ac": "a", "page": s, "refr": "https://x.example.net/?q=" + s}
            ),
            user_agent="Agent " + s,
            request_id=f"r-{n}",
        )
    run = run_core(log.to_bytes(), canonicalizer=CANON)
    assert not run.bad and len(run.events) == len(INJECTIONS)
    chunks = list(pack_events((encode_event(e) for e in run.events), 4096))
    assert sum(chunk.count(b"\n") for chunk in chunks) == len(INJECTIONS)
    decoded = [e for chunk in chunks for e in decode_events(chunk)]
    back = parquet_round_trip(run.events)
    for s, event, streamed, kept in zip(INJECTIONS, run.events, decoded, back, strict=True):
        assert event["se_category"] == event["page_title"] == stored(s) and event["useragent"] == "Agent " + stored(s)
        for column in ("se_category", "page_title", "useragent", "page_referrer"):
            assert streamed[column] == kept[column] == event[column]


# ================================================================================ A14
VALID_RAW = encode_raw(
    RawBatch("b", "cf/k.gz", "e", 1, " ".join(LEGACY_FIELDS), (3, 4, 5), tuple(tracker_line(n) for n in range(3)))
)


def _flipped(at: int, mask: int) -> bytes:
    return VALID_RAW[:at] + bytes([VALID_RAW[at] ^ mask]) + VALID_RAW[at + 1 :]


@PROFILE
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda b: b"\x01" + b),
        st.binary(max_size=200).map(lambda b: b"\x02" + b),
        st.integers(0, len(VALID_RAW) - 1).map(lambda cut: VALID_RAW[:cut]),
        st.builds(_flipped, st.integers(1, len(VALID_RAW) - 1), st.integers(1, 255)),
    )
)
def test_a14_undecodable_stream_1_records_raise_only_decode_errors_and_become_one_bad_row(data: bytes) -> None:
    """Reliability catalogue A14: garbage, truncated and bit-flipped Avro, unknown versions.

    GIVEN any bytes as a stream-1 record WHEN decoded THEN the decoder either returns a batch or
    raises RecordDecodeError, nothing else; and the transform never raises: an undecodable record
    is one record_invalid bad row carrying its bytes, a decodable one accounts for every line.
    """
    try:
        decode_raw(data)
    except RecordDecodeError:
        decodable = False
    else:
        decodable = True
    out = transform_raw_record(data, CANON, 4096, origin="stream/shard-0/49", arrival_ms=1)
    assert out.conserved
    if not decodable:
        [row] = out.bad
        assert row.kind is FailureKind.RECORD_INVALID and row.raw == data and not out.events


# ================================================================================ A15
@pytest.mark.parametrize(
    "key",
    [
        "cf/with space.gz",
        "cf/plus+sign.gz",
        "cf/percent%25.gz",
        "cf/ünïcode-日本.gz",
        "cf/a%2Fb.gz",
        "cf/eq=and&amp.gz",
    ],
)
def test_a15_a_real_moto_notification_of_an_awkward_key_finds_the_object(aws: None, key: str) -> None:
    """Reliability catalogue A15: the key as S3 itself encodes it in a notification (through SQS).

    GIVEN a log bucket notifying an SQS queue (moto) WHEN an object with spaces, ``+``, ``%``,
    Unicode, a literal ``%2F`` or ``=``/``&`` in its key is put THEN the message S3 sent, handed
    to Extract, decodes to the exact key and the object is read.
    """
    chain = Chain.create(chain_config())
    sqs = make_client("sqs", chain.config.aws)
    queue = sqs.create_queue(QueueName="log-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = chain.config.resources.log_bucket
    chain.s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    chain.upload(key, gzip.compress(log_of([tracker_line(1)]), mtime=0))
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    notifications = [json.loads(b) for b in bodies if "Records" in json.loads(b)]
    assert len(notifications) == 1
    [result] = extract(sqs_wrapped(notifications[0]), FakeLambdaContext(), chain.extract_deps())["objects"]
    assert (result["outcome"], result["lines_shipped"]) == ("complete", 1)
    assert {b.key for b in chain.raw_batches()} == {key}


# ================================================================================ A16
_EVENT_KEYS = ["Records", "body", "s3", "eventSource", "eventName", "messageId", "Event", "detail-type", "detail"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*_EVENT_KEYS, "bucket", "object", "key", "name"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROFILE
@given(_json)
def test_a16_any_json_event_parses_without_raising_and_every_unknown_part_is_counted(event: Any) -> None:
    """Reliability catalogue A16: whatever Lambda is invoked with, parsing is total.

    GIVEN any JSON value WHEN parsed as Extract's event THEN it never raises, and it yields
    notices or counted ignores; every malformed part is attributed to its SQS message or to
    the direct invocation, so the handler can refuse it.
    """
    notices = parse_notifications(event)
    malformed = sum(n for reason, n in notices.ignored.items() if reason.startswith("malformed"))
    assert (malformed > 0) == bool(notices.malformed_direct or notices.malformed_messages)
    if not notices.objects and not notices.ignored:
        assert isinstance(event, dict) and event.get("Records") == []


def test_a16_a_test_event_is_ignored_but_a_malformed_event_fails_instead_of_succeeding(aws: None) -> None:
    """Reliability catalogue A16: ``s3:TestEvent``, other event types, and events that are not notifications.

    GIVEN a direct s3:TestEvent or ObjectRemoved event THEN Extract succeeds reading nothing.
    GIVEN a direct event without ``Records`` THEN the invocation fails (MalformedNotificationError,
    not retryable) so it reaches the on-failure destination.  GIVEN an SQS batch with a good
    notice, a test event and a message whose body is not JSON THEN the good object is extracted
    and only the broken message is a batch item failure (the queue's DLQ gets it).
    """
    chain = Chain.create(chain_config())
    bucket = chain.config.resources.log_bucket
    deps = chain.extract_deps()
    for event in (s3_test_event(bucket), s3_object_created_event(bucket, "cf/x.gz", event_name="ObjectRemoved:Delete")):
        assert extract(event, FakeLambdaContext(), deps) == {"objects": [], "batchItemFailures": []}
    no_bucket = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}}]}
    for malformed in ({"Records": "nope"}, {"detail": {}}, no_bucket, ["not", "a", "mapping"]):
        with pytest.raises(MalformedNotificationError) as caught:
            extract(malformed, FakeLambdaContext(), deps)
        assert caught.value.retryable is False
    notice = chain.upload("cf/E1.2024-11-15-10.good.gz", gzip.compress(log_of([tracker_line(1)]), mtime=0))
    batch = sqs_wrapped([s3_object_created_event(bucket, notice.key, etag=notice.etag), s3_test_event(bucket)])
    broken = dict(batch["Records"][0], messageId="broken-1", body="{not json")
    batch["Records"].append(broken)
    response = extract(batch, FakeLambdaContext(), deps)
    assert [(r["outcome"], r["lines_shipped"]) for r in response["objects"]] == [("complete", 1)]
    assert response["batchItemFailures"] == [{"itemIdentifier": "broken-1"}]


# ================================================================================ A17
@PROFILE
@given(st.randoms(use_true_random=False))
def test_a17_events_and_their_partitions_do_not_depend_on_arrival_order(rng: random.Random) -> None:
    """Reliability catalogue A17: late and out-of-order lines and files.

    GIVEN lines from several days and hours, split into files in a shuffled order WHEN each file
    is processed THEN the set of (event id, partition) is the same as for the ordered input, and
    each event's partition is the hour of its own request time.
    """
    moments = [(f"2024-11-{d:02d}", f"{h:02d}:{m:02d}:07") for d in (14, 15, 16) for h in (0, 9, 23) for m in (0, 59)]
    lines = [tracker_line(n, date=day, time=clock) for n, (day, clock) in enumerate(moments)]

    def outcome(order: list[str]) -> Counter[tuple[str, PartitionKey]]:
        seen: Counter[tuple[str, PartitionKey]] = Counter()
        for start in range(0, len(order), 5):  # files of five lines each
            for event in run_core(log_of(order[start : start + 5]), canonicalizer=CANON).events:
                key = PartitionKey.of(event["collector_tstamp"])
                assert event["collector_tstamp"] // 3_600_000 * 3_600_000 == _hour_start(key)
                seen[(event["event_id"], key)] += 1
        return seen

    shuffled = list(lines)
    rng.shuffle(shuffled)
    assert outcome(shuffled) == outcome(lines)
    assert len(outcome(lines)) == len(moments)


def _hour_start(key: PartitionKey) -> int:
    return int(datetime.fromisoformat(f"{key.date}T{key.hour:02d}:00:00").replace(tzinfo=UTC).timestamp() * 1000)
