"""The Redshift load path as values: identifiers, DDL, COPY, the deduplicating merge, the ledger.

Nothing here talks to AWS: every function returns :class:`Statement` values (SQL text plus
Data API parameters) or plain data, and :mod:`load.redshift_exec` runs them.  The table
layout is derived from :data:`pipeline.schema.ATOMIC_FIELDS` (the 128 columns of
Snowplow's ``atomic.events``) and :data:`pipeline.schema.FIELDS` (the 131 columns of the
Parquet files), so the DDL, the Firehose column list and the merge can never disagree with
the canonical schema.

Rules that keep the SQL safe:

* Schema, table and column names are validated identifiers (``^[a-z_][a-z0-9_]{0,126}$``)
  and always double-quoted; a name that fails is an :class:`~load.errors.InvalidIdentifierError`.
* Values travel as Data API ``Parameters`` (``:name`` placeholders), never inside SQL text.
  The one exception is COPY, which takes no parameters: its manifest URL and IAM role ARN
  come from configuration and S3 listing, and are checked against strict patterns (no
  quotes, backslashes or spaces) before they are written as literals.

The merge (see :func:`merge_statements`) moves staged rows into the events table exactly
once per natural event:

* **Natural duplicates** (same ``event_id`` and ``event_fingerprint``, e.g. a tracker retry
  or an at-least-once redelivery) go in once: the copy with the earliest
  ``collector_tstamp`` wins inside a batch, and a row already in the table is never
  inserted again.
* **Synthetic duplicates** (same ``event_id``, different fingerprint: two different events
  that share an id) are all kept.  The first one the table sees keeps its ``event_id``
  (inside one batch: the earliest ``collector_tstamp``, then the smallest fingerprint);
  every other one is stored under :func:`synthetic_event_id` -- a UUID v5 of the original
  id and the fingerprint, computed identically in SQL -- so a replay maps it to the same
  new id and finds it already loaded.
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

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from load.errors import InvalidIdentifierError, StatementFailedError
from pipeline.config import RedshiftConfig
from pipeline.errors import ConfigError
from pipeline.schema import ATOMIC_FIELDS, FIELDS, Field

# --------------------------------------------------------------------------- identifiers
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,126}")


def identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe Redshift identifier, else raise.

    Raises :class:`~load.errors.InvalidIdentifierError` (terminal: fix the configuration).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a valid identifier: use 1-127 lowercase letters, digits and "
            "underscores, starting with a letter or an underscore"
        )
    return name


def quote(name: str) -> str:
    """A validated identifier, double-quoted (so reserved words are safe too)."""
    return f'"{identifier(name)}"'


@dataclass(frozen=True, slots=True)
class RedshiftTables:
    """The validated names of every table the load path uses."""

    schema: str
    events: str
    staging: str
    backfill_staging: str
    rejects: str
    ledger: str

    @classmethod
    def from_config(cls, config: RedshiftConfig) -> RedshiftTables:
        """Validate the names in ``config.redshift``; raises InvalidIdentifierError naming the key."""
        names = {
            "schema": config.schema,
            "events": config.table,
            "staging": config.staging_table,
            "backfill_staging": config.backfill_staging_table,
            "rejects": config.rejects_table,
            "ledger": config.ledger_table,
        }
        keys = {
            "events": "table",
            "staging": "staging_table",
            "backfill_staging": "backfill_staging_table",
            "rejects": "rejects_table",
            "ledger": "ledger_table",
            "schema": "schema",
        }
        for attr, value in names.items():
            identifier(value, f"redshift.{keys[attr]}")
        tables = [v for k, v in names.items() if k != "schema"]
        if len(set(tables)) != len(tables):
            raise ConfigError(
                "redshift: table, staging_table, backfill_staging_table, rejects_table and "
                "ledger_table must be five different names"
            )
        return cls(**names)

    def qualified(self, table: str) -> str:
        """``"schema"."table"`` for one of this schema's tables."""
        return f"{quote(self.schema)}.{quote(table)}"

    @property
    def events_q(self) -> str:
        return self.qualified(self.events)

    @property
    def rejects_q(self) -> str:
        return self.qualified(self.rejects)

    @property
    def ledger_q(self) -> str:
        return self.qualified(self.ledger)


