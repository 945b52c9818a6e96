"""The Redshift load path as values: identifiers, DDL from the schema, plans, snapshots."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from load.errors import InvalidIdentifierError
from load.redshift import (
    ATOMIC_COLUMNS,
    FIREHOSE_COPY_OPTIONS,
    PARQUET_COLUMNS,
    SYNTHETIC_ID_NAMESPACE,
    MergeStats,
    RedshiftTables,
    S3Location,
    S3Object,
    Statement,
    backfill_plan_for,
    copy_parquet,
    create_events_table,
    ddl_statements,
    firehose_copy_command,
    firehose_redshift_destination,
    identifier,
    ledger_from_rows,
    ledger_insert,
    ledger_lookup,
    load_errors_of_query,
    load_errors_since,
    plan_backfill,
    render_script,
    staged_count,
    stream_merge_plan,
    synthetic_event_id,
)
from pipeline.config import PipelineConfig, RedshiftConfig
from pipeline.errors import ConfigError
from pipeline.schema import ATOMIC_FIELDS, FIELDS, to_json_record

SNAPSHOTS = Path(__file__).parent / "snapshots" / "redshift"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


@pytest.fixture(scope="module")
def tables(config: PipelineConfig) -> RedshiftTables:
    return RedshiftTables.from_config(config.redshift)


def _partition(tables: RedshiftTables) -> tuple[S3Location, object]:
    root = S3Location.parse("s3://clickstream-output/events/")
    objects = [
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00000.parquet", 1000, "e1"),
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00001.parquet", 2000, "e2"),
    ]
    plan = plan_backfill(root, objects, {}, "redshift/manifests/")
    return root, plan.partitions[0]


# --------------------------------------------------------------------------- identifiers
@pytest.mark.parametrize(
    "name",
    ['events"; DROP TABLE atomic.events; --', "Events", "1events", "", "a b", "événements", "x" * 128, "a-b", "a.b"],
)
def test_malicious_or_invalid_identifiers_from_config_are_rejected(config: PipelineConfig, name: str) -> None:
    # GIVEN a configuration naming a table with something that is not a plain identifier
    bad = replace(config.redshift, staging_table=name)
    # WHEN the tables are resolved THEN it is a configuration error naming the key
    with pytest.raises(InvalidIdentifierError, match="redshift.staging_table"):
        RedshiftTables.from_config(bad)


def test_identifier_errors_are_terminal_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        identifier("x;y", "redshift.schema")
    assert caught.value.retryable is False


def test_tables_must_be_distinct(config: PipelineConfig) -> None:
    with pytest.raises(ConfigError, match="five different names"):
        RedshiftTables.from_config(replace(config.redshift, rejects_table=config.redshift.table))


def test_every_identifier_in_generated_sql_is_quoted_and_configurable(config: PipelineConfig) -> None:
    # GIVEN another schema name WHEN the DDL is built THEN every table lives in it
    tables = RedshiftTables.from_config(replace(config.redshift, schema="analytics_raw"))
    script = render_script(ddl_statements(tables))
    assert '"analytics_raw"."events"' in script and '"atomic"' not in script
    created = re.findall(r'CREATE TABLE IF NOT EXISTS ("[a-z_]+"\."[a-z_]+")', script)
    assert len(created) == 5 and all(name.startswith('"analytics_raw".') for name in created)


# --------------------------------------------------------------------------- DDL vs schema
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
    # the Firehose transformation Lambda's keys are exactly the stream staging columns
    event = {"event_id": str(uuid.uuid4()), "collector_tstamp": 1_731_661_200_123}
    assert stream == list(to_json_record(event, atomic_only=True)) == list(ATOMIC_COLUMNS)
    # COPY from Parquet maps by position: the backfill staging table has every file column, in order
    assert backfill == list(PARQUET_COLUMNS) == [f.name for f in FIELDS]


def test_a_schema_change_would_break_the_ddl_test(tables: RedshiftTables) -> None:
    # GIVEN the DDL with one canonical column missing, THEN the derived-column comparison fails
    sql = create_events_table(tables).sql.replace('    "page_title" VARCHAR(2000) ENCODE ZSTD,\n', "")
    assert [name for name, _ in _ddl_columns(sql)] != [f.name for f in ATOMIC_FIELDS] + ["load_tstamp"]


# --------------------------------------------------------------------------- Firehose
def test_firehose_copy_command_matches_the_transformation_lambda_output(tables: RedshiftTables) -> None:
    command = firehose_copy_command(tables)
    record = to_json_record({"event_id": "x", "collector_tstamp": 1_731_661_200_123}, atomic_only=True)
    assert command["DataTableName"] == "atomic.events_staging"
    assert command["DataTableColumns"].split(",") == list(record)
    assert record["collector_tstamp"] == "2024-11-15 09:00:00.123"
    assert "FORMAT AS JSON 'auto'" in command["CopyOptions"]
    assert "TIMEFORMAT 'YYYY-MM-DD HH:MI:SS'" in command["CopyOptions"]
    assert "GZIP" in command["CopyOptions"] and "MANIFEST" not in command["CopyOptions"]
    assert command["CopyOptions"] == FIREHOSE_COPY_OPTIONS


def test_firehose_destination_needs_credentials(tables: RedshiftTables) -> None:
    kwargs = {
        "role_arn": "arn:aws:iam::123456789012:role/f",
        "cluster_jdbc_url": "jdbc:redshift://h:5439/dev",
        "bucket_arn": "arn:aws:s3:::b",
        "s3_prefix": "firehose/",
    }
    with pytest.raises(ConfigError):
        firehose_redshift_destination(tables, **kwargs)
    config = firehose_redshift_destination(
        tables,
        secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:x",
        processing_lambda_arn="arn:aws:lambda:us-east-1:1:function:t",
        **kwargs,
    )
    assert config["S3Configuration"]["CompressionFormat"] == "GZIP"
    assert config["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"].endswith(":t")
    assert "Password" not in config


# --------------------------------------------------------------------------- statements
def test_statement_parameters_must_be_used_and_non_empty() -> None:
    with pytest.raises(ValueError, match="not used"):
        Statement("x", "SELECT 1", (("a", "1"),))
    with pytest.raises(ValueError, match="non-empty"):
        Statement("x", "SELECT :a", (("a", ""),))
    assert Statement("x", "SELECT :a", (("a", "v"),)).data_api_parameters() == [{"name": "a", "value": "v"}]


def test_values_travel_only_as_parameters(tables: RedshiftTables) -> None:
    # GIVEN values that would break out of a string literal
    root = S3Location.parse("s3://clickstream-output/it's'; DROP TABLE x; --/")
    lookup = ledger_lookup(tables, root)
    errors = load_errors_since("2024-11-15 09:00:00", "s3://b/'; DROP TABLE x; --")
    # THEN they appear in no SQL text, only among the parameters
    for statement in (lookup, errors):
        assert "DROP TABLE" not in statement.sql
        assert any("DROP TABLE" in value for _, value in statement.parameters)


def test_copy_refuses_unsafe_literals(tables: RedshiftTables) -> None:
    with pytest.raises(ConfigError, match="manifest URL"):
        copy_parquet(tables, "bucket", "m/x' CREDENTIALS 'y.manifest", "")
    with pytest.raises(ConfigError, match="copy_role_arn"):
        copy_parquet(tables, "bucket", "m/x.manifest", "arn:aws:iam::123456789012:role/r' x")
    assert "IAM_ROLE default" in copy_parquet(tables, "bucket", "m/x.manifest", "").sql


def test_the_merge_is_one_transaction_and_touches_the_tables_it_locks(tables: RedshiftTables) -> None:
    plan = stream_merge_plan(tables)
    labels = [s.label for s in plan.statements]
    assert labels == ["lock", "rejects", "batch", "rows", "stats", "insert", "clear_staging", "drop_rows", "drop_batch"]
    assert not any(s.parameters for s in plan.statements)
    assert "TRUNCATE" not in " ".join(s.sql for s in plan.statements)  # TRUNCATE would commit mid-plan
    assert plan.statements[0].sql == 'LOCK "atomic"."events", "atomic"."events_staging", "atomic"."events_rejected"'


# --------------------------------------------------------------------------- synthetic ids
def test_synthetic_event_id_is_a_deterministic_uuid5() -> None:
    original = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
    new = synthetic_event_id(original, "fp-b")
    assert uuid.UUID(new).version == 5 and uuid.UUID(new).variant == uuid.RFC_4122
    assert new == synthetic_event_id(original, "fp-b") != synthetic_event_id(original, "fp-c")
    assert new == str(uuid.uuid5(SYNTHETIC_ID_NAMESPACE, f"{original}/fp-b"))
    assert SYNTHETIC_ID_NAMESPACE.bytes == b"clickstream-etl:"


# --------------------------------------------------------------------------- backfill plan
def test_backfill_plan_groups_partitions_and_consults_the_ledger() -> None:
    root = S3Location.parse("s3://clickstream-output/events")
    assert root.prefix == "events/"
    objects = [
        S3Object("events/event_date=2024-11-14/event_hour=23/part-00000.parquet", 10, "a"),
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00000.parquet", 10, "b"),
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00001.parquet", 20, "c"),
        S3Object("events/event_date=2024-11-15/event_hour=10/part-00000.parquet", 10, "d"),
        S3Object("events/event_date=2024-11-16/event_hour=00/part-00000.parquet", 10, "e"),
        # an object of the Parquet sink (keyed by shard and sequence range)
        S3Object("events/event_date=2024-11-16/event_hour=00/shardId-000000000001-49-57.parquet", 10, "h"),
        S3Object("events/event_date=2024-11-15/event_hour=10/.part-00000.parquet.tmp", 10, "f"),
        S3Object("events/_SUCCESS", 0, "g"),
    ]
    first = plan_backfill(root, objects, {}, "redshift/manifests/")
    assert [(p.event_date, p.event_hour, len(p.files)) for p in first.partitions] == [
        ("2024-11-14", 23, 1),
        ("2024-11-15", 9, 2),
        ("2024-11-15", 10, 1),
        ("2024-11-16", 0, 2),
    ]
    assert first.ignored_keys == 2 and {p.action for p in first.partitions} == {"load"}
    nine = first.partitions[1]
    assert nine.prefix == "s3://clickstream-output/events/event_date=2024-11-15/event_hour=09/"
    assert nine.manifest_key == f"redshift/manifests/event_date=2024-11-15/event_hour=09/{nine.content_hash}.manifest"
    assert nine.manifest("clickstream-output")["entries"][1] == {
        "url": "s3://clickstream-output/events/event_date=2024-11-15/event_hour=09/part-00001.parquet",
        "mandatory": True,
        "meta": {"content_length": 20},
    }
    # GIVEN a ledger with 09 loaded as is, and 10 loaded with other files (since rewritten)
    ledger = {nine.prefix: frozenset({nine.content_hash}), first.partitions[2].prefix: frozenset({"0" * 64})}
    second = plan_backfill(
        root, objects, ledger, "redshift/manifests/", since=date(2024, 11, 15), until=date(2024, 11, 15)
    )
    assert [(p.event_hour, p.action, p.reason) for p in second.partitions] == [
        (9, "skip", "loaded before with the same files"),
        (10, "load", "files changed since the last load"),
    ]
    # a rewritten file (new ETag) changes the partition's identity
    changed = [replace(o, etag="z") if o.key.endswith("09/part-00001.parquet") else o for o in objects]
    assert plan_backfill(root, changed, ledger, "redshift/manifests/").partitions[1].action == "load"


@pytest.mark.parametrize("url", ["https://b/x", "s3://Bad_Bucket/x", "s3://b/../x", "s3://bucket//x", "s3://"])
def test_bad_s3_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        S3Location.parse(url)


def test_bad_manifest_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="manifest_prefix"):
        plan_backfill(S3Location.parse("s3://bucket/events/"), [], {}, "manifests'")


def test_ledger_rows_are_matched_exactly_under_the_root() -> None:
    root = S3Location.parse("s3://bucket/ev_nts/")
    rows = [
        ("s3://bucket/ev_nts/event_date=2024-11-15/event_hour=09/", "a" * 64),
        ("s3://bucket/evXnts/event_date=2024-11-15/event_hour=09/", "b" * 64),
    ]
    assert ledger_from_rows(root, rows) == {rows[0][0]: frozenset({"a" * 64})}


def test_merge_stats_parse_and_derive() -> None:
    stats = MergeStats.from_row((10, 1, 7, 2, 5, "2024-11-15 09:00:00", "2024-11-15 09:59:59"))
    assert (stats.natural_duplicates, stats.already_loaded) == (2, 2)
    assert stats.to_json()["inserted"] == 5
    with pytest.raises(Exception, match="unexpected merge statistics"):
        MergeStats.from_row(("x",))


# --------------------------------------------------------------------------- snapshots
def _snapshot_statements(config: PipelineConfig) -> dict[str, Statement]:
    tables = RedshiftTables.from_config(config.redshift)
    root, partition = _partition(tables)
    statements: dict[str, Statement] = {}
    for s in ddl_statements(tables):
        statements[f"ddl_{s.label}"] = s
    for s in stream_merge_plan(tables).statements:
        statements[f"stream_{s.label}"] = s
    arn = "arn:aws:iam::123456789012:role/redshift-copy"
    for s in backfill_plan_for(tables, root.bucket, partition, arn).statements[:3]:  # type: ignore[arg-type]
        statements[f"backfill_{s.label}"] = s
    stats = MergeStats(12, 1, 9, 1, 8, "2024-11-15 09:00:01", "2024-11-15 09:59:58")
    statements["ledger_insert"] = ledger_insert(tables, root.bucket, partition, stats)  # type: ignore[arg-type]
    statements["ledger_lookup"] = ledger_lookup(tables, root)
    statements["staged_count"] = staged_count(tables)
    statements["load_errors_of_query"] = load_errors_of_query(4242)
    statements["load_errors_since"] = load_errors_since("2024-11-15 09:00:00", "s3://clickstream-output/firehose/")
    return statements


def _render(statement: Statement) -> str:
    params = "".join(f"-- :{name} = {json.dumps(value)}\n" for name, value in statement.parameters)
    return f"-- {statement.label}\n{statement.sql}\n{params}"


def test_statements_match_their_snapshots(config: PipelineConfig) -> None:
    statements = _snapshot_statements(config)
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    mismatched = []
    for name, statement in statements.items():
        path = SNAPSHOTS / f"{name}.sql"
        text = _render(statement)
        if UPDATE or not path.exists():
            if not UPDATE:
                mismatched.append(f"{name} (snapshot missing; run with UPDATE_SNAPSHOTS=1)")
            path.write_text(text, encoding="utf-8")
        elif path.read_text(encoding="utf-8") != text:
            mismatched.append(name)
    extra = {p.stem for p in SNAPSHOTS.glob("*.sql")} - set(statements)
    assert not mismatched, f"statements differ from tests/unit/snapshots/redshift: {mismatched}"
    assert not extra, f"stale snapshots: {extra}"


def test_every_snapshot_statement_parses_as_redshift_sql(config: PipelineConfig) -> None:
    for name, statement in _snapshot_statements(config).items():
        if statement.sql.startswith("LOCK"):
            continue
        tree = sqlglot.parse_one(statement.sql, read="redshift")
        assert not isinstance(tree, exp.Command), name


def test_redshift_config_has_documented_defaults(config: PipelineConfig) -> None:
    redshift: RedshiftConfig = config.redshift
    assert (redshift.backfill_staging_table, redshift.rejects_table) == ("events_backfill_staging", "events_rejected")
    text = (Path(__file__).parents[2] / "config" / "default.toml").read_text()
    for key in ("backfill_staging_table", "rejects_table", "manifest_prefix", "load_error_window_minutes"):
        assert re.search(rf"^# .*\n(?:# .*\n)*{key} = ", text, re.M), key
