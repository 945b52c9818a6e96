"""The output-equality oracle (issue 14): backfill's output stays the same while its code is optimised.

A small deterministic sample of each generator profile (classic and high-cardinality, malformed
lines included) is backfilled with ``--workers 1`` through the real CLI function, and the
output is reduced to digests compared with ``tests/unit/snapshots/output_oracle.json``:

* **layout**: every Parquet file's path under ``events/`` and its row count, and every bad-row
  file's ``<kind>/<source file>`` with its row count;
* **schema**: the Arrow schema of each Parquet file, field metadata and schema metadata included;
* **columns**: one sha256 per column over every file's rows, sorted by (event_id,
  event_fingerprint, collector_tstamp): the contents, not the file bytes, because the footer
  names the pyarrow version that wrote it (``created_by``);
* **bad rows**: one sha256 per field (flattened JSON path) per kind, rows in source-line order;
* **summary**: the counts of ``_summary.json`` (good, bad, skipped, duplicates, by kind and reason).

Run-dependent values are left out, each for its reason (see ``_RUN_DEPENDENT_*`` below); a failure
names the part and the column or field that differs.

To record new digests deliberately (after a change meant to alter the output, said in its commit)::

    python -m tests.unit.test_output_oracle --write      # or: CLICKSTREAM_WRITE_ORACLE=1 pytest this file
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "output_oracle.json"
WRITE_ENV = "CLICKSTREAM_WRITE_ORACLE"

# etl_tstamp is the wall-clock time a source file's processing started (the backfill's clock), so
# it differs on every run; its type stays in the schema digest and it must be set on every row.
_RUN_DEPENDENT_COLUMNS = frozenset({"etl_tstamp"})
# failure.timestamp is the wall-clock time the bad-row writer opened (backfill's BadRowWriter).
_RUN_DEPENDENT_BAD_ROW_FIELDS = frozenset({"data.failure.timestamp"})
# _summary.json's timings (seconds, lines/s) depend on the machine; sources name the temporary folder.
_SUMMARY_COUNTS = (
    "files",
    "failed_files",
    "lines_read",
    "good",
    "bad",
    "skipped",
    "rows_written",
    "duplicates_dropped",
    "bad_by_kind",
    "skipped_by_reason",
    "notices",
)
# A bad-row file is named <source file name>-<12 hex of the source's absolute path>.jsonl; the
# path is the test's temporary folder, so only the name is compared.
_FRAGMENT_DIGEST = re.compile(r"-[0-9a-f]{12}\.jsonl$")
_SORT_KEY = ("event_id", "event_fingerprint", "collector_tstamp")


def _sample_options() -> dict[str, Any]:
    from pipeline.testing.generate import GenerateOptions

    # 2 files x 1,500 lines over 2 hours (two partitions), 1 % malformed (every kind, twice or more).
    base = GenerateOptions(files=2, lines_per_file=1500, seed=14, hours=2, malformed_ratio=0.01)
    return {"classic": base, "high-cardinality": replace(base, profile="high-cardinality")}


def _canonical(value: Any) -> Any:
    """A JSON-able form of a Parquet value that is the same whenever the value is."""
    if isinstance(value, dt.datetime | dt.date | dt.time | decimal.Decimal):
        return value.isoformat() if not isinstance(value, decimal.Decimal) else str(value)
    if isinstance(value, float):
        return repr(value)  # every bit of the double, NaN and infinities included
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _sha(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(document: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(document, dict) and document:
        for key, value in document.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, document


def dataset_digest(dest: Path, logs: Path) -> dict[str, Any]:
    """The comparable digest of a backfill destination whose logs were read from ``logs``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    layout: dict[str, int] = {}
    schemas: dict[str, str] = {}
    columns: dict[str, list[Any]] = {}
    etl_tstamp_nulls = 0
    for path in sorted((dest / "events").rglob("*.parquet")):
        relative = path.relative_to(dest).as_posix()
        table = pq.read_table(path)
        layout[relative] = table.num_rows
        schemas[relative] = _sha(table.schema.to_string(show_field_metadata=True, show_schema_metadata=True))
        table = table.take(pc.sort_indices(table, sort_keys=[(name, "ascending") for name in _SORT_KEY]))
        for name in table.column_names:
            values = table.column(name).to_pylist()
            if name in _RUN_DEPENDENT_COLUMNS:
                etl_tstamp_nulls += values.count(None)
                continue
            columns.setdefault(name, []).extend(_canonical(values))  # files in path order: layout names them
    bad_fields: dict[str, dict[str, Any]] = {}
    for path in sorted((dest / "bad").rglob("*.jsonl")):
        relative = _FRAGMENT_DIGEST.sub("", path.relative_to(dest / "bad").as_posix())
        # The payload names the source by its absolute path, under the test's temporary folder.
        rows = [json.loads(line.replace(json.dumps(str(logs))[1:-1], "LOGS")) for line in path.read_text().splitlines()]
        layout[f"bad/{relative}"] = len(rows)
        rows.sort(key=lambda row: json.dumps(row["data"].get("payload"), sort_keys=True))
        fields: dict[str, list[Any]] = {}
        for number, row in enumerate(rows):
            for field, value in _flatten(row):
                if field not in _RUN_DEPENDENT_BAD_ROW_FIELDS:
                    fields.setdefault(field, []).append([number, value])
        bad_fields[relative] = {field: _sha(values) for field, values in sorted(fields.items())}
    summary = json.loads((dest / "_summary.json").read_text())
    return {
        "layout": layout,
        "schema": schemas,
        "columns": {name: _sha(values) for name, values in sorted(columns.items())},
        "bad_rows": bad_fields,
        "summary": {key: summary[key] for key in _SUMMARY_COUNTS},
        "etl_tstamp_nulls": etl_tstamp_nulls,
    }


