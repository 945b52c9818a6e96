"""Parquet sink Lambda: a Kinesis batch of stream 2 -> partitioned Parquet objects on S3.

A thin adapter over :func:`load.sink.write_batch` with dependencies built once per
container.  Nothing is created at import, and pyarrow is imported only when the first
batch is written.  A batch is written as a whole: any failure (including a failed undo)
raises, so Lambda retries the batch, possibly grouped otherwise; the invocation's remaining
time bounds the lease of its claims (see :mod:`load.sink`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from load.sink import ClaimLedger, write_batch
from pipeline.aws.badsink import BadRowWriter, S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import Ledger
from pipeline.aws.registry import s3_schema_fetch
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.iglu import Resolver, resolver_from_config
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-etl-load")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="load")
tracer = LazyTracer(service="clickstream-etl-load")


@dataclass(frozen=True)
class SinkDeps:
    config: PipelineConfig
    s3: Any
    """A boto3 S3 client (boto3 ships no type stubs)."""
    ledger: ClaimLedger
    bad_sink: BadRowWriter
    clock: Callable[[], float] = time.time
    """Epoch seconds: leases and expiries of the claims (a fake clock in tests)."""
    sleep: Callable[[float], None] = time.sleep
    """Waits out another attempt's lease that runs out soon (the fake clock's ``advance`` in tests)."""
    resolver: Resolver | None = None
    """The schemas of the typed entity columns (``[transform.iglu]``); None writes none."""


def build_deps(config: PipelineConfig, *, s3: Any, dynamodb: Any) -> SinkDeps:
    """The sink's dependencies on the given clients: the deployed wiring, shared with run-local."""
    resources = config.resources
    resolver = resolver_from_config(config.transform.iglu, s3_schema_fetch(s3)) if config.load.typed_entities else None
    return SinkDeps(
        config,
        s3,
        Ledger(dynamodb, resources.ledger_table),
        S3BadRowSink(s3, resources.output_bucket, resources.bad_prefix),
        resolver=resolver,
    )


@cache
def default_deps() -> SinkDeps:
    config = load_config()
    return build_deps(config, s3=make_client("s3", config.aws), dynamodb=make_client("dynamodb", config.aws))


def handle(event: dict[str, Any], deps: SinkDeps, context: Any = None) -> dict[str, Any]:
    result = write_batch(
        event,
        s3=deps.s3,
        ledger=deps.ledger,
        bad_sink=deps.bad_sink,
        config=deps.config,
        clock=deps.clock,
        sleep=deps.sleep,
        remaining_ms=context.get_remaining_time_in_millis() if context is not None else None,
        resolver=deps.resolver,
    )
    metrics.add_metric(name="Events", unit=MetricUnit.Count, value=result.events)
    metrics.add_metric(name="RowsWritten", unit=MetricUnit.Count, value=result.rows_written)
    metrics.add_metric(name="ReplayedChunks", unit=MetricUnit.Count, value=result.replayed_chunks)
    metrics.add_metric(name="BadRows", unit=MetricUnit.Count, value=len(result.bad))
    metrics.add_metric(name="ClaimsTakenOver", unit=MetricUnit.Count, value=result.claims_taken_over)
    logger.info(
        "batch written",
        extra={
            "batch": result.batch_key,
            "objects": len(result.objects),
            "rows": result.rows_written,
            "claims_taken_over": result.claims_taken_over,
            "already_committed": result.already_committed,
        },
    )
    return {"batch": result.batch_key, "rows_written": result.rows_written, "objects": result.objects}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, default_deps(), context)
