"""Firehose transformation Lambda: stream-2 records -> JSON lines for Redshift's COPY.

A thin adapter over :func:`load.firehose.transform_records` (the contract: every record
back once, Ok, Dropped or ProcessingFailed).  It has no dependencies and never imports
pyarrow or boto3, so it starts cold quickly.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from load.firehose import transform_records
from pipeline.constants import METRICS_NAMESPACE
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-etl-load")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="load")
tracer = LazyTracer(service="clickstream-etl-load")


def handle(event: dict[str, Any]) -> dict[str, Any]:
    records, counts = transform_records(event.get("records") or [])
    metrics.add_metric(name="FirehoseOk", unit=MetricUnit.Count, value=counts.ok)
    metrics.add_metric(name="FirehoseDropped", unit=MetricUnit.Count, value=counts.dropped)
    metrics.add_metric(name="FirehoseFailed", unit=MetricUnit.Count, value=counts.failed)
    metrics.add_metric(name="Events", unit=MetricUnit.Count, value=counts.events)
    metrics.add_metric(name="OversizeEntityEnvelopes", unit=MetricUnit.Count, value=counts.oversize_entities)
    logger.info("firehose records transformed", extra=vars(counts))
    return {"records": records}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