# --------------------------------------------------------------------------- statements
@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement as a value: a label (its role in a plan), SQL text, parameters.

    ``parameters`` are ``(name, value)`` pairs for the ``:name`` placeholders in ``sql``;
    every value is a non-empty string, as the Data API takes them.
    """

    label: str
    sql: str
    parameters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, value in self.parameters:
            if f":{name}" not in self.sql:
                raise ValueError(f"statement {self.label}: parameter {name} is not used")
            if not isinstance(value, str) or not value:
                raise ValueError(f"statement {self.label}: parameter {name} must be a non-empty string")

    def data_api_parameters(self) -> list[dict[str, str]]:
        """The parameters in the Data API's shape."""
        return [{"name": name, "value": value} for name, value in self.parameters]


@dataclass(frozen=True, slots=True)
class Transaction:
    """Statements that commit together or not at all (one Data API batch)."""

    label: str
    statements: tuple[Statement, ...]

    def index_of(self, label: str) -> int:
        for index, statement in enumerate(self.statements):
            if statement.label == label:
                return index
        raise KeyError(label)


def render_script(statements: Iterable[Statement]) -> str:
    """Statements as one SQL script (for printing; parameters must be absent)."""
    parts = []
    for statement in statements:
        if statement.parameters:
            raise ValueError(f"statement {statement.label} has parameters and cannot be printed as a script")
        parts.append(statement.sql.rstrip() + ";")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- column types
WIDE_VARCHAR: Final = 65535
"""Redshift's widest VARCHAR: staging string columns, so an over-width value reaches the merge."""
DECIMAL_LIMIT: Final = "1.0E16"
"""DECIMAL(18,2) holds magnitudes below 10^16."""
_VARCHAR = re.compile(r"^(var)?char\((\d+)\)$")
_DECIMAL = re.compile(r"^dec(?:imal)?\((\d+),(\d+)\)$")


def column_type(f: Field) -> str:
    """The events-table type of an atomic field, from the Redshift type in the schema table."""
    text = f.redshift_type.replace(" ", "").lower()
    if match := _VARCHAR.match(text):
        return f"{'VARCHAR' if match.group(1) else 'CHAR'}({match.group(2)})"
    if match := _DECIMAL.match(text):
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    simple = {
        "timestamp": "TIMESTAMP",
        "int": "INTEGER",
        "integer": "INTEGER",
        "boolean": "BOOLEAN",
        "doubleprecision": "DOUBLE PRECISION",
    }
    if text in simple:
        return simple[text]
    raise ValueError(f"field {f.name}: no Redshift type for {f.redshift_type!r}")  # pragma: no cover


def staging_type(f: Field) -> str:
    """The staging type of a field: strings wide, numbers as COPY reads them from JSON and Parquet."""
    return {
        "string": f"VARCHAR({WIDE_VARCHAR})",
        "contexts": f"VARCHAR({WIDE_VARCHAR})",
        "unstruct": f"VARCHAR({WIDE_VARCHAR})",
        "tstamp": "TIMESTAMP",
        "int": "INTEGER",
        "double": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
    }[f.type]


ATOMIC_COLUMNS: Final[tuple[str, ...]] = tuple(identifier(f.name, "canonical field") for f in ATOMIC_FIELDS)
"""The events table's canonical columns, in schema order (``load_tstamp`` follows them)."""
PARQUET_COLUMNS: Final[tuple[str, ...]] = tuple(identifier(f.name, "canonical field") for f in FIELDS)
"""The columns of the dataset's Parquet files, in file order."""
LOAD_TSTAMP: Final = "load_tstamp"
SORT_KEY: Final = "collector_tstamp"
DIST_KEY: Final = "event_id"
_NOT_NULL: Final = frozenset({"event_id", "collector_tstamp"})


