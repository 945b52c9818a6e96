"""The Parquet sink's claims under faults, on moto: every event of stream 2 ends in exactly one
Parquet object (or one bad row), whatever point a failed attempt reached and however its
retry groups the records.

GIVEN a batch of 47 records (90 events in two hours, an undecodable record, a malformed event)
WHEN its first attempt fails or dies at a chosen point and the retry comes grouped otherwise
THEN the dataset holds each event once and the bad rows hold each bad record once.

Faults are botocore event hooks on the clients the failing attempt is given (fresh clients on
the same moto backend); the retries get the chain's healthy clients.  A hard kill makes the
call where it strikes, and every later call of that attempt, raise :class:`HardKill` (a
``BaseException``, as nothing of a killed invocation runs any more).
"""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from load.sink import CLAIM_TAKEOVER_AGE_S, LEASE_MARGIN_S
from load.sink_handler import SinkDeps
from load.sink_handler import handle as handle_sink
from pipeline.app.local.esm import EsmSettings, simulate
from pipeline.aws.badsink import S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import Ledger
from pipeline.errors import TransientError
from pipeline.records import decode_events
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, KinesisRecord, kinesis_event
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.load.test_sink_handler import chunks

SHARD = "shardId-000000000001"
DAY_S = 86_400


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


class HardKill(BaseException):
    """The invocation is gone (timeout, out of memory): no code of it runs any more, no undo either."""


class Attempt:
    """One invocation's own S3 and DynamoDB clients, whose calls a test fails or kills by botocore hooks."""

    def __init__(self, chain: Chain, clock: FakeClock) -> None:
        self.chain = chain
        self.clock = clock
        self.s3 = make_client("s3", chain.config.aws)
        self.dynamodb = make_client("dynamodb", chain.config.aws)
        self.calls: Counter[str] = Counter()
        self.failing: dict[str, set[int] | None] = {}
        self.partition_at: tuple[str, int] | None = None
        self.kill_before: tuple[str, int] | None = None
        self.kill_after: tuple[str, int] | None = None
        self.kill_next = False
        self.dead = False
        for client in (self.s3, self.dynamodb):
            client.meta.events.register("before-call", self._before)
            client.meta.events.register("after-call", self._after)

    def fail(self, operation: str, calls: set[int] | None = None) -> None:
        """Make the given calls of ``operation`` (1-based; None: all) fail with a 503."""
        self.failing[operation] = calls

    def _before(self, model: Any, **_: Any) -> None:
        operation = model.name
        self.calls[operation] += 1
        nth = self.calls[operation]
        if self.dead or self.kill_next or self.kill_before == (operation, nth):
            self.dead = True
            raise HardKill(f"killed before {operation} #{nth}")
        if self.partition_at == (operation, nth):
            self.partition_at = ("", 0)  # from here on, nothing gets through
        if self.partition_at == ("", 0):
            raise EndpointConnectionError(endpoint_url=f"https://{operation}.invalid")
        calls = self.failing.get(operation, set())
        if operation in self.failing and (calls is None or nth in calls):
            error = {"Error": {"Code": "ServiceUnavailable", "Message": "injected"}}
            raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)

    def _after(self, model: Any, **_: Any) -> None:
        if self.kill_after == (model.name, self.calls[model.name]):
            self.kill_after = None
            self.kill_next = True  # the call is durable; the invocation dies before its next one

    def deps(self) -> SinkDeps:
        r = self.chain.config.resources
        ledger = Ledger(self.dynamodb, r.ledger_table, clock=self.clock)
        bad_sink = S3BadRowSink(self.s3, r.output_bucket, r.bad_prefix)
        return SinkDeps(self.chain.config, self.s3, ledger, bad_sink, clock=self.clock, sleep=self.clock.advance)


def healthy(chain: Chain, clock: FakeClock) -> SinkDeps:
    return SinkDeps(chain.config, chain.s3, chain.ledger(clock=clock), chain.bad_sink(), clock, clock.advance)


