"""Local backfill: CloudFront log files -> ``DEST/events/`` (Parquet) and ``DEST/bad/`` (JSON lines).

Plan first (:func:`plan_sources` resolves SOURCE into an ordered work list), then execute
(:func:`run_backfill`): workers canonicalize one file each and stage its events per
partition; the partitions are then finalized (merged with what DEST already holds,
deduplicated, written under deterministic names).  Rerunning the same input into the
same DEST gives the same dataset.

SOURCE may be local (files, folders, globs) or ``s3://bucket/prefix`` (listed page by page,
selected by CloudFront key name, see :mod:`pipeline.app.sources`); an S3 object is streamed
from its ``GetObject`` body into the same file core, never downloaded whole.

**Resume.**  ``DEST/_backfill_ledger.jsonl`` records each source (S3 key and ETag; local
path, size and mtime) once its fragments and bad rows are fsynced (``staged``), and again
once finalize has merged them into ``DEST/events`` (``done``).  The crash points:

- killed while reading: sources recorded ``staged`` keep their fragments; every other
  fragment file in ``DEST/_staging`` is deleted at the next start and its source read again
  from scratch (``ipc.new_file`` rewrites, never appends), so no event is staged twice;
- killed while finalizing: the next run reads nothing again and finalizes every staged
  partition again; finalize is idempotent (this run's rows replace their own copies);
- killed after finalize, before the ``done`` lines: the same, finalize runs again on the
  same fragments and writes the same files.

A rerun over the same sources skips those recorded ``done`` (counted as skipped).  Ctrl-C
stops the workers (they ignore SIGINT; the pool is terminated), records nothing ``done``,
leaves every partition whole (a partition is replaced atomically or not at all) and raises
:class:`BackfillInterrupted` saying how many sources are staged; the same command resumes.
An S3 DEST is staged and finalized in a local work folder, then published
(:class:`S3Destination`).
"""

from __future__ import annotations

import ctypes
import gc
import glob
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from extract.errors import SourceUnreadableError
from pipeline.app.process import process_stream
from pipeline.app.progress import NoProgress, Progress, Ticker
from pipeline.app.sources import (
    DONE,
    LEDGER_FILE,
    STAGED,
    Ledger,
    LedgerEntry,
    Listed,
    Listing,
    S3Url,
    Selection,
    identity,
    is_s3,
    list_s3,
    select_names,
    split_s3_key,
)
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
    """A local path, or ``s3://bucket/key``."""
    size: int
    mtime_ms: int
    etag: str = ""
    """An S3 object's ETag (read with ``If-Match`` it, so a replaced object is not half-read)."""

    @property
    def identity(self) -> str:
        """What the resume ledger compares: the ETag of an S3 object, the size and mtime of a file."""
        return identity(self.path, self.size, self.mtime_ms, self.etag)

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
    return plan_backfill(source).files


@dataclass
class BackfillPlan:
    """The sources of a run, and what the listing left out (see :class:`~pipeline.app.sources.Listing`)."""

    files: list[SourceFile]
    ignored: list[str] = field(default_factory=list)
    out_of_range: int = 0
    pages: int = 0

    @property
    def s3_files(self) -> list[SourceFile]:
        return [f for f in self.files if is_s3(f.path)]


def plan_backfill(
    source: str | Sequence[str], selection: Selection | None = None, s3_client: Any = None
) -> BackfillPlan:
    """Resolve local and ``s3://`` SOURCEs into sorted files, keeping what ``selection`` selects.

    S3 prefixes are listed page by page with ``s3_client`` (ListObjectsV2 only).  With an
    active selection, local files are selected by their CloudFront names too, and names that
    are not CloudFront's are returned as ``ignored``.  Raises SourceUnreadableError when a
    SOURCE does not exist or cannot be listed, or when nothing is selected.
    """
    given = [source] if isinstance(source, str) else list(source)
    selection = selection or Selection()
    listing = Listing()
    local: list[Listed] = []
    for item in given:
        if is_s3(item):
            list_s3(s3_client, S3Url.parse(item), selection, listing)
            continue
        for path in sorted({os.path.abspath(p) for p in _source_paths(item)}):
            try:
                info = os.stat(path)
            except OSError:
                # Listed but not readable (a dangling link, a vanished file): the worker reports
                # it as a failed source and the run goes on with the others.
                local.append(Listed(path, 0, 0))
                continue
            local.append(Listed(path, info.st_size, int(info.st_mtime * 1000)))
    select_names(local, selection, listing)
    unique = {item.uri: item for item in listing.selected}
    planned = [SourceFile(item.uri, item.size, item.mtime_ms, item.etag) for item in unique.values()]
    planned.sort()
    if not planned:
        what = " (between --since and --until, of --distribution)" if selection.active else ""
        raise SourceUnreadableError(f"no log files match {' '.join(given)}{what}")
    return BackfillPlan(planned, listing.ignored, listing.out_of_range, listing.pages)


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
        if not is_s3(file.path) and target in Path(file.path).resolve().parents:
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
    unsynced: tuple[str, ...] = ()
    """The files and folders the source wrote, to fsync before its ledger line (:class:`_Recorder`)."""


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
            raw = getattr(stream, "raw", None)
            if isinstance(raw, _CountingReader):  # an S3 body: no file offset, count what was read
                self._offsets[self._slot] = raw.position
                return
            try:
                self._offsets[self._slot] = os.lseek(stream.fileno(), 0, os.SEEK_CUR)
            except (OSError, ValueError):  # closed: the next reading() resets the slot
                pass

    def stop(self) -> None:
        self._ticker.stop()


