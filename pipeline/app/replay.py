"""Replay a date range of raw logs through the deployed pipeline, within stream 1's shard limits.

``clickstream-etl replay s3://bucket/prefix --since D --until D`` (issue 12, item 4, the small-range
mode) invokes Extract asynchronously once per log object, as :mod:`extract.reconciler` re-drives
one, and paces the invocations from the CLI so that stream 1 stays within its shards' write limits
(1,000 records/s and 1 MiB/s each: https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html).

What an object costs the stream is estimated from its stored size (:func:`estimate_cost`): Extract
sends the decompressed lines, uncompressed, packed into records of at most the packer's budget
(``min(stream.record_target_bytes, stream.record_max_bytes - 8 KiB)``, 256 KiB by default; see
``extract.stage._Packer``), so an object of ``S`` gzip bytes is about ``S * ratio`` bytes and
``ceil(S * ratio / budget)`` records (at least one).  :class:`Pacer` is a token bucket over both
dimensions on an injected clock: an invocation starts once neither bucket is in debt and then
debits its whole cost, so, over the invocations started at ``t_i`` up to (not including) ``t_j``,
the records and bytes never exceed ``burst + rate * (t_j - t_i)``; with the default burst of 0, an
invocation's cost is spread over the ``cost / rate`` seconds after it starts.  Extract's own
PutRecords retries absorb what the estimate misses (an invocation that runs faster than the pace).

The plan is :func:`pipeline.app.reconcile.plan_objects` (what the ledger does not have COMPLETE,
FAILED or leased); after the last invocation, :func:`replay` polls the ledger until every invoked
object is COMPLETE or FAILED, or ``wait_s`` has passed, and reports what is still pending.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self

from extract.notifications import ObjectNotice
from extract.stage import RECORD_OVERHEAD  # the packer's reserve for a record's fixed fields
from pipeline.app.progress import NoProgress, Progress
from pipeline.app.reconcile import ObjectPlan
from pipeline.aws.ledger import Ledger, ObjectId
from pipeline.config import StreamConfig
from pipeline.pacing import (  # re-exported: the replay's pacing is the foundation's token bucket
    DEFAULT_SHARE,
    SHARD_BYTES_PER_S,
    SHARD_RECORDS_PER_S,
    Cost,
    Pacer,
    RateLimits,
)

__all__ = [
    "DEFAULT_SHARE",
    "SHARD_BYTES_PER_S",
    "SHARD_RECORDS_PER_S",
    "Cost",
    "Estimator",
    "Pacer",
    "RateLimits",
    "ReplayDeps",
    "ReplayItem",
    "ReplaySummary",
    "budget_seconds",
    "plan_replay",
    "replay",
    "settle",
]

DEFAULT_COMPRESSION_RATIO: Final = 10.0
"""Decompressed bytes per stored byte of a ``.gz`` log.  ``generate-logs`` output measures 4.9; real logs,
with their repeated user agents and hosts, compress better, so 10 errs on the slow side (an
overestimate paces more slowly, an underestimate leaves Extract's PutRecords retries to absorb it)."""


@dataclass(frozen=True, slots=True)
class Estimator:
    """Estimates an object's stream-1 cost from its stored size (see the module docstring)."""

    record_budget: int
    compression_ratio: float = DEFAULT_COMPRESSION_RATIO

    @classmethod
    def from_config(cls, stream: StreamConfig, compression_ratio: float = DEFAULT_COMPRESSION_RATIO) -> Estimator:
        budget = min(stream.record_target_bytes, stream.record_max_bytes - RECORD_OVERHEAD)
        return cls(budget, compression_ratio)

    def __call__(self, key: str, size: int) -> Cost:
        ratio = self.compression_ratio if key.endswith(".gz") else 1.0
        data = math.ceil(max(size, 0) * ratio)
        records = max(1, math.ceil(data / self.record_budget))
        return Cost(records, data + records * 64)  # 64: a partition key (a batch id) per record


@dataclass(frozen=True, slots=True)
class ReplayItem:
    notice: ObjectNotice
    cost: Cost


def plan_replay(plan: ObjectPlan, estimate: Callable[[str, int], Cost]) -> list[ReplayItem]:
    """The objects of ``plan`` to invoke Extract for (not COMPLETE, FAILED or leased), with their costs.

    Unlike the reconciler, a replay takes an object without a ledger entry whatever its age.
    """
    return [
        ReplayItem(ObjectNotice(plan.bucket, p.item.key, p.item.etag, p.item.size), estimate(p.item.key, p.item.size))
        for p in plan.objects
        if p.redrive or p.state == "too_young"
    ]


@dataclass
class ReplaySummary:
    selected: int = 0
    already_complete: int = 0
    left_alone: dict[str, int] = field(default_factory=dict)
    """Selected objects not invoked: FAILED in the ledger, or leased to a live invocation."""
    invoked: int = 0
    records: int = 0
    bytes: int = 0
    """The estimated stream-1 cost of the invoked objects."""
    paced_s: float = 0.0
    """From the first invocation to the last."""
    complete: int = 0
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    dry_run: bool = False

    @classmethod
    def planned(cls, plan: ObjectPlan, items: Sequence[ReplayItem], **more: Any) -> Self:
        """The summary before anything is invoked: what the plan selected and what the items will cost."""
        counts = plan.counts()
        return cls(
            selected=len(plan.objects),
            already_complete=counts.get("complete", 0),
            left_alone={s: n for s, n in counts.items() if s in ("failed", "in_progress")},
            records=sum(i.cost.records for i in items),
            bytes=sum(i.cost.bytes for i in items),
            **more,
        )

    @property
    def ok(self) -> bool:
        return not self.pending and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selected": self.selected,
            "already_complete": self.already_complete,
            "left_alone": self.left_alone,
            "invoked": self.invoked,
            "estimated_records": self.records,
            "estimated_bytes": self.bytes,
            "paced_seconds": round(self.paced_s, 3),
            "complete": self.complete,
            "failed": self.failed,
            "pending": self.pending,
        }


