"""Extract on moto: S3 object -> stream 1, ledger, bad rows, and the faults F01-F07, F09 (reliability catalogue)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from extract.errors import ObjectBusyError
from extract.handler import continuation_event, handle
from extract.stage import MAX_LEASE_MS, ExtractResult
from pipeline.aws.kinesis import KinesisAccessError, KinesisPutError
from pipeline.aws.ledger import Ledger, ObjectId
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import (
    FakeClock,
    FakeLambdaContext,
    s3_object_created_event,
    s3_test_event,
    sqs_wrapped,
)
from tests.functional.aws_chain import Chain, chain_config
from transform.canonicalize import Canonicalizer
from transform.stage import LineFormats, transform_batch

SMALL_GROUPS = {"stream.record_target_bytes": 2048, "stream.put_batch_records": 2}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def log_text(lines: int = 40, *, bad: bool = False) -> bytes:
    builder = LogBuilder()
    for n in range(lines):
        builder.add(uri_stem="/i", query=tracker_query({"e": "pv", "url": f"https://shop.example/p/{n}", "tv": "js-3"}))
        if bad and n % 10 == 5:
            builder.add_raw("too\tfew\tfields")
    return builder.to_gzip()


def run(chain: Chain, event: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    deps = chain.extract_deps(**kwargs)
    return list(handle(event, FakeLambdaContext(), deps)["objects"])


def shipped_lines(chain: Chain) -> Counter[tuple[str, int]]:
    return Counter((b.key, n) for b in chain.raw_batches() for n in b.line_numbers)


def test_given_log_object_when_extracted_then_every_line_is_shipped_bad_or_skipped(aws: None) -> None:
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/E1.2024-11-15-10.a.gz", log_text(40, bad=True))
    [result] = run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert result["outcome"] == "complete"
    assert result["lines_read"] == 2 + 40 + 4  # headers, good lines, 4 short lines
    assert result["lines_read"] == result["lines_shipped"] + result["bad"] + result["skipped"]
    assert (result["lines_shipped"], result["bad"], result["skipped"]) == (44, 0, 2)  # field counts are checked later
    lines = shipped_lines(chain)
    assert sorted(n for _, n in lines) == list(range(3, 47))
    assert set(lines.values()) == {1}
    batches = chain.raw_batches()
    assert len(batches) == result["records"] > 2
    assert all(b.etag == notice.etag and b.fields.startswith("date time") for b in batches)
    entry = chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status == "COMPLETE" and entry.counts["lines_read"] == 46


@pytest.mark.parametrize(
    "key",
    ["cf/with space.gz", "cf/plus+sign.gz", "cf/ünïcode-日本.gz", "cf/a%2Fb.gz"],
)
@pytest.mark.parametrize("wrap", ["direct", "sqs", "encoded_slash"])
def test_given_awkward_keys_when_notified_then_the_object_is_found(aws: None, key: str, wrap: str) -> None:
    """Reliability catalogue A15: spaces, plus signs, Unicode and %2F in keys.

    Direct, through SQS, and with the slash encoded as moto encodes it.
    """
    chain = Chain.create(chain_config())
    notice = chain.upload(key, log_text(3))
    event = s3_object_created_event(notice.bucket, key, etag=notice.etag, encode_slash=wrap == "encoded_slash")
    [result] = run(chain, sqs_wrapped(event) if wrap == "sqs" else event)
    assert result["outcome"] == "complete" and result["lines_shipped"] == 3
    assert {b.key for b in chain.raw_batches()} == {key}


def test_given_test_event_folder_key_or_own_output_when_notified_then_nothing_is_read(aws: None) -> None:
    """Reliability catalogue A16: an s3:TestEvent is ignored; also S05: the pipeline's own output is never read."""
    config = chain_config()
    chain = Chain.create(config)
    own = chain.upload(
        config.resources.bad_prefix + "x/date=2024-11-15/extract-1.jsonl", b"{}", bucket=config.resources.output_bucket
    )
    folder = chain.upload("cf/", b"")
    events = [
        s3_test_event(config.resources.log_bucket),
        s3_object_created_event(own.bucket, own.key, etag=own.etag),
        s3_object_created_event(folder.bucket, folder.key, etag=folder.etag),
    ]
    results = [r for e in events for r in run(chain, e)]
    assert [r["outcome"] for r in results] == ["ignored", "ignored"]
    assert chain.raw_batches() == []


