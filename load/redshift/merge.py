"""The deduplicating merge of a staging table into the events table, as statements.

The merge (see :func:`merge_statements`) moves staged rows into the events table exactly
once per natural event:

* **Natural duplicates** (same ``event_id`` and ``event_fingerprint``, e.g. a tracker retry
  or an at-least-once redelivery) go in once: the copy with the earliest
  ``collector_tstamp`` wins inside a batch, and a row already in the table is never
  inserted again.
* **Synthetic duplicates** (same ``event_id``, different fingerprint: two different events
  that share an id) are all kept.  The first one the table sees keeps its ``event_id``
  (inside one batch: the earliest ``collector_tstamp``, then the smallest fingerprint);
  every other one is stored under a synthetic id -- the UUID v5 of the original id and
  the fingerprint in the namespace whose 16 bytes are :data:`SYNTHETIC_ID_PREFIX`
  (``uuid5(UUID(bytes=b"clickstream-etl:"), f"{event_id}/{event_fingerprint}")``),
  computed in SQL from its SHA-1 -- so a replay maps it to the same new id and finds it
  already loaded.
* **Rows that do not fit** (a string longer than its column in UTF-8 bytes, non-ASCII text
  in a CHAR column, a missing ``event_id`` or ``collector_tstamp``, a decimal out of
  DECIMAL(18,2) range) are not truncated: they are moved to the rejects table with the
  reason and counted.  Staging columns are VARCHAR(65535) so that such a row reaches the
  merge instead of failing the whole COPY.
* Running the merge twice changes nothing: the second run finds every row already present.

The merge is an anti-join ``INSERT``, not Redshift's ``MERGE`` statement: Redshift's MERGE
requires a ``WHEN MATCHED THEN UPDATE | DELETE`` arm, which would rewrite every
already-loaded row on each replay (a delete plus an insert in Redshift's storage) and fails
outright when a source row matches two target rows.  The anti-join is the same
insert-if-absent with no side effect on rows already loaded, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from load.errors import StatementFailedError
from load.redshift.columns import (
    ATOMIC_COLUMNS,
    DECIMAL_LIMIT,
    LOAD_TSTAMP,
    NOT_NULL_COLUMNS,
    column_type,
    staging_type,
)
from load.redshift.entity_tables import ENTITY_SOURCE_COLUMNS, entity_queue_table, queue_statement
from load.redshift.identifiers import RedshiftTables, quote
from load.redshift.statements import Statement, Transaction
from pipeline.schema import ATOMIC_FIELDS, Field

SYNTHETIC_ID_PREFIX: Final = "clickstream-etl:"
"""The synthetic ids' UUID namespace is the 16 bytes of this ASCII text, so SQL can hash it as text."""


def _synthetic_id_sql(hash_column: str) -> str:
    """A UUID v5 string from the 40 hex digits of its SHA-1 (RFC 4122 version and variant bits)."""
    h = hash_column
    return (
        f"SUBSTRING({h}, 1, 8) || '-' || SUBSTRING({h}, 9, 4) || '-5' || SUBSTRING({h}, 14, 3) || '-' || "
        f"TRANSLATE(SUBSTRING({h}, 17, 1), '0123456789abcdef', '89ab89ab89ab89ab') || SUBSTRING({h}, 18, 3) || "
        f"'-' || SUBSTRING({h}, 21, 12)"
    )


TEMP_BATCH: Final = "clk_merge_batch"
TEMP_ROWS: Final = "clk_merge_rows"
StagingKind = Literal["stream", "backfill"]


def reject_reason_sql(alias: str = "") -> str:
    """A CASE expression: NULL when a staged row fits atomic.events, else the first reason."""
    p = f"{alias}." if alias else ""
    whens = [f"WHEN {p}{quote(name)} IS NULL THEN '{name}: missing'" for name in sorted(NOT_NULL_COLUMNS)]
    for f in ATOMIC_FIELDS:
        col = f"{p}{quote(f.name)}"
        if f.max_bytes is not None:
            whens.append(f"WHEN OCTET_LENGTH({col}) > {f.max_bytes} THEN '{f.name}: over {f.max_bytes} bytes'")
            if f.redshift_is_char:
                whens.append(f"WHEN OCTET_LENGTH({col}) <> LENGTH({col}) THEN '{f.name}: not ASCII (CHAR column)'")
        elif column_type(f).startswith("DECIMAL"):
            whens.append(f"WHEN ABS({col}) >= {DECIMAL_LIMIT} THEN '{f.name}: out of {column_type(f)} range'")
    return "CASE\n            " + "\n            ".join(whens) + "\n        END"


def _cast_to_column(f: Field, alias: str) -> str:
    col = f"{alias}.{quote(f.name)}"
    target = column_type(f)
    if target == staging_type(f):
        return f"{col} AS {quote(f.name)}"
    return f"CAST({col} AS {target}) AS {quote(f.name)}"


