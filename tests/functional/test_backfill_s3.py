"""Backfill from S3 (issue 12, items 1, 2, 3 and 6): listing and selection, resume, Ctrl-C, dry run, the wire.

In-process moto for the counts and the fault injection; a ThreadedMotoServer on 127.0.0.1 with
``AWS_ENDPOINT_URL`` where the test is about the wire (the CLI as a user runs it).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from moto import mock_aws
from pyarrow import ipc

from pipeline.app.backfill import (
    BackfillInterrupted,
    S3Destination,
    SourceFile,
    dry_run,
    plan_backfill,
    plan_sources,
    run_backfill,
    work_folder,
)
from pipeline.app.cli import main
from pipeline.app.sources import LEDGER_FILE, Ledger, S3Url, Selection
from pipeline.aws.clients import make_client
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.testing.generate import GenerateOptions, generate_logs

BUCKET = "clickstream-raw-test"
PREFIX = "cf/"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight log files of two distributions over six hours (2024-11-15T00..05)."""
    folder = tmp_path_factory.mktemp("s3logs")
    generate_logs(folder, GenerateOptions(files=6, lines_per_file=150, seed=21, hours=6, malformed_ratio=0.02))
    generate_logs(folder, GenerateOptions(files=2, lines_per_file=150, seed=22, hours=2, distribution_id="E2OTHER"))
    return folder


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = make_client("s3", load_config(environ={}).aws)
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload(client: Any, folder: Path, prefix: str = PREFIX) -> list[str]:
    names = sorted(path.name for path in folder.iterdir())
    for name in names:
        client.put_object(Bucket=BUCKET, Key=prefix + name, Body=(folder / name).read_bytes())
    client.put_object(Bucket=BUCKET, Key=prefix + "README.txt", Body=b"not a log")
    return names


class FakeS3:
    """An S3 client that serves ``after`` GetObjects, then raises ``error`` (a kill, a Ctrl-C)."""

    __test__ = False

    def __init__(self, client: Any, after: int | None = None, error: BaseException | None = None) -> None:
        self._client = client
        self._after = after
        self._error = error
        self.gets: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        if self._after is not None and len(self.gets) >= self._after:
            assert self._error is not None
            raise self._error
        self.gets.append(kwargs["Key"])
        return self._client.get_object(**kwargs)

    def get_paginator(self, name: str) -> Any:
        return self._client.get_paginator(name)


class Killed(BaseException):
    """The process dies here: nothing after it runs (no finalize, no ledger line)."""


def rows(dest: Path) -> list[dict[str, Any]]:
    table = ds.dataset(dest / "events", partitioning="hive").to_table()
    found = table.drop_columns(["etl_tstamp"]).to_pylist()  # etl_tstamp: the file's mtime, S3's LastModified
    return sorted(found, key=lambda r: (r["event_id"], r["event_fingerprint"]))


def event_ids(dest: Path) -> Counter[str]:
    return Counter(
        ds.dataset(dest / "events", partitioning="hive").to_table(columns=["event_id"])["event_id"].to_pylist()
    )


def moto_s3_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def s3_plan(client: Any, selection: Selection | None = None) -> Any:
    return plan_backfill(f"s3://{BUCKET}/{PREFIX}", selection, client)