# --------------------------------------------------------------------------- DDL
def create_schema(tables: RedshiftTables) -> Statement:
    return Statement("create_schema", f"CREATE SCHEMA IF NOT EXISTS {quote(tables.schema)}")


def create_events_table(tables: RedshiftTables) -> Statement:
    """``atomic.events``: Snowplow's columns and byte widths, ZSTD, DISTKEY(event_id),
    SORTKEY(collector_tstamp), then ``load_tstamp``.

    The sort key column is left RAW: compressing the leading sort key column makes range-
    restricted scans read more blocks (Redshift's "Choose the best sort key" guidance).
    """
    lines = []
    for f in ATOMIC_FIELDS:
        encoding = "RAW" if f.name == SORT_KEY else "ZSTD"
        null = " NOT NULL" if f.name in _NOT_NULL else ""
        lines.append(f"    {quote(f.name)} {column_type(f)} ENCODE {encoding}{null}")
    lines.append(f"    {quote(LOAD_TSTAMP)} TIMESTAMP ENCODE ZSTD")
    body = ",\n".join(lines)
    return Statement(
        "create_events",
        f"CREATE TABLE IF NOT EXISTS {tables.events_q} (\n{body}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})\nSORTKEY ({quote(SORT_KEY)})",
    )


def _staging_body(fields: Sequence[Field]) -> str:
    return ",\n".join(f"    {quote(f.name)} {staging_type(f)} ENCODE ZSTD" for f in fields)


def create_staging_table(tables: RedshiftTables) -> Statement:
    """Firehose's staging table: the atomic columns, strings VARCHAR(65535), no constraints."""
    return Statement(
        "create_staging",
        f"CREATE TABLE IF NOT EXISTS {tables.qualified(tables.staging)} (\n{_staging_body(ATOMIC_FIELDS)}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})",
    )


def create_backfill_staging_table(tables: RedshiftTables) -> Statement:
    """The backfill's staging table: all 131 columns in the Parquet files' order.

    COPY from Parquet maps columns by position and needs as many table columns as the
    files have, so this table also holds contexts, unstruct_event and derived_contexts,
    which the merge ignores (they are not columns of atomic.events).
    """
    return Statement(
        "create_backfill_staging",
        f"CREATE TABLE IF NOT EXISTS {tables.qualified(tables.backfill_staging)} (\n{_staging_body(FIELDS)}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})",
    )


def create_rejects_table(tables: RedshiftTables) -> Statement:
    """Rows the merge could not load as they are, with the reason and the time."""
    body = _staging_body(ATOMIC_FIELDS)
    return Statement(
        "create_rejects",
        f"CREATE TABLE IF NOT EXISTS {tables.rejects_q} (\n{body},\n"
        f"    {quote('reject_reason')} VARCHAR(256) ENCODE ZSTD,\n"
        f"    {quote('rejected_tstamp')} TIMESTAMP ENCODE ZSTD\n)\nDISTSTYLE EVEN",
    )


LEDGER_COLUMNS: Final = (
    ("prefix", "VARCHAR(1024)"),
    ("content_hash", "CHAR(64)"),
    ("manifest_url", "VARCHAR(1024)"),
    ("files", "INTEGER"),
    ("bytes", "BIGINT"),
    ("rows_staged", "BIGINT"),
    ("rows_rejected", "BIGINT"),
    ("natural_duplicates", "BIGINT"),
    ("synthetic_duplicates", "BIGINT"),
    ("rows_inserted", "BIGINT"),
    ("min_collector_tstamp", "TIMESTAMP"),
    ("max_collector_tstamp", "TIMESTAMP"),
    ("loaded_tstamp", "TIMESTAMP"),
)


def create_ledger_table(tables: RedshiftTables) -> Statement:
    """One row per loaded partition version: prefix, content hash, counts, tstamp range."""
    required = {"prefix", "content_hash", "loaded_tstamp"}
    body = ",\n".join(
        f"    {quote(name)} {kind} ENCODE ZSTD{' NOT NULL' if name in required else ''}"
        for name, kind in LEDGER_COLUMNS
    )
    return Statement(
        "create_ledger",
        f"CREATE TABLE IF NOT EXISTS {tables.ledger_q} (\n{body}\n)\nDISTSTYLE ALL\nSORTKEY ({quote('prefix')})",
    )


