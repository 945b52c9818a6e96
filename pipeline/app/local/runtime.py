"""``clickstream-etl run-local``: the whole serverless chain on a laptop, on moto.

It creates the configured resources, uploads the logs and drives the chain as AWS would:

* S3 notifications go to an SQS queue (moto delivers them); messages are handed to the
  Extract handler in SQS-shaped events and deleted only when it succeeds and does not
  report them as batch item failures.  Continuations of checkpointed objects, and objects
  the Extract reconciler re-drives when the chain is quiet, are invoked the same way.
* Stream 1 feeds the Transform handler and stream 2 the Parquet sink, through the event
  source mapping simulator (:mod:`pipeline.app.local.esm`): batch size, checkpoints at the
  lowest reported failure, retries, bisection, on-failure records.
* Stream 2 also feeds an emulated Firehose (:mod:`pipeline.app.local.firehose`) that runs the
  transformation Lambda and delivers to S3, since moto's Firehose never reads Kinesis.

Then it reconciles every stage and can copy the outputs out, in the backfill's layout.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from extract.handler import build_deps as build_extract_deps
from extract.handler import continuation_event
from extract.handler import handle as extract_handle
from extract.notifications import ObjectNotice
from extract.reconciler import ReconcileDeps, ReconcileSettings, reconcile
from load.firehose_handler import handle as handle_firehose
from load.sink_handler import build_deps as build_sink_deps
from load.sink_handler import handle as handle_sink
from pipeline.app.local.esm import EsmSettings, KinesisPoller
from pipeline.app.local.firehose import FirehoseEmulator
from pipeline.app.progress import NoProgress, Progress
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import create_table
from pipeline.config import PipelineConfig
from pipeline.constants import AWS_CREDENTIAL_ENVS
from pipeline.errors import PipelineError
from pipeline.testing.lambda_events import FakeLambdaContext
from pipeline.topology import NOTIFICATION_QUEUE, StreamMapping, stream_mappings
from transform.handler import build_deps as build_transform_deps
from transform.handler import handle as transform_handle
from transform.stage import TransformOutput

LOG_PREFIX: Final = "cloudfront/"
MAX_MESSAGE_ATTEMPTS: Final = 3
MAX_ROUNDS: Final = 1000


def firehose_errors_prefix(config: PipelineConfig) -> str:
    """Where the emulated Firehose keeps failed records (as ``ErrorOutputPrefix`` would)."""
    return config.resources.firehose_prefix + "errors/"


def esm_settings(mapping: StreamMapping) -> EsmSettings:
    """The simulator's settings for a deployed mapping (the same values, see pipeline.topology)."""
    return EsmSettings(
        batch_size=mapping.batch_size,
        bisect_batch_on_function_error=mapping.bisect_on_error,
        maximum_retry_attempts=mapping.maximum_retry_attempts,
        report_batch_item_failures=mapping.report_batch_item_failures,
    )


class LocalRunError(PipelineError):
    """The local chain could not be set up or driven."""


