"""The backfill plan: partitions grouped from S3 listings, the ledger consulted, safe COPY literals."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from load.redshift.backfill_plan import S3Location, S3Object, copy_parquet, plan_backfill
from load.redshift.identifiers import RedshiftTables
from pipeline.errors import ConfigError


def test_copy_refuses_unsafe_literals(tables: RedshiftTables) -> None:
    with pytest.raises(ConfigError, match="manifest URL"):
        copy_parquet(tables, "bucket", "m/x' CREDENTIALS 'y.manifest", "")
    with pytest.raises(ConfigError, match="copy_role_arn"):
        copy_parquet(tables, "bucket", "m/x.manifest", "arn:aws:iam::123456789012:role/r' x")
    assert "IAM_ROLE default" in copy_parquet(tables, "bucket", "m/x.manifest", "").sql


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
    [(key, manifest)] = nine.manifests("clickstream-output")
    assert key == nine.manifest_key
    assert manifest["entries"][1] == {
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
    """Reliability catalogue S11: S3 URLs with '..', '.' or empty segments, or that are not s3://, are refused."""
    with pytest.raises(ConfigError):
        S3Location.parse(url)


def test_bad_manifest_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="manifest_prefix"):
        plan_backfill(S3Location.parse("s3://bucket/events/"), [], {}, "manifests'")
