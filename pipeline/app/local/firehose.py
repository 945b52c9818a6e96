"""A local Firehose delivery stream with a Kinesis source, a transformation Lambda and an S3 destination.

moto's Firehose never reads a Kinesis source and never runs a transformation Lambda (reference
``reliability.md`` section 5), so :class:`FirehoseEmulator` does both, against injected boto3
Kinesis and S3 clients (moto's in tests).  :meth:`FirehoseEmulator.drain` reads the records that
arrived since the last drain (with :class:`~pipeline.app.local.esm.KinesisPoller`) and processes them.

Emulated (section 2.4 and the Firehose data-transformation docs):

* buffering for the transformation: consecutive records of a shard are grouped into invocations of
  at most ``buffer_bytes`` of record data (the processor's ``BufferSizeInMBs``: default 1 MB, at most
  3 MB; smaller values are accepted so tests can force several invocations);
* the event: :func:`~pipeline.testing.lambda_events.firehose_event` with ``sourceKinesisStreamArn`` and
  ``kinesisRecordMetadata``; record ids are stable (shard id + sequence number);
* the response contract: a JSON object with a ``records`` list holding every input ``recordId``
  exactly once, ``result`` in ``Ok``/``Dropped``/``ProcessingFailed``, ``data`` valid base64 (required
  for ``Ok``), and at most 6 MB of JSON.  A violation fails every record of the invocation with
  ``Lambda.MissingRecordId``, ``Lambda.DuplicatedRecordId``, ``Lambda.JsonProcessingException`` or
  ``Lambda.FunctionError`` (bad base64, oversized response), without retry;
* a transformation that raises is an invocation failure: retried ``retries`` times (default 3),
  then all its records fail with ``Lambda.FunctionError`` (``attemptsMade`` = retries + 1);
* delivery: the decoded ``data`` of ``Ok`` records, concatenated in input order with no delimiter,
  becomes one S3 object per invocation at
  ``<prefix>YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>`` (UTC, from the arrival time of
  the invocation's first record; the uuid is derived from the record ids, so the same input gives
  the same key); ``Dropped`` records are counted only;
* errors: failed records become JSON lines ``{attemptsMade, arrivalTimestamp, errorCode,
  errorMessage, attemptEndingTimestamp, rawData, lambdaArn}`` (``rawData`` = the original record,
  base64; ``ProcessingFailed`` records get ``Lambda.ProcessingFailedStatus``) in one object per
  invocation at ``<error_prefix>processing-failed/YYYY/MM/DD/HH/...``.

Not emulated: the S3 destination buffer (Firehose usually packs several invocations into one
object; here each invocation is one object), buffering intervals and time-based flushing,
compression, ``!{timestamp:}``/``!{firehose:...}`` prefix expressions, dynamic partitioning,
record format conversion (Parquet/ORC), the Redshift COPY step, KPL de-aggregation, S3 delivery
retries (a failing ``put_object`` raises :class:`FirehoseDeliveryError`; the checkpoint stays before
the undelivered records, so the next drain re-delivers them, possibly duplicating), and
Lambda timeouts (the handler runs to completion in-process).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.app.local.esm import KinesisPoller, StartingPosition
from pipeline.aws.errors import aws_exceptions
from pipeline.errors import ConfigError, TerminalError, TransientError
from pipeline.testing.lambda_events import (
    DEFAULT_ACCOUNT,
    FakeLambdaContext,
    FirehoseInputRecord,
    KinesisRecord,
    firehose_event,
)

Transform = Callable[[dict[str, Any], Any], Any]

DEFAULT_BUFFER_BYTES: Final = 1_048_576  # Lambda processor BufferSizeInMBs default: 1 MB
MAX_BUFFER_BYTES: Final = 3 * 1_048_576  # ... at most 3 MB
MAX_RESPONSE_BYTES: Final = 6 * 1024 * 1024  # synchronous Lambda response limit
DEFAULT_RETRIES: Final = 3  # Firehose's default retry count for a failed invocation
RESULTS: Final = frozenset({"Ok", "Dropped", "ProcessingFailed"})

PROCESSING_FAILED_STATUS: Final = ("Lambda.ProcessingFailedStatus", "ProcessingFailed status set for record")
FUNCTION_ERROR_MESSAGE: Final = "The Lambda function was successfully invoked but it returned an error result."


class FirehoseConfigError(ConfigError):
    """The emulator was configured with values Firehose would reject; the message names the setting."""


class FirehoseDeliveryError(TransientError):
    """Writing to the S3 destination failed; records after the last checkpoint are re-delivered next drain."""


@dataclass(frozen=True)
class FirehoseDrainSummary:
    """What one :meth:`FirehoseEmulator.drain` did: ``records_in == ok + dropped + failed``."""

    records_in: int = 0
    ok: int = 0
    dropped: int = 0
    failed: int = 0
    invocations: int = 0  # transformation calls, retries included
    failed_invocations: int = 0  # calls that raised or broke the response contract
    objects_written: tuple[str, ...] = ()
    error_objects: tuple[str, ...] = ()
    error_codes: Mapping[str, int] = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return self.records_in == self.ok + self.dropped + self.failed


@dataclass(frozen=True)
class _Failure:
    code: str
    message: str


@dataclass(frozen=True)
class _Verdict:
    """The fate of one input record after its invocation(s)."""

    result: str  # Ok | Dropped | ProcessingFailed
    data: bytes = b""
    failure: _Failure | None = None
    attempts: int = 1


class TransformContractError(TerminalError):
    """A transformation response breaks Firehose's contract; ``code`` is the Firehose error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def validate_response(response: Any, record_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:  # noqa: PLR0912 - one check per rule of Firehose's response contract, each with its own message
    """Check a transformation response against Firehose's contract; map each record id to (result, data).

    Raises :class:`TransformContractError` naming the Firehose error code on the first breach.
    """
    try:
        size = len(json.dumps(response).encode())
    except (TypeError, ValueError) as exc:
        raise TransformContractError("Lambda.JsonProcessingException", f"response is not JSON: {exc}") from exc
    if size > MAX_RESPONSE_BYTES:
        raise TransformContractError("Lambda.FunctionError", f"response of {size} bytes exceeds the 6 MB limit")
    items = response.get("records") if isinstance(response, Mapping) else None
    if not isinstance(items, list):
        raise TransformContractError("Lambda.JsonProcessingException", "response must be an object with a records list")
    expected = set(record_ids)
    out: dict[str, tuple[str, bytes]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise TransformContractError("Lambda.JsonProcessingException", f"output record is not an object: {item!r}")
        record_id, result, data = item.get("recordId"), item.get("result"), item.get("data")
        if record_id in out:
            raise TransformContractError(
                "Lambda.DuplicatedRecordId",
                f"multiple records were returned with record id {record_id!r}; return each input record once",
            )
        if not isinstance(record_id, str) or record_id not in expected:
            raise TransformContractError(
                "Lambda.MissingRecordId", f"record id {record_id!r} was not in the invocation; echo input record ids"
            )
        if result not in RESULTS:
            raise TransformContractError(
                "Lambda.JsonProcessingException",
                f"result {result!r} of {record_id} is not Ok, Dropped or ProcessingFailed",
            )
        if data is None and result == "Ok":
            raise TransformContractError("Lambda.JsonProcessingException", f"Ok record {record_id} has no data")
        decoded = b""
        if data is not None:
            if not isinstance(data, str):
                raise TransformContractError("Lambda.FunctionError", f"data of {record_id} is not a base64 string")
            try:
                decoded = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise TransformContractError(
                    "Lambda.FunctionError", f"data of {record_id} is not valid base64"
                ) from exc
        out[record_id] = (str(result), decoded)
    missing = [record_id for record_id in record_ids if record_id not in out]
    if missing:
        raise TransformContractError(
            "Lambda.MissingRecordId", f"{len(missing)} input record id(s) not returned, first {missing[0]!r}"
        )
    return out


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class FirehoseEmulator:
    """A Kinesis-sourced Firehose delivery stream writing to S3, driven by explicit :meth:`drain` calls.

    ``transform(event, context)`` is the transformation Lambda's handler (``None``: no processor,
    records are delivered as they are).  ``clock`` (epoch seconds) stamps ``attemptEndingTimestamp``.
    """

    def __init__(
        self,
        kinesis_client: Any,
        s3_client: Any,
        source_stream: str,
        bucket: str,
        prefix: str = "",
        error_prefix: str = "errors/",
        transform: Transform | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        *,
        delivery_stream_name: str = "clickstream-etl-delivery",
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT,
        lambda_arn: str | None = None,
        retries: int = DEFAULT_RETRIES,
        starting_position: StartingPosition = "TRIM_HORIZON",
        poller: KinesisPoller | None = None,
        context_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 1 <= buffer_bytes <= MAX_BUFFER_BYTES:
            raise FirehoseConfigError(f"buffer_bytes must be 1..{MAX_BUFFER_BYTES} (3 MB), got {buffer_bytes}")
        if not 0 <= retries <= 300:
            raise FirehoseConfigError(f"retries must be 0..300, got {retries}")
        self._s3 = s3_client
        self._poller = poller or KinesisPoller(kinesis_client)
        self.source_stream = source_stream
        self.bucket = bucket
        self.prefix = prefix
        self.error_prefix = error_prefix
        self.transform = transform
        self.buffer_bytes = buffer_bytes
        self.delivery_stream_name = delivery_stream_name
        self.delivery_stream_arn = f"arn:aws:firehose:{region}:{account_id}:deliverystream/{delivery_stream_name}"
        self.lambda_arn = (
            lambda_arn or f"arn:aws:lambda:{region}:{account_id}:function:{delivery_stream_name}-transform"
        )
        self.retries = retries
        self.starting_position: StartingPosition = starting_position
        self._context_factory: Callable[[], Any] = context_factory or (
            lambda: FakeLambdaContext(remaining_ms=300_000, function_name=self.lambda_arn.rsplit(":", 1)[-1])
        )
        self._clock: Callable[[], float] = clock or time.time

    # -- planning (pure) ------------------------------------------------------------------------

    def group(self, records: Sequence[KinesisRecord]) -> list[list[KinesisRecord]]:
        """Split one shard's records into invocations of at most ``buffer_bytes`` of data (at least one record)."""
        groups: list[list[KinesisRecord]] = []
        current: list[KinesisRecord] = []
        size = 0
        for record in records:
            if current and size + len(record.data) > self.buffer_bytes:
                groups.append(current)
                current, size = [], 0
            current.append(record)
            size += len(record.data)
        if current:
            groups.append(current)
        return groups

    def object_key(self, inputs: Sequence[FirehoseInputRecord], *, failed: bool = False) -> str:
        """The S3 key of the object holding ``inputs`` (delivered data, or their processing-failed lines)."""
        moment = _utc(inputs[0].arrival_ms)
        seed = f"{self.delivery_stream_arn}|{'failed' if failed else 'ok'}|{inputs[0].record_id}|{inputs[-1].record_id}"
        name = f"{self.delivery_stream_name}-1-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
        base = f"{self.error_prefix}processing-failed/" if failed else self.prefix
        return f"{base}{moment:%Y/%m/%d/%H}/{name}"

    # -- execution --------------------------------------------------------------------------------

    def drain(self) -> FirehoseDrainSummary:
        """Process every record that arrived on the source stream since the last drain.

        Raises :class:`FirehoseDeliveryError` when S3 refuses a write (the records of that invocation
        and after stay unconsumed) and the poller's stream errors when the source cannot be read.
        """
        source_arn = self._poller.stream_arn(self.source_stream)
        totals = {"records_in": 0, "ok": 0, "dropped": 0, "failed": 0, "invocations": 0, "failed_invocations": 0}
        objects: list[str] = []
        error_objects: list[str] = []
        codes: dict[str, int] = {}
        for shard, records in self._poller.read(self.source_stream, self.starting_position).items():
            for group in self.group(records):
                inputs = [
                    FirehoseInputRecord(
                        record_id=f"{r.shard_id}-{r.sequence_number}",
                        data=r.data,
                        arrival_ms=int(r.arrival * 1000),
                        source=r,
                    )
                    for r in group
                ]
                verdicts, calls, failed_calls = self._process(inputs, source_arn)
                totals["invocations"] += calls
                totals["failed_invocations"] += failed_calls
                self._deliver(inputs, verdicts, objects, error_objects)
                totals["records_in"] += len(inputs)
                for verdict in verdicts:
                    key = {"Ok": "ok", "Dropped": "dropped"}.get(verdict.result, "failed")
                    totals[key] += 1
                    if verdict.failure:
                        codes[verdict.failure.code] = codes.get(verdict.failure.code, 0) + 1
                self._poller.commit(self.source_stream, shard, group[-1].sequence_number)
        return FirehoseDrainSummary(
            **totals,
            objects_written=tuple(objects),
            error_objects=tuple(error_objects),
            error_codes=dict(sorted(codes.items())),
        )

    def _process(self, inputs: Sequence[FirehoseInputRecord], source_arn: str) -> tuple[list[_Verdict], int, int]:
        """Invoke the transformation (with retries); returns each record's verdict, calls made, calls failed."""
        if self.transform is None:
            return [_Verdict("Ok", record.data) for record in inputs], 0, 0
        record_ids = [record.record_id for record in inputs]
        failure: _Failure
        attempts = 0
        while True:
            attempts += 1
            event = firehose_event(
                inputs,
                stream_arn=self.delivery_stream_arn,
                source_kinesis_stream_arn=source_arn,
                invocation_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{record_ids[0]}|{record_ids[-1]}|{attempts}")),
            )
            try:
                response = self.transform(event, self._context_factory())
            except Exception as exc:  # the Lambda runtime boundary: any exception is a function error
                failure = _Failure("Lambda.FunctionError", f"{FUNCTION_ERROR_MESSAGE} {type(exc).__name__}: {exc}")
                if attempts <= self.retries:
                    continue  # invocation failures are retried
                break
            try:
                results = validate_response(response, record_ids)
            except TransformContractError as violation:
                failure = _Failure(violation.code, violation.message)
                break  # a broken response is not retried: the whole invocation fails
            verdicts = []
            for record_id in record_ids:
                result, data = results[record_id]
                if result == "ProcessingFailed":
                    verdicts.append(_Verdict(result, failure=_Failure(*PROCESSING_FAILED_STATUS), attempts=attempts))
                else:
                    verdicts.append(_Verdict(result, data, attempts=attempts))
            return verdicts, attempts, attempts - 1
        return [_Verdict("ProcessingFailed", failure=failure, attempts=attempts) for _ in inputs], attempts, attempts

    def _deliver(
        self,
        inputs: Sequence[FirehoseInputRecord],
        verdicts: Sequence[_Verdict],
        objects: list[str],
        error_objects: list[str],
    ) -> None:
        body = b"".join(v.data for v in verdicts if v.result == "Ok")
        if body:
            key = self.object_key(inputs)
            self._put(key, body)
            objects.append(key)
        ended_ms = int(self._clock() * 1000)
        lines = [
            json.dumps(
                {
                    "attemptsMade": verdict.attempts,
                    "arrivalTimestamp": record.arrival_ms,
                    "errorCode": verdict.failure.code,
                    "errorMessage": verdict.failure.message,
                    "attemptEndingTimestamp": ended_ms,
                    "rawData": base64.b64encode(record.data).decode("ascii"),
                    "lambdaArn": self.lambda_arn,
                },
                separators=(",", ":"),
            )
            for record, verdict in zip(inputs, verdicts, strict=True)
            if verdict.failure is not None
        ]
        if lines:
            key = self.object_key(inputs, failed=True)
            self._put(key, ("\n".join(lines) + "\n").encode())
            error_objects.append(key)

    def _put(self, key: str, body: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        except aws_exceptions() as exc:
            raise FirehoseDeliveryError(f"writing s3://{self.bucket}/{key}: {exc}") from exc


__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "MAX_BUFFER_BYTES",
    "FirehoseConfigError",
    "FirehoseDeliveryError",
    "FirehoseDrainSummary",
    "FirehoseEmulator",
    "TransformContractError",
    "validate_response",
]