def ddl_statements(tables: RedshiftTables) -> tuple[Statement, ...]:
    """Every statement that creates the load path's schema and tables (idempotent)."""
    return (
        create_schema(tables),
        create_events_table(tables),
        create_staging_table(tables),
        create_backfill_staging_table(tables),
        create_rejects_table(tables),
        create_ledger_table(tables),
    )


# --------------------------------------------------------------------------- synthetic ids
SYNTHETIC_ID_PREFIX: Final = "clickstream-etl:"
SYNTHETIC_ID_NAMESPACE: Final = uuid.UUID(bytes=SYNTHETIC_ID_PREFIX.encode("ascii"))
"""UUID namespace whose 16 bytes are the ASCII text ``clickstream-etl:``, so SQL can hash it as text."""


def synthetic_event_id(event_id: str, fingerprint: str | None) -> str:
    """The id a synthetic duplicate is stored under: ``uuid5(NS, f"{event_id}/{fingerprint}")``.

    ``NS`` is :data:`SYNTHETIC_ID_NAMESPACE`; a missing fingerprint counts as ``""``.  The
    merge computes the same value in SQL (SHA1 of the namespace text and the name).
    """
    return str(uuid.uuid5(SYNTHETIC_ID_NAMESPACE, f"{event_id}/{fingerprint or ''}"))


def _synthetic_id_sql(hash_column: str) -> str:
    """A UUID v5 string from the 40 hex digits of its SHA-1 (RFC 4122 version and variant bits)."""
    h = hash_column
    return (
        f"SUBSTRING({h}, 1, 8) || '-' || SUBSTRING({h}, 9, 4) || '-5' || SUBSTRING({h}, 14, 3) || '-' || "
        f"TRANSLATE(SUBSTRING({h}, 17, 1), '0123456789abcdef', '89ab89ab89ab89ab') || SUBSTRING({h}, 18, 3) || "
        f"'-' || SUBSTRING({h}, 21, 12)"
    )


# --------------------------------------------------------------------------- the merge
TEMP_BATCH: Final = "clk_merge_batch"
TEMP_ROWS: Final = "clk_merge_rows"
StagingKind = Literal["stream", "backfill"]


def reject_reason_sql(alias: str = "") -> str:
    """A CASE expression: NULL when a staged row fits atomic.events, else the first reason."""
    p = f"{alias}." if alias else ""
    whens = [f"WHEN {p}{quote(name)} IS NULL THEN '{name}: missing'" for name in sorted(_NOT_NULL)]
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
    rejects tables.  Labels: ``rejects``, ``batch``, ``rows``, ``stats`` (one row: staged,
    rejected, distinct_events, synthetic_duplicates, new_events, min and max
    collector_tstamp), ``insert``, ``clear_staging``, ``drop_rows``, ``drop_batch``.
    """
    staging = tables.qualified(tables.staging if kind == "stream" else tables.backfill_staging)
    events = tables.events_q
    cols = ", ".join(quote(c) for c in ATOMIC_COLUMNS)

    def columns(alias: str, skip: str = "") -> str:
        return ", ".join(f"{alias}.{quote(c)}" for c in ATOMIC_COLUMNS if c != skip)

    reason = reject_reason_sql()
    fingerprint_key = "COALESCE({}.\"event_fingerprint\", '')"

    rejects = Statement(
        "rejects",
        f"""INSERT INTO {tables.rejects_q} ({cols}, "reject_reason", "rejected_tstamp")
