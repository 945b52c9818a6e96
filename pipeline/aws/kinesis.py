"""Putting records on Kinesis durably: request planning within limits, and bounded retries.

PutRecords is not atomic: HTTP 200 can carry per-entry failures (``FailedRecordCount`` > 0,
entries with an ``ErrorCode``).  :class:`KinesisWriter` resends only the failed entries,
with exponential backoff and full jitter, and retries whole-call throttling and service
errors; it returns only once every entry has a sequence number, else raises
:class:`KinesisPutError` (transient: the caller must not acknowledge its input).
See https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pipeline.aws.errors import AwsFault, aws_exceptions, classify
from pipeline.config import StreamConfig
from pipeline.errors import TerminalError, TransientError
from pipeline.pacing import Cost, Pacer

MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 5 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1024 * 1024
"""A record's data plus its partition key's UTF-8 bytes."""


class KinesisPutError(TransientError):
    """Some records could not be put after the bounded retries; retry the input later."""


class KinesisAccessError(TerminalError):
    """Kinesis refused the call for a reason retries will not fix (permissions, missing stream, KMS key)."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode("utf-8"))


class RecordWriter(Protocol):
    """Puts records on a stream; returns only once every record is durable (else raises)."""

    def put(self, records: Sequence[OutRecord]) -> None: ...


class PacedWriter:
    """A :class:`RecordWriter` that waits for its :class:`~pipeline.pacing.Pacer` before each put.

    A put starts once the pacer's buckets are out of debt and then debits its records and bytes
    (data and partition keys), so over any window the puts started stay within the pacer's rates
    plus one put's size.
    """

    def __init__(self, inner: RecordWriter, pacer: Pacer) -> None:
        self._inner = inner
        self._pacer = pacer
        self.stats = getattr(inner, "stats", None)  # the handler reads the inner writer's retry counts

    def put(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        self._pacer.acquire(Cost(len(records), sum(r.size for r in records)))
        self._inner.put(records)


@dataclass
class PutStats:
    records: int = 0
    calls: int = 0
    retried_entries: int = 0
    throttled_calls: int = 0


def plan_requests(
    records: Sequence[OutRecord],
    max_records: int = MAX_RECORDS_PER_CALL,
    max_bytes: int = MAX_BYTES_PER_CALL,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[list[int]]:
    """Group record indices, in order, into PutRecords requests within the API's limits.

    Raises ValueError for a record over ``max_record_bytes``: callers size their records
    so that this cannot happen, and a silent drop would lose data.
    """
    group: list[int] = []
    size = 0
    for index, record in enumerate(records):
        record_size = record.size
        if record_size > max_record_bytes:
            raise ValueError(f"record {index} is {record_size} bytes with its key; the limit is {max_record_bytes}")
        if group and (len(group) >= max_records or size + record_size > max_bytes):
            yield group
            group, size = [], 0
        group.append(index)
        size += record_size
    if group:
        yield group


class KinesisWriter:
    """Puts records on one stream; returns only when every record is durable."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        config: StreamConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._stream = stream_name
        self._config = config
        self._sleep = sleep
        self._jitter = jitter
        self.stats = PutStats()

    def put(self, records: Sequence[OutRecord]) -> None:
        for group in plan_requests(records, max_record_bytes=self._config.record_max_bytes):
            self._put_group([records[i] for i in group])

    def _backoff(self, attempt: int) -> None:
        cap = min(self._config.put_max_delay_ms, self._config.put_base_delay_ms * 2**attempt)
        self._sleep(self._jitter() * cap / 1000)

    def _put_group(self, pending: list[OutRecord]) -> None:
        attempts = max(self._config.put_max_attempts, 1)
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                self._backoff(attempt - 1)
            self.stats.calls += 1
            try:
                response = self._client.put_records(
                    StreamName=self._stream,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
                )
            except aws_exceptions() as exc:
                # Access denied, a missing stream or a disabled key will not heal by retrying.
                failure = classify(exc)
                if not failure.retryable:
                    raise KinesisAccessError(f"PutRecords to {self._stream} failed: {failure.code}") from exc
                if failure.fault is AwsFault.THROTTLED:
                    self.stats.throttled_calls += 1
                last_problem = failure.code
                continue
            results = response.get("Records", [])
            if len(results) != len(pending):
                raise KinesisPutError(f"PutRecords returned {len(results)} results for {len(pending)} records")
            failed = [record for record, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
            self.stats.records += len(pending) - len(failed)
            if not failed:
                return
            codes = sorted({str(r.get("ErrorCode")) for r in results if r.get("ErrorCode")})
            last_problem = f"{len(failed)} entries failed ({', '.join(codes)})"
            self.stats.retried_entries += len(failed)
            pending = failed
        raise KinesisPutError(
            f"{len(pending)} records not accepted by {self._stream} after {attempts} attempts: {last_problem}"
        )
