"""Reconcile a date range of raw logs against the ledger, and re-drive Firehose's processing failures.

``clickstream-etl reconcile --since D --until D`` (issue 12, item 5) is the on-demand, bounded
twin of the scheduled :mod:`extract.reconciler`: it lists the raw-logs bucket, keeps the objects
whose CloudFront name (``<distribution>.YYYY-MM-DD-HH.<id>.gz``) falls in the window, and
re-drives those the ledger does not have COMPLETE.  Which objects to re-drive is decided by the
reconciler's own :func:`extract.reconciler.plan_redrives` (no entry, or IN_PROGRESS with an
expired lease); everything else is classified so the report says why it was left alone (COMPLETE,
FAILED, a live lease, too young to race its notification).

Firehose's error output (``<firehose_prefix>errors/``, the template's ``ErrorOutputPrefix``)
holds two kinds of failure, re-driven differently:

* ``processing-failed/``: records the transformation Lambda answered ProcessingFailed (not
  canonical events, or beyond its 6 MB response budget) or whose invocations failed.  Each line
  is ``{attemptsMade, errorCode, ..., rawData}`` with ``rawData`` the original stream-2 record
  (base64 JSON lines of canonical events).  Re-driving puts the records that decode as canonical
  events back on stream 2 (:class:`~pipeline.aws.kinesis.KinesisWriter`, within PutRecords'
  limits); a record that is not a canonical event would fail again and is left in place, counted.
  Each error object is claimed and marked COMPLETE in the ledger (as an object of the output
  bucket, which Extract never reads), so a second run does not re-drive it again.
* everything else under ``errors/`` (Redshift COPY failures after ``RetryOptions``: manifests of
  the intermediate files Firehose skipped) is the loader's job, a re-COPY, and is only reported.

A re-driven record gets a partition key derived from its bytes, so re-driving the same record
twice makes the same stream-2 chunk id (the Parquet sink writes it once); the sink's first copy of
those events, under their original chunk id, is a natural duplicate that compaction and the
Redshift merge remove.

Everything here is a pure plan (:func:`plan_objects`, :func:`plan_error_objects`,
:func:`parse_failed_records`) and thin executors over injected clients.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from extract.notifications import ObjectNotice
from extract.reconciler import ListedObject, is_log_object, plan_redrives
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.aws.kinesis import OutRecord, RecordWriter
from pipeline.aws.ledger import ClaimRefused, Ledger, LedgerEntry, ObjectId
from pipeline.config import PipelineConfig
from pipeline.errors import InputError, TerminalError, TransientError
from pipeline.records import RecordDecodeError, decode_events, event_problems


class ReconcileInputError(InputError):
    """A window bound or a prefix cannot be used as given."""


class ReconcileTransientError(TransientError):
    """S3, the ledger, Lambda or Kinesis failed for now; running again can help."""


class ReconcileAccessError(TerminalError):
    """AWS refused a call for a reason retries will not fix (permissions, a missing resource)."""


# ------------------------------------------------------------------ CloudFront key names
_LOG_NAME: Final = re.compile(
    r"^(?P<prefix>(?:.*/)?)(?P<distribution>[A-Za-z0-9]+)\.(?P<date>\d{4}-\d{2}-\d{2})-(?P<hour>\d{2})"
    r"\.(?P<unique>[A-Za-z0-9]+)(?P<suffix>(?:\.[A-Za-z0-9]+)*)$"
)


@dataclass(frozen=True, slots=True)
class LogKey:
    """A CloudFront standard-log object name: ``<prefix><distribution>.YYYY-MM-DD-HH.<id><suffix>``.

    ``hour`` is the request hour CloudFront named the file by (UTC), not when it arrived (it can
    be up to 24 hours late).  :meth:`parse` and :meth:`format` round-trip.
    """

    prefix: str
    distribution: str
    hour: datetime
    unique_id: str
    suffix: str = ".gz"

    @classmethod
    def parse(cls, key: str) -> LogKey | None:
        """The parts of ``key``, or None when it is not a CloudFront log name."""
        match = _LOG_NAME.match(key)
        if match is None:
            return None
        try:
            hour = datetime.strptime(f"{match['date']}-{match['hour']}", "%Y-%m-%d-%H").replace(tzinfo=UTC)
        except ValueError:
            return None
        return cls(match["prefix"], match["distribution"], hour, match["unique"], match["suffix"])

    def format(self) -> str:
        return f"{self.prefix}{self.distribution}.{self.hour:%Y-%m-%d-%H}.{self.unique_id}{self.suffix}"


def parse_bound(text: str) -> datetime:
    """A window bound: ``YYYY-MM-DD`` (midnight UTC) or a date-hour ``YYYY-MM-DD-HH`` / ``YYYY-MM-DDTHH``.

    Raises ReconcileInputError naming the accepted forms.
    """
    value = text.strip()
    for pattern in ("%Y-%m-%d", "%Y-%m-%d-%H", "%Y-%m-%dT%H"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ReconcileInputError(f"{text!r} is not a date (YYYY-MM-DD) or a date-hour (YYYY-MM-DD-HH)")


@dataclass(frozen=True, slots=True)
class HourWindow:
    """Request hours from ``since`` (inclusive) to ``until`` (exclusive), UTC."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise ReconcileInputError(
                f"--since {self.since:%Y-%m-%d-%H} must be before --until {self.until:%Y-%m-%d-%H}"
            )

    @classmethod
    def parse(cls, since: str, until: str) -> HourWindow:
        return cls(parse_bound(since), parse_bound(until))

    def __contains__(self, hour: object) -> bool:
        return isinstance(hour, datetime) and self.since <= hour < self.until

    @property
    def hours(self) -> int:
        return int((self.until - self.since) / timedelta(hours=1))

    def to_json(self) -> dict[str, str]:
        return {"since": f"{self.since:%Y-%m-%d-%H}", "until": f"{self.until:%Y-%m-%d-%H}"}