SELECT {columns("c")}, c."reject_reason", GETDATE()
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v."event_id", v."event_fingerprint"
        ORDER BY v."collector_tstamp", v."etl_tstamp", v."reject_reason"
    ) AS "copy_rank"
    FROM (
        SELECT {cols}, {reason} AS "reject_reason"
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
    ROW_NUMBER() OVER (
        PARTITION BY d."event_id" ORDER BY d."collector_tstamp", d."event_fingerprint"
    ) AS "id_rank"
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v."event_id", v."event_fingerprint"
        ORDER BY v."collector_tstamp", v."etl_tstamp", v."dvce_sent_tstamp"
    ) AS "copy_rank"
    FROM (
        SELECT {cols}, {reason} AS "reject_reason"
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
    return (
        rejects,
        batch,
        rows,
        stats,
        insert,
        # DELETE, not TRUNCATE: TRUNCATE commits the transaction in Redshift.
        Statement("clear_staging", f"DELETE FROM {staging}"),
        Statement("drop_rows", f"DROP TABLE {quote(TEMP_ROWS)}"),
        Statement("drop_batch", f"DROP TABLE {quote(TEMP_BATCH)}"),
    )


def lock_statement(tables: RedshiftTables, kind: StagingKind) -> Statement:
    """Lock the tables a merge writes: Firehose's COPY and other merges wait for the commit."""
    staging = tables.staging if kind == "stream" else tables.backfill_staging
    names = ", ".join(tables.qualified(t) for t in (tables.events, staging, tables.rejects))
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


# --------------------------------------------------------------------------- Firehose
FIREHOSE_COPY_OPTIONS: Final = (
    # One JSON object per line, keys = column names (pipeline.schema.to_json_record).
    "FORMAT AS JSON 'auto' "
    # Timestamps are 'YYYY-MM-DD HH:MM:SS.mmm' strings; SS also reads the fractional part.
    "TIMEFORMAT 'YYYY-MM-DD HH:MI:SS' "
    # Firehose's intermediate S3 objects are gzipped (S3Configuration.CompressionFormat).
    "GZIP "
    # A staging table reloaded every few minutes: skip statistics and compression analysis.
    "STATUPDATE OFF COMPUPDATE OFF"
)
"""COPY options for the JSON lines of the Firehose transformation Lambda.

No TRUNCATECOLUMNS: staging strings are VARCHAR(65535), and the merge moves rows whose
values do not fit atomic.events to the rejects table instead of truncating them.
"""


def firehose_copy_command(tables: RedshiftTables) -> dict[str, str]:
    """Firehose's ``CopyCommand`` for the Redshift destination: staging table, columns, options."""
    return {
        "DataTableName": f"{tables.schema}.{tables.staging}",
        "DataTableColumns": ",".join(ATOMIC_COLUMNS),
        "CopyOptions": FIREHOSE_COPY_OPTIONS,
    }


def firehose_redshift_destination(
    tables: RedshiftTables,
    *,
    role_arn: str,
    cluster_jdbc_url: str,
    bucket_arn: str,
    s3_prefix: str,
    secret_arn: str = "",
    username: str = "",
    password: str = "",
    processing_lambda_arn: str = "",
    retry_seconds: int = 3600,
) -> dict[str, Any]:
    """A ``RedshiftDestinationConfiguration`` for ``firehose.create_delivery_stream``.

    Firehose writes gzipped intermediate objects under ``s3_prefix`` and COPYs them into
    the staging table with :func:`firehose_copy_command`; the transformation Lambda
    (``processing_lambda_arn``) turns canonical events into JSON lines.  Credentials come
    from Secrets Manager (``secret_arn``) or a username and password.
    """
    if not secret_arn and not (username and password):
        raise ConfigError("the Firehose Redshift destination needs secret_arn, or username and password")
    config: dict[str, Any] = {
        "RoleARN": role_arn,
        "ClusterJDBCURL": cluster_jdbc_url,
        "CopyCommand": firehose_copy_command(tables),
        "RetryOptions": {"DurationInSeconds": retry_seconds},
        "S3Configuration": {
            "RoleARN": role_arn,
            "BucketARN": bucket_arn,
            "Prefix": s3_prefix,
            "ErrorOutputPrefix": f"{s3_prefix}errors/",
            "CompressionFormat": "GZIP",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 300},
        },
        "S3BackupMode": "Disabled",
    }
    if secret_arn:
        config["SecretsManagerConfiguration"] = {"Enabled": True, "SecretARN": secret_arn, "RoleARN": role_arn}
    else:
        config["Username"] = username
        config["Password"] = password
    if processing_lambda_arn:
        config["ProcessingConfiguration"] = {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "Lambda",
                    "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": processing_lambda_arn}],
                }
            ],
        }
    return config


