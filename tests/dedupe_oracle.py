"""An in-memory oracle of the dataset's deduplication, for tests.

:func:`merge_and_dedupe` states the rule that :func:`load.dataset.finalize_partition`
implements in bounded memory, on whole Arrow tables at once: one row per natural event,
this run's rows over existing ones, then the earliest ``collector_tstamp``.  Tests compare
the files finalize writes with its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from load.parquet import arrow_schema


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
