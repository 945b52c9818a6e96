"""The load ledger: rows under a root are matched exactly."""

from __future__ import annotations

from load.redshift.backfill_plan import S3Location
from load.redshift.ledger import ledger_from_rows


def test_ledger_rows_are_matched_exactly_under_the_root() -> None:
    root = S3Location.parse("s3://bucket/ev_nts/")
    rows = [
        ("s3://bucket/ev_nts/event_date=2024-11-15/event_hour=09/", "a" * 64),
        ("s3://bucket/evXnts/event_date=2024-11-15/event_hour=09/", "b" * 64),
    ]
    assert ledger_from_rows(root, rows) == {rows[0][0]: frozenset({"a" * 64})}