# --------------------------------------------------------------------------- load errors
LOAD_ERROR_LIMIT: Final = 100
_LOAD_ERROR_COLUMNS: Final = (
    '"query_id", "start_time", TRIM("file_name"), "line_number", TRIM("column_name"), '
    '"error_code", TRIM("error_message")'
)


@dataclass(frozen=True, slots=True)
class LoadErrorDetail:
    """One row of ``sys_load_error_detail``."""

    query_id: int | None
    start_time: str
    file_name: str
    line_number: int | None
    column_name: str
    error_code: int | None
    error_message: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LoadErrorDetail:
        qid, start, file_name, line, column, code, message = row

        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        return cls(
            opt_int(qid),
            str(start or ""),
            str(file_name or ""),
            opt_int(line),
            str(column or ""),
            opt_int(code),
            str(message or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "start_time": self.start_time,
            "file_name": self.file_name,
            "line_number": self.line_number,
            "column_name": self.column_name,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


def load_errors_of_query(query_id: int) -> Statement:
    """The load errors of one COPY (by its Redshift query id)."""
    return Statement(
        "load_errors",
        f'SELECT {_LOAD_ERROR_COLUMNS}\nFROM sys_load_error_detail\nWHERE "query_id" = CAST(:query_id AS BIGINT)\n'
        f'ORDER BY "line_number"\nLIMIT {LOAD_ERROR_LIMIT}',
        (("query_id", str(int(query_id))),),
    )


def load_errors_since(since: str, file_prefix: str) -> Statement:
    """Load errors of COPYs of files under ``file_prefix`` started at or after ``since`` (UTC)."""
    return Statement(
        "load_errors",
        f"SELECT {_LOAD_ERROR_COLUMNS}\nFROM sys_load_error_detail\n"
        'WHERE "start_time" >= CAST(:since AS TIMESTAMP) AND TRIM("file_name") LIKE :file_pattern\n'
        f'ORDER BY "start_time", "line_number"\nLIMIT {LOAD_ERROR_LIMIT}',
        (("since", since), ("file_pattern", file_prefix + "%")),
    )


# --------------------------------------------------------------------------- backfill plan
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SAFE_KEY = re.compile(r"[A-Za-z0-9!_.*()/=-]+")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
# The backfill's part-NNNNN.parquet files and the Parquet sink's <shard>-<first>-<last>.parquet
# objects alike; hidden and temporary files are not data.
_PART = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{2})/[A-Za-z0-9][A-Za-z0-9_.-]*\.parquet")


@dataclass(frozen=True, slots=True)
class S3Location:
    """An ``s3://bucket/prefix/`` URL (the prefix empty or ending in ``/``)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Parse ``s3://bucket[/prefix]``; raises ConfigError (terminal) for anything else."""
        if not url.startswith("s3://"):
            raise ConfigError(f"{url!r} is not an s3://bucket/prefix URL")
        bucket, _, prefix = url[5:].partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"{url!r}: {bucket!r} is not a valid S3 bucket name")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if prefix.startswith("/") or "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise ConfigError(f"{url!r}: the prefix has empty, '.' or '..' segments")
        return cls(bucket, prefix)

    def format(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One hour partition of the dataset: its files, identity, and what the load will do."""

    prefix: str
    """The partition's URL, ``s3://bucket/events/event_date=YYYY-MM-DD/event_hour=HH/``."""
    event_date: str
    event_hour: int
    files: tuple[S3Object, ...]
    content_hash: str
    """SHA-256 of the sorted (key, size, ETag) of its files: a rewritten partition changes it."""
    manifest_key: str
    action: Literal["load", "skip"]
    reason: str

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self, bucket: str) -> dict[str, Any]:
        """The COPY manifest (Parquet needs each file's content_length)."""
        return {
            "entries": [
                {"url": f"s3://{bucket}/{f.key}", "mandatory": True, "meta": {"content_length": f.size}}
                for f in self.files
            ]
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "files": len(self.files),
            "bytes": self.bytes,
            "content_hash": self.content_hash,
            "manifest_key": self.manifest_key,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    root: S3Location
    partitions: tuple[PartitionPlan, ...]
    ignored_keys: int = 0
    """Objects under the root that are not ``event_date=…/event_hour=…/<name>.parquet``."""

    @property
    def to_load(self) -> tuple[PartitionPlan, ...]:
        return tuple(p for p in self.partitions if p.action == "load")

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root.format(),
            "partitions": [p.to_json() for p in self.partitions],
            "to_load": len(self.to_load),
            "to_skip": len(self.partitions) - len(self.to_load),
            "ignored_keys": self.ignored_keys,
        }


