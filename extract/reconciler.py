"""The Extract reconciler: re-drive the log objects that no notification will bring back.

A notification can be lost (an asynchronous invocation dropped after its retries, an SQS
message that ran out of receives, notifications switched off while logs arrived), and an
invocation killed mid-object (out of memory, a runtime crash) leaves its lease held until
its timeout, after which nothing may come to take it over.  A scheduled run (declared in
``pipeline.topology.scheduled_functions``) lists the raw-logs bucket, page by page, from
where the previous run stopped, and re-drives:

* objects with no ledger entry, once older than ``min_age_ms`` (so that a notification merely
  late is not raced; a race would be harmless anyway, the ledger admits one invocation);
* objects IN_PROGRESS whose lease has expired: their holder died, or failed and released it,
  and no retry is coming.

A live lease, COMPLETE and FAILED objects are left alone.  Re-driving sends Extract the same
S3-shaped event a continuation uses (``ObjectCreated:Reconciled``); it takes the lease over and
resumes at the checkpoint.

:func:`plan_redrives` decides over one page of the listing and its ledger entries (pure);
:func:`reconcile` runs listing, ledger reads and re-drives within the run's bounds (at most
``max_objects`` re-drives, and the invocation's remaining time); :func:`handler` is the
Lambda adapter.  ``run-local`` calls :func:`reconcile` with a re-drive of its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from extract.errors import ExtractTransientError, RedriveRefusedError, SourceUnreadableError
from extract.notifications import ObjectNotice, object_created_event
from extract.stage import is_own_output
from pipeline.aws.clients import make_client
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.aws.ledger import Ledger, LedgerEntry, ObjectId
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import (
    EXTRACT_FUNCTION_NAME_ENV,
    METRICS_NAMESPACE,
    RECONCILE_MAX_OBJECTS_ENV,
    RECONCILE_MIN_AGE_S_ENV,
    RECONCILE_PREFIX_ENV,
)
from pipeline.errors import ConfigError
from pipeline.observability import LazyTracer
from pipeline.topology import EXTRACT_FUNCTION

logger = Logger(service="clickstream-etl-extract-reconciler")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="extract-reconciler")
tracer = LazyTracer(service="clickstream-etl-extract-reconciler")

REDRIVE_EVENT_NAME: Final = "ObjectCreated:Reconciled"

Reason = Literal["unrecorded", "lease_expired"]
Stop = Literal["end", "max_objects", "time"]


@dataclass(frozen=True)
class ReconcileSettings:
    """What one run looks at and how much it may do; resolved once per container."""

    bucket: str
    """The raw-logs bucket (``resources.log_bucket``)."""
    prefix: str = ""
    """Only keys under this prefix are listed."""
    max_objects: int = 200
    """At most this many re-drives per run; the next run goes on after the last one."""
    min_age_ms: int = 15 * 60 * 1000
    """An object without a ledger entry is re-driven only once this old (ms since LastModified)."""
    page_size: int = 1000
    """Keys per ListObjectsV2 call (1000 is S3's most)."""
    stop_margin_ms: int = 10_000
    """A run stops listing with less time left than this, and saves where it stopped."""
    extract_function: str = EXTRACT_FUNCTION
    """The Extract function re-driven objects are sent to."""

    @property
    def scope(self) -> str:
        """Names the listing whose cursor the ledger keeps."""
        return f"{self.bucket}/{self.prefix}"

    @classmethod
    def from_environ(cls, config: PipelineConfig, environ: Mapping[str, str]) -> ReconcileSettings:
        """Settings for ``config``'s log bucket, overridden by the ``CLICKSTREAM_ETL_RECONCILE_*`` variables.

        Raises ConfigError naming the variable when a number is not a number.
        """

        def number(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
            if value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}")
            return value

        defaults = cls(config.resources.log_bucket)
        return cls(
            bucket=config.resources.log_bucket,
            prefix=environ.get(RECONCILE_PREFIX_ENV, defaults.prefix),
            max_objects=number(RECONCILE_MAX_OBJECTS_ENV, defaults.max_objects),
            min_age_ms=number(RECONCILE_MIN_AGE_S_ENV, defaults.min_age_ms // 1000) * 1000,
            extract_function=environ.get(EXTRACT_FUNCTION_NAME_ENV, "").strip() or defaults.extract_function,
        )


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One entry of a ListObjectsV2 page."""

    key: str
    etag: str
    size: int
    last_modified_ms: int

    @classmethod
    def from_listing(cls, item: Mapping[str, Any]) -> ListedObject:
        modified = item.get("LastModified")
        return cls(
            str(item["Key"]),
            str(item.get("ETag", "")).strip('"'),
            int(item.get("Size", 0)),
            int(modified.timestamp() * 1000) if modified is not None else 0,
        )


@dataclass(frozen=True, slots=True)
class Redrive:
    notice: ObjectNotice
    reason: Reason


def is_log_object(bucket: str, item: ListedObject, config: PipelineConfig) -> bool:
    """Whether Extract would read it: folder markers and the pipeline's own outputs are not logs."""
    return not item.key.endswith("/") and not is_own_output(ObjectNotice(bucket, item.key, item.etag, None), config)


def plan_redrives(
    bucket: str,
    page: Sequence[ListedObject],
    entries: Mapping[ObjectId, LedgerEntry],
    *,
    now_ms: int,
    min_age_ms: int,
    config: PipelineConfig,
) -> list[Redrive]:
    """The objects of ``page`` to re-drive, in listing order, given their ledger ``entries``.

    ``entries`` holds the objects that have one; ``now_ms`` is the ledger's clock, against
    which leases expire (the same comparison as :meth:`~pipeline.aws.ledger.Ledger.claim`).
    """
    redrives: list[Redrive] = []
    for item in page:
        if not is_log_object(bucket, item, config):
            continue
        notice = ObjectNotice(bucket, item.key, item.etag, item.size)
        entry = entries.get(ObjectId(bucket, item.key, item.etag))
        if entry is None:
            if now_ms - item.last_modified_ms >= min_age_ms:
                redrives.append(Redrive(notice, "unrecorded"))
        elif entry.status == "IN_PROGRESS" and entry.lease_until < now_ms:
            redrives.append(Redrive(notice, "lease_expired"))
    return redrives


@dataclass
class ReconcileSummary:
    """What one run did."""

    started_after: str = ""
    """The key the listing started after ("" from the start)."""
    listed: int = 0
    redriven: Counter[Reason] = field(default_factory=Counter)
    stopped: Stop = "end"
    """Why the run ended: the listing's end, ``max_objects`` re-drives, or the time left."""
    start_after: str = ""
    """Where the next run starts ("" from the start, after reaching the end)."""

    @property
    def total_redriven(self) -> int:
        return sum(self.redriven.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "started_after": self.started_after,
            "listed": self.listed,
            "redriven": dict(sorted(self.redriven.items())),
            "stopped": self.stopped,
            "start_after": self.start_after,
        }


@dataclass(frozen=True)
class ReconcileDeps:
    config: PipelineConfig
    s3: Any
    ledger: Ledger
    redrive: Callable[[ObjectNotice], None]
    """Hands one object to Extract (deployed: an asynchronous invocation of the Extract function)."""


def _pages(s3: Any, settings: ReconcileSettings, start_after: str) -> Iterator[list[ListedObject]]:
    kwargs: dict[str, Any] = {
        "Bucket": settings.bucket,
        "Prefix": settings.prefix,
        "PaginationConfig": {"PageSize": settings.page_size},
    }
    if start_after:
        kwargs["StartAfter"] = start_after
    what = f"S3 ListObjectsV2 of s3://{settings.bucket}/{settings.prefix}"
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
            yield [ListedObject.from_listing(item) for item in page.get("Contents", [])]
    except aws_exceptions() as exc:
        raise translate(exc, what, transient=ExtractTransientError, terminal=SourceUnreadableError) from exc


def reconcile(settings: ReconcileSettings, deps: ReconcileDeps, *, remaining_ms: Callable[[], int]) -> ReconcileSummary:
    """One bounded pass: list from the saved cursor, re-drive what :func:`plan_redrives` says, save the cursor.

    Raises ExtractTransientError (retry) or a terminal error when S3, the ledger or the
    re-drive fails; the cursor then stays where the last successful run left it, and
    re-driving an object twice is harmless.
    """
    ledger = deps.ledger
    cursor = ledger.reconcile_cursor(settings.scope)
    summary = ReconcileSummary(started_after=cursor)
    stop: Stop | None = None
    for page in _pages(deps.s3, settings, cursor):
        wanted = [
            ObjectId(settings.bucket, o.key, o.etag) for o in page if is_log_object(settings.bucket, o, deps.config)
        ]
        planned = plan_redrives(
            settings.bucket,
            page,
            ledger.get_many(wanted),
            now_ms=ledger.now_ms(),
            min_age_ms=settings.min_age_ms,
            config=deps.config,
        )
        for redrive in planned:
            if summary.total_redriven >= settings.max_objects:
                stop = "max_objects"
            elif remaining_ms() < settings.stop_margin_ms:
                stop = "time"
            if stop is not None:
                break
            deps.redrive(redrive.notice)
            summary.redriven[redrive.reason] += 1
            cursor = redrive.notice.key  # everything listed before it needed nothing or is re-driven
        if stop is not None:
            break
        summary.listed += len(page)
        if page:
            cursor = page[-1].key
        if remaining_ms() < settings.stop_margin_ms:
            stop = "time"
            break
    summary.stopped = stop or "end"
    summary.start_after = "" if stop is None else cursor
    ledger.save_reconcile_cursor(settings.scope, summary.start_after)
    return summary


# ------------------------------------------------------------------ Lambda adapter
def redrive_event(notice: ObjectNotice) -> dict[str, Any]:
    """The event sent to Extract for a re-driven object."""
    return object_created_event(notice, event_name=REDRIVE_EVENT_NAME)


def invoke_extract(lambda_client: Any, function: str) -> Callable[[ObjectNotice], None]:
    """A re-drive by asynchronous invocation: Lambda retries it, so a busy object comes back too."""

    def redrive(notice: ObjectNotice) -> None:
        try:
            lambda_client.invoke(
                FunctionName=function, InvocationType="Event", Payload=json.dumps(redrive_event(notice))
            )
        except aws_exceptions() as exc:
            what = f"Lambda Invoke of {function} for {notice.bucket}/{notice.key}"
            raise translate(exc, what, transient=ExtractTransientError, terminal=RedriveRefusedError) from exc

    return redrive


@cache
def default_deps() -> tuple[ReconcileSettings, ReconcileDeps]:
    import os

    config = load_config()
    settings = ReconcileSettings.from_environ(config, os.environ)
    deps = ReconcileDeps(
        config=config,
        s3=make_client("s3", config.aws),
        ledger=Ledger(make_client("dynamodb", config.aws), config.resources.ledger_table),
        redrive=invoke_extract(make_client("lambda", config.aws), settings.extract_function),
    )
    return settings, deps


def handle(event: Any, context: Any, settings: ReconcileSettings, deps: ReconcileDeps) -> dict[str, Any]:
    """One scheduled run (the event carries nothing the run needs)."""
    summary = reconcile(settings, deps, remaining_ms=context.get_remaining_time_in_millis)
    metrics.add_metric(name="ObjectsListed", unit=MetricUnit.Count, value=summary.listed)
    metrics.add_metric(name="ObjectsUnrecorded", unit=MetricUnit.Count, value=summary.redriven["unrecorded"])
    metrics.add_metric(name="LeasesExpired", unit=MetricUnit.Count, value=summary.redriven["lease_expired"])
    logger.info("reconciled", extra=summary.to_json())
    return summary.to_json()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, *default_deps())
