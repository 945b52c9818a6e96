"""End to end: a day of generated logs through the whole chain on a moto server over HTTP.

GIVEN 24 hourly log files (two generations, malformed lines included)
WHEN run-local drives S3 -> Extract -> stream 1 -> Transform -> stream 2 -> Parquet sink and Firehose
THEN every stage conserves its input and the Parquet output equals the backfill's for the same logs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from pipeline.app.backfill import plan_sources, run_backfill
from pipeline.app.cli import main
from pipeline.config import load_config
from pipeline.testing.generate import GenerateOptions, generate_logs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Set when the ETL ran: the backfill stamps the file's mtime, the chain the S3 object's LastModified.
EXCLUDED = {"etl_tstamp"}


@pytest.fixture(scope="module")
def day_of_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("logs")
    base = GenerateOptions(files=24, lines_per_file=150, hours=24, malformed_ratio=0.02)
    generate_logs(folder, base)
    generate_logs(folder, dataclasses.replace(base, files=2, fields=23, distribution_id="E3LEGACY23FLDS", seed=7))
    return folder


def _rows(dest: Path) -> dict[tuple[str, str], dict[str, Any]]:
    table = ds.dataset(dest / "events", partitioning="hive").to_table()
    rows = {}
    for row in table.to_pylist():
        key = (row["event_id"], row["event_fingerprint"])
        assert key not in rows, f"duplicate event {key} in {dest}"
        rows[key] = {k: v for k, v in row.items() if k not in EXCLUDED}
    return rows


def _bad_count(dest: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (dest / "bad").rglob("*.jsonl"))


def test_a_day_of_logs_through_the_local_chain_equals_the_backfill(
    day_of_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain_out = tmp_path / "chain"
    code = main(["run-local", str(day_of_logs), "--server", "--output", str(chain_out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["complete"] and report["objects"] == 26
    assert report["lines_read"] == report["lines_shipped"] + report["extract_bad"] + report["extract_skipped"]
    assert report["transform_lines"] == report["lines_shipped"]
    assert report["transform_lines"] == report["events"] + report["transform_bad"] + report["transform_skipped"]
    assert report["parquet_rows"] == report["parquet_distinct_events"] == report["distinct_events"] > 0
    assert report["firehose_rows"] == report["distinct_events"]
    assert report["bad_rows"] == report["extract_bad"] + report["transform_bad"] > 0

    backfill_out = tmp_path / "backfill"
    summary = run_backfill(plan_sources(str(day_of_logs)), backfill_out, load_config(environ={}), workers=1)
    assert summary.lines_read == report["lines_read"]
    assert summary.bad == report["bad_rows"]
    assert summary.skipped == report["extract_skipped"] + report["transform_skipped"]

    chain_rows, backfill_rows = _rows(chain_out), _rows(backfill_out)
    assert set(chain_rows) == set(backfill_rows)
    different = [key for key in chain_rows if chain_rows[key] != backfill_rows[key]]
    assert not different, (chain_rows[different[0]], backfill_rows[different[0]])
    assert _bad_count(chain_out) == _bad_count(backfill_out)