def validate_manifest_prefix(prefix: str) -> str:
    """``redshift.manifest_prefix`` must be a plain key prefix ending in ``/``."""
    if not prefix.endswith("/") or not _SAFE_KEY.fullmatch(prefix) or prefix.startswith("/"):
        raise ConfigError(
            f"redshift.manifest_prefix {prefix!r} must be a key prefix ending in '/', made of letters, "
            "digits and !_.*()/=-"
        )
    return prefix


def content_hash(files: Iterable[S3Object]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda o: o.key):
        digest.update(f"{f.key}\t{f.size}\t{f.etag}\n".encode())
    return digest.hexdigest()


def plan_backfill(
    root: S3Location,
    objects: Iterable[S3Object],
    ledger: Mapping[str, frozenset[str]],
    manifest_prefix: str,
    since: date | None = None,
    until: date | None = None,
) -> BackfillPlan:
    """Group the dataset's Parquet files by hour partition and decide what to load.

    ``ledger`` maps partition URLs to the content hashes already loaded.  A partition whose
    current hash is in the ledger is skipped; a new or rewritten one (late events rewrite
    an old partition) is loaded -- the merge inserts only what the table lacks.  ``since``
    and ``until`` bound the partition dates, inclusive.
    """
    validate_manifest_prefix(manifest_prefix)
    groups: dict[tuple[str, int], list[S3Object]] = {}
    ignored = 0
    for obj in objects:
        rest = obj.key[len(root.prefix) :] if obj.key.startswith(root.prefix) else None
        match = _PART.fullmatch(rest) if rest is not None else None
        if match is None:
            ignored += 1
            continue
        day, hour = match.group(1), int(match.group(2))
        if (since and day < since.isoformat()) or (until and day > until.isoformat()):
            continue
        groups.setdefault((day, hour), []).append(obj)
    partitions = []
    for (day, hour), files in sorted(groups.items()):
        prefix = root.url_of(f"{root.prefix}event_date={day}/event_hour={hour:02d}/")
        digest = content_hash(files)
        loaded = ledger.get(prefix, frozenset())
        if digest in loaded:
            action: Literal["load", "skip"] = "skip"
            reason = "loaded before with the same files"
        else:
            action, reason = "load", ("files changed since the last load" if loaded else "not loaded yet")
        partitions.append(
            PartitionPlan(
                prefix=prefix,
                event_date=day,
                event_hour=hour,
                files=tuple(sorted(files, key=lambda o: o.key)),
                content_hash=digest,
                manifest_key=f"{manifest_prefix}event_date={day}/event_hour={hour:02d}/{digest}.manifest",
                action=action,
                reason=reason,
            )
        )
    return BackfillPlan(root, tuple(partitions), ignored)


