"""The backfill's ledger recorder: a staged source's line is written only after its files are fsynced,
in order, off the reading thread; a failure stops the run without recording the group it hit."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.app.backfill import LEDGER_GROUP, _Recorder
from pipeline.app.sources import STAGED, Ledger, LedgerEntry


class _LoggingLedger(Ledger):
    """A real ledger file that also logs each append into a shared journal, with its thread."""

    def __init__(self, path: Path, journal: list[tuple[str, object]]) -> None:
        super().__init__(path)
        self.journal = journal

    def append(self, entries: Sequence[LedgerEntry]) -> None:
        super().append(entries)
        self.journal.append(("append", tuple(e.source for e in entries)))


def _entry(number: int) -> LedgerEntry:
    return LedgerEntry(f"logs/{number}.gz", f"id-{number}", STAGED, ("dt=2024-11-15/hr=00",), f"frag{number}", {})


FOLDER = "staging/dt=2024-11-15/hr=00"


def _files(number: int) -> list[str]:
    return [f"{FOLDER}/frag{number}.arrow", FOLDER, f"bad/k/frag{number}.jsonl"]


def test_each_line_follows_the_fsyncs_of_its_sources_files_in_order_off_the_calling_thread(tmp_path: Path) -> None:
    # GIVEN a recorder whose fsyncs are logged into the same journal as the ledger's appends
    journal: list[tuple[str, object]] = []
    threads: set[str] = set()

    def sync(path: Path) -> None:
        threads.add(threading.current_thread().name)
        journal.append(("fsync", str(path)))

    ledger = _LoggingLedger(tmp_path / "ledger.jsonl", journal)
    recorded: list[LedgerEntry] = []
    recorder = _Recorder(ledger, recorded, sync=sync)
    # WHEN more than two groups of sources are added, then the recorder is closed
    count = 2 * LEDGER_GROUP + 5
    for number in range(count):
        recorder.add(_entry(number), _files(number))
    recorder.close()
    # THEN every source is recorded once, in order, in the file and in ``recorded``
    assert [e.source for e in recorded] == [f"logs/{n}.gz" for n in range(count)]
    assert [e.source for e in Ledger.read(tmp_path / "ledger.jsonl").entries.values()] == [e.source for e in recorded]
    # AND each append comes after the fsync of every file and folder of each of its sources
    synced: set[str] = set()
    appended = 0
    for kind, what in journal:
        if kind == "fsync":
            synced.add(str(what))
        else:
            assert isinstance(what, tuple)
            for source in what:
                number = int(source.split("/")[1].split(".")[0])
                assert {str(Path(p)) for p in _files(number)} <= synced
            appended += len(what)
    assert appended == count and journal[-1][0] == "append"
    # AND a folder shared by a group is fsynced once per group, not once per source
    folder_syncs = sum(1 for kind, what in journal if kind == "fsync" and what == str(Path(FOLDER)))
    assert folder_syncs == 3  # three groups
    assert threads and threading.current_thread().name not in threads


def test_a_failed_fsync_stops_the_run_and_leaves_its_group_unrecorded(tmp_path: Path) -> None:
    # GIVEN a disk whose fsync fails for the files of source 70 (in the second group)
    def sync(path: Path) -> None:
        if "frag70" in str(path):
            raise OSError(5, "Input/output error")

    recorded: list[LedgerEntry] = []
    recorder = _Recorder(Ledger(tmp_path / "ledger.jsonl"), recorded, sync=sync)
    # WHEN sources are added and the recorder closed
    with pytest.raises(OSError, match="Input/output error"):
        try:
            for number in range(3 * LEDGER_GROUP):
                recorder.add(_entry(number), _files(number))
        finally:
            recorder.close()
    # THEN the first group is recorded and the failed group is not: the next run reads it again
    on_disk = Ledger.read(tmp_path / "ledger.jsonl").entries
    assert f"logs/{LEDGER_GROUP - 1}.gz" in on_disk and "logs/70.gz" not in on_disk
    assert {e.source for e in recorded} == set(on_disk)
