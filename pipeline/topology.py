"""How the stages are wired, as values: the event source mappings and schedules of the deployed chain.

One definition serves the deployment (the parameters of CreateEventSourceMapping / SAM's
``Kinesis`` and ``SQS`` events, an EventBridge schedule) and ``run-local`` (the simulator's
settings), so the two cannot drift.  Tests pin the properties that keep data safe
(reliability F13; F07 and F08 for Extract's notification queue and its reconciler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pipeline.config import PipelineConfig
from pipeline.constants import EXTRACT_FUNCTION_NAME_ENV

NAME_PREFIX: Final = "clickstream-etl"
"""The deployment's default ``NamePrefix`` (template.yaml): every function and queue name below starts with it."""
LAMBDA_RUNTIME: Final = "python3.12"
"""The functions' runtime; ``clickstream-etl package`` builds the artifacts for the same Python."""
LAMBDA_ARCHITECTURE: Final = "arm64"

EXTRACT_FUNCTION: Final = "clickstream-etl-extract"
EXTRACT_TIMEOUT_S: Final = 300
"""Extract's timeout.  An object's lease is the claiming invocation's remaining time, so a killed
invocation's lease is free at most this long after it started; large objects continue in fresh
invocations, so a longer timeout buys nothing."""
NOTIFICATION_QUEUE: Final = "clickstream-etl-notifications"
REPLAY_STATE_MACHINE: Final = "clickstream-etl-replay"
"""The replay's Distributed Map (template.yaml ``ReplayStateMachine``; ``backfill --mode replay``)."""
REPLAY_PREFIX: Final = "_replay/"
"""Where, in the output bucket, the replay's manifests and results exports go (the only keys its role may touch)."""
REPLAY_ITEMS_PER_BATCH: Final = 10
"""Objects per Extract invocation of the Distributed Map (its ItemBatcher's MaxItemsPerBatch)."""
REPLAY_MAX_BATCH_BYTES: Final = 131072
"""The ItemBatcher's MaxInputBytesPerBatch: a batch's JSON, items and batch input, stays under it."""
REPLAY_BATCH_INPUT: Final[Mapping[str, str]] = {"bucket": "$.bucket", "pace": "$.pace"}
"""The ItemBatcher's BatchInput: each field of a batch event, and the path of the execution input it comes from."""
REPLAY_MAX_CONCURRENCY: Final = 8
"""The default cap of concurrent Extract invocations of a replay; fewer when stream 1 has fewer shards."""
COLLECTOR_FUNCTION: Final = "clickstream-etl-collector"
"""The Snowplow-compatible collector (issue 15): template.yaml ``CollectorFunction``, deployed
when the ``Collector`` parameter is not ``disabled``."""
COLLECTOR_TIMEOUT_S: Final = 10
"""A tracker waits for the answer: the put's retries (``[collector] put_*``) end long before this."""
ASYNC_FAILURE_QUEUE: Final = "clickstream-etl-async-failures"
"""Where Lambda sends the asynchronous invocations of the object function (Extract, or the direct
function) that failed every retry: continuations and the reconciler's re-drives."""


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
    maximum_concurrency: int = 0
    """At most this many concurrent invocations from the queue (ScalingConfig; 0: Lambda's default)."""

    def to_aws(self, queue_arn: str, function_arn: str) -> dict[str, Any]:
        """The CreateEventSourceMapping parameters."""
        params: dict[str, Any] = {
            "EventSourceArn": queue_arn,
            "FunctionName": function_arn,
            "BatchSize": self.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
        }
        if self.maximum_concurrency:
            params["ScalingConfig"] = {"MaximumConcurrency": self.maximum_concurrency}
        return params

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
        # Below Extract's reserved concurrency, so that polling the queue never throttles the
        # continuations and re-drives, which invoke it asynchronously.
        maximum_concurrency=10,
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
    rewrites: str = ""
    """``bucket/prefix`` whose objects it reads, writes and deletes (s3:GetObject, s3:PutObject,
    s3:DeleteObject on ``arn:aws:s3:::bucket/prefix*``)."""

    def rule(self) -> dict[str, Any]:
        """The EventBridge PutRule parameters of its schedule."""
        return {"Name": f"{self.function}-schedule", "ScheduleExpression": self.schedule, "State": "ENABLED"}


def scheduled_functions(config: PipelineConfig) -> dict[str, ScheduledFunction]:
    """The chain's scheduled functions: Extract's reconciler, the Redshift loader, the compactor and the rollup."""
    r = config.resources
    window = config.redshift.load_error_window_minutes
    return {
        "redshift_loader": ScheduledFunction(
            function="clickstream-etl-redshift-loader",
            handler="load.redshift_handler.handler",
            # Each run reports the COPY errors of the last window: one run per window reports each once.
            schedule=f"rate({window} minute{'s' if window != 1 else ''})",
            # A statement is polled up to redshift.max_polls times (10 minutes by default).
            timeout_s=900,
            reserved_concurrency=1,  # merges never overlap (a second would wait on the first's lock)
        ),
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
        ),
        "compactor": ScheduledFunction(
            function="clickstream-etl-compactor",
            handler="load.compact_handler.handler",
            # Natural duplicates leave a partition within load.compact_after_hours plus one period.
            schedule="rate(1 hour)",
            # It stops between partitions when little time is left; the next run goes on.
            timeout_s=900,
            # Two runs at once would be safe (load/compaction.py) but would only do the same work twice.
            reserved_concurrency=1,
            lists_bucket=r.output_bucket,
            rewrites=f"{r.output_bucket}/{r.events_prefix}",
        ),
        # The dashboard's daily rollups (issue 16): re-rolls only the days whose event objects
        # changed (today's, as the sink writes it); the dashboard is at most one period behind.
        "rollup": ScheduledFunction(
            function="clickstream-etl-rollup",
            handler="load.rollup_handler.handler",
            schedule="rate(1 hour)",
            timeout_s=900,
            reserved_concurrency=1,  # two runs would write the same files; one is enough
            lists_bucket=r.output_bucket,
        ),
    }


