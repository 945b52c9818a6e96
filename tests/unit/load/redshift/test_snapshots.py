"""Every statement of the load path against its SQL snapshot, and parsed as Redshift SQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sqlglot
from sqlglot import exp

from load.redshift.backfill_plan import S3Location, S3Object, backfill_plan_for, plan_backfill
from load.redshift.ddl import ddl_statements
from load.redshift.entity_tables import drain_transactions, plan_drain, queue_census_statement
from load.redshift.identifiers import RedshiftTables
from load.redshift.ledger import ledger_insert, ledger_lookup
from load.redshift.load_errors import load_errors_of_query, load_errors_since
from load.redshift.merge import MergeStats, staged_count, stream_merge_plan
from load.redshift.statements import Statement
from pipeline.config import PipelineConfig
from pipeline.iglu import Resolver, bundled_registry

WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"

SNAPSHOTS = Path(__file__).parents[2] / "snapshots" / "redshift"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def _partition(tables: RedshiftTables) -> tuple[S3Location, object]:
    root = S3Location.parse("s3://clickstream-output/events/")
    objects = [
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00000.parquet", 1000, "e1"),
        S3Object("events/event_date=2024-11-15/event_hour=09/part-00001.parquet", 2000, "e2"),
    ]
    plan = plan_backfill(root, objects, {}, "redshift/manifests/")
    return root, plan.partitions[0]


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
    # the entity drain of a web_page context (bundled schema) into a table created by the plan
    resolver = Resolver([bundled_registry()])
    plan = plan_drain([WEB_PAGE], resolver, {}, tables)
    for table in plan.ddl:
        for s in table.statements:
            statements[f"entity_{s.label.replace(' ', '_')}"] = s
    [chunk] = drain_transactions(tables, plan)
    for s in chunk.transaction.statements:
        statements[f"drain_{s.label.replace(' ', '_')}"] = s
    statements["entity_census"] = queue_census_statement(tables)
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