# ---------------------------------------------------------------------------- listing and selection
@pytest.mark.slow
def test_listing_10000_objects_across_pages_selects_by_key_hour_and_distribution(s3: Any) -> None:
    # GIVEN 10,000 tiny objects: two distributions, one per (distribution, hour, n) over ~104 days,
    # under nested prefixes, plus 40 keys that are not CloudFront names
    """Reliability catalogue L07."""
    started = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    keys: list[tuple[str, str, datetime]] = []
    backend = moto_s3_backend()  # objects put straight into moto's store: 10,000 PutObjects would take ~40 s
    for index in range(10_000):
        distribution = "EAAA111" if index % 2 else "EBBB222"
        hour = start + timedelta(hours=index // 4)
        key = f"logs/{hour:%Y/%m}/{distribution}.{hour:%Y-%m-%d-%H}.{index:08x}.gz"
        keys.append((key, distribution, hour))
        backend.put_object(BUCKET, key, b"")
    for index in range(40):
        backend.put_object(BUCKET, f"logs/other/notes-{index}.txt", b"")
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    # WHEN the backfill plans 2026-01-10 (inclusive) to 2026-02-01T05 (exclusive) of EAAA111
    selection = Selection.of("2026-01-10", "2026-02-01T05", ["EAAA111"])
    plan = plan_backfill(f"s3://{BUCKET}/logs/", selection, s3)
    # THEN exactly the names in range are selected, over 11 pages, and the others are counted
    since, until = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 2, 1, 5, tzinfo=UTC)
    expected = sorted(f"s3://{BUCKET}/{k}" for k, d, h in keys if d == "EAAA111" and since <= h < until)
    assert [f.path for f in plan.files] == expected and len(expected) == (22 * 24 + 5) * 2
    assert all(f.etag and f.size == 0 for f in plan.files)
    assert plan.pages == 11 and calls == ["ListObjectsV2"] * 11
    assert len(plan.ignored) == 40 and all("/other/notes-" in key for key in plan.ignored)
    assert plan.out_of_range == 10_000 - len(expected)
    # AND without --since/--until/--distribution every object is a source, as in a local folder
    everything = plan_backfill(f"s3://{BUCKET}/logs/", Selection(), s3)
    assert len(everything.files) == 10_040 and not everything.ignored
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize(
    ("since", "until", "hours"),
    [("2024-11-15T02", "2024-11-15T04", {2, 3}), ("2024-11-15", "2024-11-15T01", {0}), (None, "2024-11-15T01", {0})],
)
def test_since_is_inclusive_and_until_exclusive_on_local_files_too(
    logs: Path, since: str | None, until: str, hours: set[int]
) -> None:
    plan = plan_backfill(str(logs), Selection.of(since, until))
    assert {int(Path(f.path).name.split(".")[1][-2:]) for f in plan.files} == hours


