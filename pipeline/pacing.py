"""Pacing writes to a Kinesis stream within its shards' write limits: a token bucket on an injected clock.

A shard takes 1,000 records/s and 1 MiB/s of writes
(https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html).  A replay of
historical logs must leave room for the live traffic, so it paces itself to a share of that:
the CLI paces its asynchronous invocations of Extract (``pipeline.app.replay``), and an Extract
invocation started by the replay state machine paces its own PutRecords calls to the share its
batch input carries (``extract.handler``), so ``MaxConcurrency`` invocations together stay within
the stream's limits.  Pure: no AWS, no wall clock unless one is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pipeline.errors import ConfigError

SHARD_RECORDS_PER_S: Final = 1000
SHARD_BYTES_PER_S: Final = 1024 * 1024
DEFAULT_SHARE: Final = 0.8
"""Of the shards' limits a replay takes by default, leaving the rest to the live traffic."""


class PacingError(ConfigError):
    """Rates that cannot pace anything (zero or negative); fix the arguments or the batch input."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What a write (or an object's writes) puts on the stream: records, and bytes (data plus partition keys)."""

    records: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Records/s and bytes/s a replay may put on stream 1, and how far ahead it may burst (seconds)."""

    records_per_s: float
    bytes_per_s: float
    burst_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.records_per_s > 0 and self.bytes_per_s > 0 and self.burst_s >= 0):
            raise PacingError("rates must be above 0 and the burst at least 0")

    @classmethod
    def for_shards(cls, shards: int, share: float = DEFAULT_SHARE) -> RateLimits:
        """``share`` of ``shards`` shards' write limits."""
        if shards < 1:
            raise PacingError(f"a stream has at least one shard, got {shards}")
        return cls(SHARD_RECORDS_PER_S * shards * share, SHARD_BYTES_PER_S * shards * share)

    def shared_by(self, writers: int) -> RateLimits:
        """Each of ``writers`` concurrent writers' part, so that together they stay within these limits."""
        if writers < 1:
            raise PacingError(f"limits are shared by at least one writer, got {writers}")
        return RateLimits(self.records_per_s / writers, self.bytes_per_s / writers, self.burst_s)

    def to_json(self) -> dict[str, float]:
        return {"records_per_s": self.records_per_s, "bytes_per_s": self.bytes_per_s, "burst_s": self.burst_s}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RateLimits:
        """The limits :meth:`to_json` wrote; :class:`PacingError` when a rate is missing or not a positive number."""
        try:
            return cls(
                float(document["records_per_s"]), float(document["bytes_per_s"]), float(document.get("burst_s", 0.0))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PacingError(f"pace must hold positive records_per_s and bytes_per_s, got {dict(document)!r}") from exc


class Pacer:
    """A two-dimensional token bucket (records, bytes) on an injected clock and sleep.

    Starts full (``burst_s`` worth of each); :meth:`acquire` waits until neither bucket is in
    debt, then debits the cost, which may put a bucket in debt (an object larger than the burst
    still goes, and the ones after it wait for the debt to be paid).
    """

    def __init__(self, limits: RateLimits, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._capacity = (limits.records_per_s * limits.burst_s, limits.bytes_per_s * limits.burst_s)
        self._tokens = list(self._capacity)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(now - self._last, 0.0)
        self._last = now
        rates = (self._limits.records_per_s, self._limits.bytes_per_s)
        for index in (0, 1):
            self._tokens[index] = min(self._capacity[index], self._tokens[index] + rates[index] * elapsed)

    def wait_for(self) -> float:
        """Seconds until the next acquisition may start (0: now)."""
        self._refill()
        return max(
            0.0,
            -self._tokens[0] / self._limits.records_per_s,
            -self._tokens[1] / self._limits.bytes_per_s,
        )

    def acquire(self, cost: Cost) -> float:
        """Wait (with the injected sleep) until ``cost`` may start, debit it; returns the seconds waited."""
        delay = self.wait_for()
        if delay > 0:
            # One sleep: time.sleep never returns early (PEP 475), and a fake clock may not move by
            # less than its float's resolution, so the debt is paid by the delay, clamped at zero.
            self._sleep(delay)
            now = self._clock()
            elapsed = max(now - self._last, delay)
            self._last = max(now, self._last)
            rates = (self._limits.records_per_s, self._limits.bytes_per_s)
            for index in (0, 1):
                refilled = max(self._tokens[index] + rates[index] * elapsed, 0.0)
                self._tokens[index] = min(self._capacity[index], refilled)
        self._tokens[0] -= cost.records
        self._tokens[1] -= cost.bytes
        return delay
