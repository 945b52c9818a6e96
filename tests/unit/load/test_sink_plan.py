"""The Parquet sink's pure plan: records from a Kinesis event, claimed chunks, object keys.

GIVEN literal stream-2 records and literal claim results
WHEN the batch is screened and planned
THEN replayed chunks, bad rows, in-batch and cross-batch duplicates are counted, and the
     events land in the objects of their collector hour, keyed by the batch.
"""

from __future__ import annotations

import base64

import pytest

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
from pipeline.aws.ledger import ClaimHolder, SinkBatch, SinkBatchStatus

HOUR_09 = 1_731_661_200_123  # 2024-11-15 09:00:00.123 UTC
HOUR_10 = 1_731_664_800_000  # 2024-11-15 10:00:00.000 UTC
ORIGIN = "arn:aws:kinesis:us-east-1:123456789012:stream/events"


def line(event_id: str, tstamp: int, fingerprint: str = "f", etl: int = 1_731_700_000_000) -> bytes:
    return (
        f'{{"event_id":"{event_id}","event_fingerprint":"{fingerprint}",'
        f'"collector_tstamp":{tstamp},"etl_tstamp":{etl}}}\n'
    ).encode()


def test_records_and_origin_come_from_the_lambda_kinesis_event() -> None:
    event = {
        "Records": [
            {
                "eventID": "shardId-000000000001:49590338271490256608559692538361571095921575989136588898",
                "eventSourceARN": ORIGIN,
                "kinesis": {"partitionKey": "chunk-a", "sequenceNumber": "100", "data": base64.b64encode(b"x\n")},
            },
            {
                "eventID": "shardId-000000000001:2",
                "eventSourceARN": ORIGIN,
                "kinesis": {"partitionKey": "chunk-b", "sequenceNumber": "101", "data": base64.b64encode(b"y\n")},
            },
        ]
    }
    shard, records = records_from_event(event)
    assert shard == "shardId-000000000001"
    assert records == [SinkRecord("chunk-a", "100", b"x\n"), SinkRecord("chunk-b", "101", b"y\n")]
    assert event_origin(event) == ORIGIN
    assert event_origin({"Records": []}) == "kinesis"
    assert records_from_event({}) == ("", [])
    assert batch_key(shard, "100", "101") == "shardId-000000000001-100-101"


def test_records_whose_chunk_was_not_claimed_are_replays_and_are_not_decoded() -> None:
    records = [
        SinkRecord("chunk-a", "100", line("a", HOUR_09)),
        SinkRecord("chunk-b", "101", b"not json\n"),  # another batch holds chunk-b: not even decoded
        SinkRecord("chunk-a", "102", line("a", HOUR_09)),  # the same chunk again, later in the batch
    ]
    screened = screen_batch(records, {0}, origin=ORIGIN)
    assert (screened.records, screened.events, screened.replayed_chunks) == (3, 1, 2)
    assert screened.bad == () and [e["event_id"] for e in screened.unique] == ["a"]


def test_undecodable_records_and_malformed_events_become_bad_rows_with_their_source() -> None:
    records = [
        SinkRecord("chunk-a", "100", b"\xff\x00"),
        SinkRecord("chunk-b", "101", line("ok", HOUR_09) + b'{"event_id":"x","collector_tstamp":"abc"}\n'),
    ]
    screened = screen_batch(records, {0, 1}, origin=ORIGIN)
    assert [row.kind.value for row in screened.bad] == ["record_invalid", "schema_violation"]
    assert [row.source.object for row in screened.bad] == [f"{ORIGIN}/100", f"{ORIGIN}/101"]
    assert screened.events == 2 and [e["event_id"] for e in screened.unique] == ["ok"]
    assert screened.etl_tstamp == 1_731_700_000_000


