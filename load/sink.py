"""The Parquet sink over stream 2, the executor: claims, then Parquet objects on S3, then a commit.

:mod:`load.sink_plan` decides what a batch writes; this module does the I/O around it.

Chunks replayed upstream arrive again with new sequence numbers but the same chunk id (their
partition key); the ledger gives each chunk to one batch, so a replayed chunk is skipped.
Natural duplicates that arrive in different chunks (a tracker's retries, the same line in two
log files) land in different objects of their hour partition: the compaction of closed
partitions (:mod:`load.compaction`, every hour) rewrites each one with every natural event
once, within ``load.compact_after_hours`` plus one schedule period, and the Redshift merge
dedupes at load regardless.  So what the sink writes to DynamoDB is per chunk, not per event.
The per-event manifest is still there: with ``stream.cross_batch_dedupe = true`` the sink also
claims each (event_id, fingerprint) with a conditional put, as Snowplow's cross-batch
deduplication does, and writes each natural event once itself -- at one DynamoDB write per
event (about $0.77 per million events with its storage; ``clickstream-etl cost``).  Events are
validated before anything is written, so a malformed one becomes a bad row instead of failing
the batch.

Every event in exactly one object, whatever the grouping and the crash point
-----------------------------------------------------------------------------
Lambda retries a failed batch with other boundaries (grown or shrunk, bisected, re-driven
from the on-failure queue), and an attempt can die anywhere: after its claims, between two
puts, after its last put, in its undo, or outright (timeout, out of memory) with no undo at
all.  So a claim alone never means "written"; the record of the attempt that took it does.
An attempt at batch ``<shard>-<first seq>-<last seq>``:

1. **opens** the batch's ledger record as its live attempt (a fresh id, PENDING) with a lease
   that outlives the invocation: its Lambda deadline, or :data:`CLAIM_TAKEOVER_AGE_S` when it
   does not know it, plus :data:`LEASE_MARGIN_S` for clock skew;
2. **claims** each chunk, then each event: conditional puts naming batch and attempt.  A claim
   is *provisional* while its attempt is PENDING;
3. **lists** on its record the S3 keys it is about to write (its Parquet and bad-row objects);
4. **writes** them;
5. **commits**: one conditional update turns the record COMMITTED, and every claim of the
   attempt is final at once.  A batch writes several objects (one per hour, and bad rows), so
   "its object exists" is not one fact; the commit makes "all of them are durable" one.

A claim that meets another attempt's claim is judged by that attempt's record
(:func:`load.sink_plan.judge_holder`):

* COMMITTED: the events are in its objects (a replayed chunk, a natural duplicate): skip them.
* PENDING, and every output it listed exists (HEAD; S3 is strongly consistent): it died after
  its last put and before its commit.  Commit it on its behalf (*roll forward*) and skip.
* ABORTED, or PENDING past its lease: it is over.  Abort it if pending, delete every output it
  listed, then take its claims over.  Deleting first matters: its partial objects hold events
  of chunks that the taker writes again.
* PENDING within its lease: it may still be running.  Wait when the lease runs out soon
  (:data:`BUSY_WAIT_MAX_S`, within half the invocation's time), else raise
  :class:`SinkClaimBusyError` (transient): the batch is retried, and a retry after the lease
  takes over.

Why this is sound with DynamoDB's conditional writes alone: every change of a record or a claim
is conditional on the attempt and status that were read, so two live attempts never hold one
claim, and an attempt that was aborted can no longer commit.  Outputs are listed before the
first is put, and a new attempt at a batch deletes what its predecessor listed before it opens,
so a roll forward never commits a half-written batch and no stale object survives a takeover.
The lease is what keeps a taker off a holder that is still alive; it only has to outlive the
holder, as Lambda stops an invocation at its deadline, and its margin also covers a put sent
just before the end.  (Lambda runs one batch of a shard at a time, so a live holder is rare; a
holder that died early, out of memory, keeps its claims until its deadline, and retries of the
batch are refused until then.)  A retry with the same boundaries regains its batch's claims
(any attempt of the same batch may) after deleting what its dead predecessor listed; a batch
already committed is answered from its record, not written again.  Claim-after-write with
deterministic keys would not do with these keys: they come from a batch's boundaries, which a
regrouped retry does not share (keys per chunk would, at one small object per chunk and hour).

Undo: an attempt that fails with an exception aborts its record, deletes what it listed and
gives its claims back, so that a retry starts at once.  If that fails too, the error says so
(:class:`SinkUndoError`, transient; nothing is swallowed): the batch is retried, and the retry
takes the claims over -- at once when the abort was recorded, after the lease otherwise.  A
hard kill runs no undo at all; its claims wait out the lease.

Expiry: every claim and batch record carries ``expires_at`` = now + ``stream.dedupe_window_days``
(epoch seconds) for the table's TTL, which must be set on that attribute; a claim past it
counts as free even before TTL deletes it.  So a chunk replayed, or a natural duplicate,
within the window is written once; one arriving after the window is written again.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from load.errors import SinkClaimBusyError, SinkUndoError, SinkWriteError
from load.sink_plan import (
    Held,
    SinkRecord,
    batch_key,
    event_origin,
    judge_holder,
    plan_objects,
    records_from_event,
    screen_batch,
)
from pipeline.aws.badsink import BadRowWriter, plan_bad_objects
from pipeline.aws.errors import aws_exceptions, error_code
from pipeline.aws.ledger import ClaimHolder, SinkBatch, chunk_claim_id, event_claim_id
from pipeline.badrows import BadRow
from pipeline.config import PipelineConfig
from pipeline.iglu import Resolver

CLAIM_TAKEOVER_AGE_S: Final = 15 * 60
"""The lease of an attempt that does not know its deadline (run-local, tests): Lambda's
maximum timeout, so such an attempt has certainly ended once it runs out."""
LEASE_MARGIN_S: Final = 5
"""Added to every lease: the clocks of the hosts two attempts run on may differ a little, and a
put sent just before a kill may still land."""
BUSY_WAIT_MAX_S: Final = 30
"""How long an attempt waits, in all, for leases that run out soon, rather than fail: Lambda may
retry within the margin after a timeout, and every refused retry uses one of the batch's retries."""
_JUDGE_ROUNDS: Final = 3
"""Re-reads of a holder's record when it changed under a conditional write, before giving up (busy)."""
_MISSING_OBJECT_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class ClaimLedger(Protocol):
    """The ledger calls the sink makes (:class:`pipeline.aws.ledger.Ledger` in the deployed wiring)."""

    def sink_batch(self, key: str) -> SinkBatch | None: ...

    def open_sink_batch(
        self, key: str, attempt: str, *, lease_until_ms: int, expires_at_s: int, replacing: str | None
    ) -> bool: ...

    def record_sink_outputs(self, key: str, attempt: str, outputs: Sequence[str], rows_written: int) -> bool: ...

    def settle_sink_batch(self, key: str, attempt: str, status: Literal["COMMITTED", "ABORTED"]) -> bool: ...

    def claim_for_sink(
        self, claim_ids: Sequence[str], holder: ClaimHolder, *, expires_at_s: int, concurrency: int = 1
    ) -> list[ClaimHolder | None]: ...

    def take_over_claims(
        self,
        claim_ids: Sequence[str],
        previous: ClaimHolder,
        holder: ClaimHolder,
        *,
        expires_at_s: int,
        concurrency: int = 1,
    ) -> list[bool]: ...

    def release_claims(self, claim_ids: Sequence[str], holder: ClaimHolder) -> None: ...