def sink(records: list[KinesisRecord], deps: SinkDeps, context: Any = None) -> dict[str, Any]:
    return handle_sink(kinesis_event(records), deps, context)


def stream_2_batch() -> list[KinesisRecord]:
    """45 chunks of 2 events (hours 9 and 10), an undecodable record and a malformed event, in order."""
    good = chunks(90)
    junk = KinesisRecord(b"\xff\x00", "junk-chunk", "", SHARD)
    poison = KinesisRecord(b'{"event_id":"x","collector_tstamp":"abc"}\n', "poison-chunk", "", SHARD)
    ordered = [*good[:10], junk, *good[10:30], poison, *good[30:]]
    return [KinesisRecord(r.data, r.partition_key, str(1000 + i), SHARD) for i, r in enumerate(ordered)]


def expected_event_ids(records: list[KinesisRecord]) -> list[str]:
    ids: list[str] = []
    for record in records:
        if record.partition_key not in ("junk-chunk", "poison-chunk"):
            ids.extend(str(e["event_id"]) for e in decode_events(record.data))
    return sorted(ids)


def written_event_ids(chain: Chain) -> list[str]:
    out: list[str] = []
    for body in chain.objects(chain.config.resources.events_prefix).values():
        out.extend(str(row["event_id"]) for row in pq.read_table(io.BytesIO(body)).to_pylist())
    return sorted(out)


def bad_rows_by_kind(chain: Chain) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for key, body in chain.objects(chain.config.resources.bad_prefix).items():
        kinds[key.split("/")[1]] += len(body.splitlines())
    return kinds


def assert_each_event_once(chain: Chain, records: list[KinesisRecord]) -> None:
    assert written_event_ids(chain) == expected_event_ids(records)
    assert bad_rows_by_kind(chain) == {"record_invalid": 1, "schema_violation": 1}


def halves_second_first(records: list[KinesisRecord]) -> list[list[KinesisRecord]]:
    half = len(records) // 2
    return [records[half:], records[:half]]


def uneven_thirds(records: list[KinesisRecord]) -> list[list[KinesisRecord]]:
    return [records[:7], records[7:30], records[30:]]


# ------------------------------------------------------------------- (a) put and delete both fail


# The per-event manifest is off by default (stream.cross_batch_dedupe); where a test names it,
# it runs both ways, so that the takeover of event claims stays covered too.
MANIFEST = pytest.mark.parametrize("manifest", [False, True], ids=["chunk-claims", "with-event-manifest"])


@MANIFEST
def test_put_and_delete_both_failing_then_a_regrouped_retry_writes_each_event_once(aws: None, manifest: bool) -> None:
    """Reliability catalogue F11: the second put fails, and so does every delete of the undo.

    The undo's failure is reported (a transient error: retry), not swallowed; the retry, in two
    halves with the second first, takes the aborted attempt's claims over after deleting the
    object it left behind.
    """
    chain = Chain.create(chain_config({"stream.cross_batch_dedupe": manifest}))
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    first.fail("PutObject", calls={2})
    first.fail("DeleteObject")
    with pytest.raises(TransientError, match="undo"):
        sink(records, first.deps())
    assert chain.objects("events/"), "the first object stayed behind: the delete failed"
    for part in halves_second_first(records):
        sink(part, healthy(chain, clock))
    assert_each_event_once(chain, records)


def test_a_partition_during_the_undo_keeps_the_claims_until_the_lease_then_a_retry_takes_them(aws: None) -> None:
    """Reliability catalogue F11: from the second put on nothing gets through, the undo's abort neither.

    The attempt might still be running as far as the ledger knows, so a retry before its lease
    runs out is refused (transient) and writes nothing; after it, the retry takes over.
    """
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    first.partition_at = ("PutObject", 2)
    with pytest.raises(TransientError, match="undo"):
        sink(records, first.deps())
    left_behind = chain.objects("events/")
    with pytest.raises(TransientError, match="may still be running"):
        sink(records[:20], healthy(chain, clock))
    assert chain.objects("events/") == left_behind
    clock.advance(CLAIM_TAKEOVER_AGE_S + LEASE_MARGIN_S + 1)
    for part in uneven_thirds(records):
        sink(part, healthy(chain, clock))
    assert_each_event_once(chain, records)


