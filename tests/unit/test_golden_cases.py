"""Golden fixtures: every ``tests/cases/*.log`` against its hand-checked ``.expected.json``.

Each expectation file holds:

* ``config`` -- configuration overrides for the run;
* ``summary`` -- line accounting (lines_read, good, bad, skips and bad rows by reason/kind);
* ``events`` -- the good events in line order, each with a selection of fields (``null``
  meaning the field must be absent); keys starting with ``_`` are notes.  ``event_id`` is
  either the literal id (from ``eid``) or ``{"derived_from": "x-edge-request-id"}`` /
  ``{"derived_from": "file+line"}``; ``unstruct_event`` / ``contexts`` are compared as JSON;
* ``bad_rows`` -- per failing line: its number, kind, message count and words the messages
  must mention.

The values were worked out from the SPEC (tracker protocol, CloudFront encoding, enrichment
rules), not copied from the code's output.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.schema import validate
from tests.conftest import CoreRun, make_config, run_core

CASES = Path(__file__).resolve().parents[1] / "cases"
LOGS = sorted(CASES.glob("*.log"))
JSON_FIELDS = frozenset({"unstruct_event", "contexts"})


def _expected(log: Path) -> dict[str, Any]:
    return json.loads(log.with_name(log.stem + ".expected.json").read_text("utf-8"))


def _run(log: Path, expected: dict[str, Any], source: str | None = None) -> CoreRun:
    config = make_config(expected.get("config") or None)
    return run_core(log.read_bytes(), config=config, source=source or f"s3://logs-bucket/cf/{log.name}")


def test_golden_corpus_is_present() -> None:
    assert len(LOGS) >= 4
    for log in LOGS:
        assert log.with_name(log.stem + ".expected.json").is_file(), log


@pytest.fixture(params=LOGS, ids=[p.stem for p in LOGS])
def case(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], CoreRun]:
    log: Path = request.param
    expected = _expected(log)
    return log, expected, _run(log, expected)


def test_given_golden_log_when_processed_then_summary_matches(case: tuple[Path, dict[str, Any], CoreRun]) -> None:
    _, expected, run = case
    want = expected["summary"]
    got = run.summary
    assert (got.lines_read, got.good, got.bad) == (want["lines_read"], want["good"], want["bad"])
    assert dict(got.skipped_by_reason) == want["skipped_by_reason"]
    assert dict(got.bad_by_kind) == want["bad_by_kind"]


def test_given_golden_log_when_processed_then_selected_event_fields_match(
    case: tuple[Path, dict[str, Any], CoreRun],
) -> None:
    _, expected, run = case
    assert len(run.events) == len(expected["events"])
    for want, got in zip(expected["events"], run.events, strict=True):
        where = f"event of line {want.get('_line')}"
        assert validate(got) == [], where
        for key, value in want.items():
            if key.startswith("_") or key == "event_id" and isinstance(value, dict):
                continue
            actual = got.get(key)
            if key in JSON_FIELDS and actual is not None:
                actual = json.loads(actual)
            assert actual == value, f"{where}: {key}"
            if isinstance(value, float):
                assert type(actual) is float, f"{where}: {key}"


def test_given_golden_log_when_processed_then_bad_rows_match(case: tuple[Path, dict[str, Any], CoreRun]) -> None:
    log, expected, run = case
    got = [(b.source.line, b.kind.value) for b in run.bad]
    assert got == [(b["line"], b["kind"]) for b in expected["bad_rows"]]
    lines = log.read_text("utf-8").split("\n")
    for want, bad in zip(expected["bad_rows"], run.bad, strict=True):
        assert len(bad.messages) == want["messages"], bad.messages
        for word in want.get("mentions", []):
            assert any(word in m for m in bad.messages), (word, bad.messages)
        assert bad.raw == lines[want["line"] - 1]
        doc = bad.to_json()
        assert doc["schema"] == f"iglu:com.clickstream_etl.badrows/{want['kind']}/jsonschema/1-0-0"
        assert doc["data"]["payload"]["source"]["line"] == want["line"]


def test_given_golden_log_when_processed_then_event_ids_follow_their_derivation(
    case: tuple[Path, dict[str, Any], CoreRun],
) -> None:
    log, expected, run = case
    ids = [e["event_id"] for e in run.events]
    assert len(set(ids)) == len(ids), "event ids must be unique within a file"
    # the same file under another folder/bucket keeps every id; under another name only request-derived ids
    moved = _run(log, expected, source=f"/tmp/local-copy/{log.name}")
    renamed = _run(log, expected, source=f"s3://logs-bucket/cf/renamed-{log.name}")
    for index, want in enumerate(expected["events"]):
        spec = want["event_id"]
        got = ids[index]
        assert str(uuid.UUID(got)) == got
        assert moved.events[index]["event_id"] == got
        if isinstance(spec, str):
            assert got == spec
        elif spec["derived_from"] == "x-edge-request-id":
            assert renamed.events[index]["event_id"] == got
        else:
            assert spec["derived_from"] == "file+line"
            assert renamed.events[index]["event_id"] != got


def test_given_golden_log_when_processed_twice_then_identical(case: tuple[Path, dict[str, Any], CoreRun]) -> None:
    log, expected, run = case
    again = _run(log, expected)
    assert again.events == run.events
    assert [(b.kind, b.messages, b.raw) for b in again.bad] == [(b.kind, b.messages, b.raw) for b in run.bad]
