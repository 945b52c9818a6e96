"""Statements as values: parameters are used, non-empty, and the only way values reach SQL."""

from __future__ import annotations

import pytest

from load.redshift.backfill_plan import S3Location
from load.redshift.identifiers import RedshiftTables
from load.redshift.ledger import ledger_lookup
from load.redshift.load_errors import load_errors_since
from load.redshift.statements import Statement


def test_statement_parameters_must_be_used_and_non_empty() -> None:
    with pytest.raises(ValueError, match="not used"):
        Statement("x", "SELECT 1", (("a", "1"),))
    with pytest.raises(ValueError, match="non-empty"):
        Statement("x", "SELECT :a", (("a", ""),))
    assert Statement("x", "SELECT :a", (("a", "v"),)).data_api_parameters() == [{"name": "a", "value": "v"}]


def test_values_travel_only_as_parameters(tables: RedshiftTables) -> None:
    # GIVEN values that would break out of a string literal
    """Reliability catalogue S10: values reach Redshift only as Data API parameters."""
    root = S3Location.parse("s3://clickstream-output/it's'; DROP TABLE x; --/")
    lookup = ledger_lookup(tables, root)
    errors = load_errors_since("2024-11-15 09:00:00", "s3://b/'; DROP TABLE x; --")
    # THEN they appear in no SQL text, only among the parameters
    for statement in (lookup, errors):
        assert "DROP TABLE" not in statement.sql
        assert any("DROP TABLE" in value for _, value in statement.parameters)