def merge_statements(tables: RedshiftTables, kind: StagingKind) -> tuple[Statement, ...]:
    """Staging to events, deduplicated (see the module docstring), as ordered statements.

    The statements must run in one transaction after a LOCK of the events, staging and
    rejects tables and the entity queue.  Labels: ``rejects``, ``batch``, ``rows``, ``stats``
    (one row: staged, rejected, distinct_events, synthetic_duplicates, new_events, min and max
    collector_tstamp), ``queue_entities`` (the inserted events' entities, for
    :mod:`load.redshift.entity_tables`' drain), ``insert``, ``clear_staging``, ``drop_rows``,
    ``drop_batch``.
    """
    staging = tables.qualified(tables.staging if kind == "stream" else tables.backfill_staging)
    events = tables.events_q
    cols = ", ".join(quote(c) for c in ATOMIC_COLUMNS)
    # The entities' JSON travels with each row to the rejects table or the entity queue.
    json_cols = ", ".join(quote(c) for c in ENTITY_SOURCE_COLUMNS)

    def columns(alias: str, skip: str = "") -> str:
        return ", ".join(f"{alias}.{quote(c)}" for c in ATOMIC_COLUMNS if c != skip)

    def json_columns(alias: str) -> str:
        return ", ".join(f"{alias}.{quote(c)}" for c in ENTITY_SOURCE_COLUMNS)

    reason = reject_reason_sql()
    fingerprint_key = "COALESCE({}.\"event_fingerprint\", '')"

    rejects = Statement(
        "rejects",
        f"""INSERT INTO {tables.rejects_q} ({cols}, {json_cols}, "reject_reason", "rejected_tstamp")
SELECT {columns("c")}, {json_columns("c")}, c."reject_reason", GETDATE()
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v."event_id", v."event_fingerprint"
        ORDER BY v."collector_tstamp", v."etl_tstamp", v."reject_reason"
    ) AS "copy_rank"
    FROM (
        SELECT {cols}, {json_cols}, {reason} AS "reject_reason"
        FROM {staging}
    ) AS v
    WHERE v."reject_reason" IS NOT NULL
) AS c
LEFT JOIN (
    SELECT DISTINCT COALESCE(r."event_id", '') AS "k_id", {fingerprint_key.format("r")} AS "k_fingerprint"
    FROM {tables.rejects_q} AS r
) AS k ON k."k_id" = COALESCE(c."event_id", '') AND k."k_fingerprint" = {fingerprint_key.format("c")}
WHERE c."copy_rank" = 1 AND k."k_id" IS NULL""",
    )
    casts = ",\n    ".join(_cast_to_column(f, "d") for f in ATOMIC_FIELDS)
    batch = Statement(
        "batch",
        f"""CREATE TEMP TABLE {quote(TEMP_BATCH)} DISTKEY ("event_id") AS
SELECT
    {casts},
    {json_columns("d")},
    ROW_NUMBER() OVER (
        PARTITION BY d."event_id" ORDER BY d."collector_tstamp", d."event_fingerprint"
    ) AS "id_rank"
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v."event_id", v."event_fingerprint"
        ORDER BY v."collector_tstamp", v."etl_tstamp", v."dvce_sent_tstamp"
    ) AS "copy_rank"
    FROM (
        SELECT {cols}, {json_cols}, {reason} AS "reject_reason"
        FROM {staging}
    ) AS v
    WHERE v."reject_reason" IS NULL
) AS d
WHERE d."copy_rank" = 1""",
    )
    batch_ids = f'SELECT DISTINCT "event_id" FROM {quote(TEMP_BATCH)}'
    rows = Statement(
        "rows",
        f"""CREATE TEMP TABLE {quote(TEMP_ROWS)} DISTKEY ("event_id") AS
SELECT
    {columns("b", skip="event_id")},
    {json_columns("b")},
    CASE
        WHEN same."event_id" IS NOT NULL OR (known."event_id" IS NULL AND b."id_rank" = 1) THEN b."event_id"
        ELSE {_synthetic_id_sql('b."id_hash"')}
    END AS "event_id",
    b."event_id" AS "original_event_id"
FROM (
    SELECT x.*, SHA1('{SYNTHETIC_ID_PREFIX}' || x."event_id" || '/' || {fingerprint_key.format("x")}) AS "id_hash"
    FROM {quote(TEMP_BATCH)} AS x
) AS b
LEFT JOIN (
    SELECT DISTINCT e."event_id"
    FROM {events} AS e
    JOIN ({batch_ids}) AS i ON i."event_id" = e."event_id"
) AS known ON known."event_id" = b."event_id"
LEFT JOIN (
    SELECT DISTINCT e."event_id", {fingerprint_key.format("e")} AS "fingerprint"
    FROM {events} AS e
    JOIN ({batch_ids}) AS i ON i."event_id" = e."event_id"
) AS same ON same."event_id" = b."event_id" AND same."fingerprint" = {fingerprint_key.format("b")}""",
    )
    absent = (
        f'LEFT JOIN {events} AS e ON e."event_id" = r."event_id" '
        f'AND {fingerprint_key.format("e")} = {fingerprint_key.format("r")}\nWHERE e."event_id" IS NULL'
    )
    stats = Statement(
        "stats",
        f"""SELECT s."staged", s."rejected", m."distinct_events", m."synthetic_duplicates", n."new_events",
    s."min_collector_tstamp", s."max_collector_tstamp"
FROM (
    SELECT COUNT(*) AS "staged",
        COALESCE(SUM(CASE WHEN v."reject_reason" IS NULL THEN 0 ELSE 1 END), 0) AS "rejected",
        MIN(v."collector_tstamp") AS "min_collector_tstamp",
        MAX(v."collector_tstamp") AS "max_collector_tstamp"
    FROM (SELECT "collector_tstamp", {reason} AS "reject_reason" FROM {staging}) AS v
) AS s
CROSS JOIN (
    SELECT COUNT(*) AS "distinct_events",
        COALESCE(SUM(CASE WHEN "event_id" = "original_event_id" THEN 0 ELSE 1 END), 0) AS "synthetic_duplicates"
    FROM {quote(TEMP_ROWS)}
) AS m
CROSS JOIN (
    SELECT COUNT(*) AS "new_events"
    FROM {quote(TEMP_ROWS)} AS r
    {absent.replace(chr(10), chr(10) + "    ")}
) AS n""",
    )
    insert = Statement(
        "insert",
        f"""INSERT INTO {events} ({cols}, {quote(LOAD_TSTAMP)})
SELECT {columns("r")}, GETDATE()
FROM {quote(TEMP_ROWS)} AS r
{absent}""",
    )
    new_rows = f"(\n    SELECT r.* FROM {quote(TEMP_ROWS)} AS r\n    {absent.replace(chr(10), chr(10) + '    ')}\n)"
    return (
        rejects,
        batch,
        rows,
        stats,
        # before the insert, while "absent" still picks exactly the rows it will insert
        queue_statement(tables, new_rows),
        insert,
        # DELETE, not TRUNCATE: TRUNCATE commits the transaction in Redshift.
        Statement("clear_staging", f"DELETE FROM {staging}"),
        Statement("drop_rows", f"DROP TABLE {quote(TEMP_ROWS)}"),
        Statement("drop_batch", f"DROP TABLE {quote(TEMP_BATCH)}"),
    )