PipelineMode = Literal["streaming", "direct"]
PIPELINE_MODES: Final[tuple[PipelineMode, ...]] = ("streaming", "direct")
"""The template's ``PipelineMode``: the streams' chain, or one S3-triggered function per object."""


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function of the deployment, as template.yaml declares it (tests keep the two equal)."""

    function: str
    """Its name with the default ``NamePrefix``."""
    handler: str
    artifact: str
    """The folder ``clickstream-etl package`` builds its code in (``lambda-artifacts/<artifact>/``)."""
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int
    modes: tuple[PipelineMode, ...]
    """The pipeline modes that deploy it."""
    pyarrow_layer: bool = False
    """Runs with the pyarrow layer (Extract and Transform never do: cold starts)."""
    redshift: bool = False
    """Deployed only when the template's ``RedshiftMode`` is not ``none``."""
    collector: bool = False
    """Deployed only when the template's ``Collector`` is not ``disabled`` (issue 15)."""


def functions(config: PipelineConfig) -> dict[str, FunctionSpec]:
    """Every function of the deployment, by its logical id in template.yaml."""
    mappings = stream_mappings(config)
    scheduled = scheduled_functions(config)
    reconciler, loader = scheduled["extract_reconciler"], scheduled["redshift_loader"]
    compactor = scheduled["compactor"]
    rollup = scheduled["rollup"]
    return {
        "ExtractFunction": FunctionSpec(
            EXTRACT_FUNCTION, "extract.handler.handler", "extract", 512, EXTRACT_TIMEOUT_S, 20, ("streaming",)
        ),
        "ExtractReconcilerFunction": FunctionSpec(
            reconciler.function,
            reconciler.handler,
            "extract",
            256,
            reconciler.timeout_s,
            reconciler.reserved_concurrency,
            # In direct mode it re-drives objects to the direct function, which keeps the same ledger.
            PIPELINE_MODES,
        ),
        # More memory is more CPU: parsing, enrichment and validation are CPU-bound.
        "TransformFunction": FunctionSpec(
            mappings["transform"].function, "transform.handler.handler", "transform", 1024, 120, 20, ("streaming",)
        ),
        "ParquetSinkFunction": FunctionSpec(
            mappings["parquet_sink"].function,
            "load.sink_handler.handler",
            "load",
            1024,
            300,
            20,
            ("streaming",),
            pyarrow_layer=True,
        ),
        # Firehose invokes it synchronously and waits at most 5 minutes; it recommends at least 1.
        "FirehoseTransformFunction": FunctionSpec(
            "clickstream-etl-firehose-transform",
            "load.firehose_handler.handler",
            "load",
            256,
            120,
            20,
            ("streaming",),
            redshift=True,
        ),
        "RedshiftLoaderFunction": FunctionSpec(
            loader.function,
            loader.handler,
            "load",
            256,
            loader.timeout_s,
            loader.reserved_concurrency,
            ("streaming",),
            redshift=True,
        ),
        # The merge of an hour partition is CPU-bound; 1769 MB is one full vCPU.  Both modes
        # write the dataset the compactor deduplicates.
        "CompactorFunction": FunctionSpec(
            compactor.function,
            compactor.handler,
            "load",
            1769,
            compactor.timeout_s,
            compactor.reserved_concurrency,
            PIPELINE_MODES,
            pyarrow_layer=True,
        ),
        # The dashboard's rollups (issue 16): reads a changed day's events with pyarrow, writes
        # rollups/ beside them; both modes write the dataset it reads.
        "RollupFunction": FunctionSpec(
            rollup.function,
            rollup.handler,
            "load",
            1024,
            rollup.timeout_s,
            rollup.reserved_concurrency,
            PIPELINE_MODES,
            pyarrow_layer=True,
        ),
        # The collector (issue 15): one request per invocation, about 0.13 ms of CPU and a PutRecords
        # round trip it waits for; 256 MB keeps the duration a fifth of the request price
        # (config/prices.toml) at the cost of slower cold starts. Reserving caps a public endpoint's bill.
        "CollectorFunction": FunctionSpec(
            COLLECTOR_FUNCTION,
            "extract.collector.handler",
            "extract",
            256,
            COLLECTOR_TIMEOUT_S,
            20,
            ("streaming",),
            collector=True,
        ),
        # One whole object per invocation (the file core); 1769 MB is one full vCPU.
        "DirectFunction": FunctionSpec(
            "clickstream-etl-direct",
            "pipeline.app.direct.handler",
            "direct",
            1769,
            900,
            15,
            ("direct",),
            pyarrow_layer=True,
        ),
    }
