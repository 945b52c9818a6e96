"""The scheduled rollup Lambda: the dashboard's daily rollups of the output bucket's dataset (issue 16).

An adapter (an EventBridge schedule, ``template.yaml``): configuration and the S3 client come in
here; the work is :func:`load.rollup.roll_up` over ``s3://<resources.output_bucket>/`` -- it reads
``events/`` and writes ``rollups/`` (its role allows nothing else), re-rolling only the days whose
event objects changed since the last run (late events, compaction).  A failed run is safe to
repeat: files are named by their inputs' digest, and the manifest is written last.  Errors are
raised so that the run shows as failed.  Nothing is created at import; pyarrow is imported when the
first day is rolled up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from load.rollup import S3Store, roll_up
from pipeline.aws.clients import make_client
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-etl-rollup")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="rollup")
tracer = LazyTracer(service="clickstream-etl-rollup")


@dataclass(frozen=True)
class RollupDeps:
    config: PipelineConfig
    s3: Any
    """A boto3 S3 client (boto3 ships no type stubs)."""


@cache
def default_deps() -> RollupDeps:
    config = load_config()
    return RollupDeps(config, make_client("s3", config.aws))


def dataset_prefix(events_prefix: str) -> str:
    """The dataset's root in the bucket: the events prefix without its final ``events/``."""
    prefix = events_prefix.strip("/")
    return prefix[: -len("events")] if prefix == "events" or prefix.endswith("/events") else prefix + "/"


def handle(event: dict[str, Any], deps: RollupDeps) -> dict[str, Any]:
    resources = deps.config.resources
    summary = roll_up(S3Store(deps.s3, resources.output_bucket, dataset_prefix(resources.events_prefix)))
    metrics.add_metric(name="DaysRolledUp", unit=MetricUnit.Count, value=len(summary.rolled_up))
    logger.info("rollup finished", extra=summary.to_json())
    return summary.to_json()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, default_deps())
