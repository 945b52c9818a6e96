"""The scheduled loader Lambda: merge Firehose's staging table into atomic.events.

An adapter (run it every ``redshift.load_error_window_minutes`` with an EventBridge
schedule): configuration, the Data API client and the clock come in here; the work is
:func:`load.redshift_exec.run_loader`.  A statement still running after the poll limit
raises :class:`~load.errors.StatementTimeoutError` (transient): the next scheduled run
merges again, and the merge is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from load.redshift_exec import DataApiExecutor, run_loader
from pipeline.aws.clients import make_client
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-redshift-loader")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="clickstream-redshift-loader")
tracer = LazyTracer(service="clickstream-redshift-loader")


@cache
def default_deps() -> tuple[PipelineConfig, DataApiExecutor]:
    """Configuration and the Data API executor, made once per container."""
    config = load_config()
    return config, DataApiExecutor.from_config(make_client("redshift-data", config.aws), config.redshift)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config, executor = default_deps()
    result = run_loader(config, executor, datetime.now(UTC))
    for name, value in result.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for error in result.load_errors:
        logger.error("COPY load error", extra=error.to_json())
    logger.info("merge finished", extra=result.stats.to_json())
    return result.to_json()
