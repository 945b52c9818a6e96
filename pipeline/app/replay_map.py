"""Replay at scale: the deployed Distributed Map invokes Extract per batch of objects, within stream 1's limits.

``clickstream-etl backfill s3://… --mode replay`` (issue 12, item 4) hands the work to AWS: for a
small range (``--engine invoke``, or ``auto`` up to :data:`AUTO_MAP_THRESHOLD` objects) it invokes
Extract once per object, paced from the CLI (:func:`pipeline.app.replay.replay`); for a large one
(``--engine map``) it writes the plan's objects as a JSON manifest under ``_replay/<run>/`` in the
output bucket and starts ``ReplayStateMachine`` (template.yaml), a Distributed Map whose
ItemBatcher sends :data:`~pipeline.topology.REPLAY_ITEMS_PER_BATCH` objects per Extract
invocation, at most ``max_concurrency`` at a time, with retries and a results export under
``_replay/<run>/results/``.

Stream 1's limits hold however many invocations run: each batch carries ``pace``, the limits
shared by ``max_concurrency`` writers (:meth:`~pipeline.pacing.RateLimits.shared_by`), and
Extract paces its own PutRecords to it (:class:`~pipeline.aws.kinesis.PacedWriter`), so the
concurrent invocations together stay within the limits.  Either way the replay ends as the small
one does: polling the ledger until every object is COMPLETE or FAILED (the reconciliation), and
reporting what is still pending.

:class:`LocalMap` emulates the map for ``run-local`` by iterating the manifest's items in the
ItemBatcher's batches, one Extract invocation each, as Step Functions would.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from pipeline.app.progress import NoProgress, Progress
from pipeline.app.reconcile import ObjectPlan, ReconcileAccessError, ReconcileInputError, ReconcileTransientError
from pipeline.app.replay import ReplayItem, ReplaySummary, budget_seconds, settle
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.aws.ledger import Ledger
from pipeline.pacing import RateLimits
from pipeline.topology import (
    REPLAY_BATCH_INPUT,
    REPLAY_ITEMS_PER_BATCH,
    REPLAY_MAX_BATCH_BYTES,
    REPLAY_MAX_CONCURRENCY,
    REPLAY_PREFIX,
)

AUTO_MAP_THRESHOLD: Final = 200
"""``--engine auto`` uses the state machine above this many objects, asynchronous invocations up to it."""
RUNNING: Final = "RUNNING"


def max_concurrency_for(shards: int, requested: int | None = None) -> int:
    """Concurrent Extract invocations: ``requested``, else one per shard up to :data:`REPLAY_MAX_CONCURRENCY`."""
    if requested is not None:
        if requested < 1:
            raise ReconcileInputError(f"--concurrency must be at least 1, got {requested}")
        return requested
    return max(1, min(shards, REPLAY_MAX_CONCURRENCY))


def manifest_items(items: Sequence[ReplayItem]) -> list[dict[str, Any]]:
    """The manifest the ItemReader reads: one ``{"key", "etag", "size"}`` per object, in plan order."""
    return [{"key": i.notice.key, "etag": i.notice.etag, "size": i.notice.size} for i in items]


def run_id(items: Sequence[ReplayItem], now: datetime) -> str:
    """An execution name: when, and a digest of what (Step Functions refuses a name reused within 90 days)."""
    digest = hashlib.sha256(json.dumps(manifest_items(items), sort_keys=True).encode()).hexdigest()[:12]
    return f"replay-{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def execution_input(
    *, bucket: str, manifest_key: str, results_prefix: str, max_concurrency: int, pace: RateLimits
) -> dict[str, Any]:
    """The state machine's input: every ``$.`` path its definition reads (a test checks them against template.yaml)."""
    return {
        "bucket": bucket,
        "manifest_key": manifest_key,
        "results_prefix": results_prefix,
        "max_concurrency": max_concurrency,
        "pace": pace.to_json(),
    }


def _path_value(document: Mapping[str, Any], path: str) -> Any:
    if not path.startswith("$."):
        raise ValueError(f"only $.field paths are emulated, got {path!r}")
    value: Any = document
    for part in path[2:].split("."):
        value = value[part]
    return value