# ----------------------------------------------------------------------------- (b) hard kills


@pytest.mark.parametrize(
    "kill",
    [
        pytest.param(("before", "PutObject", 1), id="after-the-claims"),
        pytest.param(("after", "PutObject", 1), id="after-the-first-object"),
        pytest.param(("before", "PutObject", 3), id="before-the-bad-rows"),
    ],
)
@pytest.mark.parametrize("regroup", [halves_second_first, uneven_thirds], ids=["halves", "thirds"])
def test_a_hard_kill_leaves_claims_that_a_regrouped_retry_takes_over_after_the_lease(
    aws: None, kill: tuple[str, str, int], regroup: Any
) -> None:
    """Reliability catalogue F15: the invocation dies (no undo runs) after claiming, after part
    of its writes, or before its bad rows.

    Before the lease runs out a retry is refused and writes nothing; after it (a fake clock), a
    retry grouped otherwise takes the claims over, deletes the partial objects, and every event
    is written once.
    """
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    when, operation, nth = kill
    if when == "before":
        first.kill_before = (operation, nth)
    else:
        first.kill_after = (operation, nth)
    with pytest.raises(HardKill):
        sink(records, first.deps())
    left_behind = chain.objects("")
    parts = regroup(records)
    with pytest.raises(TransientError):
        sink(parts[0], healthy(chain, clock))
    assert chain.objects("") == left_behind
    clock.advance(CLAIM_TAKEOVER_AGE_S + LEASE_MARGIN_S + 1)
    for part in parts:
        sink(part, healthy(chain, clock))
    assert_each_event_once(chain, records)


def test_a_killed_invocation_s_claims_are_free_once_its_lambda_deadline_has_passed(aws: None) -> None:
    """Reliability catalogue F15: with a Lambda context the lease is the invocation's deadline,
    not Lambda's 15-minute maximum, so a retry after a timeout need not wait longer."""
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    first.kill_after = ("PutObject", 1)
    with pytest.raises(HardKill):
        sink(records, first.deps(), FakeLambdaContext(remaining_ms=60_000, clock=clock))
    clock.advance(60 + LEASE_MARGIN_S + 1)  # the timeout struck; Lambda retries the batch, grouped otherwise
    for part in halves_second_first(records):
        sink(part, healthy(chain, clock), FakeLambdaContext(remaining_ms=60_000, clock=clock))
    assert_each_event_once(chain, records)


def test_a_retry_just_after_a_timeout_waits_out_the_lease_margin_rather_than_fail(aws: None) -> None:
    """Reliability catalogue F15: Lambda may retry at once after a timeout, within the lease's
    clock-skew margin; the retry waits the few seconds out (the fake clock's sleep) instead of
    using up one of the batch's retries."""
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    first.kill_after = ("PutObject", 1)
    with pytest.raises(HardKill):
        sink(records, first.deps(), FakeLambdaContext(remaining_ms=60_000, clock=clock))
    clock.advance(60)  # the deadline: Lambda stops the invocation and retries the batch, grouped otherwise
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock.advance(seconds)

    deps = dataclasses.replace(healthy(chain, clock), sleep=sleep)
    for part in halves_second_first(records):
        sink(part, deps, FakeLambdaContext(remaining_ms=60_000, clock=clock))
    assert len(waited) == 1 and waited[0] <= LEASE_MARGIN_S + 1
    assert_each_event_once(chain, records)


# ------------------------------------------------- (c) killed after the writes, before the commit


