"""How the stages are wired, as values: the event source mappings and schedules of the deployed chain.

One definition serves the deployment (the parameters of CreateEventSourceMapping / SAM's
``Kinesis`` and ``SQS`` events, an EventBridge schedule) and ``run-local`` (the simulator's
settings), so the two cannot drift.  Tests pin the properties that keep data safe
(reliability F13; F07 and F08 for Extract's notification queue and its reconciler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.config import PipelineConfig
from pipeline.constants import EXTRACT_FUNCTION_NAME_ENV

EXTRACT_FUNCTION: Final = "clickstream-etl-extract"
EXTRACT_TIMEOUT_S: Final = 300
"""Extract's timeout.  An object's lease is the claiming invocation's remaining time, so a killed
invocation's lease is free at most this long after it started; large objects continue in fresh
invocations, so a longer timeout buys nothing."""
NOTIFICATION_QUEUE: Final = "clickstream-etl-notifications"


@dataclass(frozen=True)
class StreamMapping:
    """A Kinesis -> Lambda event source mapping."""

    function: str
    stream: str
    batch_size: int
    bisect_on_error: bool
    maximum_retry_attempts: int
    maximum_record_age_s: int
    report_batch_item_failures: bool
    on_failure_queue: str
    """Name of the SQS queue receiving the metadata of discarded batches (replayable by sequence range)."""

    def to_aws(self, stream_arn: str, function_arn: str, queue_arn: str) -> dict[str, Any]:
        """The CreateEventSourceMapping parameters."""
        return {
            "EventSourceArn": stream_arn,
            "FunctionName": function_arn,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": self.batch_size,
            "BisectBatchOnFunctionError": self.bisect_on_error,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": self.maximum_record_age_s,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
        }


def stream_mappings(config: PipelineConfig) -> dict[str, StreamMapping]:
    """The chain's mappings: Transform on stream 1, the Parquet sink on stream 2."""
    r = config.resources
    return {
        "transform": StreamMapping(
            function="clickstream-etl-transform",
            stream=r.raw_stream,
            batch_size=100,
            bisect_on_error=True,  # isolates a batch that keeps failing; splits don't use retries
            maximum_retry_attempts=5,
            maximum_record_age_s=6 * 3600,
            report_batch_item_failures=True,  # else partial responses are ignored and data is lost
            on_failure_queue="clickstream-etl-transform-failures",
        ),
        "parquet_sink": StreamMapping(
            function="clickstream-etl-parquet-sink",
            stream=r.events_stream,
            batch_size=500,
            # A bisected retry writes new keys (they come from the batch's sequence range), and
            # that is safe: it takes the failed attempt's claims over and deletes what it listed
            # (load/sink.py), so a batch that keeps failing is split down to what fails.
            bisect_on_error=True,
            maximum_retry_attempts=5,
            maximum_record_age_s=6 * 3600,
            report_batch_item_failures=False,  # the sink writes a batch as a whole
            on_failure_queue="clickstream-etl-sink-failures",
        ),
    }


@dataclass(frozen=True)
class QueueMapping:
    """An SQS -> Lambda event source mapping, with the queue settings it relies on."""

    function: str
    queue: str
    batch_size: int
    report_batch_item_failures: bool
    visibility_timeout_s: int
    """The queue's VisibilityTimeout: how long a message reported as failed stays hidden."""
    max_receive_count: int
    dead_letter_queue: str
    """Where the queue's redrive policy moves a message received ``max_receive_count`` times."""

    def to_aws(self, queue_arn: str, function_arn: str) -> dict[str, Any]:
        """The CreateEventSourceMapping parameters."""
        return {
            "EventSourceArn": queue_arn,
            "FunctionName": function_arn,
            "BatchSize": self.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
        }

    def queue_attributes(self, dead_letter_arn: str) -> dict[str, str]:
        """The source queue's attributes (CreateQueue / SetQueueAttributes)."""
        import json

        return {
            "VisibilityTimeout": str(self.visibility_timeout_s),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": self.max_receive_count}
            ),
        }


def notification_mapping() -> QueueMapping:
    """S3 notifications through SQS to Extract."""
    return QueueMapping(
        function=EXTRACT_FUNCTION,
        queue=NOTIFICATION_QUEUE,
        batch_size=10,
        # A busy object's message is reported as an item failure; without this setting Lambda
        # would ignore the report and delete the message with the batch.
        report_batch_item_failures=True,
        # AWS asks for at least six times the function's timeout.  It also brings a busy message
        # back only after the holder's lease has ended: the holder claimed at most one timeout
        # after this message was received, and its lease ends at most one timeout after that.
        visibility_timeout_s=6 * EXTRACT_TIMEOUT_S,
        # A live holder keeps its object through continuations; a few returns cover that, and the
        # reconciler re-drives an object whose messages all ran out.
        max_receive_count=5,
        dead_letter_queue="clickstream-etl-notification-failures",
    )


@dataclass(frozen=True)
class ScheduledFunction:
    """A Lambda function run on an EventBridge schedule."""

    function: str
    handler: str
    schedule: str
    """An EventBridge schedule expression."""
    timeout_s: int
    reserved_concurrency: int
    environment: Mapping[str, str] = field(default_factory=dict)
    invokes: tuple[str, ...] = ()
    """Functions it invokes asynchronously (lambda:InvokeFunction)."""
    lists_bucket: str = ""
    """The bucket it lists (s3:ListBucket)."""
    ledger_table: str = ""
    """The ledger table it reads and keeps its cursor in (BatchGetItem, GetItem, PutItem)."""

    def rule(self) -> dict[str, Any]:
        """The EventBridge PutRule parameters of its schedule."""
        return {"Name": f"{self.function}-schedule", "ScheduleExpression": self.schedule, "State": "ENABLED"}


def scheduled_functions(config: PipelineConfig) -> dict[str, ScheduledFunction]:
    """The chain's scheduled functions: Extract's reconciler."""
    r = config.resources
    return {
        "extract_reconciler": ScheduledFunction(
            function="clickstream-etl-extract-reconciler",
            handler="extract.reconciler.handler",
            # A lost notification (or a notification that ran out of retries while a killed
            # invocation's lease held the object) is re-driven within two periods.
            schedule="rate(15 minutes)",
            timeout_s=300,
            reserved_concurrency=1,  # runs never overlap, so they never share the listing cursor
            environment={EXTRACT_FUNCTION_NAME_ENV: EXTRACT_FUNCTION},
            invokes=(EXTRACT_FUNCTION,),
            lists_bucket=r.log_bucket,
            ledger_table=r.ledger_table,
        )
    }
