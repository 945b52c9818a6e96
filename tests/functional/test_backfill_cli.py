"""The backfill CLI end to end on generated logs of several generations."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from pipeline.app.cli import main
from pipeline.testing.generate import GenerateOptions, generate_logs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files of three generations, plus an empty file, a header-only file and a truncated gzip."""
    folder = tmp_path_factory.mktemp("logs")
    generate_logs(folder / "a", GenerateOptions(files=3, lines_per_file=300, seed=1, fields=33, malformed_ratio=0.02))
    generate_logs(
        folder / "b",
        GenerateOptions(files=2, lines_per_file=200, seed=2, fields=23, distribution_id="E23FIELDS", hours=3),
    )
    generate_logs(
        folder / "c",
        GenerateOptions(files=1, lines_per_file=200, seed=3, fields=12, distribution_id="E12FIELDS", hours=1),
    )
    (folder / "c" / "empty.2024-11-15-00.00000000.gz").write_bytes(gzip.compress(b""))
    (folder / "c" / "header-only.log").write_text("#Version: 1.0\n#Fields: date time cs-uri-stem\n")
    whole = gzip.compress(b"#Fields: date time cs-uri-stem\n" + b"2024-11-15\t10:00:00\t/x\n" * 5000)
    (folder / "c" / "truncated.2024-11-15-10.ffffffff.gz").write_bytes(whole[: len(whole) // 2])
    return folder


def run_cli(*args: str) -> int:
    return main(list(args))


def read_events(dest: Path) -> list[dict[str, object]]:
    table = ds.dataset(dest / "events", partitioning="hive").to_table()
    return table.to_pylist()


def test_backfill_writes_a_hive_dataset_bad_rows_and_a_conserving_summary(logs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert run_cli("backfill", str(logs), "--output", str(dest), "--workers", "1") == 0
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["files"] == 9 and summary["failed_files"] == 0
    for per_file in summary["per_file"]:
        assert per_file["lines_read"] == per_file["good"] + per_file["bad"] + per_file["skipped"], per_file
    assert summary["lines_read"] == summary["good"] + summary["bad"] + summary["skipped"]
    events = read_events(dest)
    assert len(events) == summary["rows_written"] == summary["good"] - summary["duplicates_dropped"]
    keys = [(e["event_id"], e["event_fingerprint"]) for e in events]
    assert len(keys) == len(set(keys)), "natural duplicates must be written once"
    assert {e["event"] for e in events} >= {"page_view", "page_ping", "struct", "unstruct"}
    assert all(e["user_ipaddress"] is None or str(e["user_ipaddress"]).endswith((".0", "::")) for e in events)
    bad_lines = [json.loads(line) for path in (dest / "bad").rglob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(bad_lines) == summary["bad"]
    kinds = {row["data"]["failure"]["kind"] for row in bad_lines}
    assert {"field_count", "invalid_utf8", "tracker_protocol_violation", "corrupt_compression"} <= kinds
    for row in bad_lines:
        assert row["schema"].startswith("iglu:com.clickstream_etl.badrows/")
        assert row["data"]["payload"]["source"]["object"].startswith(str(logs))
        assert row["data"]["failure"]["messages"]
    # DuckDB reads the same dataset
    count = (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{dest}/events/**/*.parquet', hive_partitioning = true)")
        .fetchone()
    )
    assert count is not None and count[0] == len(events)


def test_rerun_into_the_same_dest_gives_identical_files(logs: Path, tmp_path: Path) -> None:
    """Reliability catalogue F20: backfilling an already-processed window again rewrites identical files."""
    dest = tmp_path / "dest"
    assert run_cli("backfill", str(logs / "a"), "--output", str(dest), "--workers", "1") == 0
    first = {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    assert run_cli("backfill", str(logs / "a"), "--output", str(dest), "--workers", "1") == 0
    second = {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    assert first == second and first


def test_two_workers_give_the_same_dataset_as_one(logs: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli("backfill", str(logs), "--output", str(one), "--workers", "1") == 0
    assert run_cli("backfill", str(logs), "--output", str(two), "--workers", "2") == 0
    files_one = {p.relative_to(one): p.read_bytes() for p in (one / "events").rglob("*.parquet")}
    files_two = {p.relative_to(two): p.read_bytes() for p in (two / "events").rglob("*.parquet")}
    assert files_one == files_two


def test_backfilling_more_files_adds_without_losing_or_duplicating(logs: Path, tmp_path: Path) -> None:
    together, apart = tmp_path / "together", tmp_path / "apart"
    assert run_cli("backfill", str(logs / "a"), "--output", str(together), "--workers", "1") == 0
    files = sorted((logs / "a").iterdir())
    for path in files:  # one file at a time, in reverse order (late files)
        assert run_cli("backfill", str(files[-1 - files.index(path)]), "--output", str(apart), "--workers", "1") == 0
    ids_together = sorted((e["event_id"], e["event_fingerprint"]) for e in read_events(together))
    ids_apart = sorted((e["event_id"], e["event_fingerprint"]) for e in read_events(apart))
    assert ids_together == ids_apart


def test_rerunning_added_files_keeps_the_older_rows_and_rewrites_identical_files(logs: Path, tmp_path: Path) -> None:
    # GIVEN a DEST holding logs/a, then logs/b added (their hours overlap, so the partitions
    # mix rows kept from the existing parts with this run's rows)
    dest = tmp_path / "dest"
    assert run_cli("backfill", str(logs / "a"), "--output", str(dest), "--workers", "1") == 0
    only_a = {(e["event_id"], e["event_fingerprint"]) for e in read_events(dest)}
    assert run_cli("backfill", str(logs / "b"), "--output", str(dest), "--workers", "2") == 0
    first = {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    # WHEN logs/b is backfilled again
    assert run_cli("backfill", str(logs / "b"), "--output", str(dest), "--workers", "1") == 0
    # THEN the files are byte-identical, nothing is left in staging, and a's rows are still there
    second = {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    assert first == second
    assert not (dest / "_staging").exists()
    assert not list((dest / "events").rglob(".*.tmp"))
    keys = [(e["event_id"], e["event_fingerprint"]) for e in read_events(dest)]
    assert len(keys) == len(set(keys)) and only_a <= set(keys)


def test_glob_source_is_accepted(logs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert run_cli("backfill", str(logs / "b" / "*.gz"), "--output", str(dest), "--workers", "1") == 0
    assert json.loads((dest / "_summary.json").read_text())["files"] == 2


def test_page_view_policy_turns_page_requests_into_srv_page_views(logs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    code = run_cli(
        "backfill",
        str(logs / "a"),
        "--output",
        str(dest),
        "--workers",
        "1",
        "--non-tracker-policy",
        "page_view",
    )
    assert code == 0
    srv = [e for e in read_events(dest) if e["platform"] == "srv"]
    assert srv and all(e["event"] == "page_view" and str(e["page_url"]).startswith("https://") for e in srv)
    assert not any(str(e["page_urlpath"]).endswith((".css", ".js", ".png", ".ico")) for e in srv)


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "/definitely/not/here", "--output", "OUT"],
        ["backfill", "SRC", "--output", "FILE"],
    ],
)
def test_operational_errors_exit_with_2(argv: list[str], logs: Path, tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("x")
    replaced = [
        a.replace("OUT", str(tmp_path / "out")).replace("SRC", str(logs / "a")).replace("FILE", str(tmp_path / "FILE"))
        for a in argv
    ]
    assert run_cli(*replaced) == 2


def test_bad_worker_count_is_a_usage_error(logs: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("backfill", str(logs), "--output", str(tmp_path / "o"), "--workers", "0")
    assert exit_info.value.code == 2


def test_unreadable_file_among_good_ones_exits_1_and_processes_the_rest(logs: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for path in (logs / "b").iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    os.symlink(tmp_path / "missing.gz", source / "dangling.2024-11-15-00.00000000.gz")
    dest = tmp_path / "dest"
    assert run_cli("backfill", str(source), "--output", str(dest), "--workers", "1") == 1
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["failed_files"] == 1 and summary["good"] > 0


def test_console_script_runs_with_progress_off_the_terminal(logs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", "backfill", str(logs / "b"), "--output", str(dest), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == 2 and report["lines_per_second"] > 0
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize(
    ("overlay", "key"),
    [
        ("[transform.ip]\nipv4_prefix = 40\n", "transform.ip"),
        ('[extract]\ndefault_fields = "legacy-13"\n', "extract.default_fields"),
        ('[transform.referer]\ndataset = "/nonexistent/referers.json"\n', "transform.referer"),
        ('[transform]\nenrichments = ["ip"]\n', "transform.enrichments"),
        ('[extract]\nformat = "w3c"\n', "unknown log format 'w3c'"),
    ],
)
def test_bad_config_with_two_workers_exits_2_naming_the_key_before_any_work(
    tmp_path: Path, overlay: str, key: str
) -> None:
    """GIVEN a configuration that only a worker's set-up would reject WHEN backfill runs with 2 workers
    THEN it exits 2 with a message naming the key, writes nothing, and does not hang."""
    config = tmp_path / "bad.toml"
    config.write_text(overlay)
    dest = tmp_path / "dest"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.app.cli",
            "backfill",
            str(ROOT / "samples" / "cloudfront"),
            "--output",
            str(dest),
            "--workers",
            "2",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a hang (a pool restarting a failing worker) fails here instead of blocking CI
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr
    assert not dest.exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_a_second_backfill_into_a_locked_dest_exits_2_and_leaves_the_first_intact(logs: Path, tmp_path: Path) -> None:
    """Audit item 2: two backfills into one DEST used to delete each other's staging and lose rows, exit 0."""
    from pipeline.app.backfill import destination_lock

    dest = tmp_path / "dest"
    assert run_cli("backfill", str(logs / "a"), "--output", str(dest), "--workers", "1") == 0
    before = sorted(str(e["event_id"]) for e in read_events(dest))
    with destination_lock(dest):  # a backfill in progress holds it
        result = _cli("backfill", str(logs / "b"), "--output", str(dest), "--workers", "2")
    assert result.returncode == 2, result.stderr
    assert "is in use by another backfill (pid" in result.stderr and "Traceback" not in result.stderr
    assert sorted(str(e["event_id"]) for e in read_events(dest)) == before  # nothing of the refused run


def test_a_lock_left_by_a_killed_backfill_does_not_block_the_next(logs: Path, tmp_path: Path) -> None:
    """GIVEN a backfill killed with SIGKILL while holding the lock WHEN the next one starts THEN it runs."""
    import signal

    dest = tmp_path / "dest"
    dest.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from pipeline.app.backfill import destination_lock\n"
            f"with destination_lock(Path({str(dest)!r})):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert _cli("backfill", str(logs / "a"), "--output", str(dest)).returncode == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (dest / "_lock").exists()  # the file stays; the lock itself died with its holder
    result = _cli("backfill", str(logs / "a"), "--output", str(dest), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert read_events(dest)


def test_concurrent_backfills_into_one_dest_never_both_succeed_with_fewer_rows(logs: Path, tmp_path: Path) -> None:
    """Two real runs at once: each either completes the whole dataset or is refused with exit 2."""
    alone = tmp_path / "alone"
    assert run_cli("backfill", str(logs), "--output", str(alone), "--workers", "1") == 0
    expected = len(read_events(alone))
    dest = tmp_path / "dest"
    command = [sys.executable, "-m", "pipeline.app.cli", "backfill", str(logs), "--output", str(dest), "--workers", "1"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(run.wait(timeout=300) for run in runs)
    assert codes in ([0, 0], [0, 2]), [run.stderr.read() if run.stderr else "" for run in runs]
    assert len(read_events(dest)) == expected


def test_an_output_inside_the_source_is_refused_before_any_work(logs: Path, tmp_path: Path) -> None:
    """Audit item 5: `backfill . --output out` read its own output on every rerun.

    Reliability catalogue S11: a DEST inside a SOURCE folder is refused.
    """
    source = tmp_path / "src"
    source.mkdir()
    (source / "x.log").write_bytes((logs / "c" / "header-only.log").read_bytes())
    result = _cli("backfill", str(source), "--output", str(source / "out"))
    assert result.returncode == 2
    assert "is inside SOURCE" in result.stderr and "Traceback" not in result.stderr
    assert not (source / "out").exists()
    assert _cli("backfill", str(source), "--output", str(source)).returncode == 2


def test_a_dest_that_cannot_be_written_is_refused_before_reading(logs: Path, tmp_path: Path) -> None:
    """Audit item 6: a DEST under a file used to process everything, then crash with a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _cli("backfill", str(logs / "a"), "--output", str(blocker / "dest"))
    assert result.returncode == 2
    assert "cannot be written" in result.stderr and "Traceback" not in result.stderr


def test_several_sources_as_a_shell_glob_gives_them_are_all_processed(logs: Path, tmp_path: Path) -> None:
    """Audit item 15: `backfill logs/*.gz` (many SOURCE arguments) was a usage error."""
    files = sorted(str(p) for p in (logs / "a").glob("*.gz"))
    assert len(files) == 3
    dest = tmp_path / "dest"
    assert run_cli("backfill", *files, files[0], "--output", str(dest), "--json") == 0  # a repeat is planned once
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["files"] == 3
    assert run_cli("backfill", files[0], "/definitely/not/here", "--output", str(tmp_path / "d2")) == 2
