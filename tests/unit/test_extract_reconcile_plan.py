"""The reconciler's decisions, pure: which listed objects to re-drive (reliability catalogue F08)."""

from __future__ import annotations

import pytest

from extract.notifications import ObjectNotice
from extract.reconciler import ListedObject, ReconcileSettings, plan_redrives
from pipeline.aws.ledger import LedgerEntry, ObjectId, Status
from pipeline.config import PipelineConfig
from pipeline.constants import (
    EXTRACT_FUNCTION_NAME_ENV,
    RECONCILE_MAX_OBJECTS_ENV,
    RECONCILE_MIN_AGE_S_ENV,
    RECONCILE_PREFIX_ENV,
)
from pipeline.errors import ConfigError
from pipeline.topology import EXTRACT_FUNCTION

NOW = 1_731_700_000_000
BUCKET = "logs"


def listed(key: str, *, age_ms: int = 3_600_000) -> ListedObject:
    return ListedObject(key, f"etag-{key}", 10, NOW - age_ms)


def entry(key: str, status: Status, lease_until: int = 0) -> tuple[ObjectId, LedgerEntry]:
    obj = ObjectId(BUCKET, key, f"etag-{key}")
    return obj, LedgerEntry(obj, status, 3, "owner", lease_until, {}, "")


def test_only_unrecorded_objects_old_enough_and_expired_leases_are_redriven(config: PipelineConfig) -> None:
    page = [
        listed("cf/lost.gz"),
        listed("cf/young.gz", age_ms=1_000),
        listed("cf/expired.gz"),
        listed("cf/released.gz"),
        listed("cf/expiring-now.gz"),
        listed("cf/live.gz"),
        listed("cf/complete.gz"),
        listed("cf/failed.gz"),
        listed("cf/folder/"),
    ]
    entries = dict(
        [
            entry("cf/expired.gz", "IN_PROGRESS", NOW - 1),
            entry("cf/released.gz", "IN_PROGRESS", 0),  # an invocation that failed gave the lease back
            entry("cf/expiring-now.gz", "IN_PROGRESS", NOW),  # a claim needs lease_until < now, too
            entry("cf/live.gz", "IN_PROGRESS", NOW + 60_000),
            entry("cf/complete.gz", "COMPLETE"),
            entry("cf/failed.gz", "FAILED"),
        ]
    )
    plan = plan_redrives(BUCKET, page, entries, now_ms=NOW, min_age_ms=60_000, config=config)
    assert [(r.notice.key, r.reason) for r in plan] == [
        ("cf/lost.gz", "unrecorded"),
        ("cf/expired.gz", "lease_expired"),
        ("cf/released.gz", "lease_expired"),
    ]
    assert plan[0].notice == ObjectNotice(BUCKET, "cf/lost.gz", "etag-cf/lost.gz", 10)


def test_the_pipelines_own_outputs_are_never_redriven(config: PipelineConfig) -> None:
    """Reliability catalogue S05: the reconciler never re-drives the pipeline's own output."""
    r = config.resources
    page = [listed(r.bad_prefix + "x.jsonl"), listed(r.events_prefix + "y.parquet"), listed("logs/z.gz")]
    plan = plan_redrives(r.output_bucket, page, {}, now_ms=NOW, min_age_ms=0, config=config)
    assert [p.notice.key for p in plan] == ["logs/z.gz"]


def test_settings_come_from_the_environment_with_documented_defaults(config: PipelineConfig) -> None:
    defaults = ReconcileSettings.from_environ(config, {})
    assert defaults == ReconcileSettings(config.resources.log_bucket)
    assert (defaults.prefix, defaults.max_objects, defaults.min_age_ms) == ("", 200, 900_000)
    assert defaults.extract_function == EXTRACT_FUNCTION
    environ = {
        RECONCILE_PREFIX_ENV: "cloudfront/",
        RECONCILE_MAX_OBJECTS_ENV: "50",
        RECONCILE_MIN_AGE_S_ENV: "0",
        EXTRACT_FUNCTION_NAME_ENV: "extract-staging",
    }
    settings = ReconcileSettings.from_environ(config, environ)
    assert (settings.prefix, settings.max_objects, settings.min_age_ms) == ("cloudfront/", 50, 0)
    assert settings.extract_function == "extract-staging" and settings.scope == f"{settings.bucket}/cloudfront/"


@pytest.mark.parametrize("value", ["many", "-1", "1.5"])
def test_a_bad_number_names_its_variable(config: PipelineConfig, value: str) -> None:
    with pytest.raises(ConfigError, match=RECONCILE_MAX_OBJECTS_ENV):
        ReconcileSettings.from_environ(config, {RECONCILE_MAX_OBJECTS_ENV: value})
