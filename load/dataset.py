"""The local events dataset: stage events per partition, then finalize deduplicated Parquet.

Workers stage events as Arrow IPC fragments (fast, uncompressed) under
``DEST/_staging/<partition>/<fragment>.arrow``; :func:`finalize_partition` merges a
partition's fragments with the rows already in ``DEST/events/<partition>/``, drops natural
duplicates and rewrites ``part-00000.parquet``, ``part-00001.parquet``... atomically.
Rerunning the same input therefore rewrites the same files instead of adding new ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from load.parquet import PartitionKey, arrow_schema, merge_and_dedupe, write_parquet
from pipeline.config import LoadConfig
from pipeline.schema import CanonicalEvent

STAGING_DIR: Final = "_staging"
EVENTS_DIR: Final = "events"
FRAGMENT_SUFFIX: Final = ".arrow"


class PartitionStager:
    """Buffers one source's events per partition and appends them to IPC fragment files."""

    def __init__(self, staging_root: Path, fragment: str, batch_rows: int = 1024) -> None:
        self._root = staging_root
        self._fragment = fragment
        self._batch_rows = batch_rows
        self._buffers: dict[PartitionKey, list[CanonicalEvent]] = {}
        self._writers: dict[PartitionKey, ipc.RecordBatchStreamWriter] = {}
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
        if len(buffer) >= self._batch_rows:
            self._flush(key, buffer)

    def _flush(self, key: PartitionKey, buffer: list[CanonicalEvent]) -> None:
        if not buffer:
            return
        writer = self._writers.get(key)
        if writer is None:
            folder = self._root / key.format()
            folder.mkdir(parents=True, exist_ok=True)
            writer = ipc.new_stream(str(folder / (self._fragment + FRAGMENT_SUFFIX)), arrow_schema())
            self._writers[key] = writer
        writer.write_batch(pa.RecordBatch.from_pylist(buffer, schema=arrow_schema()))
        self.rows += len(buffer)
        buffer.clear()

    def close(self) -> list[PartitionKey]:
        """Flush everything; return the partitions this source touched."""
        for key, buffer in self._buffers.items():
            self._flush(key, buffer)
        for writer in self._writers.values():
            writer.close()
        touched = sorted(self._writers)
        self._writers.clear()
        return touched

    def abort(self) -> None:
        """Discard this source's fragments (the source will be reported as failed)."""
        for writer in self._writers.values():
            writer.close()
        for key in self._writers:
            (self._root / key.format() / (self._fragment + FRAGMENT_SUFFIX)).unlink(missing_ok=True)
        self._writers.clear()
        self._buffers.clear()


@dataclass(frozen=True)
class PartitionResult:
    partition: PartitionKey
    rows_written: int
    duplicates_dropped: int
    files: tuple[str, ...]


def _read_fragment(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return ipc.open_stream(source).read_all()


def finalize_partition(
    dest: Path, partition: PartitionKey, fragments: Sequence[Path], config: LoadConfig
) -> PartitionResult:
    """Merge fragments into ``dest/events/<partition>/`` with dedup; atomic per file."""
    folder = dest / EVENTS_DIR / partition.format()
    folder.mkdir(parents=True, exist_ok=True)
    old_parts = sorted(folder.glob("part-*.parquet"))
    existing = [pq.read_table(path, schema=arrow_schema()) for path in old_parts]
    new = [_read_fragment(path) for path in sorted(fragments, key=lambda p: p.name)]
    merged = merge_and_dedupe(new, existing)
    del new, existing
    table = merged.table
    per_file = max(config.max_rows_per_file, 1)
    written: list[str] = []
    for number, start in enumerate(range(0, max(table.num_rows, 1), per_file)):
        name = f"part-{number:05d}.parquet"
        tmp = folder / f".{name}.tmp"
        write_parquet(table.slice(start, per_file), str(tmp), config)
        os.replace(tmp, folder / name)
        written.append(name)
    for stale in old_parts:
        if stale.name not in written:
            stale.unlink(missing_ok=True)
    return PartitionResult(partition, table.num_rows, merged.duplicates_dropped, tuple(written))