def test_given_duplicate_notifications_when_handled_sequentially_then_the_second_is_a_no_op(aws: None) -> None:
    """Reliability catalogue F07: a duplicate notification handled after the first is a no-op."""
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/dup.gz", log_text(20))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    first = run(chain, event)
    second = run(chain, event)
    assert first[0]["outcome"] == "complete" and second[0]["outcome"] == "duplicate"
    assert set(shipped_lines(chain).values()) == {1}


def test_given_duplicate_notifications_when_one_arrives_mid_processing_then_lines_are_shipped_once(
    aws: None,
) -> None:
    """Reliability catalogue F07: a duplicate notification handled while the first is still shipping."""
    # moto's backends are not thread-safe, so concurrency is interleaved deterministically:
    # the duplicate is handled while the first invocation is inside its first PutRecords.
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/concurrent.gz", log_text(60))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    inner = chain.writer(chain.config.resources.raw_stream)
    during: list[BaseException] = []

    class InterleavingWriter:
        stats = inner.stats

        def put(self, records: list[Any]) -> None:
            if not during:
                # The live holder keeps its lease: the duplicate is turned away, and it fails
                # (retryable) instead of answering "busy" and being consumed.
                with pytest.raises(ObjectBusyError) as busy:
                    run(chain, event)
                during.append(busy.value)
            inner.put(records)

    [first] = run(chain, event, writer=InterleavingWriter())
    [after] = run(chain, event)
    assert (first["outcome"], after["outcome"]) == ("complete", "duplicate")
    assert len(during) == 1 and getattr(during[0], "retryable", False)
    assert sum(shipped_lines(chain).values()) == 60 and set(shipped_lines(chain).values()) == {1}


def test_given_an_overwritten_key_when_notified_then_the_new_version_is_processed(aws: None) -> None:
    """Reliability catalogue F09: a key overwritten with new content is read again as a new object."""
    chain = Chain.create(chain_config())
    old = chain.upload("cf/same.gz", log_text(3))
    run(chain, s3_object_created_event(old.bucket, old.key, etag=old.etag))
    new = chain.upload("cf/same.gz", log_text(5))
    [stale] = run(chain, s3_object_created_event(old.bucket, old.key, etag=old.etag + "x"))
    [fresh] = run(chain, s3_object_created_event(new.bucket, new.key, etag=new.etag))
    assert stale["outcome"] == "ignored"  # that version no longer exists (IfMatch fails)
    assert fresh["outcome"] == "complete" and fresh["lines_shipped"] == 5
    assert Counter(b.etag for b in chain.raw_batches() for _ in b.lines) == {old.etag: 3, new.etag: 5}


