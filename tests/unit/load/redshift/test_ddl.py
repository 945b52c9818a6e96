"""The DDL derived from the canonical schema: columns, widths, physical design, staging tables."""

from __future__ import annotations

import re
import uuid

import sqlglot
from sqlglot import exp

from load.redshift.columns import ATOMIC_COLUMNS
from load.redshift.ddl import create_events_table, ddl_statements
from load.redshift.identifiers import RedshiftTables
from pipeline.schema import ATOMIC_FIELDS, FIELDS, to_json_record
from tests.redshift_support import PARQUET_COLUMNS


def _ddl_columns(sql: str) -> list[tuple[str, str]]:
    tree = sqlglot.parse_one(sql, read="redshift")
    return [(c.name, c.args["kind"].sql("redshift")) for c in tree.find_all(exp.ColumnDef)]


def test_events_ddl_columns_are_the_canonical_atomic_fields_then_load_tstamp(tables: RedshiftTables) -> None:
    # GIVEN the DDL parsed as Redshift SQL
    columns = _ddl_columns(create_events_table(tables).sql)
    # THEN its column list is the canonical schema's atomic fields, in order, then load_tstamp
    assert [name for name, _ in columns] == [f.name for f in ATOMIC_FIELDS] + ["load_tstamp"]
    assert len(columns) == 129
    # AND every string column has the schema's width in bytes (Redshift VARCHAR widths are bytes)
    types = dict(columns)
    for f in ATOMIC_FIELDS:
        if f.max_bytes is not None:
            assert re.search(rf"\({f.max_bytes}\)$", types[f.name]), (f.name, types[f.name])
            assert types[f.name].startswith("CHAR" if f.redshift_is_char else "VARCHAR")
    assert types["tr_total"] == "DECIMAL(18, 2)" and types["se_value"] == "DOUBLE PRECISION"
    assert types["collector_tstamp"] == "TIMESTAMP" and types["br_cookies"] == "BOOLEAN"


def test_events_ddl_has_snowplow_physical_design(tables: RedshiftTables) -> None:
    sql = create_events_table(tables).sql
    assert 'DISTKEY ("event_id")' in sql and 'SORTKEY ("collector_tstamp")' in sql
    encodings = re.findall(r'^\s+"(\w+)" [^\n]* ENCODE (\w+)', sql, re.M)
    assert dict(encodings)["collector_tstamp"] == "RAW"
    assert {enc for name, enc in encodings if name != "collector_tstamp"} == {"ZSTD"}
    assert '"event_id" CHAR(36) ENCODE ZSTD NOT NULL' in sql


def test_staging_tables_follow_the_json_keys_and_the_parquet_columns(tables: RedshiftTables) -> None:
    statements = {s.label: s for s in ddl_statements(tables)}
    stream = [name for name, _ in _ddl_columns(statements["create_staging"].sql)]
    backfill = [name for name, _ in _ddl_columns(statements["create_backfill_staging"].sql)]
    # the Firehose transformation Lambda's keys are exactly the stream staging columns: the
    # atomic ones and the entities' JSON, which the loader shreds into the entity tables
    event = {"event_id": str(uuid.uuid4()), "collector_tstamp": 1_731_661_200_123}
    assert stream == list(to_json_record(event)) == [f.name for f in FIELDS]
    assert set(ATOMIC_COLUMNS) < set(stream)
    # COPY from Parquet maps by position: the backfill staging table has every file column, in order
    assert backfill == list(PARQUET_COLUMNS) == [f.name for f in FIELDS]


def test_a_schema_change_would_break_the_ddl_test(tables: RedshiftTables) -> None:
    # GIVEN the DDL with one canonical column missing, THEN the derived-column comparison fails
    sql = create_events_table(tables).sql.replace('    "page_title" VARCHAR(2000) ENCODE ZSTD,\n', "")
    assert [name for name, _ in _ddl_columns(sql)] != [f.name for f in ATOMIC_FIELDS] + ["load_tstamp"]


def test_the_duckdb_executor_removes_its_copy_folder() -> None:
    """Tests clean their temporary folders: the DuckDB stand-in's COPY staging goes with it."""
    import gc

    from tests.redshift_support import DuckDBExecutor

    executor = DuckDBExecutor()
    folder = executor._files
    assert folder.is_dir()
    del executor
    gc.collect()
    assert not folder.exists()
    closed = DuckDBExecutor()
    closed.close()
    assert not closed._files.exists()