def _copy_literal(text: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not safe to write into a COPY statement")
    return f"'{text}'"


def copy_parquet(tables: RedshiftTables, bucket: str, manifest_key: str, role_arn: str) -> Statement:
    """COPY one partition's Parquet files (by manifest) into the backfill staging table.

    COPY takes no bind parameters, so the manifest URL and the role ARN are checked
    against strict patterns before they become literals; ``role_arn`` ``""`` uses the
    cluster's default IAM role.
    """
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{bucket!r} is not a valid S3 bucket name")
    url = _copy_literal(
        f"s3://{bucket}/{manifest_key}", re.compile(r"s3://[a-z0-9.-]+/[A-Za-z0-9!_.*()/=-]+"), "manifest URL"
    )
    role = _copy_literal(role_arn, _ROLE_ARN, "redshift.copy_role_arn") if role_arn else "default"
    return Statement(
        "copy",
        f"COPY {tables.qualified(tables.backfill_staging)}\nFROM {url}\nIAM_ROLE {role}\nFORMAT AS PARQUET\nMANIFEST",
    )


def backfill_plan_for(tables: RedshiftTables, bucket: str, partition: PartitionPlan, role_arn: str) -> Transaction:
    """One partition's transaction: lock, empty the staging table, COPY, merge."""
    return Transaction(
        f"backfill {partition.prefix}",
        (
            lock_statement(tables, "backfill"),
            Statement("clear_backfill_staging", f"DELETE FROM {tables.qualified(tables.backfill_staging)}"),
            copy_parquet(tables, bucket, partition.manifest_key, role_arn),
            *merge_statements(tables, "backfill"),
        ),
    )


def ledger_lookup(tables: RedshiftTables, root: S3Location) -> Statement:
    """Ledger rows under ``root`` (LIKE may match a few more; callers compare exactly)."""
    return Statement(
        "ledger_lookup",
        f'SELECT "prefix", "content_hash" FROM {tables.ledger_q} WHERE "prefix" LIKE :root_pattern',
        (("root_pattern", root.format() + "%"),),
    )


def ledger_from_rows(root: S3Location, rows: Iterable[Sequence[Any]]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for prefix, digest in rows:
        if isinstance(prefix, str) and prefix.startswith(root.format()):
            found.setdefault(prefix, set()).add(str(digest).strip())
    return {k: frozenset(v) for k, v in found.items()}


_NONE: Final = "none"


def ledger_insert(tables: RedshiftTables, bucket: str, partition: PartitionPlan, stats: MergeStats) -> Statement:
    """Record a loaded partition; every value is a parameter."""
    names = [name for name, _ in LEDGER_COLUMNS]
    values = {
        "prefix": partition.prefix,
        "content_hash": partition.content_hash,
        "manifest_url": f"s3://{bucket}/{partition.manifest_key}",
        "files": str(len(partition.files)),
        "bytes": str(partition.bytes),
        "rows_staged": str(stats.staged),
        "rows_rejected": str(stats.rejected),
        "natural_duplicates": str(stats.natural_duplicates),
        "synthetic_duplicates": str(stats.synthetic_duplicates),
        "rows_inserted": str(stats.inserted),
        "min_collector_tstamp": stats.min_collector_tstamp or _NONE,
        "max_collector_tstamp": stats.max_collector_tstamp or _NONE,
    }
    kinds = dict(LEDGER_COLUMNS)
    exprs = []
    for name in names[:-1]:
        kind = kinds[name]
        if kind in ("INTEGER", "BIGINT"):
            exprs.append(f"CAST(:{name} AS {kind})")
        elif kind == "TIMESTAMP":
            exprs.append(f"CAST(NULLIF(:{name}, '{_NONE}') AS TIMESTAMP)")
        else:
            exprs.append(f":{name}")
    exprs.append("GETDATE()")
    return Statement(
        "ledger_insert",
        f"INSERT INTO {tables.ledger_q} ({', '.join(quote(n) for n in names)})\nVALUES ({', '.join(exprs)})",
        tuple(values.items()),
    )


def manifest_body(plan: PartitionPlan, bucket: str) -> bytes:
    return json.dumps(plan.manifest(bucket), indent=1, sort_keys=True).encode()
