"""Progress and feedback of the first hour (audit item 14 of issue 9).

The backfill reports bytes as its workers read them (not only finished files), a phase for
the final write, draws tqdm bars on a terminal and nothing elsewhere; the summary is a table.
"""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.app import backfill
from pipeline.app.backfill import plan_sources, run_backfill
from pipeline.app.commands.backfill import render_summary
from pipeline.app.progress import TerminalProgress
from pipeline.config import load_config
from pipeline.summary import RunSummary
from pipeline.testing.generate import GenerateOptions, generate_logs


@dataclass
class RecordedProgress:
    """A Progress that remembers every phase and update."""

    phases: list[tuple[str, int, str]] = field(default_factory=list)
    updates: list[tuple[str, int, str]] = field(default_factory=list)
    closed: bool = False

    def phase(self, name: str, total: int, unit: str) -> None:
        self.phases.append((name, total, unit))

    def update(self, done: int, note: str = "") -> None:
        self.updates.append((self.phases[-1][0], done, note))

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("logs")
    generate_logs(folder, GenerateOptions(files=3, lines_per_file=400, seed=5, hours=2))
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_backfill_reports_bytes_read_then_the_partitions_written(logs: Path, tmp_path: Path, workers: int) -> None:
    sources = plan_sources(str(logs))
    progress = RecordedProgress()
    summary = run_backfill(sources, tmp_path / "dest", load_config(), workers=workers, progress=progress)
    total_bytes = sum(source.size for source in sources)
    partitions = len({p.parent for p in (tmp_path / "dest" / "events").rglob("*.parquet")})
    assert progress.phases == [("reading", total_bytes, "B"), ("writing partitions", partitions, "partition")]
    reading = [done for phase, done, _ in progress.updates if phase == "reading"]
    assert reading[-1] == total_bytes and max(reading) <= total_bytes
    last_reading_note = [note for phase, _, note in progress.updates if phase == "reading"][-1]
    assert last_reading_note.startswith(f"3/3 files, {summary.lines_read:,} lines")
    writing = [done for phase, done, _ in progress.updates if phase == "writing partitions"]
    assert writing == list(range(1, partitions + 1))
    assert progress.closed


def test_a_worker_publishes_its_offset_within_the_file_it_reads(tmp_path: Path) -> None:
    """What lets one big file show progress before it is finished."""
    path = tmp_path / "big.log"
    path.write_bytes(b"x" * 10_000)
    offsets = [0]
    publisher = backfill._OffsetPublisher(offsets, 0, interval=0.01)
    try:
        with open(path, "rb") as stream:
            stream.seek(4321)
            publisher.reading(stream)
            deadline = time.monotonic() + 10
            while offsets[0] != 4321 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert offsets[0] == 4321
            publisher.reading(None)
        deadline = time.monotonic() + 10
        while offsets[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert offsets[0] == 0  # a finished file is no longer counted as in flight
    finally:
        publisher.stop()


def test_terminal_progress_draws_bars_only_when_enabled() -> None:
    shown, hidden = io.StringIO(), io.StringIO()
    for progress in (TerminalProgress(shown, enabled=True), TerminalProgress(hidden)):  # StringIO is no terminal
        progress.phase("reading", 2048, "B")
        progress.update(1024, "0/1 files")
        progress.phase("writing partitions", 2, "partition")
        progress.update(2)
        progress.close()
    assert hidden.getvalue() == ""
    text = shown.getvalue()
    assert "reading" in text and "50%" in text and "0/1 files" in text
    assert "writing partitions" in text and "100%" in text


def test_the_summary_is_a_table_that_names_only_what_exists(tmp_path: Path) -> None:
    summary = RunSummary(files=2, lines_read=10, good=0, bad=0, skipped=10, seconds=1.0)
    summary.skipped_by_reason.update({"not_tracker": 8, "header": 2})
    text = render_summary(summary, tmp_path)
    assert "skipped lines" in text and "header 2, not_tracker 8" in text
    assert str(tmp_path / "events") not in text and "no events written" in text
    summary.rows_written, summary.good = 5, 5
    summary.notices["email_shaped_user_id"] = 3
    text = render_summary(summary, tmp_path)
    assert f"{tmp_path / 'events'} (Parquet)" in text
    assert "[transform.pseudonymize]" in text


def test_the_summary_of_a_rerun_with_nothing_new_says_dest_is_unchanged(tmp_path: Path) -> None:
    rerun = RunSummary(files=0, lines_read=0, good=0, bad=0, skipped=0, seconds=0.1, skipped_files=3)
    text = render_summary(rerun, tmp_path)
    assert f"{tmp_path / 'events'} unchanged: every source was done before" in text
    assert "no events written" not in text and "--no-resume" in text


def test_files_that_are_not_logs_are_reported_per_file_and_counted(tmp_path: Path) -> None:
    """Audit item 15: a folder with a README and a CSV beside the logs."""
    source = tmp_path / "source"
    generate_logs(source, GenerateOptions(files=1, lines_per_file=50, seed=3))
    (source / "notes.txt").write_text("this folder holds our CloudFront logs\n" * 300)
    (source / "export.csv").write_text("a,b,c\n1,2,3\n")
    dest = tmp_path / "dest"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", "backfill", str(source), "--output", str(dest)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "is not a CloudFront log" in line]
    assert len(warned) == 2 and any("notes.txt" in w for w in warned) and any("export.csv" in w for w in warned)
    assert "not logs" in done.stdout
    report = json.loads((dest / "_summary.json").read_text())
    assert sorted(Path(p).name for p in report["not_logs"]) == ["export.csv", "notes.txt"]
    # Nothing is lost: their lines are still bad rows with their raw text.
    assert report["bad_by_kind"]["schema_mismatch"] >= 302


def test_run_local_reports_its_upload_and_each_round_of_the_chain() -> None:
    from moto import mock_aws

    from pipeline.app.local.runtime import LocalChain
    from pipeline.bundled import sample_logs

    progress = RecordedProgress()
    with mock_aws():
        chain = LocalChain(load_config(overrides={"aws.endpoint_url": ""}))
        chain.create_resources()
        files = sorted(str(p) for p in sample_logs().glob("*.gz"))
        chain.upload(files, progress)
        report = chain.run(progress)
    assert [name for name, _, _ in progress.phases] == ["uploading", "running the chain"]
    uploads = [done for phase, done, _ in progress.updates if phase == "uploading"]
    assert uploads == [1, 2, 3]
    rounds = [(done, note) for phase, done, note in progress.updates if phase == "running the chain"]
    assert rounds[0][1].startswith("round 1:") and rounds[-1][0] >= report.transform_records > 0
    assert progress.closed and report.complete


@dataclass
class GcObserver(RecordedProgress):
    """Also notes the collector's settings while the files are read."""

    seen: set[tuple[tuple[int, ...], bool]] = field(default_factory=set)

    def update(self, done: int, note: str = "") -> None:
        super().update(done, note)
        if self.phases[-1][0] == "reading":
            self.seen.add((gc.get_threshold(), gc.get_freeze_count() > 0))


def test_one_worker_collects_garbage_less_often_while_reading_and_restores_the_collector(
    logs: Path, tmp_path: Path
) -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    observer = GcObserver()
    summary = run_backfill(plan_sources(str(logs)), tmp_path / "dest", load_config(), workers=1, progress=observer)
    assert summary.good > 0
    assert observer.seen == {(backfill._WORKER_GC_THRESHOLDS, True)}  # set-up frozen, fewer collections
    # In this process (a library call, a test): the caller's collector is as it was.
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen_before