class _CountingReader(io.RawIOBase):
    """A binary stream over an S3 ``GetObject`` body that counts the bytes read (for the progress bar)."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._body.read(None if size is None or size < 0 else size)
        self.position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def _init_worker(
    setup: WorkerSetup,
    parts: Parts | None = None,
    offsets: Any = None,
    slots: Any = None,
    s3_client: Any = None,
) -> None:
    from load.dataset import use_compact_memory_pool

    if parts is None:  # a pool's worker: Ctrl-C is the parent's to handle (it stops the pool)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    use_compact_memory_pool()
    _worker_state.clear()
    if s3_client is not None:
        _worker_state["s3"] = s3_client
    _worker_state["setup"] = setup
    _worker_state["config"] = setup.config
    _worker_state["dest"] = Path(setup.dest)
    _worker_state["limits"] = setup.limits
    _worker_state["parts_owned"] = parts is None  # else the parent's: they outlive this worker's use
    if offsets is not None:
        with slots.get_lock():
            slot = slots.value
            slots.value += 1
        _worker_state["offsets"] = _OffsetPublisher(offsets, slot)
    try:
        _worker_state["format"], _worker_state["canonicalizer"] = parts or setup.parts()
    except PipelineError as exc:  # checked in the parent already; never let a pool restart a failing worker
        _worker_state["setup_error"] = exc
    if parts is None:  # a pool's own process: tuned for its life (one worker in this process: see _executor)
        _tune_gc()


# The garbage collector over a worker's run: its memos (URLs, user agents, pairs) hold tens of
# thousands of objects that live for the whole run, and each full collection walks all of them,
# finding almost nothing (events and rows are freed by reference counting: they make no cycles).
# Measured on 44,000 high-cardinality lines: collections cost 0.47 s of 4.2 s with the defaults
# (700, 10, 10), 0.15 s with the set-up frozen and the thresholds below; peak memory unchanged.
_WORKER_GC_THRESHOLDS: Final = (20_000, 20, 100)


def _tune_gc() -> None:
    """Freeze what set-up made (modules, schemas, parsers: never garbage) and collect less often."""
    gc.freeze()
    gc.set_threshold(*_WORKER_GC_THRESHOLDS)


def _worker_parts() -> Parts:
    error = _worker_state.get("setup_error")
    if error is not None:
        raise error
    return _worker_state["format"], _worker_state["canonicalizer"]


def _worker_s3() -> Any:
    client = _worker_state.get("s3")
    if client is None:  # one per worker process, made on first use (clients do not cross processes)
        from pipeline.aws.clients import make_client

        client = _worker_state["s3"] = make_client("s3", _worker_state["config"].aws)
    return client


def _open_source(source: SourceFile) -> IO[bytes]:
    """The source's bytes as a stream: a local file, or an S3 object's body (streamed, If-Match its ETag)."""
    if not is_s3(source.path):
        return open(source.path, "rb")
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_key(source.path)
    extra = {"IfMatch": f'"{source.etag}"'} if source.etag else {}
    try:
        response = _worker_s3().get_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise OSError(f"GetObject {code or exc}") from exc
    except BotoCoreError as exc:
        raise OSError(f"GetObject {exc}") from exc
    return io.BufferedReader(_CountingReader(response["Body"]), buffer_size=1 << 20)


LEDGER_GROUP: Final = 64
LEDGER_GROUP_SECONDS: Final = 0.5
"""A group of staged sources is recorded once this many are pending, or this long after the first."""


@contextmanager
def _finally(action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` however the block ends (the ledger's last group, even on Ctrl-C)."""
    try:
        yield
    finally:
        action()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_one(source: SourceFile) -> FileOutcome:
    from load.dataset import FRAGMENT_SUFFIX, STAGING_DIR, PartitionStager

    dest: Path = _worker_state["dest"]
    summary = FileSummary(source.path)
    stager = PartitionStager(dest / STAGING_DIR, source.fragment)
    bad_writer = _BadRowWriter(dest / BAD_DIR, source.fragment)
    ref = SourceRef(source.path, etag=source.etag or None)
    log_format, canonicalizer = _worker_parts()
    publisher: _OffsetPublisher | None = _worker_state.get("offsets")
    read_errors: tuple[type[Exception], ...] = (OSError,)
    if is_s3(source.path):  # botocore only for S3 sources: a local backfill never imports it
        from botocore.exceptions import BotoCoreError

        read_errors = (OSError, BotoCoreError)  # BotoCoreError: an S3 body cut off mid-read
    try:
        with _open_source(source) as stream:
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
        unsynced = bad_writer.close()
        # Made durable by the parent before it records the source as staged (the ledger's
        # promise), off this worker's path: its fsyncs wait on the disk, not on this CPU.
        for partition in partitions:
            folder = dest / STAGING_DIR / partition.format()
            unsynced += (str(folder / (source.fragment + FRAGMENT_SUFFIX)), str(folder))
    except read_errors as exc:
        stager.abort()
        bad_writer.close()
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return FileOutcome(summary, [], f"{source.path}: {message}")
    finally:
        if publisher is not None:
            publisher.reading(None)
    return FileOutcome(summary, [p.format() for p in partitions], unsynced=unsynced)