def batch_events(items: Sequence[Mapping[str, Any]], execution: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The events the ItemBatcher makes of ``items``: at most :data:`REPLAY_ITEMS_PER_BATCH` items and
    :data:`REPLAY_MAX_BATCH_BYTES` bytes of JSON each, with the BatchInput taken from ``execution``."""
    batch_input = {name: _path_value(execution, path) for name, path in REPLAY_BATCH_INPUT.items()}
    overhead = len(json.dumps({"Items": [], "BatchInput": batch_input}))
    batch: list[Mapping[str, Any]] = []
    size = overhead
    for item in items:
        item_size = len(json.dumps(item)) + 2  # the item and its separator
        if batch and (len(batch) == REPLAY_ITEMS_PER_BATCH or size + item_size > REPLAY_MAX_BATCH_BYTES):
            yield {"Items": batch, "BatchInput": batch_input}
            batch, size = [], overhead
        batch.append(item)
        size += item_size
    if batch:
        yield {"Items": batch, "BatchInput": batch_input}


class MapEngine(Protocol):
    """Runs the Distributed Map over a manifest: started once, then polled."""

    def start(self, name: str, items: Sequence[Mapping[str, Any]], execution: Mapping[str, Any]) -> str:
        """Write the manifest, start the run; returns a handle for :meth:`status`."""
        ...

    def status(self, handle: str) -> str:
        """``RUNNING`` until the run ends, then its status: ``SUCCEEDED``, ``FAILED``, ``ABORTED`` or ``TIMED_OUT``."""
        ...


class StepFunctionsMap:
    """The deployed ``ReplayStateMachine``: the manifest goes to S3, the run to Step Functions."""

    def __init__(self, s3: Any, sfn: Any, state_machine_arn: str, output_bucket: str) -> None:
        self._s3 = s3
        self._sfn = sfn
        self._arn = state_machine_arn
        self.output_bucket = output_bucket

    def start(self, name: str, items: Sequence[Mapping[str, Any]], execution: Mapping[str, Any]) -> str:
        what = f"writing the manifest s3://{self.output_bucket}/{execution['manifest_key']}"
        try:
            self._s3.put_object(
                Bucket=self.output_bucket,
                Key=execution["manifest_key"],
                Body=json.dumps(list(items)).encode(),
                ContentType="application/json",
            )
            what = f"starting {self._arn}"
            response = self._sfn.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(execution))
        except aws_exceptions() as exc:
            raise translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError) from exc
        return str(response["executionArn"])

    def status(self, handle: str) -> str:
        try:
            return str(self._sfn.describe_execution(executionArn=handle)["status"])
        except aws_exceptions() as exc:
            what = f"DescribeExecution of {handle}"
            raise translate(exc, what, transient=ReconcileTransientError, terminal=ReconcileAccessError) from exc


def state_machine_arn(sfn: Any, name: str) -> str:
    """The ARN of the state machine called ``name`` (the deployed stack's ``ReplayStateMachine``)."""
    try:
        for page in sfn.get_paginator("list_state_machines").paginate():
            for machine in page.get("stateMachines", []):
                if machine["name"] == name:
                    return str(machine["stateMachineArn"])
    except aws_exceptions() as exc:
        raise translate(
            exc, "ListStateMachines", transient=ReconcileTransientError, terminal=ReconcileAccessError
        ) from exc
    raise ReconcileAccessError(
        f"no state machine named {name!r} in this account and region: deploy the stack (clickstream-etl deploy), "
        "give --state-machine ARN, or use --engine invoke"
    )


@dataclass
class LocalMap:
    """The Distributed Map emulated in process: each batch event goes to ``invoke`` (Extract's handler), in order.

    A batch whose invocation fails is retried up to ``attempts`` times, as the definition's
    ``States.ALL`` retrier would; what still fails is counted in ``failed_batches`` and left
    to the ledger reconciliation, as ``ToleratedFailurePercentage: 100`` leaves it.
    """

    invoke: Callable[[dict[str, Any]], bool]
    attempts: int = 4
    manifests: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    batches: int = 0
    failed_batches: int = 0

    def start(self, name: str, items: Sequence[Mapping[str, Any]], execution: Mapping[str, Any]) -> str:
        self.manifests[name] = list(items)
        for event in batch_events(items, execution):
            self.batches += 1
            if not any(self.invoke(event) for _ in range(self.attempts)):
                self.failed_batches += 1
        return name

    def status(self, handle: str) -> str:
        return "SUCCEEDED"


@dataclass
class MapReplayDeps:
    ledger: Ledger
    engine: MapEngine
    bucket: str
    """The output bucket, where the manifests and results go."""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    progress: Progress = field(default_factory=NoProgress)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass
class MapReplaySummary(ReplaySummary):
    execution: str = ""
    status: str = ""
    max_concurrency: int = 0
    manifest: str = ""
    results: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "engine": "map",
            "execution": self.execution,
            "status": self.status,
            "max_concurrency": self.max_concurrency,
            "manifest": self.manifest,
            "results": self.results,
        }


def replay_with_map(
    plan: ObjectPlan,
    items: Sequence[ReplayItem],
    deps: MapReplayDeps,
    limits: RateLimits,
    *,
    max_concurrency: int,
    wait_s: float,
    poll_s: float = 15.0,
    dry_run: bool = False,
) -> MapReplaySummary:
    """Start the map over ``items`` with each invocation's share of ``limits``; wait for it and for the ledger.

    ``wait_s`` bounds the whole wait, the run's and then the ledger's.  A dry run writes and
    starts nothing.
    """
    summary = MapReplaySummary.planned(
        plan, items, paced_s=budget_seconds(items, limits), dry_run=dry_run, max_concurrency=max_concurrency
    )
    name = run_id(items, deps.now())
    summary.manifest = f"s3://{deps.bucket}/{REPLAY_PREFIX}{name}/manifest.json"
    summary.results = f"s3://{deps.bucket}/{REPLAY_PREFIX}{name}/results/"
    if dry_run or not items:
        summary.pending = [f"s3://{i.notice.bucket}/{i.notice.key}" for i in items] if dry_run else []
        return summary
    execution = execution_input(
        bucket=plan.bucket,
        manifest_key=f"{REPLAY_PREFIX}{name}/manifest.json",
        results_prefix=f"{REPLAY_PREFIX}{name}/results",
        max_concurrency=max_concurrency,
        pace=limits.shared_by(max_concurrency),
    )
    deadline = deps.clock() + wait_s
    summary.execution = deps.engine.start(name, manifest_items(items), execution)
    summary.invoked = len(items)
    deps.progress.phase("replaying through the state machine", 1, "run")
    while (status := deps.engine.status(summary.execution)) == RUNNING and deps.clock() < deadline:
        deps.sleep(max(min(poll_s, deadline - deps.clock()), 0.0))
    summary.status = status
    deps.progress.update(1)
    settle(
        summary,
        items,
        deps.ledger,
        deps.clock,
        deps.sleep,
        deps.progress,
        wait_s=max(deadline - deps.clock(), 0.0),
        poll_s=poll_s,
    )
    deps.progress.close()
    return summary
