"""Entities into Snowplow's shredded tables on a real SQL engine (DuckDB running the Redshift SQL).

Both load paths -- Firehose's staging table with the scheduled loader, and the Parquet
backfill with ``redshift load`` -- queue the inserted events' entities in the merge and drain
them into one table per schema family and major version, with typed columns derived the way
Snowplow's loader derives them.  What cannot be typed goes to ``unresolved_entities``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from load.errors import StatementFailedError
from load.parquet import encode_parquet
from load.redshift.backfill_load import plan_backfill_load, run_backfill_load
from load.redshift.backfill_plan import S3Location
from load.redshift.ddl import ddl_statements
from load.redshift.entity_load import drain_entities
from load.redshift.identifiers import RedshiftTables
from load.redshift.statements import Statement, Transaction
from load.redshift.stream_load import run_loader
from pipeline.config import PipelineConfig
from pipeline.iglu import FolderRegistry, Resolver, bundled_registry
from tests.functional.load.redshift.test_duckdb_engine import engine, firehose
from tests.redshift_support import DuckDBExecutor

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "samples" / "cloudfront" / "E2EXAMPLE1ABCD.2024-11-15-09.90344bfc.gz"
NOW = datetime(2024, 11, 15, 12, 0, tzinfo=UTC)
BUCKET = "clickstream-test-output"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
CLICK_1_0_0 = "iglu:com.acme/button_click/jsonschema/1-0-0"
CLICK_1_0_1 = "iglu:com.acme/button_click/jsonschema/1-0-1"
WEB_PAGE_TABLE = "atomic.com_snowplowanalytics_snowplow_web_page_1"
CLICK_TABLE = "atomic.com_acme_button_click_1"


def _schema(version: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
        "self": {"vendor": "com.acme", "name": "button_click", "format": "jsonschema", "version": version},
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


CLICK_PROPERTIES: dict[str, Any] = {
    "label": {"type": "string", "maxLength": 20},
    "count": {"type": "integer", "minimum": 0, "maximum": 1000},
    "clicked_at": {"type": "string", "format": "date-time"},
    "primary": {"type": "boolean"},
}


@pytest.fixture
def registry(tmp_path: Path) -> Resolver:
    """A folder registry with com.acme/button_click 1-0-0 and 1-0-1 (which adds ``colour``)."""
    folder = tmp_path / "iglu"
    for version, properties in (
        ("1-0-0", CLICK_PROPERTIES),
        ("1-0-1", {**CLICK_PROPERTIES, "colour": {"type": ["string", "null"], "maxLength": 10}}),
    ):
        path = folder / "schemas" / "com.acme" / "button_click" / "jsonschema" / version
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_schema(version, properties, ["label"])), encoding="utf-8")
    return Resolver([FolderRegistry(folder), bundled_registry()])


def contexts(*entities: tuple[str, dict[str, Any]]) -> str:
    return json.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [{"schema": uri, "data": data} for uri, data in entities],
        }
    )


def unstruct(uri: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": uri, "data": data},
        }
    )


def page_view_and_click(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two events of the sample: a page view with a web_page context, and a custom unstruct
    event (button_click 1-0-0) with the same web_page context."""
    view = dict(events[0], event_id="00000000-0000-4000-8000-000000000001", event_fingerprint="fp-view")
    view["contexts"] = contexts((WEB_PAGE, {"id": "a7e2f0f4-3b4c-4f55-9d6e-0c1b2a3d4e5f"}))
    click = dict(events[1], event_id="00000000-0000-4000-8000-000000000002", event_fingerprint="fp-click")
    click["event"] = "unstruct"
    click["contexts"] = contexts((WEB_PAGE, {"id": "a7e2f0f4-3b4c-4f55-9d6e-0c1b2a3d4e5f"}))
    click["unstruct_event"] = unstruct(
        CLICK_1_0_0, {"label": "Buy now", "count": 3, "clicked_at": "2024-11-15T09:01:02.345Z", "primary": True}
    )
    return [view, click]