def select_objects(
    listing: Iterable[ListedObject], window: HourWindow, *, distribution: str | None = None
) -> Iterator[ListedObject]:
    """The listed objects named for an hour of ``window`` (and ``distribution``, if given), in order."""
    for item in listing:
        name = LogKey.parse(item.key)
        if name is None or name.hour not in window:
            continue
        if distribution is not None and name.distribution != distribution:
            continue
        yield item


# ------------------------------------------------------------------ raw objects: plan
ObjectState = Literal["complete", "unrecorded", "lease_expired", "in_progress", "failed", "too_young"]
REDRIVEN_STATES: Final[frozenset[ObjectState]] = frozenset({"unrecorded", "lease_expired"})


@dataclass(frozen=True, slots=True)
class PlannedObject:
    item: ListedObject
    state: ObjectState

    @property
    def redrive(self) -> bool:
        return self.state in REDRIVEN_STATES


@dataclass(frozen=True)
class ObjectPlan:
    bucket: str
    window: HourWindow
    objects: tuple[PlannedObject, ...]

    @property
    def redrives(self) -> list[PlannedObject]:
        return [p for p in self.objects if p.redrive]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.state for p in self.objects).items()))


def plan_objects(
    bucket: str,
    window: HourWindow,
    selected: Sequence[ListedObject],
    entries: Mapping[ObjectId, LedgerEntry],
    *,
    now_ms: int,
    min_age_ms: int,
    config: PipelineConfig,
) -> ObjectPlan:
    """Classify each selected log object against its ledger entry (pure).

    What is re-driven is exactly what :func:`extract.reconciler.plan_redrives` says; the other
    states only explain why an object is left alone.
    """
    logs = [item for item in selected if is_log_object(bucket, item, config)]
    redrives = {
        r.notice.key: r.reason
        for r in plan_redrives(bucket, logs, entries, now_ms=now_ms, min_age_ms=min_age_ms, config=config)
    }
    planned: list[PlannedObject] = []
    for item in logs:
        entry = entries.get(ObjectId(bucket, item.key, item.etag))
        state: ObjectState
        if item.key in redrives:
            state = redrives[item.key]
        elif entry is None:
            state = "too_young"
        elif entry.status == "COMPLETE":
            state = "complete"
        elif entry.status == "FAILED":
            state = "failed"
        else:
            state = "in_progress"
        planned.append(PlannedObject(item, state))
    return ObjectPlan(bucket, window, tuple(planned))


# ------------------------------------------------------------------ Firehose error output: plan
ErrorState = Literal["redrive", "redriven", "copy_failed"]
PROCESSING_FAILED: Final = "processing-failed/"
REDRIVE_LEASE_MS: Final = 15 * 60 * 1000
"""How long a run holds an error object it is re-driving (a run that dies frees it after this)."""


@dataclass(frozen=True, slots=True)
class PlannedErrorObject:
    item: ListedObject
    state: ErrorState


def firehose_error_prefix(config: PipelineConfig) -> str:
    """Where Firehose writes its errors: the template's ``ErrorOutputPrefix`` (``firehose/errors/``)."""
    return config.resources.firehose_prefix + "errors/"