@pytest.mark.parametrize("regroup", ["same", "halves"])
def test_a_kill_after_the_last_write_before_the_commit_is_rolled_forward_not_written_again(
    aws: None, regroup: str
) -> None:
    """Reliability catalogue F15: every object of the batch is durable when the invocation dies,
    before the ledger's commit.

    A retry (at once: no lease to wait out) finds every listed output in S3, commits the dead
    attempt on its behalf and skips its chunks: nothing is written a second time.
    """
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()
    first = Attempt(chain, clock)
    first.kill_after = ("PutObject", 4)  # two hourly Parquet objects, then two bad-row objects
    with pytest.raises(HardKill):
        sink(records, first.deps())
    written = chain.objects("")
    assert_each_event_once(chain, records)
    parts = [records] if regroup == "same" else halves_second_first(records)
    results = [sink(part, healthy(chain, clock)) for part in parts]
    # The same boundaries are answered from the batch's record; other boundaries skip every chunk.
    assert [r["rows_written"] for r in results] == ([90] if regroup == "same" else [0, 0])
    assert chain.objects("") == written


# ----------------------------------------------------------------------------------- (d) expiry


def test_claims_and_batch_records_carry_the_dedupe_window_as_their_expiry(aws: None) -> None:
    """Every item the sink writes has ``expires_at`` = now + ``stream.dedupe_window_days``, for the table's TTL
    (the per-event manifest on, so that its event claims are among them)."""
    chain = Chain.create(chain_config({"stream.cross_batch_dedupe": True}))
    clock = FakeClock()
    records = stream_2_batch()
    sink(records, healthy(chain, clock))
    items = chain.dynamodb.scan(TableName=chain.config.resources.ledger_table)["Items"]
    kinds = Counter(item["pk"]["S"].split("#", 1)[0] for item in items)
    assert kinds == {"chunk": 47, "event": 90, "sink": 1}
    window = chain.config.stream.dedupe_window_days * DAY_S
    assert {int(item["expires_at"]["N"]) for item in items} == {int(clock()) + window}


def test_a_claim_past_its_expiry_is_free_although_ttl_has_not_deleted_it_yet(aws: None) -> None:
    """A chunk replayed after the dedupe window is written again: its claim expired (moto, like a
    lagging TTL, never deletes the item)."""
    chain = Chain.create(chain_config())
    clock = FakeClock()
    records = stream_2_batch()[:10]
    sink(records, healthy(chain, clock))
    replay = [KinesisRecord(r.data, r.partition_key, str(5000 + i), SHARD) for i, r in enumerate(records)]
    assert sink(replay, healthy(chain, clock))["rows_written"] == 0  # within the window: a replay
    clock.advance(chain.config.stream.dedupe_window_days * DAY_S + 1)
    later = [KinesisRecord(r.data, r.partition_key, str(6000 + i), SHARD) for i, r in enumerate(records)]
    assert sink(later, healthy(chain, clock))["rows_written"] == 20


# ------------------------------------------------------------------- the ESM simulator regroups


@MANIFEST
def test_bisected_retries_after_a_failed_put_and_a_failed_undo_write_each_event_once(aws: None, manifest: bool) -> None:
    """Reliability catalogue F11 through the ESM simulator with bisect on: the first invocation's
    second put fails and so does the first delete of its undo; the simulator splits the batch and
    retries the halves (other boundaries, other object keys)."""
    chain = Chain.create(chain_config({"stream.cross_batch_dedupe": manifest}))
    clock = FakeClock()
    records = stream_2_batch()
    attempt = Attempt(chain, clock)
    attempt.fail("PutObject", calls={2})
    attempt.fail("DeleteObject", calls={1})
    deps = attempt.deps()
    settings = EsmSettings(
        batch_size=100,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=3,
        report_batch_item_failures=False,
    )
    outcome = simulate(records, lambda event, context: handle_sink(event, deps, context), settings)
    assert not outcome.discarded
    assert len(outcome.invocations) == 3  # the batch, then its two halves
    assert_each_event_once(chain, records)


def test_the_ledger_table_expires_claims_on_their_expires_at(aws: None) -> None:
    """Expiry the docs promise needs the table's TTL on the attribute the claims carry."""
    from pipeline.aws.ledger import TTL_ATTRIBUTE

    chain = Chain.create(chain_config())
    described = chain.dynamodb.describe_time_to_live(TableName=chain.config.resources.ledger_table)
    assert described["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