@pytest.mark.parametrize(
    "argv",
    [
        ["s3://bucket-x/logs/../other/"],
        ["s3://bucket-x/logs/./"],
        ["s3://bucket-x//logs/"],
        ["s3://Bad_Bucket/logs/"],
        ["s3://bucket-x/logs/", "--output", "s3://bucket-x/logs/out/"],
        ["s3://bucket-x/logs/out/", "--output", "s3://bucket-x/logs"],
        ["s3://bucket-x/logs/", "--since", "2026-01-32"],
        ["s3://bucket-x/logs/", "--since", "2026-01-02", "--until", "2026-01-01"],
        ["s3://bucket-x/logs/", "--until", "2026-01-01T24"],
    ],
)
def test_unsafe_prefixes_bad_ranges_and_an_s3_output_are_refused_before_anything_runs(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reliability catalogue S11."""
    args = ["backfill", *argv]
    if "--output" not in argv:
        args += ["--output", str(tmp_path / "dest")]
    with mock_aws():  # a listing would reach moto, not AWS; none may happen
        assert main(args) == 2
    message = capsys.readouterr().err
    assert "error:" in message
    if "--output" in argv:
        assert "overlaps SOURCE" in message
    assert not (tmp_path / "dest").exists()


def test_s3_url_containment_is_folder_wise() -> None:
    logs = S3Url.parse("s3://bucket-x/logs")
    assert logs.contains(S3Url.parse("s3://bucket-x/logs/out/"))
    assert not logs.contains(S3Url.parse("s3://bucket-x/logs-out/"))
    with pytest.raises(InputError):
        S3Url.parse("s3://bucket-x/a/../b")


# ---------------------------------------------------------------------------- S3 in, same dataset
def test_s3_to_local_gives_the_same_dataset_as_the_local_backfill(logs: Path, s3: Any, tmp_path: Path) -> None:
    upload(s3, logs)
    selection = Selection.of("2024-11-15", "2024-11-16")
    plan = s3_plan(s3, selection)
    assert len(plan.files) == 8 and plan.ignored == [f"s3://{BUCKET}/{PREFIX}README.txt"]
    from_s3 = run_backfill(plan.files, tmp_path / "s3", load_config(), s3_client=s3, plan=plan)
    local = run_backfill(plan_sources(str(logs)), tmp_path / "local", load_config())
    assert rows(tmp_path / "s3") == rows(tmp_path / "local") and from_s3.rows_written == local.rows_written
    assert (from_s3.good, from_s3.bad, from_s3.skipped) == (local.good, local.bad, local.skipped)
    assert from_s3.s3_objects == 8 and from_s3.s3_bytes == sum(f.size for f in plan.files)
    assert from_s3.ignored_keys == [f"s3://{BUCKET}/{PREFIX}README.txt"]
    bad = [json.loads(line) for p in (tmp_path / "s3" / "bad").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(bad) == from_s3.bad > 0
    assert all(row["data"]["payload"]["source"]["object"].startswith(f"s3://{BUCKET}/") for row in bad)
    assert all(row["data"]["payload"]["source"]["etag"] for row in bad)


def test_local_and_s3_sources_mix_in_one_run(logs: Path, s3: Any, tmp_path: Path) -> None:
    names = upload(s3, logs)
    local_half = [str(logs / name) for name in names[:4]]
    plan = plan_backfill([*local_half, f"s3://{BUCKET}/{PREFIX}"], Selection.of(None, None, ["E2EXAMPLE1ABCD"]), s3)
    assert len(plan.files) == 4 + 6  # 4 local, the 6 E2EXAMPLE1ABCD objects on S3
    run_backfill(plan.files, tmp_path / "mixed", load_config(), s3_client=s3)
    only = plan_backfill(str(logs), Selection.of(None, None, ["E2EXAMPLE1ABCD"]))
    run_backfill(only.files, tmp_path / "local", load_config())
    # the same file by path and by key gives the same events, kept once
    assert event_ids(tmp_path / "mixed") == event_ids(tmp_path / "local")


# ---------------------------------------------------------------------------- S3 out
def download_dataset(client: Any, prefix: str, into: Path) -> list[str]:
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for o in page.get("Contents", ())
    ]
    for key in keys:
        target = into / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    return sorted(keys)


@pytest.fixture
def work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The S3 DEST's local work folder goes under the test's tmp_path (tempfile.gettempdir())."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_s3_to_s3_gives_the_local_dataset_publishes_new_keys_before_deleting_old_and_reruns_idempotently(
    logs: Path, s3: Any, tmp_path: Path, work_in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(s3, logs)
    source, output = f"s3://{BUCKET}/{PREFIX}", f"s3://{BUCKET}/lake/"
    # GIVEN E2EXAMPLE1ABCD's files published to S3
    first = ["backfill", source, "--distribution", "E2EXAMPLE1ABCD", "--output", output, "-w", "1", "--json"]
    assert main(first) == 0
    before = download_dataset(s3, "lake/", tmp_path / "before")
    assert all(
        re.fullmatch(r"lake/events/event_date=[-\d]+/event_hour=\d\d/part-\d{5}-[0-9a-f]{16}\.parquet", k)
        for k in before
        if "/events/" in k
    )
    assert "lake/_backfill_ledger.jsonl" in before and "lake/_summary.json" in before
    # WHEN E2OTHER's files (same hours 0 and 1) are added: those partitions change
    calls: list[tuple[str, str]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        key = params.get("Key") or ",".join(o["Key"] for o in params.get("Delete", {}).get("Objects", ()))
        calls.append((model.name, key))

    s3.meta.events.register("before-parameter-build.s3", record)  # API parameters, before any request
    destination = S3Destination(s3, S3Url.parse(output))
    plan = s3_plan(s3)
    run_backfill(plan.files, work_folder(destination.url), load_config(), s3_client=s3, output=destination)
    after = download_dataset(s3, "lake/", tmp_path / "after")
    # THEN in each changed partition every new key was uploaded before the old ones were deleted
    deletes = [i for i, (name, _) in enumerate(calls) if name == "DeleteObjects"]
    assert deletes, "hour 0 and 1 changed: their old parts must go"
    for index in deletes:
        for old in calls[index][1].split(","):
            partition = old.rsplit("/", 1)[0]
            uploads = [i for i, (name, key) in enumerate(calls) if name == "PutObject" and key.startswith(partition)]
            assert uploads and max(uploads) < index and old not in after
    # AND the dataset on S3 is the local backfill's of the same files
    local = tmp_path / "local"
    run_backfill(plan_sources(str(logs)), local, load_config())
    assert rows(tmp_path / "after") == rows(local)
    # AND a rerun (the CLI) skips every source; one (run_backfill) reads, uploads and deletes no part
    capsys.readouterr()
    assert main(["backfill", source, "--output", output, "-w", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_files"] == 9
    calls.clear()
    again = run_backfill(plan.files, work_folder(destination.url), load_config(), s3_client=s3, output=destination)
    assert again.skipped_files == 9
    assert not [c for c in calls if c[0] in ("GetObject", "PutObject", "DeleteObjects") and "/events/" in c[1]]
    assert download_dataset(s3, "lake/events/", tmp_path / "again") == [k for k in after if "/events/" in k]
    # AND with --no-resume everything is read again, giving the same keys (deterministic) and deleting none
    calls.clear()
    run_backfill(
        plan.files, work_folder(destination.url), load_config(), s3_client=s3, output=destination, resume=False
    )
    assert not [c for c in calls if c[0] == "DeleteObjects"]
    assert download_dataset(s3, "lake/events/", tmp_path / "forced") == [k for k in after if "/events/" in k]


# ---------------------------------------------------------------------------- resume
def plant_partial_fragment(dest: Path, victim: SourceFile) -> None:
    """What a kill mid-write leaves: a fragment of ``victim`` with rows no clean run has."""
    from load.dataset import FRAGMENT_SUFFIX, STAGING_DIR

    staged = sorted((dest / STAGING_DIR).rglob("*" + FRAGMENT_SUFFIX))[0]
    with pa.OSFile(str(staged), "rb") as handle:
        table = ipc.open_file(handle).read_all()
    bogus = pa.array([f"bogus-{i}" for i in range(table.num_rows)])
    table = table.set_column(table.schema.get_field_index("event_id"), "event_id", bogus)
    with ipc.new_file(str(staged.parent / (victim.fragment + FRAGMENT_SUFFIX)), table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("k", [3, 7])
def test_a_backfill_killed_at_object_k_resumes_with_every_event_exactly_once(
    logs: Path, s3: Any, tmp_path: Path, k: int
) -> None:
    """Reliability catalogue F20."""
    upload(s3, logs)
    plan = s3_plan(s3)
    clean = tmp_path / "clean"
    run_backfill(plan.files, clean, load_config(), s3_client=s3)
    # GIVEN a backfill killed while it asks for object k+1 (k objects staged), which left a partial fragment
    dest = tmp_path / "dest"
    killer = FakeS3(s3, after=k, error=Killed())
    with pytest.raises(Killed):
        run_backfill(plan.files, dest, load_config(), s3_client=killer)
    ledger = Ledger.read(dest / LEDGER_FILE)
    assert [e.state for e in ledger.entries.values()] == ["staged"] * k
    assert not (dest / "events").exists()
    order = sorted(plan.files, key=lambda s: (-s.size, s.path))
    plant_partial_fragment(dest, order[k])
    # WHEN the same backfill runs again
    again = FakeS3(s3)
    summary = run_backfill(plan.files, dest, load_config(), s3_client=again)
    # THEN it reads only the objects not staged, and every event is there exactly once
    assert sorted(again.gets) == sorted(f.path.split("/", 3)[3] for f in order[k:])
    assert summary.resumed_files == k and summary.files == len(plan.files)
    assert event_ids(dest) == event_ids(clean)
    assert rows(dest) == rows(clean)
    assert {e.state for e in Ledger.read(dest / LEDGER_FILE).entries.values()} == {"done"}
    assert not (dest / "_staging").exists()


class DiesWhileWriting:
    """A Progress through which the run dies once ``written`` partitions of the writing phase are done."""

    __test__ = False

    def __init__(self, written: int) -> None:
        self._written = written
        self._phase = ""

    def phase(self, name: str, total: int, unit: str) -> None:
        self._phase = name
        if name == "writing partitions" and self._written == 0:
            raise Killed

    def update(self, done: int, note: str = "") -> None:
        if self._phase == "writing partitions" and done >= self._written:
            raise Killed

    def close(self) -> None:
        pass


@pytest.mark.parametrize("written", [0, 2])
def test_a_backfill_killed_while_writing_partitions_resumes_without_reading_again(
    logs: Path, s3: Any, tmp_path: Path, written: int
) -> None:
    upload(s3, logs)
    plan = s3_plan(s3)
    run_backfill(plan.files, tmp_path / "clean", load_config(), s3_client=s3)
    dest = tmp_path / "dest"
    with pytest.raises(Killed):
        run_backfill(plan.files, dest, load_config(), s3_client=s3, progress=DiesWhileWriting(written))
    assert {e.state for e in Ledger.read(dest / LEDGER_FILE).entries.values()} == {"staged"}
    assert len(list((dest / "events").rglob("*.parquet")) if (dest / "events").exists() else []) == written
    reader = FakeS3(s3)
    summary = run_backfill(plan.files, dest, load_config(), s3_client=reader, workers=2)
    assert reader.gets == [] and summary.resumed_files == len(plan.files)
    assert rows(dest) == rows(tmp_path / "clean") and event_ids(dest) == event_ids(tmp_path / "clean")


def test_ctrl_c_mid_run_finalizes_nothing_and_the_same_run_resumes(logs: Path, s3: Any, tmp_path: Path) -> None:
    upload(s3, logs)
    plan = s3_plan(s3)
    dest = tmp_path / "dest"
    with pytest.raises(BackfillInterrupted) as stop:
        run_backfill(plan.files, dest, load_config(), s3_client=FakeS3(s3, after=4, error=KeyboardInterrupt()))
    assert (stop.value.staged, stop.value.total) == (4, 9)
    assert not (dest / "events").exists() and not (dest / "_summary.json").exists()
    # the lock was released: the resume is not refused
    summary = run_backfill(plan.files, dest, load_config(), s3_client=FakeS3(s3))
    run_backfill(plan.files, tmp_path / "clean", load_config(), s3_client=s3)
    assert summary.resumed_files == 4 and event_ids(dest) == event_ids(tmp_path / "clean")


def test_a_rerun_skips_every_source_the_ledger_records_done_and_changes_nothing(
    logs: Path, s3: Any, tmp_path: Path
) -> None:
    upload(s3, logs)
    plan = s3_plan(s3)
    dest = tmp_path / "dest"
    run_backfill(plan.files, dest, load_config(), s3_client=s3)
    before = {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    reader = FakeS3(s3)
    summary = run_backfill(plan.files, dest, load_config(), s3_client=reader)
    assert reader.gets == [] and summary.skipped_files == 9 and summary.files == 0
    assert before == {p.relative_to(dest): p.read_bytes() for p in (dest / "events").rglob("*.parquet")}
    # AN object replaced under the same key (a new ETag) is read again, and only that one
    key = f"{PREFIX}{Path(plan.files[0].path).name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(logs / Path(key).name).read_bytes() + gzip.compress(b""))
    replanned = s3_plan(s3)
    summary = run_backfill(replanned.files, dest, load_config(), s3_client=reader)
    assert reader.gets == [key] and summary.skipped_files == 8


def test_a_local_rerun_skips_by_path_size_and_mtime(logs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    run_backfill(plan_sources(str(logs)), dest, load_config())
    summary = run_backfill(plan_sources(str(logs)), dest, load_config())
    assert summary.skipped_files == 8 and summary.files == 0
    forced = run_backfill(plan_sources(str(logs))[:3], dest, load_config(), resume=False)
    assert forced.files == 3 and forced.skipped_files == 0
    # the ledger is compacted to one line per source (and the rate), and still knows all eight
    lines = (dest / LEDGER_FILE).read_text().splitlines()
    assert len(lines) == 9 and len(Ledger.read(dest / LEDGER_FILE).entries) == 8
    assert Ledger.read(dest / LEDGER_FILE).last_rate


def test_the_summary_table_shows_s3_counts_resumed_sources_and_ignored_keys(tmp_path: Path) -> None:
    from pipeline.app.commands.backfill import render_summary
    from pipeline.summary import RunSummary

    summary = RunSummary(files=5, s3_objects=4, s3_bytes=3 << 20, skipped_files=7, resumed_files=2)
    summary.ignored_keys, summary.out_of_range = ["s3://b/README.txt"], 12
    table = render_summary(summary, tmp_path)
    assert "S3 objects" in table and "3.0 MiB streamed" in table
    assert "7 " in table and "2 staged before" in table
    assert "ignored keys" in table and "12 names out of range" in table


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_the_cli_interrupted_by_ctrl_c_or_killed_mid_run_resumes_with_the_same_command(
    tmp_path: Path, signum: int
) -> None:
    # GIVEN a backfill of 150 files with two worker processes, as a user runs it: more than two of
    # the ledger's groups (LEDGER_GROUP), so the first group is recorded well before the last file
    # is staged and the signal lands mid-run even on a busy machine
    logs = tmp_path / "logs"
    generate_logs(logs, GenerateOptions(files=150, lines_per_file=80, seed=31, hours=12))
    dest = tmp_path / "dest"
    command = [sys.executable, "-m", "pipeline.app.cli", "backfill", str(logs), "--output", str(dest), "-w", "2"]
    # With Ctrl-C's default action, as a terminal's foreground job has it: a test run started in the
    # background of a script without job control (`pytest ... &`) inherits SIGINT ignored, and so
    # would the backfill, which then rightly runs on through the signal.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - the test process runs no threads of its own here
    )
    # WHEN Ctrl-C reaches its process group (as a terminal sends it), or SIGKILL, after 3 files are staged
    deadline = time.monotonic() + 60
    ledger = dest / LEDGER_FILE
    while time.monotonic() < deadline and (not ledger.exists() or len(ledger.read_text().splitlines()) < 3):
        time.sleep(0.01)
    os.killpg(process.pid, signum)
    _, err = process.communicate(timeout=60)
    # THEN nothing is marked done, and a Ctrl-C says how to resume
    states = [json.loads(line).get("state") for line in ledger.read_text().splitlines() if line.strip()]
    assert "done" not in states and states.count("staged") >= 3
    if signum == signal.SIGINT:
        assert process.returncode == 130, err.decode()
        assert b"Run the same command again" in err
    # AND the same command finishes the work: every event exactly once, as a clean run
    resumed = subprocess.run([*command, "--json"], capture_output=True, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["resumed_files"] >= 3 and summary["files"] == 150
    subprocess.run([*command[:-4], str(logs), "--output", str(tmp_path / "clean"), "-w", "2"], check=True)
    assert event_ids(dest) == event_ids(tmp_path / "clean") and rows(dest) == rows(tmp_path / "clean")


def test_an_s3_body_publishes_the_bytes_read_so_far_for_the_progress_bar() -> None:
    import io

    from pipeline.app import backfill

    stream = io.BufferedReader(backfill._CountingReader(io.BytesIO(b"x" * 10_000)), buffer_size=4096)
    offsets = [0]
    publisher = backfill._OffsetPublisher(offsets, 0, interval=0.01)
    try:
        publisher.reading(stream)
        stream.read(5000)
        deadline = time.monotonic() + 10
        while offsets[0] < 5000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 5000 <= offsets[0] <= 10_000
    finally:
        publisher.stop()


# ---------------------------------------------------------------------------- dry run
def test_a_dry_run_makes_only_list_calls_and_reports_the_plan(logs: Path, s3: Any, tmp_path: Path) -> None:
    upload(s3, logs)
    dest = tmp_path / "dest"
    run_backfill(s3_plan(s3, Selection.of("2024-11-15T00", "2024-11-15T02")).files, dest, load_config(), s3_client=s3)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    plan = s3_plan(s3, Selection.of("2024-11-15", "2024-11-16"))
    planned = dry_run(plan, Ledger.read(dest / LEDGER_FILE), 2, (1_000_000.0, "test"))
    assert set(calls) == {"ListObjectsV2"}
    assert (planned.objects, planned.done, planned.todo) == (8, 4, 4)
    assert (planned.first_hour, planned.last_hour) == ("2024-11-15T00", "2024-11-15T05")
    assert planned.estimated_seconds == pytest.approx(planned.todo_bytes / 2_000_000)
    assert planned.ignored == (f"s3://{BUCKET}/{PREFIX}README.txt",)


# ---------------------------------------------------------------------------- the wire
@pytest.mark.slow
def test_the_cli_over_http_with_aws_endpoint_url_selects_by_key_hour_resumes_and_dry_runs(
    logs: Path, moto_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], work_in_tmp: Path
) -> None:
    client = make_client("s3", load_config().aws)
    assert client.meta.endpoint_url == moto_server
    client.create_bucket(Bucket=BUCKET)
    upload(client, logs)
    source = f"s3://{BUCKET}/{PREFIX}"
    dest = tmp_path / "dest"
    window = ["--since", "2024-11-15T01", "--until", "2024-11-15T04"]
    # a dry run writes nothing: no DEST, no object
    objects = client.list_objects_v2(Bucket=BUCKET)["KeyCount"]
    assert main(["backfill", source, *window, "--output", str(dest), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert (planned["objects"], planned["todo"], planned["done"]) == (4, 4, 0)
    assert planned["bytes_per_second_per_worker"] > 0 and planned["estimated_seconds"] > 0
    assert not dest.exists() and client.list_objects_v2(Bucket=BUCKET)["KeyCount"] == objects
    # the run, two worker processes each with its own client on the endpoint
    assert main(["backfill", source, *window, "--output", str(dest), "--workers", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["s3_objects"] == 4 and summary["ignored_keys"] == [f"{source}README.txt"]
    local = tmp_path / "local"
    files = [str(p) for p in sorted(logs.iterdir()) if any(f"-15-0{h}." in p.name for h in (1, 2, 3))]
    assert main(["backfill", *files, "--output", str(local), "--workers", "1", "--json"]) == 0
    capsys.readouterr()
    assert rows(dest) == rows(local)
    # a rerun skips everything; the table says so
    assert main(["backfill", source, *window, "--output", str(dest), "--workers", "2"]) == 0
    table = capsys.readouterr().out
    assert "resumed" in table and "4 " in table and "ignored keys" in table
    # S3 to S3 over the wire: the same rows, published under lake/
    lake = f"s3://{BUCKET}/lake"
    assert main(["backfill", source, *window, "--output", lake, "--dry-run"]) == 0
    assert "dry run: nothing was read or written" in capsys.readouterr().out
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="lake/")["KeyCount"] == 0
    assert main(["backfill", source, *window, "--output", lake, "--workers", "2"]) == 0
    assert f"{lake}/events (Parquet)" in capsys.readouterr().out
    download_dataset(client, "lake/", tmp_path / "lake")
    assert rows(tmp_path / "lake") == rows(local)


# ---------------------------------------------------------------------------- two machines, one S3 DEST
def test_a_second_machine_backfilling_into_the_same_s3_dest_is_refused_and_writes_nothing(
    logs: Path, s3: Any, tmp_path: Path
) -> None:
    """GIVEN a backfill holding the lease of s3://BUCKET/lake/ (its own work folder, as on machine A)
    WHEN a second backfill into the same DEST starts from another work folder (machine B)
    THEN it refuses with the holder named, before reading or writing anything; after A's run
    ends its lease object is gone, and B's rerun succeeds."""
    from pipeline.app.backfill import S3_LEASE_FILE, DestinationInUseError

    upload(s3, logs)
    url = S3Url.parse(f"s3://{BUCKET}/lake/")
    plan = plan_backfill([f"s3://{BUCKET}/{PREFIX}"], Selection(), s3)
    holder = S3Destination(s3, url)
    holder.lease.acquire()
    try:
        other = S3Destination(s3, url)
        with pytest.raises(DestinationInUseError, match=r"in use by another backfill \(pid \d+ on .+, its lease ends"):
            run_backfill(plan.files, tmp_path / "machine-b", load_config(), s3_client=s3, output=other)
        assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/events/").get("Contents")
    finally:
        holder.lease.release()
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/" + S3_LEASE_FILE).get("Contents")
    summary = run_backfill(
        plan.files, tmp_path / "machine-b", load_config(), s3_client=s3, output=S3Destination(s3, url)
    )
    assert summary.rows_written > 0
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/" + S3_LEASE_FILE).get("Contents")


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops_before_publishing(s3: Any) -> None:
    """GIVEN a lease whose holder stopped renewing (killed) and has expired
    WHEN another backfill takes the DEST over, and the old holder wakes up and tries to renew
    THEN the takeover succeeds, the old holder learns it lost the lease and refuses to publish."""
    from pipeline.app.backfill import DestinationInUseError, S3Lease

    now = [1_000.0]
    first = S3Lease(s3, BUCKET, "lake/_backfill.lock", display="s3://x", seconds=60, clock=lambda: now[0])
    first.acquire()
    first._stop.set()  # noqa: SLF001 - the holder is frozen: it renews no more
    live = S3Lease(s3, BUCKET, "lake/_backfill.lock", display="s3://x", seconds=60, clock=lambda: now[0])
    with pytest.raises(DestinationInUseError):
        live.acquire()
    now[0] += 61
    live.acquire()
    first.renew()
    with pytest.raises(DestinationInUseError, match="lost its lease"):
        first.check()
    live.check()
    live.release()
    first.release()
