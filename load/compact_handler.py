"""The scheduled compactor Lambda: compact the closed hour partitions of the output bucket's dataset.

An adapter (an EventBridge schedule, ``pipeline/topology.py``, every hour): configuration, the
S3 client, the resolver and the clock come in here; the work is :mod:`load.compaction` over
``s3://<resources.output_bucket>/<resources.events_prefix>``, bounded by the invocation's
remaining time -- it stops between partitions near its deadline, and the next run goes on
(``PartitionsLeft`` says how many were left; ``PartitionsLeftAlone`` counts partitions with an
object that is not the canonical layout, or too large for the scratch space: alarm on it).  A
crash at any point is safe (see :mod:`load.compaction`); errors are raised so that the run shows
as failed.  Nothing is created at import, and pyarrow is imported when the first partition is
compacted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from load.compaction import compact, list_dataset, plan_compaction
from load.redshift.backfill_plan import S3Location
from pipeline.aws.clients import make_client
from pipeline.aws.registry import s3_schema_fetch
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.iglu import Resolver, resolver_from_config
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-etl-compactor")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="compactor")
tracer = LazyTracer(service="clickstream-etl-compactor")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CompactorDeps:
    config: PipelineConfig
    s3: Any
    """A boto3 S3 client (boto3 ships no type stubs)."""
    resolver: Resolver | None = None
    """The schemas of the typed entity columns (``[transform.iglu]``); None writes none."""
    clock: Callable[[], datetime] = _utc_now
    """The current time (aware, UTC): which partitions are closed."""
    scratch: Path | None = None
    """Where partitions are merged (None: the system's temporary folder, ``/tmp`` in Lambda)."""


def build_deps(config: PipelineConfig, *, s3: Any) -> CompactorDeps:
    """The compactor's dependencies on an S3 client: the deployed wiring."""
    resolver = resolver_from_config(config.transform.iglu, s3_schema_fetch(s3)) if config.load.typed_entities else None
    return CompactorDeps(config, s3, resolver)


@cache
def default_deps() -> CompactorDeps:
    from load.dataset import use_compact_memory_pool

    use_compact_memory_pool()
    config = load_config()
    return build_deps(config, s3=make_client("s3", config.aws))


def handle(event: dict[str, Any], deps: CompactorDeps, context: Any = None) -> dict[str, Any]:
    config = deps.config
    root = S3Location(config.resources.output_bucket, config.resources.events_prefix)
    plan = plan_compaction(
        root, list_dataset(deps.s3, root), now=deps.clock(), after_hours=config.load.compact_after_hours
    )
    with tempfile.TemporaryDirectory(dir=deps.scratch) as scratch:
        summary = compact(
            plan,
            deps.s3,
            config.load,
            scratch=Path(scratch),
            resolver=deps.resolver,
            time_left_ms=context.get_remaining_time_in_millis if context is not None else None,
        )
    counts = summary.metrics()  # all of them go to the log line; four are metrics (each costs $0.30 a month)
    metrics.add_metric(name="PartitionsCompacted", unit=MetricUnit.Count, value=counts["PartitionsCompacted"])
    metrics.add_metric(name="PartitionsLeft", unit=MetricUnit.Count, value=counts["PartitionsLeft"])
    metrics.add_metric(name="PartitionsLeftAlone", unit=MetricUnit.Count, value=counts["PartitionsLeftAlone"])
    metrics.add_metric(name="DuplicatesDropped", unit=MetricUnit.Count, value=counts["DuplicatesDropped"])
    for outcome in summary.outcomes:
        if outcome.status in ("rejected", "too_large"):
            logger.error(
                "partition left alone",
                extra={"partition": outcome.task.prefix, "problems": list(outcome.problems), "why": outcome.message},
            )
    logger.info("compaction finished", extra=counts)
    return summary.to_json()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, default_deps(), context)
