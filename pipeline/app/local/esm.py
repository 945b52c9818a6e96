"""A Kinesis -> Lambda event source mapping (ESM) simulator, and a poller that feeds it from a stream.

moto's ESM invokes a function once per ``put_record`` with a one-record event, and never batches,
retries, bisects or honours ``ReportBatchItemFailures`` (reference ``reliability.md`` sections 2.2
and 5).  :func:`simulate` applies AWS's rules to the ordered records of ONE shard and calls the
handler in-process:

* batches of at most ``batch_size`` records (and at most the 6 MB synchronous invocation payload);
* a null/empty response, or an empty/null ``batchItemFailures`` list, is a complete success;
* with ``report_batch_item_failures``: the checkpoint moves to the LOWEST reported sequence number
  and every record from there to the end of the batch is retried -- including records that had
  succeeded, which are therefore delivered again (duplicates).  An ``itemIdentifier`` that is empty,
  null, missing or not a sequence number of the batch makes the whole batch a failure;
* without ``report_batch_item_failures`` the response is ignored: a partial failure counts as
  success and the checkpoint moves past the failed records (the loss AWS causes; see
  :attr:`EsmOutcome.ignored_failures`);
* a handler exception is a function error: the whole batch is retried; with
  ``bisect_batch_on_function_error`` a batch of two or more records is split in two halves
  (splitting does not consume retry quota) and the halves are processed in order;
* after ``maximum_retry_attempts`` retries, or once the oldest record of the batch is older than
  ``maximum_record_age_s``, the batch is discarded: the on-failure destination receives metadata
  only (:class:`DiscardedBatch`, like an SQS/SNS destination) and the checkpoint moves past it.

Modelling choices (documented, not AWS-verified): a partial-failure retry re-delivers exactly the
remainder of the failed batch (AWS re-reads from the checkpoint and may add newer records);
a retry after a partial failure counts against ``maximum_retry_attempts``; an invalid
``itemIdentifier`` is handled like a function error (so it bisects when bisect is on); a response
that is not a JSON object is treated as success.  ``maximum_batching_window_s`` is accepted for
fidelity but has no effect: batches are formed from the records available.

AWS's defaults retry forever (``-1``/``-1``), which blocks the shard until the records expire from
the stream.  A simulation must terminate, so :func:`simulate` rejects that combination unless
``blocked_after_attempts`` is given; then a batch that keeps failing stops the simulation with
``blocked=True`` and the checkpoint before it, as a real blocked shard would.

:class:`KinesisPoller` reads a stream (moto's or AWS's) through an injected boto3 Kinesis client,
shard by shard, and keeps per-shard checkpoints, so repeated :meth:`KinesisPoller.drain` calls
deliver only new records.  Shards are read in shard-id order; after resharding, parents sort
before their children, which keeps per-key order for the usual split/merge histories.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Final, Literal

from pipeline.aws.errors import aws_exceptions, error_code
from pipeline.errors import ConfigError, TerminalError, TransientError
from pipeline.testing.lambda_events import (
    DEFAULT_ACCOUNT,
    DEFAULT_KINESIS_STREAM_ARN,
    FakeLambdaContext,
    KinesisRecord,
    kinesis_event,
)

Handler = Callable[[dict[str, Any], Any], Any]
StartingPosition = Literal["TRIM_HORIZON", "LATEST"]
InvocationResult = Literal["success", "partial_failure", "function_error", "invalid_response"]
DiscardCondition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]

# Lambda's synchronous invocation payload limit; an ESM never builds a bigger batch.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
# The event around its records: {"Records":[...]}.
_EVENT_OVERHEAD_BYTES: Final = len('{"Records":[]}')
DEFAULT_FUNCTION_ARN: Final = f"arn:aws:lambda:us-east-1:{DEFAULT_ACCOUNT}:function:clickstream-etl-transform"


class EsmConfigError(ConfigError):
    """The ESM settings are invalid, or cannot be simulated to completion; the message says what to set."""


class EsmSimulationError(TerminalError):
    """The simulator was given input it cannot model (several shards, unordered records, runaway retries)."""


class StreamReadError(TransientError):
    """Reading the source stream failed (throttling, network); the next drain retries from the checkpoint."""


class StreamNotFoundError(TerminalError):
    """The source stream or shard does not exist; create it (or fix the name) before draining."""


@dataclass(frozen=True)
class EsmSettings:
    """The event source mapping parameters the simulator honours (AWS names in snake case, AWS defaults).

    ``maximum_retry_attempts`` and ``maximum_record_age_s`` use ``-1`` for "infinite", as AWS does.
    """

    batch_size: int = 100
    maximum_batching_window_s: float = 0
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    report_batch_item_failures: bool = True
    starting_position: StartingPosition = "TRIM_HORIZON"

    def __post_init__(self) -> None:
        # Ranges from the CreateEventSourceMapping API reference.
        if not 1 <= self.batch_size <= 10_000:
            raise EsmConfigError(f"batch_size must be 1..10000, got {self.batch_size}")
        if not 0 <= self.maximum_batching_window_s <= 300:
            raise EsmConfigError(f"maximum_batching_window_s must be 0..300, got {self.maximum_batching_window_s}")
        if self.maximum_retry_attempts != -1 and not 0 <= self.maximum_retry_attempts <= 10_000:
            raise EsmConfigError(f"maximum_retry_attempts must be -1 or 0..10000, got {self.maximum_retry_attempts}")
        if self.maximum_record_age_s != -1 and not 60 <= self.maximum_record_age_s <= 604_800:
            raise EsmConfigError(f"maximum_record_age_s must be -1 or 60..604800, got {self.maximum_record_age_s}")
        if self.starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise EsmConfigError(f"starting_position must be TRIM_HORIZON or LATEST, got {self.starting_position!r}")

    @property
    def retries_infinite(self) -> bool:
        return self.maximum_retry_attempts == -1


@dataclass(frozen=True)
class Invocation:
    """One call of the handler: which records it got, on which attempt, and how it ended."""

    index: int
    sequence_numbers: tuple[str, ...]
    attempt: int  # 0 = first delivery of this range of records, n = n-th retry
    result: InvocationResult
    reported_failures: tuple[str, ...] = ()
    ignored: bool = False  # a partial failure ignored because ReportBatchItemFailures is off
    error: str | None = None

    @property
    def first_sequence_number(self) -> str:
        return self.sequence_numbers[0]

    @property
    def last_sequence_number(self) -> str:
        return self.sequence_numbers[-1]

    @property
    def size(self) -> int:
        return len(self.sequence_numbers)


def _iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class DiscardedBatch:
    """What an SQS/SNS on-failure destination receives for a discarded batch: metadata, not records.

    The records themselves must be re-read from the stream by sequence number before retention ends.
    """

    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int
    approximate_arrival_of_first_record: float
    approximate_arrival_of_last_record: float
    condition: DiscardCondition
    approximate_invoke_count: int
    stream_arn: str
    sequence_numbers: tuple[str, ...]  # for assertions; not part of AWS's record
    function_error: str | None = None

    def to_destination_record(
        self, *, function_arn: str = DEFAULT_FUNCTION_ARN, timestamp: float = 0.0
    ) -> dict[str, Any]:
        """The JSON document AWS sends to an SQS/SNS on-failure destination for this batch."""
        return {
            "requestContext": {
                "requestId": f"{self.shard_id}:{self.start_sequence_number}",
                "functionArn": function_arn,
                "condition": self.condition,
                "approximateInvokeCount": self.approximate_invoke_count,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if self.function_error else None,
            },
            "version": "1.0",
            "timestamp": _iso(timestamp or self.approximate_arrival_of_last_record),
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": self.start_sequence_number,
                "endSequenceNumber": self.end_sequence_number,
                "approximateArrivalOfFirstRecord": _iso(self.approximate_arrival_of_first_record),
                "approximateArrivalOfLastRecord": _iso(self.approximate_arrival_of_last_record),
                "batchSize": self.batch_size,
                "streamArn": self.stream_arn,
            },
        }


@dataclass(frozen=True)
class EsmOutcome:
    """Everything one simulated shard went through.

    ``deliveries`` maps every input sequence number to how many times the handler received it
    (0 for records discarded without delivery).  ``checkpoint`` is the sequence number of the last
    record the mapping moved past (processed or discarded), ``None`` when it did not move.
    """

    shard_id: str | None
    records_in: int
    invocations: tuple[Invocation, ...]
    deliveries: Mapping[str, int]
    discarded: tuple[DiscardedBatch, ...]
    ignored_failures: tuple[str, ...]
    checkpoint: str | None
    blocked: bool = False

    @property
    def duplicates(self) -> int:
        """Re-deliveries: deliveries beyond the first, summed over records."""
        return sum(count - 1 for count in self.deliveries.values() if count > 1)

    @property
    def discarded_sequence_numbers(self) -> tuple[str, ...]:
        return tuple(seq for batch in self.discarded for seq in batch.sequence_numbers)

    @property
    def undelivered(self) -> tuple[str, ...]:
        """Sequence numbers the handler never received."""
        return tuple(seq for seq, count in self.deliveries.items() if count == 0)


@dataclass
class _Range:
    """Records ``[start, end)`` of the shard list, and the retries already spent on them."""

    start: int
    end: int
    retries: int = 0


_INVALID: Final = "invalid"


def _reported_failures(response: Any, index_of: Mapping[str, int]) -> list[int] | str | None:
    """Indexes of the records a response reports as failed; ``None`` = success, ``"invalid"`` = full failure."""
    if not isinstance(response, Mapping):
        return None  # null response (or not an object): complete success
    items = response.get("batchItemFailures")
    if items is None or (isinstance(items, list) and not items):
        return None
    if not isinstance(items, list):
        return _INVALID
    indexes: list[int] = []
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in index_of:
            return _INVALID  # empty/null/unknown itemIdentifier or wrong key name: whole batch failed
        indexes.append(index_of[identifier])
    return indexes


def _check_shard_records(records: Sequence[KinesisRecord]) -> None:
    shards = {record.shard_id for record in records}
    if len(shards) > 1:
        raise EsmSimulationError(f"simulate() models one shard; got records of {sorted(shards)} -- group by shard_id")
    numbers = [int(record.sequence_number) for record in records]
    if any(b <= a for a, b in pairwise(numbers)):
        raise EsmSimulationError(
            "records must be in strictly increasing sequence-number order, as a shard returns them"
        )


def _payload_bytes(record: KinesisRecord, stream_arn: str) -> int:
    """What ``record`` adds to an invocation's payload: its entry of the event as compact JSON, and a comma.

    Measured, not estimated: a record's envelope (ARNs, event id, names) is over 400 bytes, so
    a 10,000-record batch of small records was 6.5 MB when estimated with 400.
    """
    entry = kinesis_event([record], stream_arn=stream_arn)["Records"][0]
    return len(json.dumps(entry, separators=(",", ":"))) + 1


def _batch_end(records: Sequence[KinesisRecord], start: int, batch_size: int, stream_arn: str) -> int:
    end, payload = start, _EVENT_OVERHEAD_BYTES
    limit = min(len(records), start + batch_size)
    while end < limit:
        payload += _payload_bytes(records[end], stream_arn)
        if payload > MAX_PAYLOAD_BYTES and end > start:
            break
        end += 1
    return end


def simulate(  # noqa: PLR0912, PLR0915 - Lambda's event source mapping as one state machine, in AWS's documented order
    records: Sequence[KinesisRecord],
    handler: Handler,
    settings: EsmSettings | None = None,
    *,
    stream_arn: str = DEFAULT_KINESIS_STREAM_ARN,
    context_factory: Callable[[], Any] | None = None,
    clock: Callable[[], float] | None = None,
    blocked_after_attempts: int | None = None,
    max_invocations: int = 100_000,
) -> EsmOutcome:
    """Deliver the ordered ``records`` of one shard to ``handler`` under the ESM rules of ``settings``.

    ``handler(event, context)`` is called in-process with :func:`~pipeline.testing.lambda_events.kinesis_event`
    batches and ``context_factory()`` (default: a fresh :class:`FakeLambdaContext`).  ``clock``
    (epoch seconds) decides record age; without it time stands still at the newest arrival.
    With infinite retries, ``blocked_after_attempts`` is required unless records can age out
    (finite ``maximum_record_age_s`` and a ``clock``); a batch that fails that many times in a row
    stops the simulation with ``blocked=True``.

    Raises :class:`EsmConfigError` for a simulation that could never end and
    :class:`EsmSimulationError` for multi-shard or unordered input or more than ``max_invocations`` calls.
    """
    settings = settings or EsmSettings()
    _check_shard_records(records)
    if settings.retries_infinite and blocked_after_attempts is None:
        if settings.maximum_record_age_s == -1 or clock is None:
            raise EsmConfigError(
                "maximum_retry_attempts=-1 retries a failing batch until its records expire (AWS's default: "
                "a poison record blocks the shard for up to the stream retention). Set maximum_retry_attempts, "
                "or maximum_record_age_s together with a clock, or pass blocked_after_attempts to model the block."
            )
    make_context: Callable[[], Any] = context_factory or FakeLambdaContext
    frozen_now = max((record.arrival for record in records), default=0.0)
    now: Callable[[], float] = clock or (lambda: frozen_now)
    index_of = {record.sequence_number: i for i, record in enumerate(records)}

    deliveries = {record.sequence_number: 0 for record in records}
    invocations: list[Invocation] = []
    discarded: list[DiscardedBatch] = []
    ignored: list[str] = []
    pending: list[_Range] = []  # ranges to (re)try before reading further; contiguous, in order
    position = 0  # checkpoint: records[:position] are behind the mapping
    blocked = False

    def discard(rng: _Range, condition: DiscardCondition, error: str | None) -> None:
        batch = records[rng.start : rng.end]
        discarded.append(
            DiscardedBatch(
                shard_id=batch[0].shard_id,
                start_sequence_number=batch[0].sequence_number,
                end_sequence_number=batch[-1].sequence_number,
                batch_size=len(batch),
                approximate_arrival_of_first_record=batch[0].arrival,
                approximate_arrival_of_last_record=batch[-1].arrival,
                condition=condition,
                approximate_invoke_count=rng.retries + (0 if condition == "RecordAgeExceeded" else 1),
                stream_arn=stream_arn,
                sequence_numbers=tuple(r.sequence_number for r in batch),
                function_error=error,
            )
        )

    while pending or position < len(records):
        if pending:
            rng = pending.pop(0)
        else:
            rng = _Range(position, _batch_end(records, position, settings.batch_size, stream_arn))
        batch = records[rng.start : rng.end]
        if (
            settings.maximum_record_age_s != -1
            and now() - min(r.arrival for r in batch) > settings.maximum_record_age_s
        ):
            discard(rng, "RecordAgeExceeded", None)
            position = rng.end
            continue
        if len(invocations) >= max_invocations:
            raise EsmSimulationError(f"more than {max_invocations} invocations; is the handler failing forever?")

        for record in batch:
            deliveries[record.sequence_number] += 1
        error: str | None = None
        response: Any = None
        try:
            response = handler(kinesis_event(batch, stream_arn=stream_arn), make_context())
        except Exception as exc:  # the Lambda runtime boundary: any exception is a function error
            error = f"{type(exc).__name__}: {exc}"
        failures = None if error else _reported_failures(response, index_of)
        if isinstance(failures, list) and any(not rng.start <= i < rng.end for i in failures):
            failures = _INVALID  # an id of another batch is "not in the batch"

        result: InvocationResult
        if error:
            result = "function_error"
        elif failures is None:
            result = "success"
        elif not settings.report_batch_item_failures:
            result = "success"  # AWS ignores the response: the checkpoint moves past the failures
        elif failures == _INVALID:
            result = "invalid_response"
        else:
            result = "partial_failure"
        reported = tuple(records[i].sequence_number for i in failures) if isinstance(failures, list) else ()
        is_ignored = not settings.report_batch_item_failures and failures is not None
        invocations.append(
            Invocation(
                index=len(invocations),
                sequence_numbers=tuple(r.sequence_number for r in batch),
                attempt=rng.retries,
                result=result,
                reported_failures=reported,
                ignored=is_ignored,
                error=error or ("invalid batchItemFailures" if result == "invalid_response" else None),
            )
        )
        if is_ignored:
            ignored.extend(reported)

        if result == "success":
            position = rng.end
            continue
        if result == "partial_failure" and isinstance(failures, list):
            position = min(failures)  # checkpoint at the lowest reported sequence number
            retry = _Range(position, rng.end, rng.retries + 1)
        elif settings.bisect_batch_on_function_error and len(batch) > 1:
            middle = rng.start + len(batch) // 2  # splitting does not consume retry quota
            pending[:0] = [_Range(rng.start, middle, rng.retries), _Range(middle, rng.end, rng.retries)]
            position = rng.start
            continue
        else:
            position = rng.start
            retry = _Range(rng.start, rng.end, rng.retries + 1)

        if not settings.retries_infinite and retry.retries > settings.maximum_retry_attempts:
            retry.retries -= 1  # the attempts made, not the one refused
            discard(retry, "RetryAttemptsExhausted", error or result)
            position = retry.end
        elif (
            blocked_after_attempts is not None and settings.retries_infinite and retry.retries >= blocked_after_attempts
        ):
            blocked = True
            break
        else:
            pending.insert(0, retry)

    return EsmOutcome(
        shard_id=records[0].shard_id if records else None,
        records_in=len(records),
        invocations=tuple(invocations),
        deliveries=deliveries,
        discarded=tuple(discarded),
        ignored_failures=tuple(ignored),
        checkpoint=records[position - 1].sequence_number if position > 0 else None,
        blocked=blocked,
    )


# --------------------------------------------------------------------------------------------
# Reading a stream
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    """What one :meth:`KinesisPoller.drain` did, per shard."""

    stream_name: str
    outcomes: Mapping[str, EsmOutcome] = field(default_factory=dict)

    @property
    def records_in(self) -> int:
        return sum(o.records_in for o in self.outcomes.values())

    @property
    def invocations(self) -> int:
        return sum(len(o.invocations) for o in self.outcomes.values())

    @property
    def duplicates(self) -> int:
        return sum(o.duplicates for o in self.outcomes.values())

    @property
    def discarded(self) -> tuple[DiscardedBatch, ...]:
        return tuple(batch for o in self.outcomes.values() for batch in o.discarded)

    @property
    def blocked_shards(self) -> tuple[str, ...]:
        return tuple(shard for shard, o in self.outcomes.items() if o.blocked)


def _wrap_client_error(exc: Exception, what: str) -> Exception:
    if error_code(exc) == "ResourceNotFoundException":
        return StreamNotFoundError(f"{what}: {exc}")
    return StreamReadError(f"{what}: {exc}")


class KinesisPoller:
    """Reads a Kinesis stream shard by shard through an injected boto3 client, with per-shard checkpoints.

    :meth:`read` returns the records after each shard's checkpoint (from ``TRIM_HORIZON`` or
    ``LATEST`` for a shard never read); :meth:`commit` moves a checkpoint; :meth:`drain` runs
    :func:`simulate` on every shard and commits the outcome's checkpoint; :meth:`poll` reads and
    commits everything (what Firehose does).  Checkpoints live in this object only, so use one
    poller per consumer (one per event source mapping, one per delivery stream), as each AWS
    consumer keeps its own position in the stream.
    """

    def __init__(
        self,
        kinesis_client: Any,
        *,
        get_records_limit: int = 10_000,
        max_calls_per_shard: int = 10_000,
    ) -> None:
        self._client = kinesis_client
        self._limit = get_records_limit
        self._max_calls = max_calls_per_shard
        self._checkpoints: dict[tuple[str, str], str] = {}
        self._latest_iterators: dict[tuple[str, str], str] = {}
        self._arns: dict[str, str] = {}

    def stream_arn(self, stream_name: str) -> str:
        """The stream's ARN (looked up once)."""
        if stream_name not in self._arns:
            try:
                summary = self._client.describe_stream_summary(StreamName=stream_name)
            except aws_exceptions() as exc:
                raise _wrap_client_error(exc, f"describing stream {stream_name!r}") from exc
            self._arns[stream_name] = summary["StreamDescriptionSummary"]["StreamARN"]
        return self._arns[stream_name]

    def shard_ids(self, stream_name: str) -> list[str]:
        """All shard ids of the stream (paginated ``ListShards``), sorted."""
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": stream_name}
        try:
            while True:
                page = self._client.list_shards(**kwargs)
                shards.extend(shard["ShardId"] for shard in page.get("Shards", []))
                token = page.get("NextToken")
                if not token:
                    break
                kwargs = {"NextToken": token}
        except aws_exceptions() as exc:
            raise _wrap_client_error(exc, f"listing shards of {stream_name!r}") from exc
        return sorted(shards)

    def checkpoint(self, stream_name: str, shard_id: str) -> str | None:
        """The last sequence number committed for the shard, or ``None``."""
        return self._checkpoints.get((stream_name, shard_id))

    def commit(self, stream_name: str, shard_id: str, sequence_number: str) -> None:
        """Move the shard's checkpoint to ``sequence_number`` (never backwards)."""
        key = (stream_name, shard_id)
        current = self._checkpoints.get(key)
        if current is None or int(sequence_number) > int(current):
            self._checkpoints[key] = sequence_number

    def read_shard(
        self, stream_name: str, shard_id: str, starting_position: StartingPosition = "TRIM_HORIZON"
    ) -> list[KinesisRecord]:
        """Records of one shard after its checkpoint, read until caught up (nothing is committed)."""
        key = (stream_name, shard_id)
        checkpoint = self._checkpoints.get(key)
        records: list[KinesisRecord] = []
        try:
            if checkpoint is not None:
                iterator = self._client.get_shard_iterator(
                    StreamName=stream_name,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    StartingSequenceNumber=checkpoint,
                )["ShardIterator"]
            elif starting_position == "LATEST":
                # Remember where "latest" was when this shard was first seen, so later reads start there.
                if key not in self._latest_iterators:
                    self._latest_iterators[key] = self._client.get_shard_iterator(
                        StreamName=stream_name, ShardId=shard_id, ShardIteratorType="LATEST"
                    )["ShardIterator"]
                iterator = self._latest_iterators[key]
            else:
                iterator = self._client.get_shard_iterator(
                    StreamName=stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            for _ in range(self._max_calls):
                response = self._client.get_records(ShardIterator=iterator, Limit=self._limit)
                page = response.get("Records", [])
                records.extend(
                    KinesisRecord(
                        data=bytes(item["Data"]),
                        partition_key=item["PartitionKey"],
                        sequence_number=item["SequenceNumber"],
                        shard_id=shard_id,
                        arrival=_epoch_seconds(item.get("ApproximateArrivalTimestamp")),
                    )
                    for item in page
                )
                iterator = response.get("NextShardIterator")
                # Caught up: nothing returned and not behind the tip; or the shard is closed.
                if not iterator or (not page and response.get("MillisBehindLatest", 0) == 0):
                    break
        except aws_exceptions() as exc:
            raise _wrap_client_error(exc, f"reading {stream_name!r}/{shard_id}") from exc
        if checkpoint is None and starting_position == "LATEST" and not records and iterator:
            self._latest_iterators[key] = iterator
        return records

    def read(
        self, stream_name: str, starting_position: StartingPosition = "TRIM_HORIZON"
    ) -> dict[str, list[KinesisRecord]]:
        """New records of every shard (shard id -> records in order); nothing is committed."""
        return {shard: self.read_shard(stream_name, shard, starting_position) for shard in self.shard_ids(stream_name)}

    def poll(
        self, stream_name: str, starting_position: StartingPosition = "TRIM_HORIZON"
    ) -> dict[str, list[KinesisRecord]]:
        """Like :meth:`read`, then commits the last record of every shard."""
        batches = self.read(stream_name, starting_position)
        for shard, records in batches.items():
            if records:
                self.commit(stream_name, shard, records[-1].sequence_number)
        return batches

    def drain(
        self,
        stream_name: str,
        handler: Handler,
        settings: EsmSettings | None = None,
        *,
        context_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] | None = None,
        blocked_after_attempts: int | None = None,
        max_invocations: int = 100_000,
    ) -> DrainResult:
        """Deliver every shard's new records to ``handler`` with :func:`simulate`; commit each outcome's checkpoint.

        A blocked shard keeps its checkpoint before the failing batch, so the next drain retries it.
        """
        settings = settings or EsmSettings()
        arn = self.stream_arn(stream_name)
        outcomes: dict[str, EsmOutcome] = {}
        for shard, records in self.read(stream_name, settings.starting_position).items():
            outcome = simulate(
                records,
                handler,
                settings,
                stream_arn=arn,
                context_factory=context_factory,
                clock=clock,
                blocked_after_attempts=blocked_after_attempts,
                max_invocations=max_invocations,
            )
            if outcome.checkpoint is not None:
                self.commit(stream_name, shard, outcome.checkpoint)
            outcomes[shard] = outcome
        return DrainResult(stream_name, outcomes)


def _epoch_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return time.time()


__all__ = [
    "DiscardedBatch",
    "DrainResult",
    "EsmConfigError",
    "EsmOutcome",
    "EsmSettings",
    "EsmSimulationError",
    "Invocation",
    "KinesisPoller",
    "StreamNotFoundError",
    "StreamReadError",
    "simulate",
]
