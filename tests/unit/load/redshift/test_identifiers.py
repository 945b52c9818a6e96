"""Safe identifiers and the configured table names: validated, quoted, distinct, documented."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from load.errors import InvalidIdentifierError
from load.redshift.ddl import ddl_statements
from load.redshift.identifiers import RedshiftTables, identifier
from load.redshift.statements import render_script
from pipeline.config import PipelineConfig, RedshiftConfig
from pipeline.errors import ConfigError


@pytest.mark.parametrize(
    "name",
    ['events"; DROP TABLE atomic.events; --', "Events", "1events", "", "a b", "événements", "x" * 128, "a-b", "a.b"],
)
def test_malicious_or_invalid_identifiers_from_config_are_rejected(config: PipelineConfig, name: str) -> None:
    # GIVEN a configuration naming a table with something that is not a plain identifier
    """Reliability catalogue S10: a malicious table name from the configuration is refused."""
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
    # events, staging, backfill staging, rejects, ledger, entity queue, entity slots, unresolved entities
    assert len(created) == 8 and all(name.startswith('"analytics_raw".') for name in created)


def test_redshift_config_has_documented_defaults(config: PipelineConfig) -> None:
    redshift: RedshiftConfig = config.redshift
    assert (redshift.backfill_staging_table, redshift.rejects_table) == ("events_backfill_staging", "events_rejected")
    text = (Path(__file__).parents[4] / "config" / "default.toml").read_text()
    for key in ("backfill_staging_table", "rejects_table", "manifest_prefix", "load_error_window_minutes"):
        assert re.search(rf"^# .*\n(?:# .*\n)*{key} = ", text, re.M), key
