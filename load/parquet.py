"""Parquet encoding of canonical events (pyarrow is imported only in ``load``).

The Arrow schema is derived from :data:`pipeline.schema.FIELDS`.  Datasets are Hive
partitioned by event date and hour of ``collector_tstamp``
(``event_date=YYYY-MM-DD/event_hour=HH``); file names are deterministic so a rerun
rewrites files instead of adding new ones.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import LoadConfig
from pipeline.schema import FIELDS, CanonicalEvent, FieldType

_ARROW_TYPES: Final[dict[FieldType, pa.DataType]] = {
    "string": pa.string(),
    "contexts": pa.string(),
    "unstruct": pa.string(),
    "int": pa.int32(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "tstamp": pa.timestamp("ms", tz="UTC"),
}
_HOUR_MS: Final = 3_600_000


@cache
def arrow_schema() -> pa.Schema:
    """The canonical event as an Arrow schema (timestamps in UTC milliseconds)."""
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.type], nullable=True) for f in FIELDS],
        metadata={b"clickstream_etl.schema": b"snowplow-atomic-131"},
    )


class PartitionKey(NamedTuple):
    """A Hive partition of the events dataset: ``event_date=YYYY-MM-DD/event_hour=HH``."""

    date: str
    hour: int

    def format(self) -> str:
        return f"event_date={self.date}/event_hour={self.hour:02d}"

    @classmethod
    def parse(cls, text: str) -> PartitionKey:
        parts = dict(part.split("=", 1) for part in text.strip("/").split("/"))
        try:
            return cls(parts["event_date"], int(parts["event_hour"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not an events partition path: {text!r}") from exc

    @classmethod
    def of(cls, collector_ms: int) -> PartitionKey:
        return _partition_of_hour(collector_ms // _HOUR_MS)


@cache
def _partition_of_hour(hour_index: int) -> PartitionKey:
    from pipeline.schema import format_tstamp

    stamp = format_tstamp(hour_index * _HOUR_MS)
    return PartitionKey(stamp[:10], int(stamp[11:13]))


def events_to_table(events: Sequence[CanonicalEvent]) -> pa.Table:
    """Canonical events to an Arrow table with the canonical schema."""
    return pa.Table.from_batches([pa.RecordBatch.from_pylist(list(events), schema=arrow_schema())], arrow_schema())


def _writer_options(config: LoadConfig) -> dict[str, object]:
    return {
        "compression": config.compression,
        "compression_level": config.compression_level if config.compression in ("zstd", "gzip", "brotli") else None,
        "use_dictionary": True,
        "write_statistics": True,
    }


def write_parquet(table: pa.Table, sink: str | io.BufferedIOBase, config: LoadConfig) -> None:
    """Write one Parquet file with the configured compression and row-group size."""
    pq.write_table(table, sink, row_group_size=config.row_group_size, **_writer_options(config))


def parquet_writer(sink: str | io.BufferedIOBase, config: LoadConfig) -> pq.ParquetWriter:
    """An open Parquet writer of canonical events with the configured compression.

    The caller chooses the row groups (``write_table(table, row_group_size=...)``) and
    closes the writer.
    """
    return pq.ParquetWriter(sink, arrow_schema(), **_writer_options(config))


def encode_parquet(events: Sequence[CanonicalEvent], config: LoadConfig) -> bytes:
    """Events to the bytes of one Parquet file (for sinks that upload bytes)."""
    buffer = io.BytesIO()
    write_parquet(events_to_table(events), buffer, config)
    return buffer.getvalue()


@dataclass(frozen=True)
class DedupResult:
    table: pa.Table
    input_rows: int
    duplicates_dropped: int
    replaced_rows: int


_ORIGIN = "__origin"


def merge_and_dedupe(new: Iterable[pa.Table], existing: Iterable[pa.Table] = ()) -> DedupResult:
    """Union this run's tables with a partition's existing rows, one row per natural event.

    Natural duplicates (same event_id and event_fingerprint) are kept once: this run's row
    wins over an existing one (a rerun rewrites), and among equals the earliest
    collector_tstamp wins, then the order of ``new``.  Synthetic duplicates (same event_id,
    different fingerprint) are all kept.  The result is sorted by collector_tstamp,
    event_id, event_fingerprint, so it does not depend on the order work finished in.
    """
    schema = arrow_schema()
    parts: list[pa.Table] = []
    new_rows = 0
    for origin, tables in ((0, new), (1, existing)):
        for table in tables:
            if table.schema != schema:
                table = table.select(schema.names).cast(schema)
            if origin == 0:
                new_rows += table.num_rows
            parts.append(table.append_column(_ORIGIN, pa.array([origin] * table.num_rows, pa.int8())))
    if not parts:
        empty = schema.empty_table()
        return DedupResult(empty, 0, 0, 0)
    combined = pa.concat_tables(parts)
    total = combined.num_rows
    # Rank rows on a narrow key table (cheap), pick one winner per (event_id, fingerprint),
    # then filter and sort the wide table once each.
    keys = pa.table(
        {
            "event_id": combined["event_id"],
            "fingerprint": combined["event_fingerprint"],
            "origin": combined[_ORIGIN],
            "tstamp": combined["collector_tstamp"],
            "row": pa.array(range(total), pa.int64()),
        }
    )
    ranked = keys.take(
        pc.sort_indices(
            keys,
            sort_keys=[
                ("event_id", "ascending"),
                ("fingerprint", "ascending"),
                ("origin", "ascending"),
                ("tstamp", "ascending"),
                ("row", "ascending"),
            ],
        )
    ).append_column("rank", pa.array(range(total), pa.int64()))
    firsts = ranked.group_by(["event_id", "fingerprint"], use_threads=False).aggregate([("rank", "min")])
    if firsts.num_rows < total:
        winners = ranked["row"].take(firsts["rank_min"])
        combined = combined.filter(pc.is_in(keys["row"], value_set=winners))
    kept_existing = pc.sum(pc.equal(combined[_ORIGIN], 1)).as_py() or 0
    existing_rows = total - new_rows
    final = combined.take(
        pc.sort_indices(
            combined,
            sort_keys=[
                ("collector_tstamp", "ascending"),
                ("event_id", "ascending"),
                ("event_fingerprint", "ascending"),
                (_ORIGIN, "ascending"),
            ],
        )
    ).select(schema.names)
    new_kept = final.num_rows - kept_existing
    return DedupResult(
        table=final,
        input_rows=total,
        duplicates_dropped=new_rows - new_kept,
        replaced_rows=existing_rows - kept_existing,
    )