def entity_rows(executor: DuckDBExecutor, table: str) -> list[tuple[Any, ...]]:
    return executor.query(f"SELECT * FROM {table} ORDER BY root_id, schema_version")


# --------------------------------------------------------------------------- the stream path
def test_stream_path_loads_each_entity_once_with_typed_columns_and_a_replay_changes_nothing(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver
) -> None:
    view, click = page_view_and_click(sample_events)
    executor = engine(tables)
    # GIVEN Firehose delivered both events twice (an at-least-once redelivery)
    firehose(executor, tables, [view, click, view, click])
    # WHEN the scheduled loader runs
    first = run_loader(config, executor, registry, NOW)
    # THEN the web_page table has one row per event, keyed to it, and the click table one typed row
    assert first.stats.inserted == 2
    assert (first.entities.typed, first.entities.fallback) == (3, 0)
    pages = executor.query(
        f"SELECT root_id, root_tstamp, schema_vendor, schema_name, schema_format, schema_version, ref_root, ref_tree, "
        f"ref_parent, id FROM {WEB_PAGE_TABLE} ORDER BY root_id"
    )
    assert [row[0] for row in pages] == [view["event_id"], click["event_id"]]
    assert pages[0][2:] == (
        "com.snowplowanalytics.snowplow",
        "web_page",
        "jsonschema",
        "1-0-0",
        "events",
        '["events","web_page"]',
        "events",
        "a7e2f0f4-3b4c-4f55-9d6e-0c1b2a3d4e5f",
    )
    # root_tstamp is the event's collector_tstamp
    assert pages[0][1] == datetime.fromtimestamp(view["collector_tstamp"] / 1000, UTC).replace(tzinfo=None)
    clicks = executor.query(f'SELECT root_id, label, "count", clicked_at, "primary" FROM {CLICK_TABLE}')
    clicked_at = datetime(2024, 11, 15, 9, 1, 2, 345000, tzinfo=UTC).replace(tzinfo=None)
    assert clicks == [(click["event_id"], "Buy now", 3, clicked_at, True)]
    types = dict(
        executor.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            ["com_acme_button_click_1"],
        )
    )
    assert (types["count"], types["clicked_at"], types["primary"]) == ("SMALLINT", "TIMESTAMP", "BOOLEAN")
    # the queue is empty, and the same rows delivered again change nothing
    assert executor.query("SELECT COUNT(*) FROM atomic.events_entity_queue") == [(0,)]
    firehose(executor, tables, [view, click])
    second = run_loader(config, executor, registry, NOW)
    assert second.stats.inserted == 0 and (second.entities.typed, second.entities.fallback) == (0, 0)
    assert len(entity_rows(executor, WEB_PAGE_TABLE)) == 2 and len(entity_rows(executor, CLICK_TABLE)) == 1


def test_a_later_minor_version_adds_a_nullable_column_and_each_version_writes_its_own(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver
) -> None:
    view, click = page_view_and_click(sample_events)
    executor = engine(tables)
    firehose(executor, tables, [click])
    run_loader(config, executor, registry, NOW)
    columns = [
        r[0]
        for r in executor.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'com_acme_button_click_1'"
        )
    ]
    assert "colour" not in columns
    # WHEN a 1-0-1 event arrives (it adds "colour")
    newer = dict(click, event_id="00000000-0000-4000-8000-000000000003", event_fingerprint="fp-newer")
    newer["unstruct_event"] = unstruct(CLICK_1_0_1, {"label": "Sign up", "colour": "green"})
    firehose(executor, tables, [newer])
    result = run_loader(config, executor, registry, NOW)
    # THEN the table gains the column (nullable) and the row carries its version
    assert result.entities.ddl == 1 and result.entities.typed == 2  # its click and its web_page context
    rows = executor.query(f"SELECT schema_version, label, colour FROM {CLICK_TABLE} ORDER BY schema_version")
    assert rows == [("1-0-0", "Buy now", None), ("1-0-1", "Sign up", "green")]