def budget_seconds(items: Sequence[ReplayItem], limits: RateLimits) -> float:
    """The least time a paced replay of ``items`` takes from its first invocation to its last (pure)."""
    if len(items) < 2:
        return 0.0
    head = items[:-1]
    records = sum(i.cost.records for i in head) - limits.records_per_s * limits.burst_s
    data = sum(i.cost.bytes for i in head) - limits.bytes_per_s * limits.burst_s
    return max(0.0, records / limits.records_per_s, data / limits.bytes_per_s)


@dataclass(frozen=True)
class ReplayDeps:
    ledger: Ledger
    redrive: Callable[[ObjectNotice], None]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    progress: Progress = field(default_factory=NoProgress)


def replay(
    plan: ObjectPlan,
    items: Sequence[ReplayItem],
    deps: ReplayDeps,
    limits: RateLimits,
    *,
    wait_s: float = 900.0,
    poll_s: float = 15.0,
    dry_run: bool = False,
) -> ReplaySummary:
    """Invoke Extract for each item, paced by :class:`Pacer`; then wait for the ledger to settle them.

    A dry run invokes and waits for nothing.  Errors of the re-drive (Lambda refusing the
    invocation) propagate: the objects invoked before stay invoked, and a rerun skips what has
    completed meanwhile.
    """
    summary = ReplaySummary.planned(plan, items, dry_run=dry_run)
    if dry_run:
        summary.paced_s = budget_seconds(items, limits)
        summary.pending = [f"s3://{i.notice.bucket}/{i.notice.key}" for i in items]
        return summary
    pacer = Pacer(limits, deps.clock, deps.sleep)
    progress = deps.progress
    progress.phase("invoking Extract", len(items), "objects")
    first: float | None = None
    for done, item in enumerate(items, start=1):
        pacer.acquire(item.cost)
        now = deps.clock()
        first = now if first is None else first
        summary.paced_s = now - first
        deps.redrive(item.notice)
        summary.invoked += 1
        progress.update(done)
    settle(summary, items, deps.ledger, deps.clock, deps.sleep, progress, wait_s=wait_s, poll_s=poll_s)
    progress.close()
    return summary


def settle(  # noqa: PLR0913 - the ledger and the three seams a test replaces
    summary: ReplaySummary,
    items: Sequence[ReplayItem],
    ledger: Ledger,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    progress: Progress,
    *,
    wait_s: float,
    poll_s: float,
) -> None:
    """Poll the ledger until every invoked object is COMPLETE or FAILED, or ``wait_s`` has passed.

    The reconciliation that ends every replay, whichever engine invoked Extract.
    """
    waiting = {ObjectId(i.notice.bucket, i.notice.key, i.notice.etag) for i in items}
    deadline = clock() + wait_s
    progress.phase("waiting for the ledger", len(waiting), "objects")
    while True:
        for obj, entry in ledger.get_many(sorted(waiting, key=lambda o: o.key)).items():
            if entry.status == "COMPLETE":
                summary.complete += 1
                waiting.discard(obj)
            elif entry.status == "FAILED":
                summary.failed.append(obj.uri)
                waiting.discard(obj)
        progress.update(len(items) - len(waiting))
        if not waiting or clock() >= deadline:
            break
        sleep(max(min(poll_s, deadline - clock()), 0.0))
    summary.failed.sort()
    summary.pending = sorted(o.uri for o in waiting)
