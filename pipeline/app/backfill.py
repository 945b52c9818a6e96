"""Local backfill: CloudFront log files -> ``DEST/events/`` (Parquet) and ``DEST/bad/`` (JSON lines).

Plan first (:func:`plan_sources` resolves SOURCE into an ordered work list), then execute
(:func:`run_backfill`): workers canonicalize one file each and stage its events per
partition; the partitions are then finalized (merged with what DEST already holds,
deduplicated, written under deterministic names).  Rerunning the same input into the
same DEST gives the same dataset.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from extract.errors import SourceUnreadableError
from pipeline.app.process import process_stream
from pipeline.app.progress import NoProgress, Progress, Ticker
from pipeline.badrows import BadRow, SourceRef
from pipeline.config import PipelineConfig
from pipeline.errors import InputError, PipelineError
from pipeline.formats import get_format, read_limits
from pipeline.formats.base import LogFormat, ReadLimits
from pipeline.iglu import Resolver, S3Fetch, resolver_from_config
from pipeline.summary import FileSummary, RunSummary
from transform.canonicalize import Canonicalizer, resolve_pseudonymization_key

BAD_DIR: Final = "bad"
SUMMARY_FILE: Final = "_summary.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, order=True)
class SourceFile:
    """One input file of a backfill, with the stable name its outputs are keyed on."""

    path: str
    size: int
    mtime_ms: int

    @property
    def fragment(self) -> str:
        """A file-system-safe id, unique per path and stable across runs."""
        try:  # a file name's undecodable bytes come back as they were read
            raw = self.path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file system gives, from a caller's string
            raw = self.path.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).hexdigest()[:12]
        stem = _UNSAFE.sub("_", os.path.basename(self.path))[:80]
        return f"{stem}-{digest}"


def _source_paths(source: str) -> list[str]:
    if os.path.isdir(source):
        paths: list[str] = []
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            paths.extend(os.path.join(root, name) for name in files if not name.startswith((".", "_")))
        return paths
    if os.path.exists(source):
        return [source]
    if glob.has_magic(source):
        return [p for p in glob.glob(source, recursive=True) if os.path.isfile(p)]
    raise SourceUnreadableError(f"source not found: {source}")


def plan_sources(source: str | Sequence[str]) -> list[SourceFile]:
    """Resolve SOURCE (files, folders searched recursively, globs; one or several) into sorted files.

    Hidden and ``_``-prefixed entries (e.g. our own ``_staging``, ``_summary.json``) are left
    out; a file named twice is planned once.  Raises SourceUnreadableError when a SOURCE does
    not exist, or when none matches a file.
    """
    given = [source] if isinstance(source, str) else list(source)
    paths = [os.path.abspath(path) for item in given for path in _source_paths(item)]
    planned: list[SourceFile] = []
    for path in sorted(set(paths)):
        try:
            info = os.stat(path)
        except OSError:
            # Listed but not readable (a dangling link, a vanished file): the worker reports
            # it as a failed source and the run goes on with the others.
            planned.append(SourceFile(os.path.abspath(path), 0, 0))
            continue
        planned.append(SourceFile(os.path.abspath(path), info.st_size, int(info.st_mtime * 1000)))
    if not planned:
        raise SourceUnreadableError(f"no log files match {' '.join(given)}")
    return planned


class DestinationInUseError(InputError):
    """Another backfill is writing the same DEST."""


LOCK_FILE: Final = "_lock"


def check_destination(dest: Path, sources: Sequence[str], files: Sequence[SourceFile] = ()) -> None:
    """Refuse a DEST that cannot hold the output, before anything is read.

    DEST must be creatable and writable, must not lie inside a SOURCE folder (each rerun
    would read the previous run's output as logs), and must hold none of the planned ``files``
    (a glob such as ``'logs/**/*'`` matching a previous run's output).  Raises InputError saying which.
    """
    target = dest.resolve()
    for source in sources:
        folder = Path(source).resolve()
        if os.path.isdir(folder) and (target == folder or folder in target.parents):
            raise InputError(
                f"--output {dest} is inside SOURCE {source}: the next run would read this run's output as "
                "logs; choose a DEST outside the source folders"
            )
    for file in files:
        if target in Path(file.path).resolve().parents:
            raise InputError(
                f"--output {dest} holds {file.path}, which SOURCE matches: the run would read its own output as "
                "logs; choose a DEST outside what SOURCE matches"
            )
    try:
        dest.mkdir(parents=True, exist_ok=True)
        probe = dest / f"_probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--output {dest} cannot be written: {exc.strerror or exc}") from exc


@contextmanager
def destination_lock(dest: Path) -> Iterator[None]:
    """Hold ``DEST/_lock`` exclusively for the run; refuse (DestinationInUseError) when another run holds it.

    The lock is the operating system's (``flock``) on a file that names its holder (pid, host,
    start time): it is released however the holder ends, even killed, so a stale lock never
    blocks a rerun; the file itself is left behind harmlessly.  Two backfills into one DEST
    would delete each other's staging and lose rows.
    """
    import fcntl
    import socket

    path = dest / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DestinationInUseError(
                f"--output {dest} is in use by another backfill ({holder}); wait for it to finish, or choose "
                "another DEST"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


@dataclass
class FileOutcome:
    summary: FileSummary
    partitions: list[str] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------------- worker side
_worker_state: dict[str, Any] = {}


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker is built from, resolved and checked in the parent before any work.

    :meth:`check` builds every config-derived object once, so that a bad configuration is
    a :class:`~pipeline.errors.ConfigError` naming its key before a file is read, never a
    worker that fails to start (a process pool restarts such a worker without end).
    """

    config: PipelineConfig
    key: bytes | None
    limits: ReadLimits
    dest: str

    @classmethod
    def check(cls, config: PipelineConfig, dest: Path, environ: dict[str, str] | None) -> tuple[WorkerSetup, Parts]:
        key = resolve_pseudonymization_key(config.transform, environ)
        limits = read_limits(config.extract)
        setup = cls(config, key, limits, str(dest))
        setup.entity_resolver()  # the load side's registries, checked before any work too
        return setup, setup.parts()

    def parts(self) -> Parts:
        """The format reader and the canonicalizer (raises ConfigError when they cannot be built)."""
        canonicalizer = Canonicalizer(self.config.transform, pseudonymization_key=self.key, s3_fetch=self._s3_fetch())
        return get_format(self.config.extract.format), canonicalizer

    def entity_resolver(self) -> Resolver | None:
        """The schemas of the typed entity columns finalize writes (None when ``load.typed_entities`` is off)."""
        if not self.config.load.typed_entities:
            return None
        return resolver_from_config(self.config.transform.iglu, self._s3_fetch())

    def _s3_fetch(self) -> S3Fetch | None:
        if not any(entry.startswith("s3://") for entry in self.config.transform.iglu.registries):
            return None
        from pipeline.aws.clients import make_client
        from pipeline.aws.registry import s3_schema_fetch

        return s3_schema_fetch(make_client("s3", self.config.aws))


Parts = tuple[LogFormat, Canonicalizer]


class _OffsetPublisher:
    """Publishes where this worker is in its current file (the OS file offset, in compressed bytes)
    into its slot of an array the parent's progress bar reads, from a thread, so the reading
    loop pays nothing for it."""

    def __init__(self, offsets: Any, slot: int, interval: float = 0.2) -> None:
        self._current: IO[bytes] | None = None
        self._offsets = offsets
        self._slot = slot
        # Held while publishing, so that a finished file's offset is never written after its end.
        self._lock = threading.Lock()
        self._ticker = Ticker(self._publish, interval).start()

    def reading(self, stream: IO[bytes] | None) -> None:
        """The file now being read (None: between files, which counts nothing in flight)."""
        with self._lock:
            self._current = stream
            self._offsets[self._slot] = 0

    def _publish(self) -> None:
        with self._lock:
            stream = self._current
            if stream is None:
                return
            try:
                self._offsets[self._slot] = os.lseek(stream.fileno(), 0, os.SEEK_CUR)
            except (OSError, ValueError):  # closed: the next reading() resets the slot
                pass

    def stop(self) -> None:
        self._ticker.stop()


def _init_worker(setup: WorkerSetup, parts: Parts | None = None, offsets: Any = None, slots: Any = None) -> None:
    from load.dataset import use_compact_memory_pool

    use_compact_memory_pool()
    _worker_state.clear()
    _worker_state["setup"] = setup
    _worker_state["config"] = setup.config
    _worker_state["dest"] = Path(setup.dest)
    _worker_state["limits"] = setup.limits
    if offsets is not None:
        with slots.get_lock():
            slot = slots.value
            slots.value += 1
        _worker_state["offsets"] = _OffsetPublisher(offsets, slot)
    try:
        _worker_state["format"], _worker_state["canonicalizer"] = parts or setup.parts()
    except PipelineError as exc:  # checked in the parent already; never let a pool restart a failing worker
        _worker_state["setup_error"] = exc


def _worker_parts() -> Parts:
    error = _worker_state.get("setup_error")
    if error is not None:
        raise error
    return _worker_state["format"], _worker_state["canonicalizer"]


def _process_one(source: SourceFile) -> FileOutcome:
    from load.dataset import STAGING_DIR, PartitionStager

    dest: Path = _worker_state["dest"]
    summary = FileSummary(source.path)
    stager = PartitionStager(dest / STAGING_DIR, source.fragment)
    bad_writer = _BadRowWriter(dest / BAD_DIR, source.fragment)
    ref = SourceRef(source.path)
    log_format, canonicalizer = _worker_parts()
    publisher: _OffsetPublisher | None = _worker_state.get("offsets")
    try:
        with open(source.path, "rb") as stream:
            if publisher is not None:
                publisher.reading(stream)
            for item in process_stream(
                stream,
                ref,
                log_format,
                canonicalizer,
                _worker_state["limits"],
                summary,
                source.mtime_ms,
                expect_gzip=source.path.endswith(".gz"),
            ):
                if type(item) is dict:
                    stager.add(item)
                else:
                    bad_writer.write(item)  # type: ignore[arg-type]
        partitions = stager.close()
        bad_writer.close()
    except OSError as exc:
        stager.abort()
        bad_writer.close()
        return FileOutcome(summary, [], f"{source.path}: {exc.strerror or exc}")
    finally:
        if publisher is not None:
            publisher.reading(None)
    return FileOutcome(summary, [p.format() for p in partitions])


def _finalize_one(partition: str) -> tuple[str, int, int]:
    from load.dataset import FRAGMENT_SUFFIX, STAGING_DIR, finalize_partition
    from load.partitions import PartitionKey

    if _worker_state.pop("canonicalizer", None) is not None:
        # Processing is over in this worker: release the transform's caches (user agents,
        # decoded values, times) before finalize needs the memory.
        import gc

        gc.collect()
    if "entity_resolver" not in _worker_state:  # one per worker: its cache serves every partition
        _worker_state["entity_resolver"] = _worker_state["setup"].entity_resolver()
    dest: Path = _worker_state["dest"]
    fragments = sorted((dest / STAGING_DIR / partition).glob("*" + FRAGMENT_SUFFIX))
    result = finalize_partition(
        dest,
        PartitionKey.parse(partition),
        fragments,
        _worker_state["config"].load,
        resolver=_worker_state["entity_resolver"],
    )
    return partition, result.rows_written, result.duplicates_dropped


class _BadRowWriter:
    """Writes one source's bad rows to ``bad/<kind>/<fragment>.jsonl`` (replacing a rerun's)."""

    def __init__(self, root: Path, fragment: str) -> None:
        self._root = root
        self._fragment = fragment
        self._files: dict[str, IO[str]] = {}
        self._now = datetime.now(UTC)
        for stale in root.glob(f"*/{fragment}.jsonl") if root.exists() else ():
            stale.unlink(missing_ok=True)

    def write(self, row: BadRow) -> None:
        handle = self._files.get(row.kind.value)
        if handle is None:
            folder = self._root / row.kind.value
            folder.mkdir(parents=True, exist_ok=True)
            handle = self._files[row.kind.value] = open(folder / f"{self._fragment}.jsonl", "w", encoding="utf-8")
        handle.write(row.to_json_line(timestamp=self._now) + "\n")

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


# ---------------------------------------------------------------------------- parent side
_Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def run_backfill(
    sources: list[SourceFile],
    dest: Path,
    config: PipelineConfig,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    environ: dict[str, str] | None = None,
    source_roots: Sequence[str] = (),
) -> RunSummary:
    """Process every source into ``dest``; return the run's totals.

    Before anything is read: the configuration is built and checked, DEST is checked
    (writable, not inside one of ``source_roots``, the SOURCE arguments) and locked against
    a concurrent backfill.  A source that cannot be read is reported in ``summary.errors``
    (and counted in ``failed_files``) while the others go on; bad data never stops the run.
    """
    started = time.perf_counter()
    setup, parts = WorkerSetup.check(config, dest, environ)
    check_destination(dest, source_roots, sources)
    with destination_lock(dest):
        return _run_locked(sources, dest, setup, parts, workers, progress, started)


def _run_locked(
    sources: list[SourceFile],
    dest: Path,
    setup: WorkerSetup,
    parts: Parts,
    workers: int,
    progress: Progress | None,
    started: float,
) -> RunSummary:
    from load.dataset import STAGING_DIR

    shutil.rmtree(dest / STAGING_DIR, ignore_errors=True)
    summary = RunSummary()
    touched: set[str] = set()
    per_file: list[dict[str, Any]] = []
    workers = max(1, min(workers, len(sources)))
    by_size = sorted(sources, key=lambda s: (-s.size, s.path))  # big files first balances workers
    sizes = {source.path: source.size for source in sources}
    progress = progress or NoProgress()
    offsets = multiprocessing.get_context("spawn").RawArray("q", workers)
    finished_bytes = 0

    def show() -> None:
        # Lines are known per finished file; bytes (and their rate) as the workers read.
        note = f"{summary.files}/{len(sources)} files"
        if summary.lines_read:
            rate = summary.lines_read / (time.perf_counter() - started)
            note += f", {summary.lines_read:,} lines, {rate:,.0f} lines/s"
        progress.update(finished_bytes + sum(offsets), note)

    progress.phase("reading", sum(sizes.values()), "B")
    with _executor(workers, setup, parts, offsets) as run:
        with Ticker(show):
            for outcome in run(_process_one, by_size):
                summary.add(outcome.summary)
                finished_bytes += sizes.get(outcome.summary.source, 0)
                per_file.append(outcome.summary.to_json())
                if outcome.error:
                    summary.failed_files += 1
                    summary.errors.append(outcome.error)
                touched.update(outcome.partitions)
                summary.seconds = time.perf_counter() - started
        progress.phase("writing partitions", len(touched), "partition")
        for done, (_, rows, dropped) in enumerate(run(_finalize_one, sorted(touched)), start=1):
            summary.rows_written += rows
            summary.duplicates_dropped += dropped
            progress.update(done, f"{summary.rows_written:,} rows")
    progress.close()
    shutil.rmtree(dest / STAGING_DIR, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    report = {**summary.to_json(), "per_file": sorted(per_file, key=lambda f: f["source"])}
    (dest / SUMMARY_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return summary


@contextmanager
def _executor(workers: int, setup: WorkerSetup, parts: Parts, offsets: Any) -> Iterator[_Mapper]:
    """A map over work items: in this process for one worker (with the parent's parts), else one spawned pool.

    Each worker publishes its offset in its current file into its slot of ``offsets``.
    """
    context = multiprocessing.get_context("spawn")
    slots = context.Value("i", 0)
    if workers == 1:
        _init_worker(setup, parts, offsets, slots)
        try:
            yield map
        finally:
            _worker_state["offsets"].stop()
        return
    with context.Pool(workers, _init_worker, (setup, None, offsets, slots)) as pool:
        yield lambda function, items: pool.imap_unordered(function, items, chunksize=1)