def test_given_corrupt_gzip_when_extracted_then_a_bad_row_is_written_and_the_object_completes(aws: None) -> None:
    """Reliability catalogue A08: corrupt gzip on moto: a bad row in S3 and a COMPLETE ledger entry."""
    chain = Chain.create(chain_config())
    data = log_text(30)
    notice = chain.upload("cf/truncated.gz", data[: len(data) // 2])
    [result] = run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert result["outcome"] == "complete" and result["bad"] == 1
    bad = chain.objects(chain.config.resources.bad_prefix)
    [(key, body)] = bad.items()
    assert key.startswith("bad/corrupt_compression/date=")
    row = json.loads(body)
    assert row["data"]["payload"]["source"]["object"] == f"s3://{notice.bucket}/{notice.key}"
    assert row["data"]["payload"]["source"]["etag"] == notice.etag


# ----------------------------------------------------------------------------------- faults
def test_f01_partial_putrecords_failure_resends_only_failed_entries(aws: None) -> None:
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/partial.gz", log_text(40))
    writer = chain.writer(chain.config.resources.raw_stream)
    real_put = chain.kinesis.put_records
    attempts: list[int] = []

    class FlakyKinesis:
        """Accepts even entries (really writing them) and fails odd ones, on the first call of each group."""

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
            attempts.append(len(Records))
            if len(attempts) % 2 == 0 or len(Records) < 2:
                return dict(real_put(StreamName=StreamName, Records=Records))
            results: list[dict[str, Any]] = []
            for index, record in enumerate(Records):
                if index % 2:
                    results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"})
                else:
                    out = real_put(StreamName=StreamName, Records=[record])["Records"][0]
                    results.append(out)
            return {"FailedRecordCount": len(Records) // 2, "Records": results}

    writer._client = FlakyKinesis()
    [result] = run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag), writer=writer)
    assert result["outcome"] == "complete"
    counts = shipped_lines(chain)
    assert sum(counts.values()) == 40 and set(counts.values()) == {1}  # nothing lost, nothing resent twice
    assert writer.stats.retried_entries > 0 and chain.sleeps  # backoff happened


def test_f01_botocore_hook_partial_failure_on_a_moto_client(aws: None) -> None:
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/hook.gz", log_text(12))
    failed_once: set[str] = set()

    def hook(params: dict[str, Any], **_: Any) -> Any:
        records = json.loads(params["body"])["Records"]
        fresh = [r for r in records if r["PartitionKey"] not in failed_once]
        if not fresh:
            return None
        for r in fresh:
            failed_once.add(r["PartitionKey"])
        out = [{"ErrorCode": "InternalFailure", "ErrorMessage": "boom"} for _ in records]
        body = {"FailedRecordCount": len(records), "Records": out, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://kinesis", 200, {}, None), body

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    [result] = run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert result["outcome"] == "complete"
    assert sum(shipped_lines(chain).values()) == 12 and set(shipped_lines(chain).values()) == {1}


def _throttle(times: int, code: str = "ProvisionedThroughputExceededException") -> Any:
    calls = {"n": 0}

    def hook(**_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "PutRecords")
        return None

    return hook, calls


def test_f02_whole_call_throttling_is_retried_with_backoff(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/throttle.gz", log_text(5))
    hook, calls = _throttle(3)
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    [result] = run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert result["outcome"] == "complete" and calls["n"] == 4 and len(chain.sleeps) == 3
    assert chain.sleeps == sorted(chain.sleeps)  # exponential (jitter fixed at 0.5 here)


def test_f02_throttling_beyond_the_bound_raises_and_leaves_the_object_unacknowledged(aws: None) -> None:
    chain = Chain.create(chain_config({"stream.put_max_attempts": 3}))
    notice = chain.upload("cf/throttled-out.gz", log_text(5))
    hook, _ = _throttle(100)
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    with pytest.raises(KinesisPutError):
        run(chain, event)
    entry = chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0  # released for a retry
    chain.kinesis.meta.events.unregister("before-call.kinesis.PutRecords", hook)
    [retry] = run(chain, event)
    assert retry["outcome"] == "complete" and sum(shipped_lines(chain).values()) == 5


def test_f03_permanent_errors_fail_fast_without_retrying(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/kms.gz", log_text(5))
    hook, calls = _throttle(100, code="KMSAccessDeniedException")
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    with pytest.raises(KinesisAccessError):
        run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert calls["n"] == 1 and chain.sleeps == []


def test_f05_crash_after_some_batches_then_retry_ships_everything_and_duplicates_share_ids(aws: None) -> None:
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/crash.gz", log_text(40))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    calls = {"n": 0}

    def crash_on_third(**_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecords")
        return None

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", crash_on_third)
    with pytest.raises(KinesisAccessError):
        run(chain, event)
    partial = chain.raw_batches()
    assert 0 < len(partial)
    entry = chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status != "COMPLETE"
    [retry] = run(chain, event)
    assert retry["outcome"] == "complete"
    batches = chain.raw_batches()
    lines = Counter(n for b in batches for n in b.line_numbers)
    assert set(lines) == set(range(3, 43))  # nothing lost
    # The failed invocation checkpointed its last durable flush: the retry resent nothing.
    assert sum(lines.values()) == 40
    # Replayed batches are byte-identical records with the same batch id: the sinks dedupe them.
    by_id: dict[str, set[tuple[int, ...]]] = {}
    for b in batches:
        by_id.setdefault(b.batch_id, set()).add(b.line_numbers)
    assert all(len(v) == 1 for v in by_id.values())


def test_f06_near_timeout_checkpoints_and_a_continuation_resumes_exactly(aws: None) -> None:
    config = chain_config({**SMALL_GROUPS, "stream.timeout_margin_ms": 30_000})
    chain = Chain.create(config)
    notice = chain.upload("cf/large.gz", log_text(60, bad=True))
    clock = FakeClock()
    deps = chain.extract_deps(ledger=chain.ledger(clock=clock.now))

    class SlowWriter:
        """Each PutRecords group takes 20 s of the invocation's time."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.stats = inner.stats

        def put(self, records: list[Any]) -> None:
            self.inner.put(records)
            clock.advance(20)

    deps = chain.extract_deps(
        writer=SlowWriter(chain.writer(config.resources.raw_stream)), ledger=chain.ledger(clock=clock.now)
    )
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    invocations: list[dict[str, Any]] = []
    pending = [event]
    while pending and len(invocations) < 50:
        context = FakeLambdaContext(remaining_ms=100_000, clock=clock.now)
        invocations.extend(handle(pending.pop(), context, deps)["objects"])
        pending.extend(continuation_event(n) for n in chain.continuations)
        chain.continuations.clear()
    outcomes = [r["outcome"] for r in invocations]
    assert outcomes[-1] == "complete" and outcomes.count("continued") >= 2
    lines = Counter(n for b in chain.raw_batches() for n in b.line_numbers)
    assert sum(lines.values()) == 60 + 6 and set(lines.values()) == {1}  # no line lost or sent twice
    entry = chain.ledger(clock=clock.now).get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status == "COMPLETE"
    assert (
        entry.counts["lines_read"]
        == 2 + 66
        == entry.counts["lines_shipped"] + entry.counts["bad"] + entry.counts["skipped"]
    )
    assert sum(r["lines_read"] for r in invocations) == 68


def test_f07_a_busy_object_noticed_directly_fails_the_invocation_so_lambda_retries_it(aws: None) -> None:
    """Reliability catalogue F07: a busy object is left to its holder and its notification is not consumed."""
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/busy.gz", log_text(3))
    obj = ObjectId(notice.bucket, notice.key, notice.etag)
    holder = chain.ledger().claim(obj, "other-invocation", lease_ms=60_000)
    assert not isinstance(holder, ExtractResult)
    with pytest.raises(ObjectBusyError) as busy:
        run(chain, s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert busy.value.retryable and notice.key in str(busy.value)
    entry = chain.ledger().get(obj)
    assert chain.raw_batches() == [] and entry is not None and entry.owner == "other-invocation"


def test_f07_a_busy_object_delivered_by_sqs_is_a_batch_item_failure_and_its_redelivery_completes(
    aws: None,
) -> None:
    """Reliability catalogue F07: the busy message comes back (SQS redelivery), the other one is consumed."""
    chain = Chain.create(chain_config())
    clock = FakeClock()
    busy = chain.upload("cf/held.gz", log_text(3))
    free = chain.upload("cf/free.gz", log_text(4))
    ledger = chain.ledger(clock=clock.now)
    ledger.claim(ObjectId(busy.bucket, busy.key, busy.etag), "killed-invocation", lease_ms=60_000)
    event = sqs_wrapped([s3_object_created_event(n.bucket, n.key, etag=n.etag) for n in (busy, free)])
    busy_message = event["Records"][0]["messageId"]
    deps = chain.extract_deps(ledger=ledger)

    first = handle(event, FakeLambdaContext(clock=clock.now), deps)
    assert [r["outcome"] for r in first["objects"]] == ["busy", "complete"]
    assert first["batchItemFailures"] == [{"itemIdentifier": busy_message}]

    clock.advance(6 * 300)  # the queue's visibility timeout: the killed holder's lease has expired
    redelivered = {"Records": [event["Records"][0]]}
    again = handle(redelivered, FakeLambdaContext(clock=clock.now), deps)
    assert [r["outcome"] for r in again["objects"]] == ["complete"] and again["batchItemFailures"] == []
    assert Counter(b.key for b in chain.raw_batches() for _ in b.lines) == {busy.key: 3, free.key: 4}


def test_f07_duplicate_notifications_direct_or_through_sqs_are_consumed_as_no_ops(aws: None) -> None:
    """Reliability catalogue F07: a duplicate of a COMPLETE object is acknowledged and sends nothing."""
    chain = Chain.create(chain_config(SMALL_GROUPS))
    notice = chain.upload("cf/dup-twice.gz", log_text(20))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    first = handle(event, FakeLambdaContext(), chain.extract_deps())
    shipped = shipped_lines(chain)
    direct = handle(event, FakeLambdaContext(), chain.extract_deps())
    through_sqs = handle(sqs_wrapped([event, event]), FakeLambdaContext(), chain.extract_deps())
    assert first["objects"][0]["outcome"] == "complete"
    assert [r["outcome"] for r in direct["objects"] + through_sqs["objects"]] == ["duplicate"] * 3
    assert direct["batchItemFailures"] == through_sqs["batchItemFailures"] == []
    assert shipped_lines(chain) == shipped and set(shipped.values()) == {1}


def test_the_lease_ends_at_the_invocation_timeout_and_never_later_than_lambda_allows(aws: None) -> None:
    chain = Chain.create(chain_config())
    clock = FakeClock()
    seen: list[int] = []

    class LeaseWatchingWriter:
        """Reads the object's lease while the invocation holds it."""

        def __init__(self, inner: Any, obj: ObjectId) -> None:
            self.inner, self.obj, self.stats = inner, obj, inner.stats

        def put(self, records: list[Any]) -> None:
            entry = chain.ledger().get(self.obj)
            assert entry is not None
            seen.append(entry.lease_until - int(clock.now() * 1000))
            self.inner.put(records)

    for index, remaining in enumerate((100_000, 2 * MAX_LEASE_MS)):
        notice = chain.upload(f"cf/lease-{index}.gz", log_text(3))
        writer = LeaseWatchingWriter(chain.writer(chain.config.resources.raw_stream), ObjectId(*_id(notice)))
        deps = chain.extract_deps(writer=writer, ledger=chain.ledger(clock=clock.now))
        context = FakeLambdaContext(remaining_ms=remaining, clock=clock.now)
        handle(s3_object_created_event(notice.bucket, notice.key, etag=notice.etag), context, deps)
    # The invocation's own deadline; a context claiming more time than Lambda's longest timeout is capped.
    assert seen == [100_000, MAX_LEASE_MS]


def _id(notice: Any) -> tuple[str, str, str]:
    return notice.bucket, notice.key, notice.etag


class Killed(BaseException):
    """The runtime dies (out of memory, SIGKILL): no handler of ours runs after this."""


class DyingProcess:
    """What one invocation's clients see: once it is dead, no call of theirs reaches AWS."""

    def __init__(self) -> None:
        self.dead = False

    def client(self, inner: Any) -> Any:
        process = self

        class Mortal:
            def __getattr__(self, name: str) -> Any:
                attribute = getattr(inner, name)
                if not callable(attribute):
                    return attribute

                def call(*args: Any, **kwargs: Any) -> Any:
                    if process.dead:
                        raise Killed
                    return attribute(*args, **kwargs)

                return call

        return Mortal()


def test_f05_killed_mid_object_a_retry_is_refused_while_the_lease_holds_then_takes_it_over_and_resumes(
    aws: None,
) -> None:
    """Reliability catalogue F05 (abrupt death): Lambda's retries of an invocation killed without releasing its lease.

    GIVEN an invocation killed after its third PutRecords (durable, not yet checkpointed)
    WHEN Lambda retries while the lease holds, then again after it expired
    THEN the first retry fails (retryable) without shipping, the second resumes at the checkpoint,
         every line reaches stream 1 with one event_id (a resent line keeps its id) and the object is COMPLETE.
    """
    config = chain_config(SMALL_GROUPS)
    chain = Chain.create(config)
    notice = chain.upload("cf/oom.gz", log_text(40))
    obj = ObjectId(*_id(notice))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    clock = FakeClock()
    process = DyingProcess()
    inner = chain.writer(config.resources.raw_stream)
    puts = {"n": 0}

    class KilledAfterThirdPut:
        stats = inner.stats

        def put(self, records: list[Any]) -> None:
            inner.put(records)
            clock.advance(5)
            puts["n"] += 1
            if puts["n"] == 3:
                process.dead = True
                raise Killed

    dying_ledger = Ledger(process.client(chain.dynamodb), config.resources.ledger_table, clock=clock.now)
    dying = chain.extract_deps(writer=KilledAfterThirdPut(), ledger=dying_ledger)
    with pytest.raises(Killed):
        handle(event, FakeLambdaContext(remaining_ms=120_000, clock=clock.now), dying)
    left = chain.ledger(clock=clock.now).get(obj)
    assert left is not None and left.status == "IN_PROGRESS" and left.lease_until > clock.now() * 1000
    assert 0 < left.next_line  # the groups checkpointed before the kill
    shipped_by_the_killed = len(chain.raw_batches())

    retry_deps = chain.extract_deps(ledger=chain.ledger(clock=clock.now))
    clock.advance(60)  # Lambda's first retry of an asynchronous invocation: the lease still holds
    with pytest.raises(ObjectBusyError) as busy:
        handle(event, FakeLambdaContext(remaining_ms=120_000, clock=clock.now), retry_deps)
    assert busy.value.retryable and len(chain.raw_batches()) == shipped_by_the_killed

    clock.advance(120)  # the second retry: past the killed invocation's timeout, so past its lease
    [retry] = handle(event, FakeLambdaContext(remaining_ms=120_000, clock=clock.now), retry_deps)["objects"]
    assert retry["outcome"] == "complete"
    assert retry["lines_read"] == 2 + 40 - left.next_line  # resumed at the checkpoint, not from the start

    batches = chain.raw_batches()
    lines = Counter(n for b in batches for n in b.line_numbers)
    assert set(lines) == set(range(3, 43)) and sum(lines.values()) > 40  # nothing lost; one group resent
    ids_by_line: dict[int, set[str]] = {}
    contents_by_batch: dict[str, set[tuple[tuple[int, ...], tuple[str, ...]]]] = {}
    canonicalizer = Canonicalizer(config.transform)
    for batch in batches:
        contents_by_batch.setdefault(batch.batch_id, set()).add((batch.line_numbers, batch.lines))
        out = transform_batch(batch, canonicalizer, config.stream.record_target_bytes, LineFormats())
        for number, transformed in zip(batch.line_numbers, out.events, strict=True):
            ids_by_line.setdefault(number, set()).add(transformed["event_id"])
    assert all(len(ids) == 1 for ids in ids_by_line.values())  # a line sent twice carries the same event_id
    assert len({i for ids in ids_by_line.values() for i in ids}) == 40
    assert all(len(contents) == 1 for contents in contents_by_batch.values())  # resent records are identical
    entry = chain.ledger(clock=clock.now).get(obj)
    assert entry is not None and entry.status == "COMPLETE"
    assert entry.counts["lines_read"] == 42 == entry.counts["lines_shipped"] + entry.counts["skipped"]


def test_an_object_noticed_with_too_little_time_left_is_deferred_unclaimed(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/late.gz", log_text(3))
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    [result] = handle(event, FakeLambdaContext(remaining_ms=1_000), chain.extract_deps())["objects"]
    assert result["outcome"] == "deferred"
    assert [(n.bucket, n.key, n.etag) for n in chain.continuations] == [(notice.bucket, notice.key, notice.etag)]
    assert chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag)) is None


def test_a_newline_bomb_checks_the_clock_while_skipping_and_continues_instead_of_timing_out(aws: None) -> None:
    """Audit item 9: an object of mostly blank lines yields nothing for millions of lines, so
    Extract used to look at its clock only at the end, and would time out on every attempt.
    Reading blank lines costs time (here 15 s of the invocation per look at the clock); it must
    checkpoint and continue, and every line still ends shipped or counted."""
    config = chain_config({"stream.timeout_margin_ms": 30_000})
    chain = Chain.create(config)
    builder = LogBuilder()
    stretch = "\n" * 1_500_000
    for n in range(3):
        builder.add(uri_stem="/i", query=tracker_query({"e": "pv", "url": f"https://shop.example/{n}"}))
        builder.add_raw(stretch[:-1])  # add_raw adds the last newline
    data = builder.to_gzip()
    assert len(data) < 200_000  # a small object
    notice = chain.upload("cf/bomb.gz", data)
    clock = FakeClock()
    deps = chain.extract_deps(ledger=chain.ledger(clock=clock.now))

    def slow_clock() -> float:
        clock.advance(15)
        return clock.now()

    pending = [s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)]
    results: list[dict[str, Any]] = []
    while pending and len(results) < 50:
        context = FakeLambdaContext(remaining_ms=100_000, clock=slow_clock)
        results.extend(handle(pending.pop(), context, deps)["objects"])
        pending.extend(continuation_event(n) for n in chain.continuations)
        chain.continuations.clear()
    outcomes = [r["outcome"] for r in results]
    assert outcomes[-1] == "complete" and "continued" in outcomes
    lines = Counter(n for b in chain.raw_batches() for n in b.line_numbers)
    assert sorted(lines) == [3, 1_500_004, 3_000_005] and set(lines.values()) == {1}
    entry = chain.ledger(clock=clock.now).get(ObjectId(notice.bucket, notice.key, notice.etag))
    assert entry is not None and entry.status == "COMPLETE"
    total = 2 + 3 * 1_500_001
    assert entry.counts["lines_read"] == total == entry.counts["lines_shipped"] + entry.counts["skipped"]
