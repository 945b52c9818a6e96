"""The events dataset in a local folder (a destination): stage events per partition, then finalize Parquet.

Workers stage events as Arrow IPC fragments (fast, uncompressed, random access) under
``DEST/_staging/<partition>/<fragment>.arrow``; :func:`finalize_partition` merges a
partition's fragments with the rows already in ``DEST/events/<partition>/``, drops natural
duplicates and rewrites ``part-00000.parquet``, ``part-00001.parquet``... atomically.
Rerunning the same input therefore rewrites the same files instead of adding new ones.

Finalize works in bounded memory whatever the size of the partition:

1. *Plan the winners on keys only.*  ``event_id``, ``event_fingerprint`` and
   ``collector_tstamp`` are read for every row of every source (existing parts in name
   order, then this run's fragments in name order; a row's place in that sequence is its
   *position*).  Each row gets a rank that packs "this run's row first", the collector
   time within the hour and the position into one int64; the winner of each natural
   event (same ``event_id`` and ``event_fingerprint``) is the row of smallest rank.  When
   the partition has more rows than ``bucket_rows``, rows are bucketed by the leading hex
   digits of ``event_id`` (a histogram pass sizes the buckets) and each bucket is ranked
   on its own, re-reading the key columns, so the working set stays about
   ``bucket_rows`` keys.  The result is a keep-bitmap of one bit per position.
2. *Stream the rows.*  The sources are read again batch by batch in the same order,
   filtered by the bitmap and re-chunked into fixed-size chunks, so the Parquet layout
   (row groups, pages) depends only on the rows written, never on how they were batched
   on the way in.  A row group closes at ``row_group_size`` rows or at
   ``row_group_max_bytes`` of column data, a file at ``max_rows_per_file`` rows.

3. *Typed entity columns* (``load.typed_entities``, :mod:`load.lake`).  A file's schema must
   be known before its writer opens, and every file of the partition gets the same one, so
   between the plan (1) and the stream (2) one more pass reads the three JSON columns of the kept
   rows only (batch by batch; what it keeps is the set of entity families and versions,
   a few entries) and derives the typed columns from it.  The stream then computes the
   typed values chunk by chunk from the same JSON columns.  Existing parts are read by
   their canonical columns only: their typed columns are always derived again, so a
   rewrite gives the same bytes and typed columns never drift from the JSON.  (Reading
   the typed columns of the first chunk, or of the existing parts, would not do: a later
   row can bring a family the first ones lack, and older parts may have been typed by an
   older registry.)  The pass parses every kept row's entities once more; rows without
   entities cost nothing, and a partition without any gets the canonical schema, the
   same files as without typed columns.

Bucketing changes how much memory the plan needs, never the output.  Rows keep the order
of their sources (existing rows first, then fragments in name order, each in file order);
they are not sorted by ``collector_tstamp`` within the hour, because a sort would need the
whole partition at once.  Fragments come from one source file each and are named after
it, so the order does not depend on the number of workers or the order they finished in.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import ipc

from load.errors import DestinationError, SinkWriteError
from load.lake import (
    JSON_COLUMNS,
    EntityLayout,
    EntityReader,
    EntityVersions,
    add_entity_versions,
    entity_layout,
    with_entity_columns,
)
from load.parquet import arrow_schema, events_to_batch, parquet_writer
from load.partitions import PartitionKey
from pipeline.config import LoadConfig
from pipeline.constants import ARROW_MEMORY_POOL_ENV
from pipeline.iglu import Resolver
from pipeline.schema import CanonicalEvent

STAGING_DIR: Final = "_staging"
EVENTS_DIR: Final = "events"
FRAGMENT_SUFFIX: Final = ".arrow"

DEDUPE_BUCKET_ROWS: Final = 200_000
"""Rows whose keys are ranked at once (about 200 bytes each while they are sorted)."""
ROW_GROUP_MAX_BYTES: Final = 16 << 20
"""A row group also closes when its column data reaches this size (it is built in memory)."""
CHUNK_ROWS: Final = 8192
"""Rows are re-chunked to this size before they reach the Parquet writer."""

_KEY_COLUMNS: Final = ("event_id", "event_fingerprint", "collector_tstamp")
# rank = origin << 62 | (collector ms - hour start) << 40 | position: smallest wins.
_POSITION_BITS: Final = 40
_OFFSET_BITS: Final = 22  # 3,600,000 ms in an hour < 2**22
_EXISTING_BIT: Final = 1 << 62
_PREFIX_DIGITS: Final = 3  # buckets are ranges of the 4096 three-hex-digit event_id prefixes


def use_compact_memory_pool() -> str:
    """Make jemalloc this process's Arrow memory pool, unless ``ARROW_DEFAULT_MEMORY_POOL`` is set.

    Finalize allocates and frees large buffers row group after row group; pyarrow's default
    pool on Linux (mimalloc) kept more of them resident than jemalloc doing the same work
    (peak RSS of a 150 MB backfill with ``--workers 1``: 314 MB against 253 MB).  Call it
    once per process, before the first Arrow allocation; returns the pool's backend name.
    """
    if not os.environ.get(ARROW_MEMORY_POOL_ENV):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:  # a pyarrow build without jemalloc (Windows): keep its default
            pass
    return str(pa.default_memory_pool().backend_name)


_FRAGMENT_BUFFER: Final = 256 * 1024
_PART_BUFFER: Final = 1024 * 1024


def _buffered_file(path: Path, buffer_size: int) -> pa.NativeFile:
    """A file for an Arrow writer, written through a buffer: the IPC and Parquet writers write
    each column buffer, page and padding apart (about a thousand writes a file unbuffered).
    A writer does not close a stream it was given: :func:`_close_writing` closes both."""
    return pa.output_stream(str(path), buffer_size=buffer_size)


def _close_writing(writer: Any, sink: pa.NativeFile) -> None:
    """Close an Arrow writer, then its buffered file (which flushes the buffer), even if the writer fails."""
    try:
        writer.close()
    finally:
        sink.close()


class PartitionStager:
    """Buffers one source's events per partition and appends them to IPC fragment files.

    At most ``max_buffered_rows`` events wait in memory across all partitions (a file that
    spans many hours does not hold a full batch per hour); flushing earlier only changes
    the fragment's batch boundaries, which finalize does not depend on.
    """

    def __init__(
        self, staging_root: Path, fragment: str, batch_rows: int = 1024, max_buffered_rows: int | None = None
    ) -> None:
        self._root = staging_root
        self._fragment = fragment
        self._batch_rows = max(batch_rows, 1)
        self._max_buffered = max(max_buffered_rows or 4 * self._batch_rows, 1)
        self._buffered = 0
        self._buffers: dict[PartitionKey, list[CanonicalEvent]] = {}
        self._writers: dict[PartitionKey, tuple[ipc.RecordBatchFileWriter, pa.NativeFile]] = {}
        self._hour_cache: dict[int, PartitionKey] = {}
        self.rows = 0

    def add(self, event: CanonicalEvent) -> None:
        hour = event["collector_tstamp"] // 3_600_000
        key = self._hour_cache.get(hour)
        if key is None:
            key = self._hour_cache[hour] = PartitionKey.of(event["collector_tstamp"])
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = []
        buffer.append(event)
        self._buffered += 1
        if len(buffer) >= self._batch_rows:
            self._flush(key, buffer)
        elif self._buffered >= self._max_buffered:
            for other, pending in self._buffers.items():
                self._flush(other, pending)

    def _flush(self, key: PartitionKey, buffer: list[CanonicalEvent]) -> None:
        if not buffer:
            return
        opened = self._writers.get(key)
        if opened is None:
            folder = self._root / key.format()
            folder.mkdir(parents=True, exist_ok=True)
            sink = _buffered_file(folder / (self._fragment + FRAGMENT_SUFFIX), _FRAGMENT_BUFFER)
            opened = self._writers[key] = (ipc.new_file(sink, arrow_schema()), sink)
        opened[0].write_batch(events_to_batch(buffer))
        self.rows += len(buffer)
        self._buffered -= len(buffer)
        buffer.clear()

    def close(self) -> list[PartitionKey]:
        """Flush everything; return the partitions this source touched."""
        for key, buffer in self._buffers.items():
            self._flush(key, buffer)
        for writer, sink in self._writers.values():
            _close_writing(writer, sink)
        touched = sorted(self._writers)
        self._writers.clear()
        return touched

    def abort(self) -> None:
        """Discard this source's fragments (the source will be reported as failed)."""
        for writer, sink in self._writers.values():
            _close_writing(writer, sink)
        for key in self._writers:
            (self._root / key.format() / (self._fragment + FRAGMENT_SUFFIX)).unlink(missing_ok=True)
        self._writers.clear()
        self._buffers.clear()
        self._buffered = 0