def test_natural_duplicates_inside_the_batch_are_dropped_and_synthetic_ones_kept() -> None:
    records = [
        SinkRecord("chunk-a", "100", line("a", HOUR_09) + line("a", HOUR_09, fingerprint="g")),
        SinkRecord("chunk-b", "101", line("a", HOUR_09) + line("b", HOUR_10)),
    ]
    screened = screen_batch(records, {0, 1}, origin=ORIGIN)
    assert screened.duplicates_dropped == 1
    assert screened.event_keys == [("a", "f"), ("a", "g"), ("b", "f")]


def test_objects_are_keyed_by_collector_hour_and_batch_and_hold_only_granted_events() -> None:
    records = [SinkRecord("chunk-a", "100", line("a", HOUR_09) + line("b", HOUR_10) + line("c", HOUR_09))]
    screened = screen_batch(records, {0}, origin=ORIGIN)
    key = batch_key("shardId-000000000001", "100", "100")
    # GIVEN the event manifest granted all but "b" (another batch wrote it)
    plan = plan_objects(screened, key, "events/", granted={0, 2})
    assert {k: [e["event_id"] for e in v] for k, v in plan.objects.items()} == {
        "events/event_date=2024-11-15/event_hour=09/shardId-000000000001-100-100.parquet": ["a", "c"],
    }
    assert plan.duplicates_dropped == 1 and plan.batch_key == key
    # WHEN no manifest was asked THEN every screened event is written
    everything = plan_objects(screened, key, "events/")
    assert sorted(everything.objects) == [
        "events/event_date=2024-11-15/event_hour=09/shardId-000000000001-100-100.parquet",
        "events/event_date=2024-11-15/event_hour=10/shardId-000000000001-100-100.parquet",
    ]
    assert everything.duplicates_dropped == 0 and everything.records == 1 and everything.events == 3


NOW_MS = 1_731_700_000_000
HOLDER = ClaimHolder("shardId-000000000001-100-199", "attempt-1")
OUTPUTS = ("events/event_date=2024-11-15/event_hour=09/shardId-000000000001-100-199.parquet",)


def record(
    status: SinkBatchStatus = "PENDING",
    *,
    attempt: str = "attempt-1",
    lease_left_ms: int = 60_000,
    outputs: tuple[str, ...] | None = OUTPUTS,
) -> SinkBatch:
    return SinkBatch(HOLDER.batch, attempt, status, NOW_MS + lease_left_ms, outputs, 2)


@pytest.mark.parametrize(
    ("holder", "batch", "outputs_exist", "verdict"),
    [
        # Claims of earlier versions (no attempt) and claims whose batch record is gone are final.
        (ClaimHolder(HOLDER.batch, ""), None, None, Held.DONE),
        (HOLDER, None, None, Held.DONE),
        (HOLDER, record("COMMITTED"), None, Held.DONE),
        # A later attempt of the holder's batch replaced it (and deleted its outputs first).
        (HOLDER, record("PENDING", attempt="attempt-2"), None, Held.TAKE_OVER),
        (HOLDER, record("ABORTED"), None, Held.ABANDON),
        # PENDING with listed outputs: ask S3 first; all there means it died just before its commit.
        (HOLDER, record(), None, Held.CHECK_OUTPUTS),
        (HOLDER, record(lease_left_ms=-1), True, Held.ROLL_FORWARD),
        (HOLDER, record(), True, Held.ROLL_FORWARD),
        # Not all written: it may still be running within its lease, and is over after it.
        (HOLDER, record(), False, Held.BUSY),
        (HOLDER, record(lease_left_ms=-1), False, Held.ABANDON),
        (HOLDER, record(outputs=None), None, Held.BUSY),
        (HOLDER, record(outputs=None, lease_left_ms=-1), None, Held.ABANDON),
    ],
)
def test_a_claim_held_by_another_attempt_is_judged_by_that_attempt_s_record(
    holder: ClaimHolder, batch: SinkBatch | None, outputs_exist: bool | None, verdict: Held
) -> None:
    """GIVEN the holder's batch record and whether its listed outputs exist THEN what the batch does about its claim."""
    assert judge_holder(holder, batch, now_ms=NOW_MS, outputs_exist=outputs_exist) is verdict
