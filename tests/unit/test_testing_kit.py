"""The public testing kit: builders, in-memory sinks, the Transform runner and the assertion helpers.

GIVEN lines built with tracker_hit / cloudfront_line inside cloudfront_log
WHEN they are gzipped and backfilled, or run through the Transform handler
THEN the events carry exactly what the builders were given, and the helpers fail with useful messages.
"""

from __future__ import annotations

import base64
import gzip
import inspect
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pyarrow.dataset as ds
import pytest

import pipeline.testing as kit
from pipeline.app.backfill import plan_sources, run_backfill
from pipeline.aws.kinesis import KinesisPutError, OutRecord
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.config import load_config
from pipeline.formats.cloudfront import LEGACY_FIELDS
from pipeline.summary import FileSummary
from pipeline.testing import (
    MemoryBadRowSink,
    MemoryRecordWriter,
    assert_conserved,
    assert_event_matches,
    assert_no_bad_rows,
    assert_no_duplicates,
    cloudfront_line,
    cloudfront_log,
    contexts,
    entity,
    gzip_log,
    run_transform,
    self_describing_event,
    tracker_hit,
)

ROOT = Path(__file__).resolve().parents[2]
EID = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
KIT_URL = "https://kit.example.com/a?x=1&y=%2F"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"


def acceptance_line() -> str:
    return tracker_hit(e="pv", url=KIT_URL, eid=EID, aid="kit", p="web", tv="js-3.0.0")


def fields_of(line: str) -> dict[str, str]:
    values = line.split("\t")
    assert len(values) == 33
    return dict(zip(LEGACY_FIELDS, values, strict=True))


# ------------------------------------------------------------------ the acceptance line
def test_the_acceptance_line_gzipped_and_backfilled_gives_one_event_with_its_page_url(tmp_path: Path) -> None:
    source = tmp_path / "logs" / "E2KITEXAMPLE.2024-11-15-19.0a1b2c3d.gz"
    source.parent.mkdir()
    source.write_bytes(gzip.compress(cloudfront_log([acceptance_line()]).encode("utf-8")))

    summary = run_backfill(plan_sources(str(source)), tmp_path / "out", load_config(environ={}), workers=1)

    assert (summary.lines_read, summary.good, summary.bad) == (3, 1, 0)
    rows = ds.dataset(tmp_path / "out" / "events", partitioning="hive").to_table().to_pylist()
    assert len(rows) == 1
    assert rows[0]["page_url"] == KIT_URL
    assert rows[0]["page_urlquery"] == "x=1&y=%2F"
    assert (rows[0]["event_id"], rows[0]["app_id"], rows[0]["platform"]) == (EID, "kit", "web")


def test_the_query_is_encoded_twice_as_cloudfront_logs_it() -> None:
    query = fields_of(acceptance_line())["cs-uri-query"]
    # the tracker's encoding of the URL, then CloudFront's own encoding of every '%'
    assert "url=https%253A%252F%252Fkit.example.com%252Fa%253Fx%253D1%2526y%253D%25252F" in query
    params = dict(pair.split("=", 1) for pair in unquote(query).split("&"))
    assert unquote(params["url"]) == KIT_URL
    tracker = (params["e"], params["eid"], params["aid"], params["p"], params["tv"])
    assert tracker == ("pv", EID, "kit", "web", "js-3.0.0")


def test_cloudfront_log_writes_the_version_and_fields_headers() -> None:
    text = cloudfront_log([acceptance_line(), "junk"])
    lines = text.split("\n")
    assert lines[0] == "#Version: 1.0"
    assert lines[1] == "#Fields: " + " ".join(LEGACY_FIELDS)
    assert lines[2:] == [acceptance_line(), "junk", ""]
    assert cloudfront_log([], fields=12).split("\n")[1] == "#Fields: " + " ".join(LEGACY_FIELDS[:12])


def test_log_fields_are_overridable_and_headers_encoded_as_cloudfront_does() -> None:
    line = tracker_hit(
        e="pv",
        url="https://a.example/",
        user_agent="curl/8.4.0 (kit test)",
        client_ip="198.51.100.7",
        date="2024-12-01",
        time="01:02:03",
        cs_cookie="a=b c",
    )
    fields = fields_of(line)
    assert fields["cs(User-Agent)"] == "curl/8.4.0%20(kit%20test)"
    assert (fields["c-ip"], fields["date"], fields["time"]) == ("198.51.100.7", "2024-12-01", "01:02:03")
    assert fields["cs(Cookie)"] == "a=b%20c"
    assert fields["cs-uri-stem"] == "/i"

    event = run_transform([line]).event
    assert_event_matches(
        event,
        # the shipped configuration anonymises the last octet of the client IP
        {"useragent": "curl/8.4.0 (kit test)", "user_ipaddress": "198.51.100.0", "page_url": "https://a.example/"},
    )
    assert event["collector_tstamp"] == 1733014923000  # 2024-12-01T01:02:03Z