@dataclass(frozen=True)
class PartitionResult:
    partition: PartitionKey
    rows_written: int
    duplicates_dropped: int
    """Rows of this run not written (natural duplicates among themselves)."""
    files: tuple[str, ...]
    replaced_rows: int = 0
    """Existing rows dropped because this run (or an earlier existing row) holds the same event."""


# ------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class _Source:
    """An input of finalize: an existing Parquet part or a staged IPC fragment."""

    path: Path
    existing: bool

    def key_batches(self) -> Iterator[pa.RecordBatch]:
        """The key columns, batch by batch (only those columns are read)."""
        if self.existing:
            return _parquet_batches(self.path, list(_KEY_COLUMNS), 65_536)
        return _fragment_batches(self.path, _key_indices())

    def batches(self) -> Iterator[pa.RecordBatch]:
        """All columns in the canonical schema, batch by batch (an existing part's typed
        entity columns are not read: they are derived again from its JSON columns)."""
        if self.existing:
            return _parquet_batches(self.path, None, CHUNK_ROWS)
        return _fragment_batches(self.path, None)

    def json_batches(self) -> Iterator[pa.RecordBatch]:
        """The JSON entity columns, batch by batch (only those columns are read)."""
        if self.existing:
            return _parquet_batches(self.path, list(JSON_COLUMNS), CHUNK_ROWS)
        return _fragment_batches(self.path, _indices(JSON_COLUMNS))


