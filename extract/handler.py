"""Extract Lambda: S3 object-created notifications (direct, SQS or EventBridge) -> stream 1.

A thin adapter: it parses the event, calls :func:`extract.stage.handle_notices` with
dependencies built once per container, and reports metrics.  Nothing is created at import.
An object leased to another invocation ("busy") is not acknowledged: its SQS message is a
batch item failure (the queue's mapping has ReportBatchItemFailures), and a direct
invocation fails with a retryable error so that Lambda retries it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from extract.errors import MalformedNotificationError
from extract.notifications import ObjectNotice, object_created_event, parse_notifications
from extract.stage import ExtractDeps, check_limits, handle_notices, redelivery
from pipeline.aws.badsink import S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import KinesisWriter
from pipeline.aws.ledger import Ledger
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import LAMBDA_FUNCTION_NAME_ENV, METRICS_NAMESPACE
from pipeline.formats import get_format, read_limits
from pipeline.observability import LazyTracer

logger = Logger(service="clickstream-etl-extract")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="extract")
tracer = LazyTracer(service="clickstream-etl-extract")


def continuation_event(notice: ObjectNotice) -> dict[str, Any]:
    """An S3-shaped event for one object, sent to a fresh invocation to resume it."""
    return object_created_event(notice, event_name="ObjectCreated:Continuation")


def build_deps(
    config: PipelineConfig, *, s3: Any, kinesis: Any, dynamodb: Any, continue_later: Callable[[ObjectNotice], None]
) -> ExtractDeps:
    """The stage's dependencies on the given clients: the deployed wiring, shared with run-local."""
    check_limits(config)
    resources = config.resources
    return ExtractDeps(
        config=config,
        limits=read_limits(config.extract),
        log_format=get_format(config.extract.format),
        s3=s3,
        writer=KinesisWriter(kinesis, resources.raw_stream, config.stream),
        bad_sink=S3BadRowSink(s3, resources.output_bucket, resources.bad_prefix),
        ledger=Ledger(dynamodb, resources.ledger_table),
        continue_later=continue_later,
    )


@cache
def default_deps() -> ExtractDeps:
    config = load_config()
    lambda_client = make_client("lambda", config.aws)
    function = _function_name()

    def continue_later(notice: ObjectNotice) -> None:
        lambda_client.invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(continuation_event(notice))
        )

    return build_deps(
        config,
        s3=make_client("s3", config.aws),
        kinesis=make_client("kinesis", config.aws),
        dynamodb=make_client("dynamodb", config.aws),
        continue_later=continue_later,
    )


def _function_name() -> str:
    import os

    return os.environ.get(LAMBDA_FUNCTION_NAME_ENV, "clickstream-etl-extract")


def _retried_entries(deps: ExtractDeps) -> int:
    return int(getattr(getattr(deps.writer, "stats", None), "retried_entries", 0))


def handle(event: dict[str, Any], context: Any, deps: ExtractDeps) -> dict[str, Any]:
    notices = parse_notifications(event)
    retried_before = _retried_entries(deps)  # the writer's stats live as long as the container
    results = handle_notices(
        notices.objects, deps, request_id=context.aws_request_id, remaining_ms=context.get_remaining_time_in_millis
    )
    for reason, count in notices.ignored.items():
        logger.info("notification ignored", extra={"reason": reason, "count": count})
    for result in results:
        metrics.add_metric(name="Lines", unit=MetricUnit.Count, value=result.lines_read)
        metrics.add_metric(name="LinesShipped", unit=MetricUnit.Count, value=result.lines_shipped)
        metrics.add_metric(name="BadRows", unit=MetricUnit.Count, value=result.bad)
        metrics.add_metric(name="Skipped", unit=MetricUnit.Count, value=result.skipped)
        metrics.add_metric(name="Records", unit=MetricUnit.Count, value=result.records)
        logger.info(
            "object extracted",
            extra={"object": result.object.uri, "outcome": result.outcome, **result.counts()},
        )
    retried = _retried_entries(deps) - retried_before
    metrics.add_metric(name="PutRetries", unit=MetricUnit.Count, value=retried)
    retry = redelivery(notices.objects, results)
    metrics.add_metric(name="RetryLater", unit=MetricUnit.Count, value=len(retry.sqs_message_ids) + len(retry.direct))
    retry.raise_for_direct()
    if notices.malformed_direct:
        # Not a notification (reliability catalogue A16): fail, so it reaches the on-failure destination.
        malformed = {reason: n for reason, n in sorted(notices.ignored.items()) if reason.startswith("malformed")}
        raise MalformedNotificationError(f"parts of the event are not S3 notifications: {malformed}")
    failures = retry.batch_item_failures()
    # Malformed SQS messages come back until the queue's redrive policy moves them to its dead-letter queue.
    failures += [{"itemIdentifier": m} for m in notices.malformed_messages if m not in retry.sqs_message_ids]
    return {
        "objects": [{"object": r.object.uri, "outcome": r.outcome, **r.counts()} for r in results],
        "batchItemFailures": failures,
    }


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, default_deps())
