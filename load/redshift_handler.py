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
from pipeline.aws.registry import s3_schema_fetch
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.iglu import Resolver, resolver_from_config
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
    resolver: Resolver
    """Resolves the queued entities' schemas (``[transform.iglu]``, as the transform uses)."""
    clock: Callable[[], datetime] = _utc_now
    """The current time (aware, UTC): it ends the load-error window."""


def build_deps(config: PipelineConfig, *, redshift_data: Any, s3: Any = None) -> LoaderDeps:
    """The loader's dependencies on a ``redshift-data`` client: the Data API executor of
    ``config`` and its schema resolver (``s3`` reads S3 registries)."""
    resolver = resolver_from_config(config.transform.iglu, s3_schema_fetch(s3) if s3 is not None else None)
    return LoaderDeps(config, DataApiExecutor.from_config(redshift_data, config.redshift), resolver)


@cache
def default_deps() -> LoaderDeps:
    """Configuration, the Data API executor and the resolver, made once per container."""
    config = load_config()
    s3 = make_client("s3", config.aws) if any(r.startswith("s3://") for r in config.transform.iglu.registries) else None
    return build_deps(config, redshift_data=make_client("redshift-data", config.aws), s3=s3)


def handle(event: dict[str, Any], deps: LoaderDeps) -> dict[str, Any]:
    result = run_loader(deps.config, deps.executor, deps.resolver, deps.clock())
    for name, value in result.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for error in result.load_errors:
        logger.error("COPY load error", extra=error.to_json())
    logger.info("merge finished", extra={**result.stats.to_json(), **result.entities.to_json()})
    return result.to_json()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, default_deps())