def plan_error_objects(
    bucket: str, error_prefix: str, listing: Sequence[ListedObject], entries: Mapping[ObjectId, LedgerEntry]
) -> list[PlannedErrorObject]:
    """Classify each object under Firehose's error prefix (pure).

    ``processing-failed/`` objects are re-driven unless their ledger entry is COMPLETE (done by an
    earlier run); anything else there is a COPY failure, for the loader to re-COPY.
    """
    planned: list[PlannedErrorObject] = []
    for item in listing:
        if item.key.endswith("/"):
            continue
        if not item.key.startswith(error_prefix + PROCESSING_FAILED):
            planned.append(PlannedErrorObject(item, "copy_failed"))
            continue
        entry = entries.get(ObjectId(bucket, item.key, item.etag))
        done = entry is not None and entry.status == "COMPLETE"
        planned.append(PlannedErrorObject(item, "redriven" if done else "redrive"))
    return planned


@dataclass(frozen=True)
class FailedRecords:
    """What one processing-failed object holds: stream-2 records to put back, and the rest."""

    redrivable: tuple[bytes, ...]
    not_events: int
    """Records that are not canonical events (they would fail again): left in the object."""
    unreadable_lines: int
    """Lines that are not Firehose error records at all."""


def parse_failed_records(body: bytes) -> FailedRecords:
    """The original records of a Firehose ``processing-failed`` object (gzip or not), pure.

    Each line is a JSON object whose ``rawData`` is the original record, base64; a record is
    re-drivable when it decodes as canonical events (:func:`pipeline.records.decode_events`
    without :func:`~pipeline.records.event_problems`), the same test Firehose's transformation applies.
    """
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    redrivable: list[bytes] = []
    not_events = unreadable = 0
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)["rawData"]
            data = base64.b64decode(str(raw), validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            unreadable += 1
            continue
        try:
            events = decode_events(data)
        except (RecordDecodeError, ValueError, TypeError):
            not_events += 1
            continue
        if not events or any(event_problems(event) for event in events):
            not_events += 1
            continue
        redrivable.append(data)
    return FailedRecords(tuple(redrivable), not_events, unreadable)


def redrive_partition_key(data: bytes) -> str:
    """A re-driven record's partition key (and so its stream-2 chunk id): the same for the same bytes."""
    return "firehose-redrive-" + hashlib.sha256(data).hexdigest()[:32]


# ------------------------------------------------------------------ summary
@dataclass
class ReconcileSummary:
    window: HourWindow
    dry_run: bool
    objects: dict[str, int] = field(default_factory=dict)
    """Selected raw objects by state (``unrecorded`` and ``lease_expired`` are re-driven)."""
    redriven: list[str] = field(default_factory=list)
    """The URIs re-driven (or, in a dry run, that would be)."""
    left: list[dict[str, str]] = field(default_factory=list)
    """Objects that need attention: FAILED ones, with the ledger's detail."""
    error_objects: dict[str, int] = field(default_factory=dict)
    records_redriven: int = 0
    records_not_events: int = 0
    copy_failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.window.to_json(),
            "dry_run": self.dry_run,
            "objects": self.objects,
            "redriven": self.redriven,
            "left": self.left,
            "firehose": {
                "error_objects": self.error_objects,
                "records_redriven": self.records_redriven,
                "records_not_events": self.records_not_events,
                "copy_failures": self.copy_failures,
            },
        }


# ------------------------------------------------------------------ executors
def _list(s3: Any, bucket: str, prefix: str, page_size: int = 1000) -> Iterator[ListedObject]:
    what = f"S3 ListObjectsV2 of s3://{bucket}/{prefix}"
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        ):
            for item in page.get("Contents", []):
                yield ListedObject.from_listing(item)
    except aws_exceptions() as exc:
        raise translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError) from exc


@dataclass(frozen=True)
class ReconcileDeps:
    """The clients a reconciliation uses (injected: moto in tests)."""

    config: PipelineConfig
    s3: Any
    ledger: Ledger
    redrive: Callable[[ObjectNotice], None]
    """Hands one object to Extract (or the direct function): :func:`extract.reconciler.invoke_extract`."""
    events_writer: RecordWriter | None = None
    """Puts re-driven Firehose records on stream 2; None skips Firehose's error output."""
    owner: str = "clickstream-etl-reconcile"


