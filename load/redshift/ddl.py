"""The DDL of the load path: schema, events, staging, rejects and ledger tables (idempotent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from load.redshift.columns import (
    DIST_KEY,
    LOAD_TSTAMP,
    NOT_NULL_COLUMNS,
    SORT_KEY,
    column_type,
    staging_type,
)
from load.redshift.entity_tables import ENTITY_SOURCE_COLUMNS, entity_ddl_statements
from load.redshift.identifiers import RedshiftTables, quote
from load.redshift.statements import Statement
from pipeline.schema import ATOMIC_FIELDS, FIELDS, Field


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
        null = " NOT NULL" if f.name in NOT_NULL_COLUMNS else ""
        lines.append(f"    {quote(f.name)} {column_type(f)} ENCODE {encoding}{null}")
    lines.append(f"    {quote(LOAD_TSTAMP)} TIMESTAMP ENCODE ZSTD")
    body = ",\n".join(lines)
    return Statement(
        "create_events",
        f"CREATE TABLE IF NOT EXISTS {tables.events_q} (\n{body}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})\nSORTKEY ({quote(SORT_KEY)})",
    )


def _staging_body(fields: Sequence[Field], *, parquet: bool = False) -> str:
    return ",\n".join(f"    {quote(f.name)} {staging_type(f, parquet=parquet)} ENCODE ZSTD" for f in fields)


def create_staging_table(tables: RedshiftTables) -> Statement:
    """Firehose's staging table: every canonical column (the entities' JSON too, for the entity
    tables), strings VARCHAR(65535), no constraints."""
    return Statement(
        "create_staging",
        f"CREATE TABLE IF NOT EXISTS {tables.qualified(tables.staging)} (\n{_staging_body(FIELDS)}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})",
    )


def create_backfill_staging_table(tables: RedshiftTables) -> Statement:
    """The backfill's staging table: all 131 columns in the Parquet files' order.

    COPY from Parquet maps columns by position and needs as many table columns as the
    files have, so this table also holds contexts, unstruct_event and derived_contexts,
    which the merge ignores (they are not columns of atomic.events); its money columns are
    DECIMAL(18,2), the files' type.
    """
    body = _staging_body(FIELDS, parquet=True)
    return Statement(
        "create_backfill_staging",
        f"CREATE TABLE IF NOT EXISTS {tables.qualified(tables.backfill_staging)} (\n{body}\n)\n"
        f"DISTSTYLE KEY\nDISTKEY ({quote(DIST_KEY)})",
    )


def create_rejects_table(tables: RedshiftTables) -> Statement:
    """Rows the merge could not load as they are (with their entities' JSON), the reason and the time."""
    body = _staging_body(FIELDS)
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
        *entity_ddl_statements(tables),
    )


def upgrade_statements(tables: RedshiftTables, live: Mapping[str, Mapping[str, object]]) -> tuple[Statement, ...]:
    """ALTER TABLE statements for tables created by an older version: the staging and rejects
    tables gain the entities' JSON columns (``live``: table -> its columns, as read from
    ``information_schema.columns``).  Absent tables are left to :func:`ddl_statements`."""
    by_name = {f.name: f for f in FIELDS}
    statements = []
    for table in (tables.staging, tables.rejects):
        columns = live.get(table)
        if columns is None:
            continue
        for name in ENTITY_SOURCE_COLUMNS:
            if name not in columns:
                statements.append(
                    Statement(
                        f"add_column {table}.{name}",
                        f"ALTER TABLE {tables.qualified(table)} ADD COLUMN {quote(name)} "
                        f"{staging_type(by_name[name])} ENCODE ZSTD",
                    )
                )
    return tuple(statements)
