"""The scheduled loader Lambda: merge Firehose's staging table into atomic.events.

An adapter (run it every ``redshift.load_error_window_minutes`` with an EventBridge
schedule): configuration, the Data API client and the clock come in here; the work is
:func:`load.redshift.stream_load.run_loader`.  A statement still running after the poll
limit raises :class:`~load.errors.StatementTimeoutError` (transient): the next scheduled
run merges again, and the merge is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from load.redshift.executor import DataApiExecutor, Executor
from load.redshift.stream_load import run_loader
from pipeline.aws.clients import make_client
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-redshift-loader")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="clickstream-redshift-loader")
tracer = LazyTracer(service="clickstream-redshift-loader")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LoaderDeps:
    config: PipelineConfig
    executor: Executor
    """Runs the plans (the Data API in AWS)."""
    clock: Callable[[], datetime] = _utc_now
    """The current time (aware, UTC): it ends the load-error window."""


def build_deps(config: PipelineConfig, *, redshift_data: Any) -> LoaderDeps:
    """The loader's dependencies on a ``redshift-data`` client: the Data API executor of ``config``."""
    return LoaderDeps(config, DataApiExecutor.from_config(redshift_data, config.redshift))


@cache
def default_deps() -> LoaderDeps:
    """Configuration and the Data API executor, made once per container."""
    config = load_config()
    return build_deps(config, redshift_data=make_client("redshift-data", config.aws))


def handle(event: dict[str, Any], deps: LoaderDeps) -> dict[str, Any]:
    result = run_loader(deps.config, deps.executor, deps.clock())
    for name, value in result.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for error in result.load_errors:
        logger.error("COPY load error", extra=error.to_json())
    logger.info("merge finished", extra=result.stats.to_json())
    return result.to_json()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, default_deps())
