"""How the stages are wired, as values: the event source mappings of the deployed chain.

One definition serves the deployment (the parameters of CreateEventSourceMapping / SAM's
``Kinesis`` event) and ``run-local`` (the simulator's settings), so the two cannot drift.
A test pins the properties that keep data safe (reliability F13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import PipelineConfig


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
            # Object keys come from the batch's sequence range: a bisected retry would write
            # new keys beside the old ones, so whole batches are retried instead.
            bisect_on_error=False,
            maximum_retry_attempts=5,
            maximum_record_age_s=6 * 3600,
            report_batch_item_failures=False,  # the sink writes a batch as a whole
            on_failure_queue="clickstream-etl-sink-failures",
        ),
    }