def _finalize_one(partition: str) -> tuple[str, int, int]:
    from load.dataset import FRAGMENT_SUFFIX, STAGING_DIR, finalize_partition
    from load.partitions import PartitionKey

    if _worker_state.pop("canonicalizer", None) is not None and _worker_state["parts_owned"]:
        # Processing is over in this worker: release the transform's caches (user agents,
        # decoded values, times) before finalize needs the memory; the enrichments' memos refer
        # to their own methods, a cycle only the collector frees.  With one worker the parent
        # still holds them, so a collection would free nothing (0.02-0.09 s of a 10 MB run).
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

    def close(self) -> tuple[str, ...]:
        """Close the files; return their paths (not yet fsynced)."""
        paths = tuple(handle.name for handle in self._files.values())
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        return paths


# ---------------------------------------------------------------------------- parent side
class _Recorder:
    """Records staged sources in the ledger in groups (:data:`LEDGER_GROUP` sources, or
    :data:`LEDGER_GROUP_SECONDS` after the first), from a thread of its own, each group only
    once the files and folders its sources wrote are fsynced.

    The reading goes on meanwhile: an fsync waits on the disk (about a millisecond a file
    here, more on a network volume), and with one group after another on one thread the
    ledger's lines keep their order.  A failure (an fsync or the ledger's write) is raised in
    the reading thread at the next group or at :meth:`close`.
    """

    def __init__(
        self, ledger: Ledger, recorded: list[LedgerEntry], *, sync: Callable[[Path], None] | None = None
    ) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self._sync = sync or _fsync
        self._ledger = ledger
        self._recorded = recorded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickstream-etl-ledger")
        self._futures: list[Future[None]] = []
        self._pending: list[LedgerEntry] = []
        self._unsynced: list[str] = []
        self._since = 0.0

    def add(self, entry: LedgerEntry, unsynced: Iterable[str]) -> None:
        if not self._pending:
            self._since = time.perf_counter()
        self._pending.append(entry)
        self._unsynced.extend(unsynced)
        if len(self._pending) >= LEDGER_GROUP or time.perf_counter() - self._since >= LEDGER_GROUP_SECONDS:
            self._submit()

    def _submit(self) -> None:
        for future in [f for f in self._futures if f.done()]:
            self._futures.remove(future)
            future.result()  # an earlier group's failure stops the run here
        if self._pending:
            self._futures.append(self._pool.submit(self._write, self._pending, self._unsynced))
            self._pending, self._unsynced = [], []

    def _write(self, entries: list[LedgerEntry], unsynced: list[str]) -> None:
        for path in dict.fromkeys(unsynced):  # a folder several sources wrote into: once
            self._sync(Path(path))
        self._ledger.append(entries)
        self._recorded.extend(entries)

    def close(self) -> None:
        """Record the last group, even on Ctrl-C, and wait for every group to be recorded (a
        Ctrl-C meanwhile is raised once they are)."""
        try:
            self._submit()
        finally:
            self._drain()

    def _drain(self) -> None:
        interrupted = False
        while True:
            try:
                self._pool.shutdown(wait=True)
                break
            except KeyboardInterrupt:  # a second Ctrl-C: the groups in flight take milliseconds
                interrupted = True
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()
        if interrupted:
            raise KeyboardInterrupt


_Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


class BackfillInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run before finalize: nothing was published; the same command resumes."""

    def __init__(self, staged: int, total: int) -> None:
        super().__init__(f"{staged} of {total} sources are staged")
        self.staged = staged
        self.total = total


def run_backfill(
    sources: list[SourceFile],
    dest: Path,
    config: PipelineConfig,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    environ: dict[str, str] | None = None,
    source_roots: Sequence[str] = (),
    s3_client: Any = None,
    plan: BackfillPlan | None = None,
    resume: bool = True,
    output: S3Destination | None = None,
) -> RunSummary:
    """Process every source into ``dest``; return the run's totals.

    Before anything is read: the configuration is built and checked, DEST is checked
    (writable, not inside one of ``source_roots``, the SOURCE arguments) and locked against
    a concurrent backfill.  A source that cannot be read is reported in ``summary.errors``
    (and counted in ``failed_files``) while the others go on; bad data never stops the run.
    Sources the ledger records as done are skipped (``resume=False`` reads them all again).
    ``s3_client`` serves S3 sources when ``workers`` is 1 (each pool worker makes its own).
    With ``output``, ``dest`` is the local work folder of that S3 DEST (see :class:`S3Destination`).
    Raises :class:`BackfillInterrupted` on Ctrl-C.
    """
    started = time.perf_counter()
    setup, parts = WorkerSetup.check(config, dest, environ)
    check_destination(dest, source_roots, sources)
    with destination_lock(dest), output.lease.held() if output is not None else nullcontext():
        run = _Run(sources, dest, setup, parts, workers, progress or NoProgress(), started, s3_client, output)
        return run.execute(plan, resume)


@dataclass(frozen=True)
class ResumePlan:
    """What the ledger says of each planned source (a value: computed before anything is read)."""

    todo: list[SourceFile]
    staged: list[tuple[SourceFile, LedgerEntry]]
    done: list[SourceFile]


def resume_plan(sources: Sequence[SourceFile], ledger: Ledger, staging: Path | None) -> ResumePlan:
    """Split ``sources`` into those to read, those staged by an interrupted run, those done.

    A ``staged`` source counts only when every fragment the ledger lists for it is still in
    ``staging`` (pass None to skip that check, as a dry run does); otherwise it is read again.
    """
    from load.dataset import FRAGMENT_SUFFIX

    todo: list[SourceFile] = []
    staged: list[tuple[SourceFile, LedgerEntry]] = []
    done: list[SourceFile] = []
    for source in sources:
        state = ledger.state(source.path, source.identity)
        entry = ledger.entries.get(source.path)
        if state == DONE:
            done.append(source)
        elif (
            state == STAGED
            and entry is not None
            and entry.fragment == source.fragment
            and (
                staging is None
                or all((staging / p / (source.fragment + FRAGMENT_SUFFIX)).is_file() for p in entry.partitions)
            )
        ):
            staged.append((source, entry))
        else:
            todo.append(source)
    return ResumePlan(todo, staged, done)


def _file_summary(source: str, data: dict[str, Any]) -> FileSummary:
    """A FileSummary back from its ``to_json`` (as the ledger keeps it)."""
    from collections import Counter

    return FileSummary(
        source,
        lines_read=int(data.get("lines_read", 0)),
        good=int(data.get("good", 0)),
        bad=int(data.get("bad", 0)),
        skipped=int(data.get("skipped", 0)),
        bytes_read=int(data.get("bytes_read", 0)),
        bad_by_kind=Counter(data.get("bad_by_kind", {})),
        skipped_by_reason=Counter(data.get("skipped_by_reason", {})),
        notices=Counter(data.get("notices", {})),
        lines_without_layout=int(data.get("lines_without_layout", 0)),
    )


class _Run:
    """One locked run: resume plan, read, record, finalize, record."""

    def __init__(
        self,
        sources: list[SourceFile],
        dest: Path,
        setup: WorkerSetup,
        parts: Parts,
        workers: int,
        progress: Progress,
        started: float,
        s3_client: Any,
        output: S3Destination | None = None,
    ) -> None:
        self.sources = sources
        self.dest = dest
        self.setup = setup
        self.parts = parts
        self.workers = workers
        self.progress = progress
        self.started = started
        self.s3_client = s3_client
        self.summary = RunSummary()
        self._executor: Any = None
        self._run_map: _Mapper = map
        self.output: S3Destination | None = output
        self._old_keys: dict[str, list[str]] = {}

    def execute(self, plan: BackfillPlan | None, resume: bool) -> RunSummary:
        from load.dataset import STAGING_DIR

        staging = self.dest / STAGING_DIR
        if self.output is not None:
            self.output.fetch_ledger(self.dest / LEDGER_FILE)
        ledger = Ledger.read(self.dest / LEDGER_FILE)  # read even when not resuming: compact() keeps the others
        work = resume_plan(self.sources, ledger if resume else Ledger(ledger.path), staging)
        _clean_staging(staging, {source.fragment for source, _ in work.staged})
        summary = self.summary
        if plan is not None:
            summary.ignored_keys = list(plan.ignored)
            summary.out_of_range = plan.out_of_range
        summary.skipped_files = len(work.done)
        touched: set[str] = set()
        per_file: list[dict[str, Any]] = []
        recorded: list[LedgerEntry] = []
        for source, entry in work.staged:
            file = _file_summary(source.path, entry.summary)
            self._count(source, file)
            summary.resumed_files += 1
            per_file.append(file.to_json())
            touched.update(entry.partitions)
            recorded.append(entry)
        read_started = time.perf_counter()
        lines_before = summary.lines_read
        try:
            if work.todo:
                self._read(work.todo, touched, per_file, recorded, ledger)
            read_seconds = time.perf_counter() - read_started
            if touched:
                self._finalize(sorted(touched))
            if self.output is not None:
                self._publish(sorted(touched))
        except KeyboardInterrupt:
            self.progress.close()
            ledger.close()
            raise BackfillInterrupted(len(recorded), len(self.sources)) from None
        finally:
            self._close_executor()
        self.progress.close()
        ledger.append([LedgerEntry(e.source, e.identity, DONE, e.partitions, e.fragment, e.summary) for e in recorded])
        read_bytes = sum(source.size for source in work.todo)
        if work.todo and read_seconds > 0:
            per_worker = max(1, min(self.workers, len(work.todo))) * read_seconds
            ledger.record_run(read_bytes / per_worker, (summary.lines_read - lines_before) / per_worker)
        ledger.compact()
        shutil.rmtree(staging, ignore_errors=True)
        self._report(per_file)
        return summary

    def _report(self, per_file: list[dict[str, Any]]) -> None:
        """Write ``_summary.json`` (and publish it, the bad rows and the ledger to an S3 DEST)."""
        self.summary.seconds = time.perf_counter() - self.started
        report = {**self.summary.to_json(), "per_file": sorted(per_file, key=lambda f: f["source"])}
        (self.dest / SUMMARY_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if self.output is not None:
            self.output.publish_files(self.dest)

    def _publish(self, partitions: list[str]) -> None:
        assert self.output is not None
        self.progress.phase("publishing partitions", len(partitions), "partition")
        for done, partition in enumerate(partitions, start=1):
            self.output.publish_partition(self.dest, partition, self._old_keys.get(partition, ()))
            self.progress.update(done)

    def _count(self, source: SourceFile, file: FileSummary) -> None:
        self.summary.add(file)
        if is_s3(source.path):
            self.summary.s3_objects += 1
            self.summary.s3_bytes += source.size

    def _read(
        self,
        todo: list[SourceFile],
        touched: set[str],
        per_file: list[dict[str, Any]],
        recorded: list[LedgerEntry],
        ledger: Ledger,
    ) -> None:
        summary = self.summary
        workers = max(1, min(self.workers, len(todo)))
        by_size = sorted(todo, key=lambda s: (-s.size, s.path))  # big files first balances workers
        by_path = {source.path: source for source in todo}
        offsets = _offset_slots(workers)
        finished_bytes = 0
        total_files = len(self.sources)
        skipped = summary.skipped_files
        started = time.perf_counter()
        lines_before = summary.lines_read

        def show() -> None:
            # Lines are known per finished file; bytes (and their rate) as the workers read.
            note = f"{summary.files + skipped}/{total_files} files"
            if skipped:
                note += f" ({skipped} done before)"
            lines = summary.lines_read - lines_before
            if lines:
                rate = lines / (time.perf_counter() - started)
                note += f", {summary.lines_read:,} lines, {rate:,.0f} lines/s"
            self.progress.update(finished_bytes + sum(offsets), note)

        self.progress.phase("reading", sum(source.size for source in todo), "B")
        self._executor = _executor(workers, self.setup, self.parts, offsets, self.s3_client)
        self._run_map = self._executor.__enter__()
        # Staged sources are recorded in groups, one fsync each: a source whose line is not yet
        # durable when the run dies is only read again by the next run (its fragment is rewritten).
        recorder = _Recorder(ledger, recorded)
        with Ticker(show), _finally(recorder.close):
            for outcome in self._run_map(_process_one, by_size):
                source = by_path[outcome.summary.source]
                finished_bytes += source.size
                if outcome.error:
                    summary.add(outcome.summary)
                    summary.failed_files += 1
                    summary.errors.append(outcome.error)
                    per_file.append(outcome.summary.to_json())
                    continue
                entry = LedgerEntry(
                    source.path,
                    source.identity,
                    STAGED,
                    tuple(outcome.partitions),
                    source.fragment,
                    outcome.summary.to_json(),
                )
                recorder.add(entry, outcome.unsynced)  # once recorded, after its files' fsyncs, it counts
                self._count(source, outcome.summary)
                per_file.append(outcome.summary.to_json())
                touched.update(outcome.partitions)
                summary.seconds = time.perf_counter() - self.started

    def _finalize(self, partitions: list[str]) -> None:
        summary = self.summary
        executor = self._executor
        if executor is None:  # nothing read this run (all resumed): workers for finalize only
            workers = max(1, min(self.workers, len(partitions)))
            offsets = _offset_slots(workers)
            executor = self._executor = _executor(workers, self.setup, self.parts, offsets, self.s3_client)
            self._run_map = executor.__enter__()
        if self.output is not None:  # merge with what S3 holds: its parts come down first
            for partition in partitions:
                self._old_keys[partition] = self.output.fetch_partition(self.dest, partition)
        try:
            self.progress.phase("writing partitions", len(partitions), "partition")
            for done, (_, rows, dropped) in enumerate(self._run_map(_finalize_one, partitions), start=1):
                summary.rows_written += rows
                summary.duplicates_dropped += dropped
                self.progress.update(done, f"{summary.rows_written:,} rows")
        finally:
            self._close_executor()

    def _close_executor(self) -> None:
        executor = self._executor
        if executor is not None:
            self._executor = None
            executor.__exit__(None, None, None)


def _clean_staging(staging: Path, keep: set[str]) -> None:
    """Delete every fragment in ``staging`` but those of ``keep`` (sources the ledger says are staged).

    A fragment of a source not recorded may be partial (the run was killed while writing it):
    that source is read again from scratch, so its old fragments must not be finalized too.
    """
    from load.dataset import FRAGMENT_SUFFIX

    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
        return
    if not staging.is_dir():
        return
    for folder in staging.rglob("*"):
        if folder.is_file() and not (folder.suffix == FRAGMENT_SUFFIX and folder.stem in keep):
            folder.unlink(missing_ok=True)


def _offset_slots(workers: int) -> Any:
    """One slot per worker for the offset it is at in its current file.

    Shared memory only for a pool: in this process a plain array does, which spares the start-up
    of multiprocessing's shared memory and of its resource tracker (a process of its own).
    """
    if workers == 1:
        return (ctypes.c_int64 * 1)()
    return multiprocessing.get_context("spawn").RawArray("q", workers)


class _LocalSlot:
    """The slot counter of :func:`_init_worker` for the one worker in this process (no lock needed)."""

    value = 0

    def get_lock(self) -> AbstractContextManager[None]:
        return nullcontext()


@contextmanager
def _executor(workers: int, setup: WorkerSetup, parts: Parts, offsets: Any, s3_client: Any = None) -> Iterator[_Mapper]:
    """A map over work items: in this process for one worker (with the parent's parts), else one spawned pool.

    Each worker publishes its offset in its current file into its slot of ``offsets``.
    """
    if workers == 1:
        _init_worker(setup, parts, offsets, _LocalSlot(), s3_client)
        thresholds = gc.get_threshold()
        _tune_gc()
        try:
            yield map
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            _worker_state["offsets"].stop()
        return
    context = multiprocessing.get_context("spawn")
    slots = context.Value("i", 0)
    with context.Pool(workers, _init_worker, (setup, None, offsets, slots)) as pool:
        yield lambda function, items: pool.imap_unordered(function, items, chunksize=1)


# ---------------------------------------------------------------------------- dry run
@dataclass(frozen=True)
class DryRun:
    """What a run would do: the sources, what the ledger says, and an estimate of the time."""

    objects: int
    bytes: int
    s3_objects: int
    first_hour: str | None
    last_hour: str | None
    done: int
    done_bytes: int
    staged: int
    todo: int
    todo_bytes: int
    ignored: tuple[str, ...]
    out_of_range: int
    bytes_per_second: float
    rate_from: str
    workers: int

    @property
    def estimated_seconds(self) -> float:
        return self.todo_bytes / (self.bytes_per_second * self.workers) if self.bytes_per_second > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "s3_objects": self.s3_objects,
            "first_hour": self.first_hour,
            "last_hour": self.last_hour,
            "done": self.done,
            "done_bytes": self.done_bytes,
            "staged": self.staged,
            "todo": self.todo,
            "todo_bytes": self.todo_bytes,
            "ignored_keys": list(self.ignored),
            "out_of_range": self.out_of_range,
            "bytes_per_second_per_worker": round(self.bytes_per_second, 1),
            "rate_from": self.rate_from,
            "workers": self.workers,
            "estimated_seconds": round(self.estimated_seconds, 3),
        }


def dry_run(plan: BackfillPlan, ledger: Ledger, workers: int, rate: tuple[float, str]) -> DryRun:
    """The plan of a run as a value (no I/O): ``rate`` is (compressed bytes/s per worker, where it came from)."""
    from pipeline.app.sources import CloudFrontName

    work = resume_plan(plan.files, ledger, None)
    hours = sorted(name.hour for f in plan.files if (name := CloudFrontName.parse(f.path)) is not None)
    return DryRun(
        objects=len(plan.files),
        bytes=sum(f.size for f in plan.files),
        s3_objects=len(plan.s3_files),
        first_hour=f"{hours[0]:%Y-%m-%dT%H}" if hours else None,
        last_hour=f"{hours[-1]:%Y-%m-%dT%H}" if hours else None,
        done=len(work.done),
        done_bytes=sum(f.size for f in work.done),
        staged=len(work.staged),
        todo=len(work.todo),
        todo_bytes=sum(f.size for f in work.todo),
        ignored=tuple(plan.ignored),
        out_of_range=plan.out_of_range,
        bytes_per_second=rate[0],
        rate_from=rate[1],
        workers=max(1, min(workers, len(work.todo) or 1)),
    )


def measure_rate(config: PipelineConfig, environ: dict[str, str] | None = None, lines: int = 3000) -> float:
    """Compressed bytes/s of one core on a generated sample (about a second's work), held in memory."""
    import tempfile

    from pipeline.testing.generate import GenerateOptions, generate_logs

    setup, (log_format, canonicalizer) = WorkerSetup.check(config, Path("."), environ)
    with tempfile.TemporaryDirectory(prefix="clickstream-etl-rate-") as folder:
        [path] = generate_logs(Path(folder), GenerateOptions(files=1, lines_per_file=lines, seed=11))
        data = Path(path).read_bytes()
    summary = FileSummary("sample")
    started = time.perf_counter()
    stream = io.BytesIO(data)
    for _ in process_stream(
        stream, SourceRef("sample"), log_format, canonicalizer, setup.limits, summary, 0, expect_gzip=True
    ):
        pass
    seconds = time.perf_counter() - started
    return len(data) / seconds if seconds > 0 else 0.0


# ---------------------------------------------------------------------------- S3 destination
class S3Destination:
    """``--output s3://bucket/prefix``: the run works in a local folder, then publishes partition by partition.

    The local work folder (see :func:`work_folder`) holds the staging, the ledger and, while a
    partition is finalized, that partition's existing parts (downloaded first, so finalize
    merges with them as with a local DEST).  A finalized partition is published by uploading
    its files under deterministic keys, ``events/<partition>/part-NNNNN-<sha256 of the bytes,
    16 hex>.parquet``, then deleting the keys it held before that are not among them: a reader
    listing the partition in between sees the old and the new files (duplicates), never part
    of a partition; a rerun of the same input gives the same keys and deletes nothing.  The
    ledger object ``_backfill_ledger.jsonl`` under the prefix is uploaded after the partitions
    (a kill before that only makes the next run finalize and publish the same files again).
    """

    def __init__(self, client: Any, url: S3Url, lease: S3Lease | None = None) -> None:
        self.client = client
        self.url = url
        self.root = url.prefix if not url.prefix or url.prefix.endswith("/") else url.prefix + "/"
        self.lease = lease or S3Lease(client, url.bucket, self.root + S3_LEASE_FILE, display=self.display())

    def display(self) -> str:
        return f"s3://{self.url.bucket}/{self.root}".rstrip("/")

    def fetch_ledger(self, path: Path) -> None:
        """Put the S3 ledger's lines before the work folder's own (its staged lines are newer)."""
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.url.bucket, Key=self.root + LEDGER_FILE)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            return
        local = path.read_bytes() if path.exists() else b""
        temporary = path.with_name(path.name + ".fetched")
        temporary.write_bytes(body if body.endswith(b"\n") or not body else body + b"\n")
        with open(temporary, "ab") as handle:
            handle.write(local)
        os.replace(temporary, path)

    def _keys(self, partition: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.url.bucket, Prefix=f"{self.root}events/{partition}/"):
            keys.extend(item["Key"] for item in page.get("Contents", ()) if item["Key"].endswith(".parquet"))
        return sorted(keys)

    def fetch_partition(self, work: Path, partition: str) -> list[str]:
        """Download ``partition``'s parts into the work folder (replacing what it held); return their keys."""
        folder = work / "events" / partition
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        keys = self._keys(partition)
        for key in keys:
            self.client.download_file(self.url.bucket, key, str(folder / key.rsplit("/", 1)[-1]))
        return keys

    def publish_partition(self, work: Path, partition: str, old_keys: Sequence[str]) -> list[str]:
        """Upload the finalized partition's files, then delete its old keys; free the local copy."""
        self.lease.check()
        folder = work / "events" / partition
        new_keys: list[str] = []
        for path in sorted(folder.glob("part-*.parquet")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            key = f"{self.root}events/{partition}/{path.stem}-{digest}.parquet"
            self.client.upload_file(str(path), self.url.bucket, key)
            new_keys.append(key)
        stale = [key for key in old_keys if key not in new_keys]
        for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1,000 keys
            chunk = stale[start : start + 1000]
            self.client.delete_objects(
                Bucket=self.url.bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True}
            )
        shutil.rmtree(folder, ignore_errors=True)
        return new_keys

    def publish_files(self, work: Path) -> None:
        """Upload the bad rows, the summary and the ledger (in that order), then free the local bad rows."""
        self.lease.check()
        bad = work / BAD_DIR
        for path in sorted(bad.rglob("*.jsonl")) if bad.exists() else ():
            self.client.upload_file(str(path), self.url.bucket, self.root + path.relative_to(work).as_posix())
        shutil.rmtree(bad, ignore_errors=True)
        for name in (SUMMARY_FILE, LEDGER_FILE):
            if (work / name).exists():
                self.client.upload_file(str(work / name), self.url.bucket, self.root + name)


S3_LEASE_FILE: Final = "_backfill.lock"
S3_LEASE_SECONDS: Final = 900.0
"""How long a lease on an S3 DEST lasts unless renewed; the holder renews it every third of that."""


class S3Lease:
    """An exclusive, expiring lease on an S3 DEST, for backfills on different machines.

    A local DEST is locked with ``flock`` (:func:`destination_lock`); an S3 DEST is written from
    a local work folder, so two machines would each hold their own lock.  The lease is an object
    under the DEST (``_backfill.lock``) created with a conditional write (``If-None-Match: *``):
    of two backfills only one creates it, and the other refuses, naming the holder and when its
    lease ends.  The holder renews it (``If-Match`` its ETag) every third of its duration from a
    background thread; a lease whose holder died expires, and the next backfill takes it over
    with ``If-Match`` on the expired one, so a killed run never blocks a rerun for long.  Every
    publication checks the lease first: a holder that lost it (it could not renew in time, and
    another run took it over) stops before it writes anything more.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        display: str,
        seconds: float = S3_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._display = display
        self._seconds = seconds
        self._clock = clock
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        import socket

        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        return json.dumps({"holder": holder, "expires_at": self._clock() + self._seconds}).encode()

    def _put(self, **condition: str) -> str:
        response = self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._body(), **condition)
        return str(response["ETag"])

    def acquire(self) -> None:
        """Take the lease, or raise :class:`DestinationInUseError` naming the live holder."""
        from botocore.exceptions import ClientError

        try:
            self._etag = self._put(IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise
            response = self._client.get_object(Bucket=self._bucket, Key=self._key)
            current = json.loads(response["Body"].read() or b"{}")
            expires = float(current.get("expires_at", 0))
            if expires > self._clock():
                raise DestinationInUseError(
                    f"--output {self._display} is in use by another backfill ({current.get('holder', 'unknown')}, "
                    f"its lease ends {datetime.fromtimestamp(expires, UTC):%Y-%m-%dT%H:%M:%SZ} unless renewed); wait "
                    "for it to finish, or choose another DEST"
                ) from None
            try:  # an expired lease: its holder died; take it over unless another run just did
                self._etag = self._put(IfMatch=response["ETag"])
            except ClientError as again:
                if _code(again) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    raise
                raise DestinationInUseError(
                    f"--output {self._display} was just taken by another backfill; wait for it to finish"
                ) from None
        self._renewer = threading.Thread(target=self._renew_loop, name="s3-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            self.renew()

    def renew(self) -> None:
        """Extend the lease; on failure remember it is lost (:meth:`check` then raises)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._etag is None or self._lost:
            return
        try:
            self._etag = self._put(IfMatch=self._etag)
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey", "404"):
                self._lost = "another backfill took it over after it expired"
            # other errors: the next renewal tries again; the lease lasts three periods
        except BotoCoreError:
            pass

    def check(self) -> None:
        """Raise :class:`DestinationInUseError` if the lease was lost (never publish without it)."""
        if self._lost:
            raise DestinationInUseError(
                f"--output {self._display}: this backfill lost its lease ({self._lost}); it stopped before "
                "publishing more. Rerun it when the other backfill has finished: it resumes from the ledger"
            )

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still ours."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self._etag is not None and not self._lost:
            try:
                self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
            except (ClientError, BotoCoreError):
                pass  # already taken over, or unreachable: it expires on its own
        self._etag = None

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def work_folder(url: S3Url) -> Path:
    """The local work folder of an S3 DEST: the same for the same DEST, so a rerun resumes its staging."""
    import tempfile

    digest = hashlib.sha256(url.format().encode("utf-8")).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"clickstream-etl-backfill-{digest}"