def backfill_digest(profile: str, work: Path) -> dict[str, Any]:
    """Generate the profile's sample in ``work``, backfill it (``--workers 1``) and digest the output."""
    from pipeline.app.cli import main
    from pipeline.testing.generate import generate_logs

    logs = work / f"logs-{profile}"
    dest = work / f"out-{profile}"
    generate_logs(logs, _sample_options()[profile])
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["backfill", str(logs), "--output", str(dest), "--workers", "1"])
    assert code == 0, f"backfill of the {profile} sample exited {code}"
    return dataset_digest(dest, logs)


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Which parts differ, named: layout, schema, a column, a bad-row kind and field, the summary."""
    found: list[str] = []
    for part in ("layout", "schema", "summary"):
        if expected.get(part) != got.get(part):
            keys = sorted(
                key
                for key in {*expected.get(part, {}), *got.get(part, {})}
                if expected.get(part, {}).get(key) != got.get(part, {}).get(key)
            )
            found.append(f"{part} differs at {keys}")
    columns = sorted(
        name
        for name in {*expected["columns"], *got["columns"]}
        if expected["columns"].get(name) != got["columns"].get(name)
    )
    if columns:
        found.append(f"column values differ: {columns}")
    for kind in sorted({*expected["bad_rows"], *got["bad_rows"]}):
        want, have = expected["bad_rows"].get(kind, {}), got["bad_rows"].get(kind, {})
        fields = sorted(field for field in {*want, *have} if want.get(field) != have.get(field))
        if fields:
            found.append(f"bad rows {kind} differ in fields {fields}")
    if got["etl_tstamp_nulls"]:
        found.append(f"etl_tstamp is missing on {got['etl_tstamp_nulls']} rows")
    return found


def _stored() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return stored


@pytest.mark.parametrize("profile", ["classic", "high-cardinality"])
def test_backfill_output_matches_the_stored_oracle(profile: str, tmp_path: Path) -> None:
    # GIVEN the profile's deterministic sample WHEN it is backfilled with --workers 1
    got = backfill_digest(profile, tmp_path)
    if os.environ.get(WRITE_ENV):
        stored = _stored() if SNAPSHOT.exists() else {}
        SNAPSHOT.write_text(json.dumps({**stored, profile: got}, indent=1, sort_keys=True) + "\n")
    # THEN the dataset and the bad rows are what the code gave when the snapshot was recorded
    expected = _stored()[profile]
    problems = differences(expected, got)
    assert not problems, (
        f"backfill output of the {profile} sample changed: " + "; ".join(problems) + f" (snapshot {SNAPSHOT.name};"
        " if the change is meant, rerun with --write, see this file's docstring)"
    )


def test_the_oracle_sees_a_changed_value_a_changed_bad_row_and_a_moved_file(tmp_path: Path) -> None:
    # GIVEN a recorded digest of one profile's output
    import pyarrow.parquet as pq

    from pipeline.app.cli import main
    from pipeline.testing.generate import GenerateOptions, generate_logs

    logs, dest = tmp_path / "logs", tmp_path / "out"
    generate_logs(logs, GenerateOptions(files=1, lines_per_file=400, seed=3, malformed_ratio=0.02))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["backfill", str(logs), "--output", str(dest), "--workers", "1"]) == 0
    before = dataset_digest(dest, logs)
    assert not differences(before, dataset_digest(dest, logs))
    # WHEN one column value, one bad-row field and one file name change
    [part] = sorted((dest / "events").rglob("*.parquet"))
    table = pq.read_table(part)
    titles = table.column("page_title").to_pylist()
    titles[0] = "changed"
    table = table.set_column(table.schema.get_field_index("page_title"), "page_title", [titles])
    pq.write_table(table, part)
    bad = sorted((dest / "bad").rglob("*.jsonl"))[0]
    rows = bad.read_text().splitlines()
    first = json.loads(rows[0])
    first["data"]["failure"]["messages"] = ["changed"]
    bad.write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n")
    part.rename(part.with_name("part-00001.parquet"))
    # THEN each is named
    problems = "; ".join(differences(before, dataset_digest(dest, logs)))
    assert "column values differ: ['page_title']" in problems
    assert "data.failure.messages" in problems and bad.parent.name in problems
    assert "layout differs" in problems and "part-00001.parquet" in problems


def _write() -> int:
    parser = argparse.ArgumentParser(description="Record the output oracle's digests from the current code.")
    parser.add_argument("--write", action="store_true", help="write tests/unit/snapshots/output_oracle.json")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="where to write (default: the stored one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        digests = {profile: backfill_digest(profile, Path(tmp)) for profile in _sample_options()}
    text = json.dumps(digests, indent=1, sort_keys=True) + "\n"
    if args.write:
        args.snapshot.parent.mkdir(parents=True, exist_ok=True)
        args.snapshot.write_text(text)
        print(f"wrote {args.snapshot}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(_write())