def lock_statement(tables: RedshiftTables, kind: StagingKind) -> Statement:
    """Lock the tables a merge writes: Firehose's COPY and other merges wait for the commit."""
    staging = tables.staging if kind == "stream" else tables.backfill_staging
    names = ", ".join(tables.qualified(t) for t in (tables.events, staging, tables.rejects, entity_queue_table(tables)))
    return Statement("lock", f"LOCK {names}")


def staged_count(tables: RedshiftTables) -> Statement:
    """How many rows Firehose has staged (the loader skips the merge when there are none)."""
    return Statement("staged_count", f"SELECT COUNT(*) FROM {tables.qualified(tables.staging)}")


def stream_merge_plan(tables: RedshiftTables) -> Transaction:
    """The loader Lambda's transaction: lock, then merge Firehose's staging table."""
    return Transaction("stream_merge", (lock_statement(tables, "stream"), *merge_statements(tables, "stream")))


@dataclass(frozen=True, slots=True)
class MergeStats:
    """What one merge did."""

    staged: int
    rejected: int
    distinct_events: int
    synthetic_duplicates: int
    inserted: int
    min_collector_tstamp: str | None
    max_collector_tstamp: str | None

    @property
    def natural_duplicates(self) -> int:
        """Staged rows dropped as copies of another staged row of the same natural event."""
        return self.staged - self.rejected - self.distinct_events

    @property
    def already_loaded(self) -> int:
        """Distinct events of the batch that the table already held."""
        return self.distinct_events - self.inserted

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> MergeStats:
        """Parse the ``stats`` statement's row; raises StatementFailedError if it is malformed."""
        try:
            staged, rejected, distinct, synthetic, new, low, high = row
            return cls(
                int(staged),
                int(rejected),
                int(distinct),
                int(synthetic),
                int(new),
                None if low is None else str(low),
                None if high is None else str(high),
            )
        except (TypeError, ValueError) as exc:
            raise StatementFailedError(f"unexpected merge statistics row {row!r}", label="stats") from exc

    @classmethod
    def empty(cls) -> MergeStats:
        return cls(0, 0, 0, 0, 0, None, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "staged": self.staged,
            "rejected": self.rejected,
            "natural_duplicates": self.natural_duplicates,
            "synthetic_duplicates": self.synthetic_duplicates,
            "distinct_events": self.distinct_events,
            "inserted": self.inserted,
            "already_loaded": self.already_loaded,
            "min_collector_tstamp": self.min_collector_tstamp,
            "max_collector_tstamp": self.max_collector_tstamp,
        }