def test_cloudfront_line_sets_any_field_and_rejects_unknown_names() -> None:
    fields = fields_of(cloudfront_line(uri_stem="/index.html", status=404, sc_content_type="text/html"))
    assert (fields["cs-uri-stem"], fields["sc-status"]) == ("/index.html", "404")
    assert fields["sc-content-type"] == "text/html"
    assert fields["cs-uri-query"] == "-"
    with pytest.raises(TypeError, match="uri_stemm"):
        cloudfront_line(uri_stemm="/typo")
    with pytest.raises(TypeError, match="builds the query"):
        tracker_hit(query="e=pv")


def test_self_describing_event_and_contexts_are_base64url_and_reach_the_event() -> None:
    event_param = self_describing_event(LINK_CLICK, {"targetUrl": "https://x.example/"})
    context_param = contexts(entity(WEB_PAGE, {"id": EID}))
    assert set(event_param) == {"ue_px"} and set(context_param) == {"cx"}
    encoded = event_param["ue_px"]
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert decoded["data"] == {"schema": LINK_CLICK, "data": {"targetUrl": "https://x.example/"}}

    run = run_transform([tracker_hit(e="ue", aid="kit", p="web", tv="js", **event_param, **context_param)])
    assert_no_bad_rows(run)
    event = run.event
    assert json.loads(event["unstruct_event"])["data"]["schema"] == LINK_CLICK
    assert [e["schema"] for e in json.loads(event["contexts"])["data"]] == [WEB_PAGE]


def test_the_plain_json_forms_work_too() -> None:
    event_param = self_describing_event(LINK_CLICK, {"targetUrl": "https://x.example/"}, base64url=False)
    context_param = contexts(entity(WEB_PAGE, {"id": EID}), base64url=False)
    assert set(event_param) == {"ue_pr"} and set(context_param) == {"co"}
    event = run_transform([tracker_hit(e="ue", aid="kit", p="web", tv="js", **event_param, **context_param)]).event
    assert json.loads(event["unstruct_event"])["data"]["data"] == {"targetUrl": "https://x.example/"}
    assert json.loads(event["contexts"])["data"][0]["data"] == {"id": EID}


def test_run_transform_accounts_for_every_line() -> None:
    run = run_transform(cloudfront_log([acceptance_line(), "not\ta\tlog\tline", tracker_hit(e="zz")]))
    assert_conserved(run.summary)
    assert (run.summary.lines_read, run.summary.good, run.summary.bad) == (3, 1, 2)
    assert {row.kind for row in run.bad} == {FailureKind.FIELD_COUNT, FailureKind.TRACKER_PROTOCOL}
    assert run.batch_item_failures == ()
    assert [e["event_id"] for e in run.stream.events()] == [EID]  # what the handler put on stream 2


def test_run_transform_of_nothing_invokes_nothing() -> None:
    run = run_transform(cloudfront_log([]))
    assert run.events == () and run.summary.lines_read == 0 and run.stream.puts == 0


def test_assert_no_bad_rows_takes_a_session_like_object_or_rows() -> None:
    row = BadRow(FailureKind.FIELD_COUNT, ("3 fields, expected 33",), SourceRef("s3://b/k", 3), "x\ty\tz")

    class Session:
        def bad(self) -> list[BadRow]:
            return [row]

    for holder in (Session(), [row]):
        with pytest.raises(AssertionError, match="field_count at s3://b/k line 3"):
            assert_no_bad_rows(holder)
    with pytest.raises(TypeError, match="list of lines"):
        cloudfront_log("one string")


def test_gzip_log_is_deterministic() -> None:
    text = cloudfront_log([acceptance_line()])
    assert gzip_log(text) == gzip_log(text.encode())
    assert gzip.decompress(gzip_log(text)).decode() == text


# ------------------------------------------------------------------ in-memory sinks
def test_memory_record_writer_keeps_records_by_key_and_fails_on_demand() -> None:
    writer = MemoryRecordWriter(fail_puts=1)
    with pytest.raises(KinesisPutError):
        writer.put([OutRecord(b"a", "k1")])
    assert writer.records == []
    writer.put([OutRecord(b"a", "k1"), OutRecord(b"b", "k2")])
    writer.put([OutRecord(b"a2", "k1")])  # a redelivered record replaces its first copy
    assert [(r.partition_key, r.data) for r in writer.records] == [("k1", b"a2"), ("k2", b"b")]
    assert writer.puts == 2


