"""The pure parts of the loadtest: plan bounds, event ids, percentiles, matching, pacing, cleanup plans."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.app.loadtest import (
    APP_ID,
    BURST_S,
    CHUNK_S,
    DEFAULT_MAX_EVENTS,
    LoadPlan,
    LoadTestInputError,
    LoadTestReport,
    Matching,
    SendLog,
    SinkRow,
    build_records,
    event_id,
    match_rows,
    parse_event_id,
    percentile,
    plan_cleanup,
    plan_load,
    send,
)
from pipeline.aws.kinesis import OutRecord
from pipeline.records import decode_raw
from pipeline.testing.lambda_events import FakeClock
from tests.conftest import make_config
from transform.canonicalize import Canonicalizer
from transform.stage import LineFormats, transform_batch

RUN = "0a1b2c3d"


class RecordingWriter:
    """A RecordWriter that keeps what it was given, with the fake time of each put."""

    __test__ = False

    def __init__(self, clock: FakeClock, *, put_takes_s: float = 0.0, interrupt_on_put: int | None = None) -> None:
        self.clock = clock
        self.puts: list[tuple[float, list[OutRecord]]] = []
        self._takes = put_takes_s
        self._interrupt_on = interrupt_on_put

    def put(self, records: Sequence[OutRecord]) -> None:
        if self._interrupt_on is not None and len(self.puts) + 1 == self._interrupt_on:
            raise KeyboardInterrupt
        self.puts.append((self.clock(), list(records)))
        self.clock.advance(self._takes)

    def events(self) -> list[tuple[float, str]]:
        """(put time, eid) of every event put, in order."""
        out = []
        for at, records in self.puts:
            for record in records:
                for line in decode_raw(record.data).lines:
                    eid = line.split("&eid=")[1][:36]
                    out.append((at, eid))
        return out


# ------------------------------------------------------------------ plan
def test_the_plan_is_rate_times_duration_events() -> None:
    assert plan_load(200, 2, run_id=RUN) == LoadPlan(RUN, 200, 2, 400)
    assert plan_load(0.5, 3).events == 2  # 1.5 events round up: the bound is "at most rate * duration" per second


def test_a_plan_above_the_cap_is_refused_unless_max_events_raises_it() -> None:
    with pytest.raises(LoadTestInputError, match="--max-events"):
        plan_load(DEFAULT_MAX_EVENTS, 2)
    assert plan_load(DEFAULT_MAX_EVENTS, 2, max_events=2 * DEFAULT_MAX_EVENTS).events == 2 * DEFAULT_MAX_EVENTS
    with pytest.raises(LoadTestInputError):
        plan_load(100, 10, max_events=999)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (1, 0), (-1, 1), (math.inf, 1)])
def test_a_rate_or_duration_that_is_not_positive_and_finite_is_refused(rate: float, duration: float) -> None:
    with pytest.raises(LoadTestInputError):
        plan_load(rate, duration)


# ------------------------------------------------------------------ event ids
@given(st.text("0123456789abcdef", min_size=8, max_size=8), st.integers(0, 16**12 - 1))
def test_an_event_id_names_its_run_and_sequence_number(run_id: str, seq: int) -> None:
    eid = event_id(run_id, seq)
    assert len(eid) == 36 and eid == eid.lower()
    assert parse_event_id(eid) == (run_id, seq)


@pytest.mark.parametrize(
    "eid", ["", "not-an-id", "0a1b2c3d-1111-4000-8000-000000000001", "0a1b2c3g-0000-4000-8000-000000000001"]
)
def test_other_ids_are_not_loadtest_ids(eid: str) -> None:
    assert parse_event_id(eid) is None


def test_synthetic_records_transform_into_good_events_carrying_eid_and_ingestion_time() -> None:
    # GIVEN the stream-1 records of 250 events (two records: at most 200 lines each)
    sent_ms = 1_764_000_000_123
    records = build_records(RUN, 10, 250, sent_ms)
    assert len(records) == 2
    # WHEN Transform runs its core on them
    config = make_config()
    canonicalizer = Canonicalizer(config.transform)
    events = []
    for record in records:
        out = transform_batch(decode_raw(record.data), canonicalizer, 64 * 1024, LineFormats())
        assert not out.bad and not out.skipped
        events.extend(out.events)
    # THEN each is a good event with the loadtest's eid, app id and ingestion time
    assert [e["event_id"] for e in events] == [event_id(RUN, seq) for seq in range(10, 260)]
    assert {e["app_id"] for e in events} == {APP_ID}
    assert {e["dvce_sent_tstamp"] for e in events} == {sent_ms}
    assert {e["collector_tstamp"] for e in events} == {sent_ms // 1000 * 1000}


# ------------------------------------------------------------------ percentiles
def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([], 50) is None


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=200), st.sampled_from([1, 50, 95, 99, 100]))
def test_a_percentile_has_at_least_p_percent_at_or_below_it_and_fewer_below(values: list[int], p: int) -> None:
    found = percentile(values, p)
    assert found in values
    n = len(values)
    assert sum(v <= found for v in values) >= p / 100 * n
    assert sum(v < found for v in values) < p / 100 * n


# ------------------------------------------------------------------ matching
def test_matching_counts_received_missing_duplicated_and_ignores_other_rows() -> None:
    sent = {seq: 1000 + seq for seq in range(5)}
    rows = [
        SinkRow(event_id(RUN, 0), 1100),
        SinkRow(event_id(RUN, 1), 1200),
        SinkRow(event_id(RUN, 1), 1050),  # a duplicate, seen earlier in another object
        SinkRow(event_id(RUN, 2), None),  # in an object the sink never reported
        SinkRow(event_id(RUN, 9), 1300),  # never sent
        SinkRow(event_id("ffffffff", 3), 1300),  # another run
        SinkRow("9f0c1d6e-2a3b-4c5d-8e9f-0a1b2c3d4e5f", 1300),  # real traffic
    ]
    m = match_rows(RUN, sent, rows, bad_events=[4])
    assert m.received == 3
    assert m.missing == [3]  # 4 is in a bad row: not lost, but the report counts it as bad
    assert m.duplicated == {1: 2} and m.extra_rows == 1
    assert m.unexpected == 1 and m.foreign_rows == 2 and m.untimed == 1
    assert m.latencies_ms == [100, 49]  # seq 0: 1100-1000; seq 1: its earliest row, 1050-1001
    assert (m.first_ingested_ms, m.last_sink_ms) == (1000, 1100)


@given(st.lists(st.integers(0, 40), max_size=120), st.integers(1, 40))
def test_every_sent_event_is_received_or_missing_and_rows_are_accounted_for(seqs: list[int], sent_n: int) -> None:
    sent = {seq: 0 for seq in range(sent_n)}
    m = match_rows(RUN, sent, [SinkRow(event_id(RUN, s), 5) for s in seqs])
    assert m.received + len(m.missing) == sent_n
    ours = [s for s in seqs if s < sent_n]
    assert m.received + m.extra_rows == len(ours)
    assert m.unexpected == len(seqs) - len(ours)


def _report(matching: Matching, *, sent: int = 3, bad: int = 0) -> LoadTestReport:
    return LoadTestReport("local", RUN, 10, 1, 3, sent, 1, 1.0, matching, bad, "sink")


def test_the_report_is_ok_only_without_loss_duplication_or_bad_rows() -> None:
    sent = {0: 0, 1: 0, 2: 0}
    good = match_rows(RUN, sent, [SinkRow(event_id(RUN, s), 2000) for s in sent])
    assert _report(good).ok
    assert _report(good).throughput == pytest.approx(1.5)  # 3 events over 2 s from ingestion to sink
    assert not _report(good, bad=1).ok
    assert not _report(match_rows(RUN, sent, [SinkRow(event_id(RUN, 0), 1)])).ok
    doubled = match_rows(RUN, sent, [SinkRow(event_id(RUN, s), 1) for s in (0, 1, 2, 2)])
    assert not _report(doubled).ok
    assert not _report(Matching(), sent=0).ok
    figures = _report(doubled).to_json()
    assert (figures["duplicated_events"], figures["duplicate_rows"], figures["ok"]) == (1, 1, False)
    assert "LOSS" in _report(doubled).render()


# ------------------------------------------------------------------ pacing
@pytest.mark.parametrize("rate", [7.0, 100.0, 500.0])
def test_sending_keeps_to_the_rate_on_a_fake_clock_and_sends_each_event_once(rate: float) -> None:
    # GIVEN a plan of rate * 3 s and a fake clock
    clock = FakeClock(1_764_000_000.0)
    writer = RecordingWriter(clock)
    plan = plan_load(rate, 3, run_id=RUN)
    # WHEN it is sent
    log = send(plan, writer, clock, clock.advance)
    # THEN every event goes once, in order, and the first t seconds carry at most rate * t plus one chunk
    events = writer.events()
    assert [eid for _, eid in events] == [event_id(RUN, seq) for seq in range(plan.events)]
    assert log.sent == plan.events and not log.interrupted
    chunk = max(1, math.ceil(rate * CHUNK_S))
    start = log.started
    for index, (at, _eid) in enumerate(events):
        assert index + 1 <= rate * (at - start + 1e-5) + chunk  # 1e-5 s: the float rounding of epoch sums
    # and the ingestion times are the put times
    assert sorted(set(log.ingested_ms.values())) == sorted({int(at * 1000) for at, _ in events})
    assert clock() - start <= plan.duration_s + BURST_S


def test_sending_stops_at_the_duration_when_puts_are_slow() -> None:
    clock = FakeClock(1_764_000_000.0)
    writer = RecordingWriter(clock, put_takes_s=1.0)  # each PutRecords takes a second
    log = send(plan_load(100, 3, run_id=RUN), writer, clock, clock.advance)
    assert log.sent == 4 * 5  # puts at 0, 1, 2 and 3 s (within 3 s + the burst), 5 events each
    assert log.sent < 300


def test_ctrl_c_stops_sending_and_keeps_what_was_sent() -> None:
    clock = FakeClock(1_764_000_000.0)
    writer = RecordingWriter(clock, interrupt_on_put=3)
    log = SendLog()
    send(plan_load(100, 3, run_id=RUN), writer, clock, clock.advance, log=log)
    assert log.interrupted and log.sent == 10 and sorted(log.ingested_ms) == list(range(10))


# ------------------------------------------------------------------ cleanup
def test_cleanup_deletes_only_objects_holding_nothing_but_the_runs_rows() -> None:
    plan = plan_cleanup({"a.parquet": (5, 0), "b.parquet": (2, 3), "c.parquet": (1, 0)})
    assert plan.delete == ("a.parquet", "c.parquet")
    assert plan.mixed == ("b.parquet",)