def plan_raw(
    deps: ReconcileDeps,
    window: HourWindow,
    *,
    prefix: str = "",
    distribution: str | None = None,
    min_age_ms: int = 0,
) -> ObjectPlan:
    """List ``prefix`` of the log bucket, select ``window`` and read the ledger (reads only)."""
    bucket = deps.config.resources.log_bucket
    selected = list(select_objects(_list(deps.s3, bucket, prefix), window, distribution=distribution))
    entries = deps.ledger.get_many([ObjectId(bucket, o.key, o.etag) for o in selected])
    return plan_objects(
        bucket, window, selected, entries, now_ms=deps.ledger.now_ms(), min_age_ms=min_age_ms, config=deps.config
    )


def plan_firehose(deps: ReconcileDeps) -> list[PlannedErrorObject]:
    bucket = deps.config.resources.output_bucket
    prefix = firehose_error_prefix(deps.config)
    listing = list(_list(deps.s3, bucket, prefix))
    entries = deps.ledger.get_many([ObjectId(bucket, o.key, o.etag) for o in listing if o.key.startswith(prefix)])
    return plan_error_objects(bucket, prefix, listing, entries)


def _read(s3: Any, bucket: str, item: ListedObject) -> bytes:
    what = f"S3 GetObject of s3://{bucket}/{item.key}"
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=item.key, IfMatch=f'"{item.etag}"')["Body"].read()
    except aws_exceptions() as exc:
        raise translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError) from exc
    return body


def redrive_error_object(deps: ReconcileDeps, item: ListedObject) -> FailedRecords | None:
    """Put one processing-failed object's canonical records back on stream 2, once.

    The object is claimed in the ledger first (None: another run holds it, or finished it), and
    marked COMPLETE, with its counts, only after every record is durable on stream 2; a run that
    dies in between leaves the claim to expire, and the next run puts the records again (same
    partition keys, so the same chunk ids at the sink).
    """
    if deps.events_writer is None:
        raise ReconcileInputError("re-driving Firehose's errors needs a stream-2 writer")
    bucket = deps.config.resources.output_bucket
    obj = ObjectId(bucket, item.key, item.etag)
    claim = deps.ledger.claim(obj, deps.owner, lease_ms=REDRIVE_LEASE_MS)
    if isinstance(claim, ClaimRefused):
        return None
    records = parse_failed_records(_read(deps.s3, bucket, item))
    if records.redrivable:
        deps.events_writer.put([OutRecord(data, redrive_partition_key(data)) for data in records.redrivable])
    deps.ledger.complete(
        claim,
        {
            "records_redriven": len(records.redrivable),
            "records_not_events": records.not_events,
            "unreadable_lines": records.unreadable_lines,
        },
        detail="firehose processing-failed records re-driven to stream 2",
    )
    return records


def reconcile(
    deps: ReconcileDeps,
    window: HourWindow,
    *,
    prefix: str = "",
    distribution: str | None = None,
    min_age_ms: int = 0,
    dry_run: bool = False,
) -> ReconcileSummary:
    """Plan, then (unless ``dry_run``) re-drive: raw objects to Extract, Firehose failures to stream 2.

    A dry run makes read calls only (List, Get, the ledger's BatchGetItem).  Raises
    ReconcileTransientError / ReconcileAccessError, or the ledger's and Kinesis writer's errors;
    everything done before the error is safe to do again.
    """
    plan = plan_raw(deps, window, prefix=prefix, distribution=distribution, min_age_ms=min_age_ms)
    summary = ReconcileSummary(window, dry_run, objects=plan.counts())
    for planned in plan.objects:
        uri = f"s3://{plan.bucket}/{planned.item.key}"
        if planned.redrive:
            if not dry_run:
                deps.redrive(ObjectNotice(plan.bucket, planned.item.key, planned.item.etag, planned.item.size))
            summary.redriven.append(uri)
        elif planned.state == "failed":
            summary.left.append({"uri": uri, "state": planned.state})
    if deps.events_writer is None:
        return summary
    errors = plan_firehose(deps)
    summary.error_objects = dict(sorted(Counter(e.state for e in errors).items()))
    out_bucket = deps.config.resources.output_bucket
    for planned_error in errors:
        if planned_error.state == "copy_failed":
            summary.copy_failures.append(f"s3://{out_bucket}/{planned_error.item.key}")
        elif planned_error.state == "redrive":
            if dry_run:
                records = parse_failed_records(_read(deps.s3, out_bucket, planned_error.item))
            else:
                found = redrive_error_object(deps, planned_error.item)
                if found is None:
                    continue
                records = found
            summary.records_redriven += len(records.redrivable)
            summary.records_not_events += records.not_events
    return summary
