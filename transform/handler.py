"""Transform Lambda: a Kinesis batch of stream-1 records -> canonical events on stream 2.

A thin adapter over :func:`transform.stage.transform_raw_record`, run record by record by
Powertools' BatchProcessor with ReportBatchItemFailures.  Data errors become bad rows and
are acknowledged; transient errors (stream 2 or the bad-rows bucket unavailable) raise
inside the record handler and are reported as item failures, so Lambda retries from the
lowest failed sequence number.  Reprocessing is harmless: ids are deterministic and the
sinks deduplicate.  This module never imports boto3; clients come from pipeline.aws.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from pipeline.aws.badsink import BadRowWriter, S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import KinesisWriter, OutRecord, RecordWriter
from pipeline.aws.registry import s3_schema_fetch
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE
from pipeline.observability import LazyTracer
from transform.canonicalize import Canonicalizer, resolve_pseudonymization_key
from transform.stage import LineFormats, TransformOutput, transform_raw_record

logger = Logger(service="clickstream-etl-transform")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="transform")
tracer = LazyTracer(service="clickstream-etl-transform")


@dataclass(frozen=True)
class TransformDeps:
    config: PipelineConfig
    canonicalizer: Canonicalizer
    writer: RecordWriter
    """Puts stream-2 records, durable on return."""
    bad_sink: BadRowWriter
    """Writes bad rows, durable on return."""
    clock: Callable[[], float] = time.time
    formats: LineFormats = field(default_factory=LineFormats)
    """The input formats' parsers, made once per container."""


def build_deps(config: PipelineConfig, *, s3: Any, kinesis: Any) -> TransformDeps:
    """The stage's dependencies on the given clients: the deployed wiring, shared with run-local."""
    resources = config.resources
    return TransformDeps(
        config=config,
        canonicalizer=Canonicalizer(
            config.transform,
            pseudonymization_key=resolve_pseudonymization_key(config.transform),
            s3_fetch=s3_schema_fetch(s3),
        ),
        writer=KinesisWriter(kinesis, resources.events_stream, config.stream),
        bad_sink=S3BadRowSink(s3, resources.output_bucket, resources.bad_prefix),
    )


@cache
def default_deps() -> TransformDeps:
    config = load_config()
    return build_deps(config, s3=make_client("s3", config.aws), kinesis=make_client("kinesis", config.aws))


def process_record(record: KinesisStreamRecord, deps: TransformDeps) -> TransformOutput:
    """One stream-1 record: transform, then make its bad rows and events durable."""
    arrival_ms = int(float(record.kinesis.approximate_arrival_timestamp) * 1000)
    out = transform_raw_record(
        record.kinesis.data_as_bytes(),
        deps.canonicalizer,
        deps.config.stream.record_target_bytes,
        origin=f"{record.event_source_arn}/{record.event_id}",
        arrival_ms=arrival_ms,
        formats=deps.formats,
    )
    deps.bad_sink.write(out.bad, stage="transform", batch_id=out.batch_id, etl_tstamp=out.etl_tstamp)
    deps.writer.put([OutRecord(data, chunk_id) for chunk_id, data in out.chunks])
    return out


def handle(
    event: dict[str, Any],
    context: Any,
    deps: TransformDeps,
    on_output: Callable[[TransformOutput], None] | None = None,
) -> dict[str, Any]:
    """Process a Kinesis batch; ``on_output`` sees each record's output once it is durable."""
    counts: Counter[str] = Counter()
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

    def record_handler(record: KinesisStreamRecord) -> None:
        output = process_record(record, deps)
        counts.update(
            lines=output.lines, events=len(output.events), bad=len(output.bad), skipped=sum(output.skipped.values())
        )
        if on_output is not None:
            on_output(output)

    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        return dict(response)
    finally:
        _report(event, counts, processor, deps)


def _report(event: dict[str, Any], counts: Counter[str], processor: BatchProcessor, deps: TransformDeps) -> None:
    lines = counts["lines"]
    metrics.add_metric(name="Lines", unit=MetricUnit.Count, value=lines)
    metrics.add_metric(name="Events", unit=MetricUnit.Count, value=counts["events"])
    metrics.add_metric(name="BadRows", unit=MetricUnit.Count, value=counts["bad"])
    metrics.add_metric(name="Skipped", unit=MetricUnit.Count, value=counts["skipped"])
    metrics.add_metric(name="FailedRecords", unit=MetricUnit.Count, value=len(processor.fail_messages))
    arrivals = [r.get("kinesis", {}).get("approximateArrivalTimestamp") for r in event.get("Records") or []]
    arrivals = [a for a in arrivals if isinstance(a, int | float)]
    if arrivals:
        lag_ms = max(deps.clock() - min(arrivals), 0) * 1000
        metrics.add_metric(name="IteratorLag", unit=MetricUnit.Milliseconds, value=lag_ms)
    logger.info(
        "batch transformed",
        extra={"records": len(event.get("Records") or []), "failed": len(processor.fail_messages), "lines": lines},
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, default_deps())