@dataclass
class Reconciliation:
    """What every stage saw; each stage's inputs are accounted for by its outputs."""

    objects: int = 0
    lines_read: int = 0
    lines_shipped: int = 0
    extract_bad: int = 0
    extract_skipped: int = 0
    raw_records: int = 0
    transform_invocations: int = 0
    transform_records: int = 0
    transform_lines: int = 0
    events: int = 0
    transform_bad: int = 0
    transform_skipped: int = 0
    event_chunks: int = 0
    distinct_events: int = 0
    """Events after natural deduplication (same event_id and fingerprint)."""
    sink_invocations: int = 0
    parquet_rows: int = 0
    parquet_distinct_events: int = 0
    parquet_objects: int = 0
    bad_rows: int = 0
    bad_by_kind: Counter[str] = field(default_factory=Counter)
    firehose_ok: int = 0
    firehose_dropped: int = 0
    firehose_failed: int = 0
    firehose_rows: int = 0
    redelivered_records: int = 0
    discarded_batches: int = 0
    failed_notifications: int = 0
    redriven_objects: int = 0
    cross_batch_dedupe: bool = True
    """When off (``stream.cross_batch_dedupe``), natural duplicates across batches may stay in Parquet."""
    """Objects found by the reconciler (their notification was lost) and processed."""
    skipped_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def extract_conserved(self) -> bool:
        return self.lines_read == self.lines_shipped + self.extract_bad + self.extract_skipped

    @property
    def transform_conserved(self) -> bool:
        return self.transform_lines == self.events + self.transform_bad + self.transform_skipped

    @property
    def complete(self) -> bool:
        """Every stage conserved its input and every event reached both sinks exactly once."""
        return (
            self.extract_conserved
            and self.transform_conserved
            and self.transform_lines == self.lines_shipped
            and self.parquet_distinct_events == self.distinct_events
            and (self.parquet_rows == self.distinct_events or not self.cross_batch_dedupe)
            and self.firehose_rows == self.distinct_events
            and self.bad_rows == self.extract_bad + self.transform_bad
            and self.discarded_batches == 0
            and self.failed_notifications == 0
        )

    def to_json(self) -> dict[str, Any]:
        out = {k: (dict(sorted(v.items())) if isinstance(v, Counter) else v) for k, v in vars(self).items()}
        out["complete"] = self.complete
        return out

    def render(self) -> str:
        ok = "ok" if self.complete else "MISMATCH"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.bad_by_kind.items())) or "none"
        rows = [
            ("S3 objects", f"{self.objects}"),
            (
                "extract",
                f"{self.lines_read} lines = {self.lines_shipped} shipped + {self.extract_bad} bad "
                f"+ {self.extract_skipped} skipped -> {self.raw_records} raw records",
            ),
            (
                "transform",
                f"{self.transform_lines} lines = {self.events} events + {self.transform_bad} bad "
                f"+ {self.transform_skipped} skipped ({self.distinct_events} distinct) "
                f"-> {self.event_chunks} event records",
            ),
            (
                "parquet sink",
                f"{self.parquet_rows} rows ({self.parquet_distinct_events} distinct events) "
                f"in {self.parquet_objects} objects",
            ),
            (
                "firehose",
                f"{self.firehose_rows} rows for Redshift ({self.firehose_ok} ok, {self.firehose_dropped} dropped, "
                f"{self.firehose_failed} failed records)",
            ),
            (
                "bad rows",
                f"{self.bad_rows} in S3 ({kinds})",
            ),
            (
                "delivery",
                f"{self.redelivered_records} records redelivered, {self.discarded_batches} batches discarded, "
                f"{self.failed_notifications} notifications failed, {self.redriven_objects} objects re-driven",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {text}" for name, text in rows]
        lines.append(f"{'reconciled'.ljust(width)}  {ok}")
        return "\n".join(lines)


@contextmanager
def serve_moto() -> Iterator[str]:
    """A moto server on 127.0.0.1, on a free port, in a thread of this process; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    _list_moto_services_once()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _list_moto_services_once() -> None:
    """Make moto's server list its service names once rather than on every request.

    To tell a service from a request's host it lists its own package folder, a stat of each of
    some 150 entries, under a lock that serialises every request: about a third of a small GET's
    time (8.0 ms a GET, 5.4 ms listed once, measured here).  The folder cannot change while we run.
    """
    import moto.backends

    listing = moto.backends.list_of_moto_modules
    if not hasattr(listing, "cache_info"):  # not yet replaced in this process
        moto.backends.list_of_moto_modules = functools.cache(lambda: tuple(listing()))


@contextmanager
def emulated_aws(*, server: bool) -> Iterator[str]:
    """moto in-process (``server=False``) or a moto server on 127.0.0.1; yields the endpoint ("" in-process).

    Fake credentials are set for the duration, so nothing can reach a real AWS account.
    """
    saved = {k: os.environ.get(k) for k in AWS_CREDENTIAL_ENVS}
    os.environ.update(dict.fromkeys(AWS_CREDENTIAL_ENVS, "testing"))
    try:
        if server:
            with serve_moto() as endpoint:
                yield endpoint
        else:
            from moto import mock_aws

            with mock_aws():
                yield ""
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalChain:
    """The deployed chain, emulated.  Clients must point at moto (see :func:`emulated_aws`)."""

    def __init__(
        self,
        config: PipelineConfig,
        *,
        shards: int = 2,
        sink_observer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``sink_observer`` hears each response of the Parquet sink handler as it returns (the loadtest
        times its objects with it)."""
        self._sink_observer = sink_observer
        # moto's backends are not thread-safe: the sink's conditional writes go one at a time here.
        config = dataclasses.replace(config, stream=dataclasses.replace(config.stream, dedupe_concurrency=1))
        self.config = config
        self.shards = shards
        self._mappings = {name: esm_settings(m) for name, m in stream_mappings(config).items()}
        aws = config.aws
        self.s3 = make_client("s3", aws)
        self.sqs = make_client("sqs", aws)
        self.kinesis = make_client("kinesis", aws)
        self.dynamodb = make_client("dynamodb", aws)
        self.queue_url = ""
        self.continuations: list[ObjectNotice] = []
        self.report = Reconciliation(cross_batch_dedupe=config.stream.cross_batch_dedupe)
        self._attempts: Counter[str] = Counter()
        self._distinct: set[tuple[str, str]] = set()
        self._transform_outputs: dict[str, tuple[int, int, int, Counter[str], int]] = {}
        self._poller = KinesisPoller(self.kinesis)
        resources = config.resources
        self.extract_deps = build_extract_deps(
            config, s3=self.s3, kinesis=self.kinesis, dynamodb=self.dynamodb, continue_later=self.continuations.append
        )
        self.transform_deps = build_transform_deps(config, s3=self.s3, kinesis=self.kinesis)
        self.sink_deps = build_sink_deps(config, s3=self.s3, dynamodb=self.dynamodb)
        # The deployed reconciler's code, re-driving into the local continuations.  Nothing here
        # is a late notification (the chain is quiet when it runs), so objects need no age.
        self.reconcile_settings = ReconcileSettings(resources.log_bucket, LOG_PREFIX, min_age_ms=0)
        self.reconcile_deps = ReconcileDeps(
            config, self.s3, self.extract_deps.ledger, redrive=self.continuations.append
        )
        self.firehose = FirehoseEmulator(
            self.kinesis,
            self.s3,
            resources.events_stream,
            resources.output_bucket,
            prefix=resources.firehose_prefix,
            error_prefix=firehose_errors_prefix(config),
            transform=lambda event, _context: handle_firehose(event),
            delivery_stream_name=resources.redshift_firehose,
            region=aws.region,
        )

    # ------------------------------------------------------------------ setup
    def create_resources(self) -> None:
        """Buckets, streams, the ledger table and the notification queue, as named in config."""
        r = self.config.resources
        for bucket in dict.fromkeys((r.log_bucket, r.output_bucket)):
            self.s3.create_bucket(Bucket=bucket)
        for stream in (r.raw_stream, r.events_stream):
            self.kinesis.create_stream(StreamName=stream, ShardCount=self.shards)
        create_table(self.dynamodb, r.ledger_table)
        self.queue_url = self.sqs.create_queue(QueueName=NOTIFICATION_QUEUE)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.s3.put_bucket_notification_configuration(
            Bucket=r.log_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": LOG_PREFIX}]}},
                    }
                ]
            },
        )

    def upload(self, paths: Sequence[str], progress: Progress | None = None) -> list[str]:
        """Upload log files under ``cloudfront/`` (their base names kept, as event ids use them)."""
        progress = progress or NoProgress()
        progress.phase("uploading", len(paths), "file")
        keys: list[str] = []
        for path in paths:
            key = LOG_PREFIX + os.path.basename(path)
            with open(path, "rb") as body:
                self.s3.put_object(Bucket=self.config.resources.log_bucket, Key=key, Body=body.read())
            keys.append(key)
            progress.update(len(keys))
        self.report.objects += len(keys)
        return keys

    # ------------------------------------------------------------------ driving
    def _context(self, function: str) -> FakeLambdaContext:
        return FakeLambdaContext(remaining_ms=900_000, function_name=function)

    def _run_extract(self, event: dict[str, Any]) -> bool:
        """Whether the invocation consumed its event: it did not fail nor report a batch item failure."""
        try:
            response = extract_handle(event, self._context("clickstream-etl-extract"), self.extract_deps)
        except PipelineError:
            return False
        for item in response["objects"]:
            self.report.lines_read += item["lines_read"]
            self.report.lines_shipped += item["lines_shipped"]
            self.report.extract_bad += item["bad"]
            self.report.extract_skipped += item["skipped"]
            self.report.raw_records += item["records"]
        return not response["batchItemFailures"]

    def _notifications(self) -> int:
        """Deliver queued S3 notifications to Extract; returns how many messages were handled."""
        handled = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return handled
            for message in messages:
                handled += 1
                event = {
                    "Records": [
                        {
                            "messageId": message["MessageId"],
                            "receiptHandle": message["ReceiptHandle"],
                            "body": message["Body"],
                            "eventSource": "aws:sqs",
                        }
                    ]
                }
                ok = self._run_extract(event)
                self._attempts[message["MessageId"]] += 1
                if ok or self._attempts[message["MessageId"]] >= MAX_MESSAGE_ATTEMPTS:
                    if not ok:
                        self.report.failed_notifications += 1
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _continue(self) -> int:
        done = 0
        while self.continuations:
            notice = self.continuations.pop(0)
            done += 1
            if not self._run_extract(continuation_event(notice)):
                self.report.failed_notifications += 1
        return done

    def _transform(self, event: dict[str, Any], context: Any) -> Any:
        return transform_handle(event, context, self.transform_deps, on_output=self._count_transform)

    def _count_transform(self, output: TransformOutput) -> None:
        # Keyed by batch: a redelivered record replaces its earlier count instead of adding to it.
        self._transform_outputs[output.batch_id] = (
            output.lines,
            len(output.events),
            len(output.bad),
            Counter(output.skipped),
            len(output.chunks),
        )
        self._distinct.update((e["event_id"], e["event_fingerprint"]) for e in output.events)

    def _sink(self, event: dict[str, Any], context: Any) -> Any:
        response = handle_sink(event, self.sink_deps)
        if self._sink_observer is not None:
            self._sink_observer(response)
        return response

    def step(self) -> tuple[int, int]:
        """One round of the chain's work: notifications and continuations to Extract, stream 1 to
        Transform, stream 2 to the Parquet sink and the emulated Firehose.

        Returns the messages (notifications, continuations) and the stream records handled; (0, 0)
        when the chain was quiet.  :meth:`run` repeats it; the loadtest interleaves it with its puts.
        """
        messages = self._notifications() + self._continue()
        transform = self._poller.drain(
            self.config.resources.raw_stream,
            self._transform,
            self._mappings["transform"],
            context_factory=lambda: self._context("clickstream-etl-transform"),
        )
        sink = self._poller.drain(
            self.config.resources.events_stream,
            self._sink,
            self._mappings["parquet_sink"],
            context_factory=lambda: self._context("clickstream-etl-parquet-sink"),
        )
        firehose = self.firehose.drain()
        for result in (transform, sink):
            self.report.redelivered_records += result.duplicates
            self.report.discarded_batches += len(result.discarded)
        self.report.transform_invocations += transform.invocations
        self.report.sink_invocations += sink.invocations
        self.report.firehose_ok += firehose.ok
        self.report.firehose_dropped += firehose.dropped
        self.report.firehose_failed += firehose.failed
        return messages, transform.records_in + sink.records_in + firehose.records_in

    def run(self, progress: Progress | None = None) -> Reconciliation:
        """Drive the chain until nothing is left to do, then reconcile.

        ``progress`` hears, after each round, how many records the stages have taken in.
        """
        progress = progress or NoProgress()
        progress.phase("running the chain", 0, "record")
        records = 0
        for round_number in range(1, MAX_ROUNDS + 1):
            messages, stream_records = self.step()
            progressed = messages + stream_records
            records += stream_records
            progress.update(
                records,
                f"round {round_number}: {self.report.transform_invocations} transform and "
                f"{self.report.sink_invocations} sink invocations",
            )
            if not progressed:
                # Quiet: re-drive objects whose notification was lost, as the reconciler does in AWS.
                reconciled = reconcile(
                    self.reconcile_settings,
                    self.reconcile_deps,
                    remaining_ms=self._context("clickstream-etl-extract-reconciler").get_remaining_time_in_millis,
                )
                if not reconciled.total_redriven and reconciled.stopped == "end":
                    break
                self.report.redriven_objects += reconciled.total_redriven
        else:  # pragma: no cover - a runaway loop would be a bug
            raise LocalRunError(f"the chain did not settle after {MAX_ROUNDS} rounds")
        progress.close()
        report = self.report
        report.transform_records = len(self._transform_outputs)
        for lines, events, bad, skipped, chunks in self._transform_outputs.values():
            report.transform_lines += lines
            report.events += events
            report.transform_bad += bad
            report.transform_skipped += sum(skipped.values())
            report.skipped_by_reason.update(skipped)
            report.event_chunks += chunks
        report.distinct_events = len(self._distinct)
        self._read_back()
        return self.report

    # ------------------------------------------------------------------ outputs
    def _objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        bucket = self.config.resources.output_bucket
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"], self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()

    def _read_back(self) -> None:
        import pyarrow.parquet as pq

        r = self.config.resources
        ids: set[tuple[str, str]] = set()
        for _key, body in self._objects(r.events_prefix):
            table = pq.read_table(io.BytesIO(body), columns=["event_id", "event_fingerprint"])
            self.report.parquet_objects += 1
            self.report.parquet_rows += table.num_rows
            ids.update(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
        self.report.parquet_distinct_events = len(ids)
        for key, body in self._objects(r.bad_prefix):
            kind = key[len(r.bad_prefix) :].split("/", 1)[0]
            count = sum(1 for line in body.splitlines() if line.strip())
            self.report.bad_rows += count
            self.report.bad_by_kind[kind] += count
        redshift_ids: set[tuple[str, str]] = set()
        for key, body in self._objects(r.firehose_prefix):
            if key.startswith(firehose_errors_prefix(self.config)):
                continue
            for line in body.splitlines():
                if line.strip():
                    row = json.loads(line)
                    redshift_ids.add((row["event_id"], row.get("event_fingerprint")))
        self.report.firehose_rows = len(redshift_ids)

    def export(self, dest: Path) -> None:
        """Copy the Parquet dataset to ``DEST/events/`` and the bad rows to ``DEST/bad/<kind>/``."""
        r = self.config.resources
        for folder in ("events", "bad"):
            shutil.rmtree(dest / folder, ignore_errors=True)
        for key, body in self._objects(r.events_prefix):
            target = dest / "events" / key[len(r.events_prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        for key, body in self._objects(r.bad_prefix):
            kind, date, name = key[len(r.bad_prefix) :].split("/", 2)
            target = dest / "bad" / kind / f"{date.removeprefix('date=')}-{name.replace('/', '_')}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        (dest / "_reconciliation.json").write_text(json.dumps(self.report.to_json(), indent=2) + "\n")