def test_memory_bad_row_sink_replaces_a_rewritten_batch_and_tees_to_its_inner_sink() -> None:
    inner = MemoryBadRowSink()
    sink = MemoryBadRowSink(inner=inner)
    row = BadRow(FailureKind.FIELD_COUNT, ("3 fields, expected 33",), SourceRef("s3://b/k", 3), "x\ty\tz")
    keys = sink.write([row], stage="transform", batch_id="b1", etl_tstamp=1_731_700_000_000)
    sink.write([row], stage="transform", batch_id="b1", etl_tstamp=1_731_700_000_000)
    assert sink.rows == [row] and inner.rows == [row]
    assert keys == ["bad/field_count/date=2024-11-15/transform-b1.jsonl"]
    assert sink.write([], stage="transform", batch_id="b2", etl_tstamp=0) == []


# ------------------------------------------------------------------ assertions
def test_assert_conserved_prints_the_equation() -> None:
    assert_conserved(FileSummary("s", lines_read=3, good=1, bad=1, skipped=1))
    with pytest.raises(AssertionError, match=r"lines_read 5 != good 1 \+ bad 1 \+ skipped 1 .*\+2 unaccounted"):
        assert_conserved(FileSummary("s", lines_read=5, good=1, bad=1, skipped=1))


def test_assert_no_duplicates_names_the_duplicated_keys() -> None:
    events = [{"event_id": "a", "event_fingerprint": "f"}, {"event_id": "a", "event_fingerprint": "g"}]
    assert_no_duplicates(events)
    with pytest.raises(AssertionError, match=r"'event_id': 'a'\}: 2 times"):
        assert_no_duplicates(events, by=("event_id",))


def test_assert_no_bad_rows_prints_every_bad_row() -> None:
    run = run_transform([acceptance_line(), tracker_hit(e="zz", eid="not-a-uuid")])
    with pytest.raises(AssertionError) as failure:
        assert_no_bad_rows(run)
    message = str(failure.value)
    assert "1 bad rows ({'tracker_protocol_violation': 1})" in message
    assert "line 4" in message and "not-a-uuid" in message  # where it came from, and its raw line
    assert_no_bad_rows(run_transform([acceptance_line()]))


def test_assert_event_matches_lists_every_difference() -> None:
    event = run_transform([acceptance_line()]).event
    assert_event_matches(event, {"event": "page_view", "page_urlhost": "kit.example.com", "app_id": "kit"})
    with pytest.raises(AssertionError) as failure:
        assert_event_matches(event, {"app_id": "other", "page_urlhots": "kit.example.com", "event": "page_view"})
    message = str(failure.value)
    assert "2 of 3 fields" in message
    assert "app_id: expected 'other', got 'kit'" in message
    assert "page_urlhots: missing (did you mean 'page_urlhost'?)" in message


def test_assert_event_matches_matches_nested_mappings_partially() -> None:
    assert_event_matches({"ctx": {"a": 1, "b": 2}}, {"ctx": {"a": 1}})
    with pytest.raises(AssertionError, match=r"ctx.a: expected 2, got 1"):
        assert_event_matches({"ctx": {"a": 1, "b": 2}}, {"ctx": {"a": 2}})


# ------------------------------------------------------------------ the public surface
def test_importing_the_kit_loads_no_stage_and_no_heavy_dependency() -> None:
    code = (
        "import sys, pipeline.testing, pipeline.testing.plugin\n"
        "heavy = ('pyarrow', 'boto3', 'botocore', 'moto', 'extract', 'transform', 'load', 'pipeline.app')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('pipeline.app'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == ""


def test_every_public_name_is_documented_in_code_and_readme_and_classes_are_not_tests() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("### Testing kit") :]
    for name in kit.__all__:
        value = getattr(kit, name)
        assert f"`{name}" in section or f" {name}" in section, f"{name} is not in the README's Testing kit section"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
        if inspect.isclass(value) and not issubclass(value, Exception):
            module = value.__module__
            if module.startswith("pipeline.testing"):
                assert value.__dict__.get("__test__", True) is False, f"{name} lacks __test__ = False"


def test_the_esm_simulator_is_public() -> None:
    calls: list[int] = []

    def handler(event: dict[str, object], _context: object) -> dict[str, object]:
        records = event["Records"]
        assert isinstance(records, list)
        calls.append(len(records))
        return {"batchItemFailures": []}

    records = [kit.KinesisRecord(b"x", "k", str(100 + n)) for n in range(5)]
    outcome = kit.simulate(records, handler, kit.EsmSettings(batch_size=2, maximum_retry_attempts=0))
    assert calls == [2, 2, 1]
    assert outcome.duplicates == 0 and not outcome.discarded
