"""The ESM simulator applies AWS's Kinesis -> Lambda rules (reliability.md section 2.2)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.app.local.esm import (
    MAX_PAYLOAD_BYTES,
    EsmConfigError,
    EsmSettings,
    EsmSimulationError,
    simulate,
)
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, KinesisRecord

SHARD = "shardId-000000000000"


def make_records(n: int, *, shard: str = SHARD, arrival0: float = 1_000.0) -> list[KinesisRecord]:
    return [KinesisRecord(f"r{i}".encode(), f"pk{i}", str(i), shard, arrival0 + i) for i in range(1, n + 1)]


class RecordingHandler:
    """Calls ``respond(sequence_numbers, call_index)`` and remembers every batch it was given."""

    __test__ = False

    def __init__(self, respond: Callable[[list[str], int], Any] | None = None) -> None:
        self.batches: list[list[str]] = []
        self._respond = respond or (lambda seqs, call: None)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        assert context.get_remaining_time_in_millis() > 0
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.batches.append(seqs)
        return self._respond(seqs, len(self.batches) - 1)


def failures(*ids: object) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


FINITE = EsmSettings(maximum_retry_attempts=10)


# ---- batching --------------------------------------------------------------------------------------


def test_batches_respect_batch_size_and_everything_is_delivered_once() -> None:
    # GIVEN 250 records and batch_size 100, WHEN the handler succeeds
    handler = RecordingHandler()
    outcome = simulate(make_records(250), handler, EsmSettings(batch_size=100, maximum_retry_attempts=0))
    # THEN three batches in order, each record once, checkpoint at the end
    assert [len(b) for b in handler.batches] == [100, 100, 50]
    assert [s for b in handler.batches for s in b] == [str(i) for i in range(1, 251)]
    assert set(outcome.deliveries.values()) == {1}
    assert outcome.duplicates == 0
    assert outcome.checkpoint == "250"
    assert [(i.first_sequence_number, i.last_sequence_number, i.size) for i in outcome.invocations] == [
        ("1", "100", 100),
        ("101", "200", 100),
        ("201", "250", 50),
    ]


def test_batches_stay_under_the_6mb_invocation_payload() -> None:
    big = [KinesisRecord(b"x" * 1_000_000, "pk", str(i), SHARD, 1.0) for i in range(1, 11)]
    sizes: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        sizes.append(len(json.dumps(event)))

    outcome = simulate(big, handler, EsmSettings(batch_size=100, maximum_retry_attempts=0))
    assert max(i.size for i in outcome.invocations) < 10
    assert max(sizes) <= MAX_PAYLOAD_BYTES
    assert outcome.checkpoint == "10"


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "ok"])
def test_null_or_empty_responses_are_complete_success(response: Any) -> None:
    handler = RecordingHandler(lambda seqs, call: response)
    outcome = simulate(make_records(3), handler, FINITE)
    assert handler.batches == [["1", "2", "3"]]
    assert outcome.invocations[0].result == "success"
    assert outcome.checkpoint == "3"


def test_the_handler_gets_a_parseable_event_and_a_fresh_context_each_time() -> None:
    contexts: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        contexts.append(context.aws_request_id)
        assert [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]] == [b"r1", b"r2"]
        assert event["Records"][0]["eventID"] == f"{SHARD}:1"

    simulate(make_records(2), handler, FINITE)
    simulate(make_records(2), handler, FINITE, context_factory=lambda: FakeLambdaContext(function_name="t"))
    assert len(set(contexts)) == 2


# ---- ReportBatchItemFailures -------------------------------------------------------------------------


def test_partial_failure_rewinds_to_the_lowest_id_and_redelivers_successes() -> None:
    """Reliability catalogue F11: the mapping rewinds to the lowest reported failure."""
    # GIVEN a handler that reports records 4 and 2 as failed the first time
    handler = RecordingHandler(lambda seqs, call: failures("4", "2") if call == 0 else None)
    # WHEN the batch of 5 is delivered
    outcome = simulate(make_records(5), handler, FINITE)
    # THEN Lambda checkpoints at 2 and re-sends 2..5, so 3 and 5 (which had succeeded) come again
    assert handler.batches == [["1", "2", "3", "4", "5"], ["2", "3", "4", "5"]]
    assert outcome.invocations[0].result == "partial_failure"
    assert outcome.invocations[0].reported_failures == ("4", "2")
    assert outcome.invocations[1].attempt == 1
    assert outcome.deliveries == {"1": 1, "2": 2, "3": 2, "4": 2, "5": 2}
    assert outcome.duplicates == 4
    assert outcome.checkpoint == "5"
    assert outcome.discarded == ()


@pytest.mark.parametrize(
    "bad_item",
    [{"itemIdentifier": ""}, {"itemIdentifier": None}, {"itemId": "2"}, {"itemIdentifier": "999"}, "2"],
    ids=["empty", "null", "wrong-key", "not-in-batch", "not-an-object"],
)
def test_an_invalid_item_identifier_fails_the_whole_batch(bad_item: Any) -> None:
    handler = RecordingHandler(lambda seqs, call: {"batchItemFailures": [bad_item]} if call == 0 else None)
    outcome = simulate(make_records(3), handler, FINITE)
    assert handler.batches == [["1", "2", "3"], ["1", "2", "3"]]
    assert outcome.invocations[0].result == "invalid_response"
    assert outcome.deliveries == {"1": 2, "2": 2, "3": 2}
    assert outcome.checkpoint == "3"


def test_an_identifier_of_a_record_outside_the_batch_is_a_full_failure() -> None:
    # record 4 exists in the shard, but not in the first batch (batch_size=2)
    handler = RecordingHandler(lambda seqs, call: failures("4") if call == 0 else None)
    outcome = simulate(make_records(4), handler, EsmSettings(batch_size=2, maximum_retry_attempts=3))
    assert handler.batches[:2] == [["1", "2"], ["1", "2"]]
    assert outcome.invocations[0].result == "invalid_response"


def test_without_report_batch_item_failures_partial_failures_are_lost() -> None:
    # GIVEN a handler that always reports record 2 as failed
    def respond(seqs: list[str], call: int) -> Any:
        return failures("2") if "2" in seqs else None

    lossy = simulate(
        make_records(3),
        RecordingHandler(respond),
        EsmSettings(report_batch_item_failures=False, maximum_retry_attempts=2),
    )
    # THEN AWS ignores the response: success, the checkpoint passes record 2, nothing is retried
    assert len(lossy.invocations) == 1
    assert lossy.invocations[0].result == "success" and lossy.invocations[0].ignored
    assert lossy.ignored_failures == ("2",)
    assert lossy.checkpoint == "3"
    assert lossy.discarded == ()

    # WHEREAS with the setting on, record 2 is retried and, when it keeps failing, reported as discarded
    kept = simulate(
        make_records(3),
        RecordingHandler(respond),
        EsmSettings(report_batch_item_failures=True, maximum_retry_attempts=2),
    )
    assert kept.ignored_failures == ()
    assert kept.deliveries["2"] == 3
    assert kept.discarded_sequence_numbers == ("2", "3")


def test_a_record_that_keeps_failing_partially_is_discarded_after_max_retries() -> None:
    handler = RecordingHandler(lambda seqs, call: failures("3") if "3" in seqs else None)
    outcome = simulate(make_records(4), handler, EsmSettings(maximum_retry_attempts=1))
    assert handler.batches == [["1", "2", "3", "4"], ["3", "4"]]
    assert len(outcome.discarded) == 1
    assert outcome.discarded[0].sequence_numbers == ("3", "4")
    assert outcome.discarded[0].condition == "RetryAttemptsExhausted"
    assert outcome.checkpoint == "4"


# ---- function errors, bisect, retries, discards ----------------------------------------------------


def test_function_error_retries_the_whole_batch_then_discards_metadata_only() -> None:
    """Reliability catalogue F12: a batch that always fails is retried, then discarded with metadata only."""
    # GIVEN a handler that always raises and maximum_retry_attempts=2
    def respond(seqs: list[str], call: int) -> Any:
        raise RuntimeError("downstream unavailable")

    records = make_records(3)
    outcome = simulate(records, RecordingHandler(respond), EsmSettings(maximum_retry_attempts=2))
    # THEN the batch is tried 1 + 2 times, then discarded to the on-failure destination
    assert [(i.sequence_numbers, i.attempt, i.result) for i in outcome.invocations] == [
        (("1", "2", "3"), 0, "function_error"),
        (("1", "2", "3"), 1, "function_error"),
        (("1", "2", "3"), 2, "function_error"),
    ]
    assert outcome.invocations[0].error == "RuntimeError: downstream unavailable"
    (batch,) = outcome.discarded
    assert (batch.shard_id, batch.start_sequence_number, batch.end_sequence_number, batch.batch_size) == (
        SHARD,
        "1",
        "3",
        3,
    )
    assert batch.approximate_arrival_of_first_record == records[0].arrival
    assert batch.approximate_arrival_of_last_record == records[-1].arrival
    assert batch.approximate_invoke_count == 3
    # the destination message carries metadata only -- never the record data
    message = batch.to_destination_record()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["KinesisBatchInfo"] == {
        "shardId": SHARD,
        "startSequenceNumber": "1",
        "endSequenceNumber": "3",
        "approximateArrivalOfFirstRecord": "1970-01-01T00:16:41.000Z",
        "approximateArrivalOfLastRecord": "1970-01-01T00:16:43.000Z",
        "batchSize": 3,
        "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/clickstream-etl-stream",
    }
    assert "cjE=" not in json.dumps(message)  # base64 of b"r1"
    # the mapping moved on: the records are no longer pending
    assert outcome.checkpoint == "3"
    assert outcome.deliveries == {"1": 3, "2": 3, "3": 3}


def test_maximum_retry_attempts_zero_discards_on_first_failure() -> None:
    def respond(seqs: list[str], call: int) -> Any:
        raise ValueError("boom")

    outcome = simulate(make_records(2), RecordingHandler(respond), EsmSettings(maximum_retry_attempts=0))
    assert len(outcome.invocations) == 1
    assert outcome.discarded[0].approximate_invoke_count == 1


def test_bisect_isolates_a_poison_record_without_spending_retry_quota() -> None:
    # GIVEN record 6 of 8 always crashes the function, bisect on, 2 retries
    def respond(seqs: list[str], call: int) -> Any:
        if "6" in seqs:
            raise ValueError("poison")

    handler = RecordingHandler(respond)
    outcome = simulate(
        make_records(8), handler, EsmSettings(bisect_batch_on_function_error=True, maximum_retry_attempts=2)
    )
    # THEN halving narrows the failure to record 6 alone; only it is discarded
    assert outcome.discarded_sequence_numbers == ("6",)
    assert outcome.checkpoint == "8"
    assert all(outcome.deliveries[s] >= 1 for s in outcome.deliveries)
    # splits cost no retries: the lone poison record still gets 1 + 2 attempts
    alone = [i for i in outcome.invocations if i.sequence_numbers == ("6",)]
    assert [i.attempt for i in alone] == [0, 1, 2]
    # every healthy record was processed successfully exactly once
    succeeded = [s for i in outcome.invocations if i.result == "success" for s in i.sequence_numbers]
    assert sorted(succeeded, key=int) == ["1", "2", "3", "4", "5", "7", "8"]
    # halves are processed in shard order
    assert handler.batches[:4] == [
        ["1", "2", "3", "4", "5", "6", "7", "8"],
        ["1", "2", "3", "4"],
        ["5", "6", "7", "8"],
        ["5", "6"],
    ]


def test_without_bisect_the_poison_record_takes_its_whole_batch_down() -> None:
    def respond(seqs: list[str], call: int) -> Any:
        if "6" in seqs:
            raise ValueError("poison")

    outcome = simulate(make_records(8), RecordingHandler(respond), EsmSettings(maximum_retry_attempts=1))
    assert outcome.discarded_sequence_numbers == tuple(str(i) for i in range(1, 9))


def test_records_older_than_maximum_record_age_are_discarded() -> None:
    # GIVEN a handler that always fails and takes 30 s per attempt, infinite retries, max age 60 s
    clock = FakeClock(start=1_000.0)

    def respond(seqs: list[str], call: int) -> Any:
        clock.advance(30)
        raise TimeoutError("slow downstream")

    records = make_records(2, arrival0=1_000.0)  # arrivals 1001, 1002
    outcome = simulate(
        records,
        RecordingHandler(respond),
        EsmSettings(maximum_retry_attempts=-1, maximum_record_age_s=60),
        clock=clock.now,
    )
    # THEN retries continue until the oldest record is over 60 s old, then the batch is discarded
    assert len(outcome.invocations) == 3
    assert outcome.discarded[0].condition == "RecordAgeExceeded"
    assert outcome.checkpoint == "2"


def test_infinite_retries_must_be_bounded_for_a_simulation() -> None:
    def respond(seqs: list[str], call: int) -> Any:
        raise ValueError("poison")

    with pytest.raises(EsmConfigError, match="maximum_retry_attempts"):
        simulate(make_records(2), RecordingHandler(respond), EsmSettings())
    # blocked_after_attempts models AWS's default: the shard stays blocked, nothing is lost
    outcome = simulate(make_records(2), RecordingHandler(respond), EsmSettings(), blocked_after_attempts=3)
    assert outcome.blocked
    assert len(outcome.invocations) == 3
    assert outcome.checkpoint is None
    assert outcome.discarded == ()


def test_checkpoint_of_a_blocked_shard_stays_before_the_failing_batch() -> None:
    def respond(seqs: list[str], call: int) -> Any:
        if "3" in seqs:
            raise ValueError("poison")

    outcome = simulate(make_records(4), RecordingHandler(respond), EsmSettings(batch_size=2), blocked_after_attempts=2)
    assert outcome.blocked
    assert outcome.checkpoint == "2"
    assert outcome.undelivered == ()
    assert outcome.deliveries["4"] == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 10_001},
        {"maximum_retry_attempts": -2},
        {"maximum_record_age_s": 59},
        {"maximum_batching_window_s": 301},
        {"starting_position": "AT_TIMESTAMP"},
    ],
)
def test_settings_outside_aws_ranges_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EsmConfigError):
        EsmSettings(**kwargs)


def test_input_must_be_one_ordered_shard() -> None:
    mixed = make_records(1) + make_records(1, shard="shardId-000000000001")
    with pytest.raises(EsmSimulationError, match="one shard"):
        simulate(mixed, RecordingHandler(), FINITE)
    with pytest.raises(EsmSimulationError, match="order"):
        simulate(list(reversed(make_records(2))), RecordingHandler(), FINITE)
    empty = simulate([], RecordingHandler(), FINITE)
    assert empty.invocations == () and empty.checkpoint is None


def test_with_powertools_batch_processor_successes_after_a_failure_are_reprocessed() -> None:
    # The Transform handler shape: Powertools processes all records, reports 2 and 4 (#2850)
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    flaky = {"r2": 1, "r4": 1}
    processed: list[bytes] = []

    def record_handler(record: Any) -> None:
        data = record.kinesis.data_as_bytes()
        processed.append(data)
        if flaky.get(data.decode(), 0) > 0:
            flaky[data.decode()] -= 1
            raise ValueError("transient")

    def handler(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    outcome = simulate(make_records(5), handler, FINITE)
    assert processed == [b"r1", b"r2", b"r3", b"r4", b"r5", b"r2", b"r3", b"r4", b"r5"]
    assert outcome.deliveries["3"] == 2  # record 3 succeeded, yet its side effects happen twice
    assert outcome.checkpoint == "5"


# ---- properties ---------------------------------------------------------------------------------------


def _flaky_handler(budget: dict[str, int], mode: str, succeeded: set[str]) -> Callable[[dict[str, Any], Any], Any]:
    """A handler where each record fails transiently ``budget[seq]`` times, then succeeds."""

    def handler(event: dict[str, Any], context: Any) -> Any:
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        failing = [s for s in seqs if budget[s] > 0]
        for s in failing:
            budget[s] -= 1
        if mode == "raise" and failing:
            raise ConnectionError(f"transient failure of {failing}")
        succeeded.update(s for s in seqs if s not in failing)
        return failures(*failing) if failing else None

    return handler


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=30),
    batch_size=st.integers(min_value=1, max_value=10),
    fail_counts=st.lists(st.integers(min_value=0, max_value=3), min_size=30, max_size=30),
    mode=st.sampled_from(["partial", "raise"]),
    bisect=st.booleans(),
)
def test_transient_failures_are_all_eventually_delivered(
    n: int, batch_size: int, fail_counts: Sequence[int], mode: str, bisect: bool
) -> None:
    records = make_records(n)
    budget = {r.sequence_number: fail_counts[i] for i, r in enumerate(records)}
    succeeded: set[str] = set()
    outcome = simulate(
        records,
        _flaky_handler(budget, mode, succeeded),
        EsmSettings(batch_size=batch_size, bisect_batch_on_function_error=bisect, maximum_retry_attempts=10_000),
    )
    # every record was delivered, eventually processed successfully, and nothing was discarded
    assert all(count >= 1 for count in outcome.deliveries.values())
    assert succeeded == set(budget)
    assert outcome.discarded == ()
    assert outcome.checkpoint == records[-1].sequence_number
    # accounting: deliveries add up to the batches sent, and first deliveries follow shard order
    assert sum(outcome.deliveries.values()) == sum(i.size for i in outcome.invocations)
    first_seen: list[str] = []
    for invocation in outcome.invocations:
        first_seen.extend(s for s in invocation.sequence_numbers if s not in first_seen)
    assert first_seen == [r.sequence_number for r in records]
    # nothing fails twice in a row without a retry: duplicates are bounded by the failures injected
    assert outcome.duplicates <= sum(fail_counts[:n]) * max(batch_size, 1)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=20),
    batch_size=st.integers(min_value=1, max_value=8),
    fail_counts=st.lists(st.integers(min_value=0, max_value=4), min_size=20, max_size=20),
    mode=st.sampled_from(["partial", "raise"]),
    bisect=st.booleans(),
    max_retries=st.integers(min_value=0, max_value=2),
)
def test_with_finite_retries_every_record_is_processed_or_discarded(
    n: int, batch_size: int, fail_counts: Sequence[int], mode: str, bisect: bool, max_retries: int
) -> None:
    records = make_records(n)
    budget = {r.sequence_number: fail_counts[i] for i, r in enumerate(records)}
    succeeded: set[str] = set()
    outcome = simulate(
        records,
        _flaky_handler(budget, mode, succeeded),
        EsmSettings(batch_size=batch_size, bisect_batch_on_function_error=bisect, maximum_retry_attempts=max_retries),
    )
    # no record is silently lost: each succeeded at least once or went to the on-failure destination
    assert succeeded | set(outcome.discarded_sequence_numbers) == set(budget)
    assert outcome.checkpoint == records[-1].sequence_number
    for batch in outcome.discarded:
        assert batch.batch_size == len(batch.sequence_numbers) <= batch_size