def test_unresolvable_and_ill_fitting_entities_go_to_the_fallback_table_never_dropped(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver
) -> None:
    view, click = page_view_and_click(sample_events)
    executor = engine(tables)
    unknown = dict(view, event_id="00000000-0000-4000-8000-000000000004", event_fingerprint="fp-unknown")
    unknown["contexts"] = contexts(("iglu:com.nobody/thing/jsonschema/1-0-0", {"x": 1}))
    too_long = dict(click, event_id="00000000-0000-4000-8000-000000000005", event_fingerprint="fp-long")
    too_long["unstruct_event"] = unstruct(CLICK_1_0_0, {"label": "x" * 21, "count": 3})
    bad_date = dict(click, event_id="00000000-0000-4000-8000-000000000006", event_fingerprint="fp-date")
    bad_date["unstruct_event"] = unstruct(CLICK_1_0_0, {"label": "ok", "clicked_at": "2023-02-29T10:00:00Z"})
    not_array = dict(view, event_id="00000000-0000-4000-8000-000000000007", event_fingerprint="fp-notarray")
    not_array["contexts"] = '{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": 5}'
    not_json = dict(view, event_id="00000000-0000-4000-8000-000000000008", event_fingerprint="fp-notjson")
    not_json["contexts"] = '{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": ['
    firehose(executor, tables, [unknown, too_long, bad_date, not_array, not_json])
    result = run_loader(config, executor, registry, NOW)
    # THEN every event loads, and every entity that cannot be typed is kept with why
    assert result.stats.inserted == 5
    fallback = dict(executor.query("SELECT root_id, reason FROM atomic.unresolved_entities"))
    assert fallback == {
        unknown["event_id"]: "no registry has this schema",
        too_long["event_id"]: "label: longer than 20 bytes",
        bad_date["event_id"]: "clicked_at: not an ISO 8601 date-time",
        not_array["event_id"]: "contexts is not a JSON object with a data array",
        not_json["event_id"]: "contexts is not a JSON object with a data array",
    }
    kept = executor.query(
        "SELECT entity::VARCHAR FROM atomic.unresolved_entities WHERE root_id = ?", [unknown["event_id"]]
    )
    assert json.loads(kept[0][0]) == {"schema": "iglu:com.nobody/thing/jsonschema/1-0-0", "data": {"x": 1}}
    # an envelope that is a JSON object is kept as SUPER, one that is not JSON as its text
    stored = dict(executor.query("SELECT root_id, entity::VARCHAR FROM atomic.unresolved_entities"))
    assert json.loads(stored[not_array["event_id"]]) == json.loads(not_array["contexts"])
    text = executor.query(
        "SELECT entity, entity_text FROM atomic.unresolved_entities WHERE root_id = ?", [not_json["event_id"]]
    )
    assert text == [(None, not_json["contexts"])]
    # the web_page contexts of the two click events still reach their typed table
    assert {r[4] for r in entity_rows(executor, WEB_PAGE_TABLE)} == {too_long["event_id"], bad_date["event_id"]}
    assert executor.query(f"SELECT COUNT(*) FROM {CLICK_TABLE}") == [(0,)]


# --------------------------------------------------------------------------- crash points
class FailingDrain(DuckDBExecutor):
    """Fails every drain transaction: a loader killed after its merge committed."""

    def execute_transaction(self, transaction: Transaction) -> tuple[Any, ...]:
        if transaction.label.startswith("drain"):
            raise StatementFailedError("the loader died during the drain", label="drain_batch")
        return super().execute_transaction(transaction)


def test_a_drain_that_fails_leaves_the_entities_queued_and_the_next_run_loads_them_once(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver
) -> None:
    view, click = page_view_and_click(sample_events)
    executor = FailingDrain()
    for statement in ddl_statements(tables):
        executor.execute(statement)
    firehose(executor, tables, [view, click])
    with pytest.raises(StatementFailedError):
        run_loader(config, executor, registry, NOW)
    # the events committed with their queued entities; nothing is typed yet
    assert executor.query("SELECT COUNT(*) FROM atomic.events") == [(2,)]
    assert executor.query("SELECT COUNT(*) FROM atomic.events_entity_queue") == [(3,)]
    # WHEN the next run drains (a working loader on the same database)
    summary = drain_entities(_Passthrough(executor), tables, registry)
    assert (summary.typed, summary.fallback) == (3, 0)
    assert executor.query("SELECT COUNT(*) FROM atomic.events_entity_queue") == [(0,)]
    assert len(entity_rows(executor, WEB_PAGE_TABLE)) == 2