@dataclass
class SinkResult:
    batch_key: str
    records: int = 0
    events: int = 0
    rows_written: int = 0
    replayed_chunks: int = 0
    duplicates_dropped: int = 0
    bad: list[BadRow] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    etl_tstamp: int = 0
    """Of the batch's first event: dates its bad rows (epoch when there is none)."""
    claims_taken_over: int = 0
    """Claims taken from attempts that were over without a commit (their events are written here)."""
    already_committed: bool = False
    """The batch was written and committed by an earlier attempt; nothing was written now."""


class _Objects:
    """The S3 calls of the protocol on the output bucket (Parquet and bad-row objects alike)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def put(self, key: str, body: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)
        except aws_exceptions() as exc:
            raise SinkWriteError(f"cannot write s3://{self._bucket}/{key}: {exc}") from exc

    def all_exist(self, keys: Sequence[str]) -> bool:
        for key in keys:
            try:
                self._s3.head_object(Bucket=self._bucket, Key=key)
            except aws_exceptions() as exc:
                if error_code(exc) in _MISSING_OBJECT_CODES:
                    return False
                raise SinkWriteError(f"cannot look up s3://{self._bucket}/{key}: {exc}") from exc
        return True

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:  # deleting a key that does not exist succeeds: repeating this is safe
            try:
                self._s3.delete_object(Bucket=self._bucket, Key=key)
            except aws_exceptions() as exc:
                raise SinkWriteError(f"cannot delete s3://{self._bucket}/{key}: {exc}") from exc


class _Attempt:
    """One attempt at one batch: its ledger record, the claims it holds, and how to give them back."""

    def __init__(
        self,
        ledger: ClaimLedger,
        objects: _Objects,
        key: str,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        lease_s: float,
        wait_s: float,
        expires_at_s: int,
        concurrency: int,
    ) -> None:
        self._ledger = ledger
        self._objects = objects
        self._clock = clock
        self._sleep = sleep
        self._wait_left_s = wait_s
        self._lease_s = lease_s
        self._expires_at_s = expires_at_s
        self._concurrency = concurrency
        self.holder = ClaimHolder(key, uuid.uuid4().hex)
        self.claims: list[str] = []
        """The claim ids this attempt holds, to give back if it fails."""
        self.outputs: list[str] = []
        self.taken_over = 0
        self._verdicts: dict[ClaimHolder, Held] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def open(self) -> SinkBatch | None:
        """Become the batch's live attempt; the batch's record instead when it is committed already."""
        key = self.holder.batch
        for _ in range(_JUDGE_ROUNDS):
            current = self._ledger.sink_batch(key)
            replacing = None
            if current is not None:
                verdict = self._settle(ClaimHolder(key, current.attempt), current)
                if verdict is None:
                    continue
                if verdict is Held.DONE:
                    return current
                replacing = current.attempt  # TAKE_OVER: its predecessor's outputs are gone
            lease_until_ms = int((self._clock() + self._lease_s + LEASE_MARGIN_S) * 1000)
            if self._ledger.open_sink_batch(
                key,
                self.holder.attempt,
                lease_until_ms=lease_until_ms,
                expires_at_s=self._expires_at_s,
                replacing=replacing,
            ):
                return None
        raise SinkClaimBusyError(f"batch {key} is being written by another attempt; retry later")

    def _settle(self, holder: ClaimHolder, batch: SinkBatch | None) -> Held | None:
        """DONE or TAKE_OVER for ``holder``, doing what the verdict asks (roll forward, abandon);
        None when its record changed (or a lease was waited out) and must be read again.

        Raises :class:`SinkClaimBusyError` when the holder may still be running.
        """
        now_ms = self._now_ms()
        verdict = judge_holder(holder, batch, now_ms=now_ms)
        if batch is None or verdict in (Held.DONE, Held.TAKE_OVER):
            return verdict
        if verdict is Held.CHECK_OUTPUTS:
            exist = self._objects.all_exist(batch.outputs or ())
            verdict = judge_holder(holder, batch, now_ms=now_ms, outputs_exist=exist)
        if verdict is Held.ROLL_FORWARD:
            committed = self._ledger.settle_sink_batch(batch.key, batch.attempt, "COMMITTED")
            return Held.DONE if committed else None
        if verdict is Held.ABANDON:
            if batch.status == "PENDING" and not self._ledger.settle_sink_batch(batch.key, batch.attempt, "ABORTED"):
                return None
            self._objects.delete(batch.outputs or ())
            return Held.TAKE_OVER
        wait_s = (batch.lease_until_ms - now_ms) / 1000 + 0.1  # BUSY
        if wait_s <= self._wait_left_s:
            self._wait_left_s -= wait_s
            self._sleep(wait_s)
            return None
        raise SinkClaimBusyError(
            f"batch {batch.key} (attempt {batch.attempt}) may still be running until {batch.lease_until_ms} ms "
            "and holds claims this batch needs; retry later"
        )

    def _judge(self, holder: ClaimHolder) -> Held:
        """The settled verdict on ``holder`` (DONE or TAKE_OVER), once per invocation."""
        if holder not in self._verdicts:
            for _ in range(_JUDGE_ROUNDS):
                verdict = self._settle(holder, self._ledger.sink_batch(holder.batch))
                if verdict in (Held.DONE, Held.TAKE_OVER):
                    self._verdicts[holder] = verdict
                    break
            else:
                raise SinkClaimBusyError(f"the record of batch {holder.batch} keeps changing; retry later")
        return self._verdicts[holder]

    def claim(self, claim_ids: Sequence[str]) -> set[int]:
        """Claim each id for this attempt; the indices it holds now (taken over where the holder is over)."""
        answers = self._ledger.claim_for_sink(
            claim_ids, self.holder, expires_at_s=self._expires_at_s, concurrency=self._concurrency
        )
        granted = {index for index, holder in enumerate(answers) if holder is None}
        self.claims.extend(claim_ids[index] for index in sorted(granted))
        held_by: defaultdict[ClaimHolder, list[int]] = defaultdict(list)
        for index, holder in enumerate(answers):
            if holder is not None:
                held_by[holder].append(index)
        for holder, indices in held_by.items():
            if self._judge(holder) is not Held.TAKE_OVER:
                continue  # DONE: its events are durable in that batch's objects
            taken = self._ledger.take_over_claims(
                [claim_ids[i] for i in indices],
                holder,
                self.holder,
                expires_at_s=self._expires_at_s,
                concurrency=self._concurrency,
            )
            won = [i for i, ok in zip(indices, taken, strict=True) if ok]
            granted.update(won)
            self.claims.extend(claim_ids[i] for i in won)
            self.taken_over += len(won)
            if len(won) < len(indices):
                raise SinkClaimBusyError(f"claims of batch {holder.batch} changed hands during a takeover; retry")
        return granted

    def take_chunks(self, records: Sequence[SinkRecord]) -> set[int]:
        """Claim each record's chunk; the indices of the records whose chunk this batch now holds.

        A second copy of a chunk in the same batch is a replay: only its first record counts.
        """
        first_of: dict[str, int] = {}
        for index, record in enumerate(records):
            first_of.setdefault(record.chunk_id, index)
        chunk_ids = list(first_of)
        granted = self.claim([chunk_claim_id(chunk_id) for chunk_id in chunk_ids])
        return {first_of[chunk_ids[i]] for i in granted}

    def take_events(self, keys: Sequence[tuple[str, str]]) -> set[int]:
        return self.claim([event_claim_id(event_id, fingerprint) for event_id, fingerprint in keys])

    def list_outputs(self, outputs: Sequence[str], rows_written: int) -> None:
        self.outputs = list(outputs)
        if not self._ledger.record_sink_outputs(self.holder.batch, self.holder.attempt, outputs, rows_written):
            raise SinkClaimBusyError(f"batch {self.holder.batch} was taken over from this attempt; retry")

    def commit(self) -> None:
        if not self._ledger.settle_sink_batch(self.holder.batch, self.holder.attempt, "COMMITTED"):
            # Not PENDING any more: committed on our behalf (a roll forward saw every output), or
            # taken over, which only happens past our lease.  Only the first is a success.
            batch = self._ledger.sink_batch(self.holder.batch)
            if batch is None or batch.attempt != self.holder.attempt or batch.status != "COMMITTED":
                raise SinkClaimBusyError(f"batch {self.holder.batch} was taken over before its commit; retry")

    def undo(self, failure: Exception) -> None:
        """Give the attempt's work back after ``failure``: abort, delete what it listed, release its claims.

        Raises :class:`SinkUndoError` when that fails: the claims then stay until a retry takes them over.
        """
        try:
            if not self._ledger.settle_sink_batch(self.holder.batch, self.holder.attempt, "ABORTED"):
                return  # committed already (rolled forward) or taken over: nothing of ours to give back
            # Every listed key, not only those whose put returned: a put can land and still fail here.
            self._objects.delete(self.outputs)
            self._ledger.release_claims(self.claims, self.holder)
        except Exception as exc:
            raise SinkUndoError(
                f"batch {self.holder.batch} failed ({failure}) and its undo failed too ({exc}); "
                "retry: the retry takes its claims over"
            ) from exc


def write_batch(
    event: dict[str, Any],
    *,
    s3: Any,
    ledger: ClaimLedger,
    bad_sink: BadRowWriter,
    config: PipelineConfig,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    remaining_ms: int | None = None,
    resolver: Resolver | None = None,
) -> SinkResult:
    """Write one stream-2 batch under the claim protocol of this module.

    ``remaining_ms`` is the invocation's time left (the Lambda context's), which bounds the
    lease of its claims and how long it waits for another's.  ``bad_sink`` writes under
    ``resources.bad_prefix`` of the output bucket (its keys are listed before it writes).
    ``resolver`` gives the schemas of the typed entity columns (``load.typed_entities``; none
    without it).  Raises a transient error when the batch must be retried: an object could not be written
    (:class:`SinkWriteError`), another attempt may still hold its claims
    (:class:`SinkClaimBusyError`), or the undo failed (:class:`SinkUndoError`)."""
    from load.parquet import encode_parquet  # pyarrow loads with the first batch, not at import (cold start)

    shard, records = records_from_event(event)
    if not records:
        return SinkResult("")
    key = batch_key(shard, records[0].sequence_number, records[-1].sequence_number)
    resources = config.resources
    remaining_s = CLAIM_TAKEOVER_AGE_S if remaining_ms is None else min(remaining_ms / 1000, CLAIM_TAKEOVER_AGE_S)
    objects = _Objects(s3, resources.output_bucket)
    attempt = _Attempt(
        ledger,
        objects,
        key,
        clock=clock,
        sleep=sleep,
        lease_s=remaining_s,
        wait_s=min(BUSY_WAIT_MAX_S, remaining_s / 2),
        expires_at_s=int(clock()) + config.stream.dedupe_window_days * 86400,
        concurrency=config.stream.dedupe_concurrency,
    )
    committed = attempt.open()
    if committed is not None:
        return SinkResult(
            key,
            records=len(records),
            rows_written=committed.rows_written,
            objects=[output for output in committed.outputs or () if output.startswith(resources.events_prefix)],
            already_committed=True,
        )
    try:
        screened = screen_batch(records, attempt.take_chunks(records), origin=event_origin(event))
        granted = None
        if config.stream.cross_batch_dedupe and screened.unique:
            granted = attempt.take_events(screened.event_keys)
        plan = plan_objects(screened, key, resources.events_prefix, granted)
        result = SinkResult(
            key,
            records=plan.records,
            events=plan.events,
            replayed_chunks=plan.replayed_chunks,
            duplicates_dropped=plan.duplicates_dropped,
            bad=list(plan.bad),
            etl_tstamp=plan.etl_tstamp,
            claims_taken_over=attempt.taken_over,
        )
        # Bad rows are keyed by the whole batch key: a batch with the same first record but
        # other boundaries must not overwrite them.
        bad_keys = list(
            plan_bad_objects(
                plan.bad, prefix=resources.bad_prefix, stage="sink", batch_id=key, etl_tstamp=plan.etl_tstamp
            )
        )
        attempt.list_outputs([*sorted(plan.objects), *bad_keys], sum(len(e) for e in plan.objects.values()))
        for object_key, events in sorted(plan.objects.items()):
            objects.put(object_key, encode_parquet(events, config.load, resolver))
            result.objects.append(object_key)
            result.rows_written += len(events)
        if result.bad:
            bad_sink.write(result.bad, stage="sink", batch_id=key, etl_tstamp=result.etl_tstamp)
        attempt.commit()
    except Exception as failure:
        # Not BaseException: an interpreter that is going away does no I/O, like a killed one.
        attempt.undo(failure)
        raise
    return result
