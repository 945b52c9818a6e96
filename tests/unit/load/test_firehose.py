"""The Firehose transformation contract and its Lambda: ids, results, encoding, response size."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from load.firehose import MAX_RESPONSE_BYTES, transform_records
from load.firehose_handler import handle as handle_firehose
from pipeline.records import encode_event, pack_events
from pipeline.schema import ATOMIC_FIELDS
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import firehose_event
from tests.conftest import run_core


def _events(n: int) -> list[dict[str, object]]:
    builder = LogBuilder()
    for i in range(n):
        builder.add(uri_stem="/i", query=tracker_query({"e": "pv", "url": f"https://a.example/{i}", "page": "Ünï"}))
    return run_core(builder.to_gzip()).events


def test_given_event_chunks_when_transformed_then_ok_records_hold_redshift_json_lines() -> None:
    events = _events(5)
    data = next(pack_events((encode_event(e) for e in events), 1 << 20))
    response = handle_firehose(firehose_event([("r1", data), ("r2", b"")]))
    by_id = {r["recordId"]: r for r in response["records"]}
    assert by_id["r1"]["result"] == "Ok" and by_id["r2"]["result"] == "Dropped"
    rows = [json.loads(line) for line in base64.b64decode(by_id["r1"]["data"]).splitlines()]
    assert len(rows) == 5
    columns = [f.name for f in ATOMIC_FIELDS]
    assert set(rows[0]) <= set(columns) and "event_id" in rows[0] and None not in rows[0].values()
    assert rows[0]["collector_tstamp"].count(":") == 2 and rows[0]["page_title"] == "Ünï"
    assert rows[0]["event_id"] == events[0]["event_id"]


def test_given_records_that_are_not_ours_then_they_are_processing_failed_with_their_data() -> None:
    response = handle_firehose(firehose_event([("x", b"not json\n"), ("y", b"[1,2]\n")]))
    assert [r["result"] for r in response["records"]] == ["ProcessingFailed", "ProcessingFailed"]
    assert base64.b64decode(response["records"][0]["data"]) == b"not json\n"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"{}\n", b'{"a":1}\n{"b":2}\n'])), max_size=30)
)
def test_f17_every_record_id_comes_back_once_with_a_valid_result(payloads: list[bytes]) -> None:
    records = firehose_event([(f"id-{i}", p) for i, p in enumerate(payloads)])["records"]
    out, counts = transform_records(records)
    assert [r["recordId"] for r in out] == [r["recordId"] for r in records]
    assert all(r["result"] in {"Ok", "Dropped", "ProcessingFailed"} for r in out)
    for r in out:
        base64.b64decode(r["data"], validate=True)
    assert counts.ok + counts.dropped + counts.failed == len(records)


def test_f17_a_3_mb_input_keeps_the_response_under_6_mb() -> None:
    events = _events(40)
    chunk = next(pack_events((encode_event(e) for e in events), 1 << 20))
    copies = (3 * 1000 * 1000) // len(chunk) + 1
    records = firehose_event([(f"r{i}", chunk) for i in range(copies)])["records"]
    out, counts = transform_records(records)
    assert len(json.dumps({"records": out})) <= MAX_RESPONSE_BYTES
    assert counts.ok == copies  # a 3 MB input fits
    small, small_counts = transform_records(records, max_response_bytes=len(json.dumps({"records": out})) // 2)
    assert len(json.dumps({"records": small})) <= len(json.dumps({"records": out})) // 2
    assert small_counts.failed > 0 and small_counts.ok + small_counts.failed == copies  # overflow handed back, not lost


def test_wrongly_typed_events_fail_only_their_own_record() -> None:
    good = next(pack_events((encode_event(e) for e in _events(2)), 1 << 20))
    bad = [
        b'{"event_id":"x","collector_tstamp":"abc"}\n',
        b'{"foo":1}\n',
        b'{"event_id":"x","collector_tstamp":1e400}\n',
    ]
    response = handle_firehose(firehose_event([("ok", good), *[(f"b{i}", b) for i, b in enumerate(bad)]]))
    assert [r["result"] for r in response["records"]] == ["Ok"] + ["ProcessingFailed"] * len(bad)


def test_entity_json_reaches_the_lines_and_an_envelope_over_a_staging_column_is_left_out_and_counted() -> None:
    small, big = _events(2)
    small["contexts"] = json.dumps({"schema": "iglu:x/contexts/jsonschema/1-0-0", "data": [{"a": "é"}]})
    # 40,000 two-byte characters: 80,000 bytes of UTF-8, over VARCHAR(65535), though under 65,535 characters
    big["contexts"] = json.dumps(
        {"schema": "iglu:x/contexts/jsonschema/1-0-0", "data": ["é" * 40_000]}, ensure_ascii=False
    )
    big["unstruct_event"] = json.dumps({"schema": "iglu:x/unstruct_event/jsonschema/1-0-0", "data": {"k": 1}})
    data = next(pack_events((encode_event(e) for e in (small, big)), 1 << 20))
    out, counts = transform_records([{"recordId": "r", "data": base64.b64encode(data).decode()}])
    rows = [json.loads(line) for line in base64.b64decode(out[0]["data"]).splitlines()]
    assert rows[0]["contexts"] == small["contexts"]
    assert "contexts" not in rows[1] and rows[1]["unstruct_event"] == big["unstruct_event"]
    assert rows[1]["event_id"] == big["event_id"]  # the event itself still loads
    assert counts.oversize_entities == 1 and counts.events == 2