class _Passthrough:
    """The same database, without the injected fault."""

    def __init__(self, inner: FailingDrain) -> None:
        self._inner = inner

    def execute(self, statement: Statement) -> Any:
        return self._inner.execute(statement)

    def execute_transaction(self, transaction: Transaction) -> tuple[Any, ...]:
        return DuckDBExecutor.execute_transaction(self._inner, transaction)


def test_a_schema_first_seen_after_the_census_stays_queued_for_the_next_drain(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver
) -> None:
    view, click = page_view_and_click(sample_events)
    executor = engine(tables)
    firehose(executor, tables, [view])
    run_loader(config, executor, registry, NOW)
    # GIVEN a queued entity whose URI the drain's census did not see (a merge committed in between)
    late = dict(click, event_id="00000000-0000-4000-8000-000000000009", event_fingerprint="fp-late")
    firehose(executor, tables, [late])
    census_uris = [WEB_PAGE]
    from load.redshift.entity_tables import drain_transactions, live_columns_statement, live_tables, plan_drain

    # (the merge of the late event queues a click and a web_page context)
    from load.redshift.executor import merge_once
    from load.redshift.merge import stream_merge_plan

    merge_once(executor, stream_merge_plan(tables))
    live = live_tables(executor.execute(live_columns_statement(tables)).rows)
    plan = plan_drain(census_uris, registry, live, tables)
    for chunk in drain_transactions(tables, plan):
        executor.execute_transaction(chunk.transaction)
    # THEN the click stays queued (not sent to the fallback), and the next drain types it
    assert executor.query("SELECT uri FROM atomic.events_entity_queue") == [(CLICK_1_0_0,)]
    assert executor.query("SELECT COUNT(*) FROM atomic.unresolved_entities") == [(0,)]
    summary = drain_entities(executor, tables, registry)
    assert summary.typed == 1 and executor.query(f"SELECT root_id FROM {CLICK_TABLE}") == [(late["event_id"],)]


# --------------------------------------------------------------------------- the backfill path
@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.mark.slow
def test_backfill_path_feeds_the_same_tables_once_and_agrees_with_the_stream_path(
    config: PipelineConfig, tables: RedshiftTables, sample_events: list[dict[str, Any]], registry: Resolver, s3: Any
) -> None:
    view, click = page_view_and_click(sample_events)
    hour = datetime.fromtimestamp(view["collector_tstamp"] / 1000, UTC)
    key = f"events/event_date={hour:%Y-%m-%d}/event_hour={hour:%H}/part-00000.parquet"
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode_parquet([view, click], config.load))
    root = S3Location.parse(f"s3://{BUCKET}/events/")
    backfill = engine(tables, s3)

    def load() -> Any:
        plan = plan_backfill_load(s3, backfill, tables, root, config.redshift.manifest_prefix)
        return run_backfill_load(plan, s3, backfill, tables, "", registry)

    first = load()
    assert first.count("loaded") == 1 and (first.entities.typed, first.entities.fallback) == (3, 0)
    # the stream path on the same events gives the same entity tables
    stream = engine(tables)
    firehose(stream, tables, [view, click])
    run_loader(config, stream, registry, NOW)
    for table in (WEB_PAGE_TABLE, CLICK_TABLE):
        assert entity_rows(backfill, table) == entity_rows(stream, table) != []
    # WHEN the partition is rewritten with the same events (and loaded again) THEN nothing changes
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode_parquet([click, view], config.load))
    again = load()
    assert again.count("loaded") == 1 and again.total("inserted") == 0
    assert (again.entities.typed, again.entities.fallback) == (0, 0)
    assert len(entity_rows(backfill, WEB_PAGE_TABLE)) == 2 and len(entity_rows(backfill, CLICK_TABLE)) == 1