@cache
def _indices(names: tuple[str, ...]) -> tuple[int, ...]:
    schema = arrow_schema()
    return tuple(sorted(schema.get_field_index(name) for name in names))


def _key_indices() -> tuple[int, ...]:
    return _indices(_KEY_COLUMNS)


def _fragment_batches(path: Path, fields: Sequence[int] | None) -> Iterator[pa.RecordBatch]:
    # Plain reads, not a memory map: mapped pages would count in (and inflate) the RSS.
    options = ipc.IpcReadOptions(included_fields=list(fields)) if fields is not None else None
    with pa.OSFile(str(path), "rb") as source:
        reader = ipc.open_file(source, options=options)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def _parquet_batches(path: Path, columns: list[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
    # A dataset with the canonical schema reads parts written by an older schema too
    # (missing columns come back null).  Imported here: only a rerun into a folder with parts
    # reads any, and pyarrow.dataset costs about 50 ms of start-up.
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet", schema=arrow_schema())
    yield from dataset.to_batches(
        columns=columns, batch_size=batch_size, use_threads=False, batch_readahead=0, fragment_readahead=0
    )


# ------------------------------------------------------------------------------ plan: winners
@dataclass
class _Plan:
    """Which positions to keep (``None``: all of them) and the counts the result reports."""

    keep: pa.Buffer | None
    starts: list[int]
    total: int
    existing_rows: int
    kept: int
    kept_existing: int


def _ranks(batch: pa.RecordBatch, start: int, existing: bool, hour_start_ms: int) -> pa.Array:
    """One int64 per row: smaller is better (this run first, earliest collector time, then position)."""
    millis = pc.cast(batch.column("collector_tstamp"), pa.int64())
    offset = pc.subtract(pc.fill_null(millis, hour_start_ms), pa.scalar(hour_start_ms, pa.int64()))
    # Rows of a partition are within its hour; clamp anyway so a stray row cannot overflow.
    offset = pc.min_element_wise(pc.max_element_wise(offset, 0), (1 << _OFFSET_BITS) - 1)
    positions = pa.array(range(start, start + batch.num_rows), pa.int64())
    ranks = pc.add(pc.shift_left(offset, _POSITION_BITS), positions)
    return pc.add(ranks, pa.scalar(_EXISTING_BIT, pa.int64())) if existing else ranks


@cache
def _prefixes() -> pa.Array:
    return pa.array([f"{i:0{_PREFIX_DIGITS}x}" for i in range(16**_PREFIX_DIGITS)])


def _prefix_buckets(event_id: pa.Array) -> pa.Array:
    """The 0..4095 value of ``event_id``'s first three hex digits (0 when they are not hex)."""
    head = pc.utf8_lower(pc.utf8_slice_codeunits(event_id, 0, _PREFIX_DIGITS))
    return pc.fill_null(pc.index_in(head, value_set=_prefixes()), 0)


def _bucket_ranges(histogram: list[int], bucket_rows: int) -> list[tuple[int, int]]:
    """Contiguous prefix ranges ``[lo, hi)`` of at most ``bucket_rows`` rows (or one prefix)."""
    ranges: list[tuple[int, int]] = []
    low = rows = 0
    for prefix, count in enumerate(histogram):
        if rows and rows + count > bucket_rows:
            ranges.append((low, prefix))
            low, rows = prefix, 0
        rows += count
    ranges.append((low, len(histogram)))
    return ranges


def _winning_positions(keys: list[tuple[pa.Array, pa.Array, pa.Array]]) -> pa.Array:
    """Positions of the smallest rank per (event_id, event_fingerprint).

    Sorted rather than hash-grouped: Acero's group_by held ~700 bytes per key at 65k keys,
    a sort of the three key columns about a tenth of that.
    """
    table = pa.table(
        {
            "event_id": pa.chunked_array([k[0] for k in keys], pa.string()),
            "event_fingerprint": pa.chunked_array([k[1] for k in keys], pa.string()),
            "rank": pa.chunked_array([k[2] for k in keys], pa.int64()),
        }
    )
    if not table.num_rows:
        return pa.array([], pa.int64())
    order = pc.sort_indices(
        table, sort_keys=[("event_id", "ascending"), ("event_fingerprint", "ascending"), ("rank", "ascending")]
    )
    ranked = table.take(order).combine_chunks()
    del table, order
    starts = pc.or_(_changes(ranked["event_id"]), _changes(ranked["event_fingerprint"]))
    firsts = ranked["rank"].filter(pa.concat_arrays([pa.array([True]), starts.combine_chunks()]))
    return pc.bit_wise_and(firsts, pa.scalar((1 << _POSITION_BITS) - 1, pa.int64()))


def _changes(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """For each row after the first: does it differ from the previous one (nulls equal each other)?"""
    current, previous = column.slice(1), column.slice(0, len(column) - 1)
    one_null = pc.xor(pc.is_null(current), pc.is_null(previous))
    return pc.coalesce(pc.not_equal(current, previous), one_null)


def _set_bits(bitmap: bytearray, positions: pa.ChunkedArray | pa.Array, existing_rows: int) -> int:
    """Set the bits of ``positions``; return how many are existing rows."""
    existing = 0
    step = 65_536
    for start in range(0, len(positions), step):
        for position in positions.slice(start, step).to_pylist():
            bitmap[position >> 3] |= 1 << (position & 7)
            if position < existing_rows:
                existing += 1
    return existing


def _plan(sources: Sequence[_Source], hour_start_ms: int, bucket_rows: int) -> _Plan:  # noqa: PLR0912 - the finalize plan's cases (new, rewritten, merged partitions) read best side by side
    starts: list[int] = []
    total = existing_rows = 0
    keys: list[tuple[pa.Array, pa.Array, pa.Array]] = []
    histogram: list[int] | None = None
    for source in sources:
        starts.append(total)
        for batch in source.key_batches():
            if histogram is None:
                ranks = _ranks(batch, total, source.existing, hour_start_ms)
                # Copies: a column read from an IPC file is a view into the whole record batch.
                keys.append((_copy(batch.column("event_id")), _copy(batch.column("event_fingerprint")), ranks))
            else:
                _count_prefixes(histogram, batch.column("event_id"))
            total += batch.num_rows
            if source.existing:
                existing_rows += batch.num_rows
            if histogram is None and total > bucket_rows:  # too many keys for one ranking: bucket them
                histogram = [0] * 16**_PREFIX_DIGITS
                for event_id, _, _ in keys:
                    _count_prefixes(histogram, event_id)
                keys = []
    if total >= 1 << _POSITION_BITS:
        raise DestinationError(f"partition too large to finalize: {total} rows")
    bitmap = bytearray((total + 7) // 8)
    kept = kept_existing = 0
    if histogram is None:
        winners = _winning_positions(keys) if keys else pa.array([], pa.int64())
        del keys
        if len(winners) == total:
            return _Plan(None, starts, total, existing_rows, total, existing_rows)
        kept, kept_existing = len(winners), _set_bits(bitmap, winners, existing_rows)
    else:
        for low, high in _bucket_ranges(histogram, bucket_rows):
            bucket: list[tuple[pa.Array, pa.Array, pa.Array]] = []
            for source, start in zip(sources, starts, strict=True):
                position = start
                for batch in source.key_batches():
                    prefix = _prefix_buckets(batch.column("event_id"))
                    inside = pc.and_(pc.greater_equal(prefix, low), pc.less(prefix, high))
                    ranks = _ranks(batch, position, source.existing, hour_start_ms)
                    position += batch.num_rows
                    bucket.append(
                        (
                            batch.column("event_id").filter(inside),
                            batch.column("event_fingerprint").filter(inside),
                            ranks.filter(inside),
                        )
                    )
            winners = _winning_positions(bucket)
            del bucket
            kept += len(winners)
            kept_existing += _set_bits(bitmap, winners, existing_rows)
    return _Plan(pa.py_buffer(bitmap), starts, total, existing_rows, kept, kept_existing)


def _kept_batches(
    sources: Sequence[_Source], plan: _Plan, read: Callable[[_Source], Iterator[pa.RecordBatch]]
) -> Iterator[pa.RecordBatch]:
    """The batches ``read`` gives of each source, in order, without the rows the plan drops."""
    for source, start in zip(sources, plan.starts, strict=True):
        position = start
        for batch in read(source):
            rows = batch.num_rows
            if plan.keep is not None:
                mask = pa.Array.from_buffers(pa.bool_(), rows, [None, plan.keep], 0, position)
                if not pc.all(mask).as_py():
                    batch = batch.filter(mask)
            position += rows
            yield batch


def _entity_layout(sources: Sequence[_Source], plan: _Plan, resolver: Resolver, reader: EntityReader) -> EntityLayout:
    """The typed columns of the rows the plan keeps, from one pass over their JSON columns."""
    found: EntityVersions = {}
    for batch in _kept_batches(sources, plan, _Source.json_batches):
        # Only the distinct texts matter (a page's pings repeat its contexts): deduplicated in Arrow,
        # so a repeated text never becomes a Python string.
        texts = (pc.unique(batch.column(name)).to_pylist() for name in JSON_COLUMNS)
        add_entity_versions(found, *texts, reader=reader)
    return entity_layout(resolver, found)


def _copy(array: pa.Array) -> pa.Array:
    return pa.concat_arrays([array])


def _count_prefixes(histogram: list[int], event_id: pa.Array) -> None:
    counts = pc.value_counts(_prefix_buckets(event_id))
    for prefix, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
        histogram[prefix] += count


# ------------------------------------------------------------------------------ write
@cache
def _fixed_row_bytes() -> int:
    """Bytes per row of the canonical schema outside string data (offsets, values, validity)."""
    total = 0.0
    for field in arrow_schema():
        total += 0.125 + (4 if pa.types.is_string(field.type) else field.type.bit_width / 8)
    return int(total + 1)


@cache
def _string_columns() -> tuple[int, ...]:
    return tuple(i for i, field in enumerate(arrow_schema()) if pa.types.is_string(field.type))


def _data_bytes(batch: pa.RecordBatch) -> int:
    """The size of a batch's column data, from its values only (not from how buffers are laid out)."""
    total: int = batch.num_rows * _fixed_row_bytes()
    for index in _string_columns():
        column = batch.column(index)
        offsets = column.buffers()[1]
        if offsets is not None and len(column):
            view = memoryview(offsets).cast("i")
            end: int = view[column.offset + len(column)]
            total += end - view[column.offset]
    return total


class _PartWriter:
    """Writes a stream of rows as ``.part-NNNNN.parquet.tmp`` files with a fixed layout.

    Rows are re-chunked to ``CHUNK_ROWS``; a row group is the next ``row_group_size`` rows
    (fewer when its data reaches ``max_group_bytes`` or the file is full) and a file holds
    ``max_rows_per_file`` rows, so the bytes written depend only on the rows.
    """

    def __init__(
        self,
        folder: Path,
        config: LoadConfig,
        max_group_bytes: int,
        layout: EntityLayout | None = None,
        reader: EntityReader | None = None,
    ) -> None:
        self._folder = folder
        self._config = config
        self._layout = layout or EntityLayout()
        self._reader = reader or EntityReader()
        self._schema = self._layout.schema(arrow_schema())
        self._file_max = max(config.max_rows_per_file, 1)
        self._group_max = max(config.row_group_size, 1)
        self._group_bytes_max = max_group_bytes
        self._pending: deque[pa.RecordBatch] = deque()
        self._pending_rows = 0
        self._group: list[pa.RecordBatch] = []
        self._group_rows = 0
        self._group_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._file_rows = 0
        self.files: list[str] = []
        self.rows = 0

    def tmp_path(self, name: str) -> Path:
        return self._folder / f".{name}.tmp"

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self._next_chunk():
            self._add_chunk(self._next_chunk())

    def close(self) -> list[str]:
        """Write what is left; return the file names (at least one, maybe empty)."""
        while self._pending_rows:
            self._add_chunk(min(self._next_chunk(), self._pending_rows))
        self._flush_group()
        if self._writer is None and not self.files:
            self._open()
        self._close_file()
        return self.files

    def abort(self) -> None:
        self._close_file()
        for name in self.files:
            self.tmp_path(name).unlink(missing_ok=True)

    def _next_chunk(self) -> int:
        return min(CHUNK_ROWS, self._group_max - self._group_rows, self._file_max - self._file_rows - self._group_rows)

    def _add_chunk(self, rows: int) -> None:
        pieces: list[pa.RecordBatch] = []
        needed = rows
        while needed:
            head = self._pending[0]
            if head.num_rows <= needed:
                pieces.append(self._pending.popleft())
                needed -= head.num_rows
            else:
                pieces.append(head.slice(0, needed))
                self._pending[0] = head.slice(needed)
                needed = 0
        self._pending_rows -= rows
        chunk = pieces[0] if len(pieces) == 1 else pa.Table.from_batches(pieces).combine_chunks().to_batches()[0]
        group_bytes = _data_bytes(chunk)
        if self._layout.columns:
            # Typed per fixed chunk, so their values (and sizes) depend only on the rows.
            canonical = chunk.num_columns
            chunk = with_entity_columns(chunk, self._layout, self._reader)
            group_bytes += sum(chunk.column(i).nbytes for i in range(canonical, chunk.num_columns))
        self._group.append(chunk)
        self._group_rows += rows
        self._group_bytes += group_bytes
        if (
            self._group_rows >= self._group_max
            or self._group_bytes >= self._group_bytes_max
            or self._file_rows + self._group_rows >= self._file_max
        ):
            self._flush_group()

    def _flush_group(self) -> None:
        if not self._group_rows:
            return
        writer = self._writer or self._open()
        writer.write_table(pa.Table.from_batches(self._group, self._schema), row_group_size=self._group_rows)
        self._file_rows += self._group_rows
        self.rows += self._group_rows
        self._group, self._group_rows, self._group_bytes = [], 0, 0
        if self._file_rows >= self._file_max:
            self._close_file()

    def _open(self) -> pq.ParquetWriter:
        name = f"part-{len(self.files):05d}.parquet"
        self.files.append(name)
        self._sink = _buffered_file(self.tmp_path(name), _PART_BUFFER)
        self._writer = parquet_writer(self._sink, self._config, self._layout)
        return self._writer

    def _close_file(self) -> None:
        writer, sink = self._writer, self._sink
        self._writer = self._sink = None
        if writer is not None:
            _close_writing(writer, sink)
        self._file_rows = 0


def _hour_start_ms(partition: PartitionKey) -> int:
    year, month, day = (int(part) for part in partition.date.split("-"))
    return int(datetime(year, month, day, partition.hour, tzinfo=UTC).timestamp()) * 1000


def finalize_partition(
    dest: Path,
    partition: PartitionKey,
    fragments: Sequence[Path],
    config: LoadConfig,
    *,
    bucket_rows: int = DEDUPE_BUCKET_ROWS,
    row_group_max_bytes: int = ROW_GROUP_MAX_BYTES,
    resolver: Resolver | None = None,
) -> PartitionResult:
    """Merge ``fragments`` into ``dest/events/<partition>/``, one row per natural event.

    Natural duplicates (same event_id and event_fingerprint) are kept once: a row of this
    run wins over an existing one (a rerun rewrites), then the earliest collector_tstamp,
    then the first in source order.  Synthetic duplicates (same event_id, different
    fingerprint) are all kept.  Memory stays bounded by ``bucket_rows`` keys and one row
    group (see the module docstring); neither parameter changes the files written.  New
    files are written under temporary names first, then renamed over the old parts, and
    parts left over from a larger earlier version are removed.

    With ``config.typed_entities`` and a ``resolver`` (the schemas' registries), the files
    carry the typed entity columns of their rows' entities (:mod:`load.lake`); without
    either, the canonical columns only.  Raises
    :class:`~pipeline.iglu.RegistryUnavailableError` when a registry cannot be asked (retry).
    """
    folder = dest / EVENTS_DIR / partition.format()
    folder.mkdir(parents=True, exist_ok=True)
    old_parts = sorted(folder.glob("part-*.parquet"))
    for leftover in folder.glob(".part-*.parquet.tmp"):  # from a run that was killed mid-write
        leftover.unlink(missing_ok=True)
    sources = [_Source(path, True) for path in old_parts]
    sources += [_Source(path, False) for path in sorted(fragments, key=lambda p: p.name)]
    plan = _plan(sources, _hour_start_ms(partition), max(bucket_rows, 1))
    # One reader for both passes over the kept rows: each distinct entity text is parsed once.
    reader = EntityReader()
    typed = config.typed_entities and resolver is not None
    layout = _entity_layout(sources, plan, resolver, reader) if typed and resolver is not None else None
    writer = _PartWriter(folder, config, row_group_max_bytes, layout, reader)
    try:
        for batch in _kept_batches(sources, plan, _Source.batches):
            writer.write(batch)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    if writer.rows != plan.kept:  # a source changed between the passes: publish nothing
        writer.abort()
        raise SinkWriteError(f"{folder}: planned {plan.kept} rows but read {writer.rows}; run the backfill again")
    for name in written:
        os.replace(writer.tmp_path(name), folder / name)
    for stale in old_parts:
        if stale.name not in written:
            stale.unlink(missing_ok=True)
    new_rows = plan.total - plan.existing_rows
    return PartitionResult(
        partition,
        rows_written=plan.kept,
        duplicates_dropped=new_rows - (plan.kept - plan.kept_existing),
        files=tuple(written),
        replaced_rows=plan.existing_rows - plan.kept_existing,
    )
