"""Replay pacing against stream 1's shard limits (fake clock), its cost estimate, and the CloudFront
key-name parser and date-hour window of ``reconcile`` / ``replay`` (issue 12, items 4 and 5)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extract.notifications import ObjectNotice
from extract.reconciler import ListedObject
from pipeline.app.reconcile import HourWindow, LogKey, ReconcileInputError, parse_bound, select_objects
from pipeline.app.replay import (
    SHARD_BYTES_PER_S,
    SHARD_RECORDS_PER_S,
    Cost,
    Estimator,
    Pacer,
    RateLimits,
    ReplayItem,
    budget_seconds,
)
from pipeline.config import load_config
from pipeline.pacing import PacingError
from pipeline.testing.lambda_events import FakeClock


def paced_starts(costs: list[Cost], limits: RateLimits) -> list[float]:
    """The start time of each acquisition on a fake clock whose sleep advances it."""
    clock = FakeClock(1000.0)
    pacer = Pacer(limits, clock.now, clock.advance)
    starts = []
    for cost in costs:
        pacer.acquire(cost)
        starts.append(clock.now() - 1000.0)
    return starts


def assert_within(costs: list[Cost], starts: list[float], limits: RateLimits) -> None:
    """Over the invocations started in [t_i, t_j): records <= burst + rate * (t_j - t_i), bytes likewise."""
    eps = 1e-6
    burst_r = limits.records_per_s * limits.burst_s
    burst_b = limits.bytes_per_s * limits.burst_s
    for i in range(len(costs)):
        records = data = 0
        for j in range(i + 1, len(costs)):
            records += costs[j - 1].records
            data += costs[j - 1].bytes
            span = starts[j] - starts[i]
            assert records <= burst_r + limits.records_per_s * span + eps, (i, j)
            assert data <= burst_b + limits.bytes_per_s * span * (1 + 1e-12) + eps, (i, j)


costs_strategy = st.lists(
    st.builds(Cost, st.integers(1, 3000), st.integers(1, 8 * SHARD_BYTES_PER_S)), min_size=1, max_size=60
)


@settings(max_examples=150, deadline=None)
@given(costs=costs_strategy, shards=st.integers(1, 4), burst=st.sampled_from([0.0, 0.5, 2.0]))
def test_the_pacer_never_exceeds_the_records_or_bytes_rate_over_any_window(
    costs: list[Cost], shards: int, burst: float
) -> None:
    """Reliability catalogue L05 for the replay: any window of invocation starts stays within the rates."""
    base = RateLimits.for_shards(shards)
    limits = RateLimits(base.records_per_s, base.bytes_per_s, burst)
    starts = paced_starts(costs, limits)
    assert starts == sorted(starts)
    assert_within(costs, starts, limits)
    # never slower than the tighter of the two budgets needs, nor than both added
    lower = budget_seconds([ReplayItem(ObjectNotice("b", "k", "e", 0), c) for c in costs], limits)
    assert starts[-1] >= lower - 1e-6
    upper = (
        sum(c.records for c in costs[:-1]) / limits.records_per_s
        + sum(c.bytes for c in costs[:-1]) / limits.bytes_per_s
    )
    assert starts[-1] <= upper + 1e-6


def test_uniform_objects_take_exactly_the_budget() -> None:
    """GIVEN 100 objects of 1 MiB decompressed on one shard at 80%: bytes bind (0.8 MiB/s)
    THEN each starts 1.25 s (plus its keys' bytes) after the one before, and the last at the budget."""
    cost = Cost(4, SHARD_BYTES_PER_S)
    limits = RateLimits.for_shards(1)
    starts = paced_starts([cost] * 100, limits)
    gap = cost.bytes / limits.bytes_per_s
    assert gap == pytest.approx(1.25)
    assert starts == pytest.approx([i * gap for i in range(100)])
    assert starts[-1] == pytest.approx(budget_seconds([ReplayItem(ObjectNotice("b", "k", "e", 0), cost)] * 100, limits))


def test_tiny_objects_are_bound_by_records() -> None:
    """A record per object: at 800 records/s, 800 invocations a second (bytes never bind)."""
    limits = RateLimits.for_shards(1)
    starts = paced_starts([Cost(1, 500)] * 1601, limits)
    assert starts[-1] == pytest.approx(2.0)


def test_a_burst_lets_the_first_second_go_at_once_and_then_the_rate_holds() -> None:
    limits = RateLimits(10, 1e9, burst_s=1.0)
    starts = paced_starts([Cost(1, 1)] * 30, limits)
    assert starts[:11] == [0.0] * 11  # 10 in the bucket, and the 11th in debt
    assert starts[-1] == pytest.approx(1.9)


def test_an_object_larger_than_a_second_goes_and_the_next_waits_its_debt() -> None:
    limits = RateLimits(1000, SHARD_BYTES_PER_S)
    starts = paced_starts([Cost(40, 10 * SHARD_BYTES_PER_S), Cost(1, 1)], limits)
    assert starts == pytest.approx([0.0, 10.0])


def test_rates_must_be_positive() -> None:
    with pytest.raises(PacingError):
        RateLimits(0, 1)
    with pytest.raises(PacingError):
        RateLimits.for_shards(0)
    with pytest.raises(PacingError):
        RateLimits(10, 10).shared_by(0)
    with pytest.raises(PacingError, match="records_per_s"):
        RateLimits.from_json({"bytes_per_s": 1})
    with pytest.raises(PacingError):
        RateLimits.from_json({"records_per_s": "x", "bytes_per_s": 1})


def test_limits_shared_by_writers_add_up_to_the_whole_and_survive_json() -> None:
    whole = RateLimits.for_shards(4)
    part = whole.shared_by(8)
    assert part.records_per_s * 8 == pytest.approx(whole.records_per_s)
    assert part.bytes_per_s * 8 == pytest.approx(whole.bytes_per_s)
    assert RateLimits.from_json(part.to_json()) == part


def test_the_estimate_follows_the_packer_budget_and_the_compression_ratio() -> None:
    estimate = Estimator.from_config(load_config(environ={}).stream)
    assert estimate.record_budget == 256 * 1024  # min(record_target_bytes, record_max_bytes - 8 KiB)
    small = estimate("E1.2026-01-01-00.a.gz", 1000)  # 10,000 bytes of lines: one record
    assert small == Cost(1, 10_000 + 64)
    big = estimate("E1.2026-01-01-00.a.gz", 1024 * 1024)  # 10 MiB of lines
    assert big.records == 40 and big.bytes == 10 * 1024 * 1024 + 40 * 64
    assert estimate("E1.2026-01-01-00.a", 1000) == Cost(1, 1064)  # not gzipped: as stored
    assert estimate("E1.2026-01-01-00.a.gz", 0) == Cost(1, 64)


def test_default_limits_and_the_invocations_a_second_they_allow() -> None:
    limits = RateLimits.for_shards(1)
    assert (limits.records_per_s, limits.bytes_per_s) == (0.8 * SHARD_RECORDS_PER_S, 0.8 * SHARD_BYTES_PER_S)
    estimate = Estimator.from_config(load_config(environ={}).stream)
    # a typical hourly CloudFront object of 50 KB gzipped: ~500 KB on the stream, two records
    cost = estimate("E1.2026-01-01-00.a.gz", 50_000)
    per_s = min(limits.records_per_s / cost.records, limits.bytes_per_s / cost.bytes)
    assert cost.records == 2 and math.isclose(per_s, 1.677, rel_tol=1e-3)


# ------------------------------------------------------------------ key names and windows
@pytest.mark.parametrize(
    ("key", "distribution", "hour", "unique"),
    [
        ("E2EXAMPLE.2026-01-01-05.a1b2c3d4.gz", "E2EXAMPLE", datetime(2026, 1, 1, 5, tzinfo=UTC), "a1b2c3d4"),
        ("logs/cf/E3X.2025-12-31-23.ffff.gz", "E3X", datetime(2025, 12, 31, 23, tzinfo=UTC), "ffff"),
        ("a/b/E1.2026-02-28-00.0a", "E1", datetime(2026, 2, 28, 0, tzinfo=UTC), "0a"),
    ],
)
def test_cloudfront_key_names_parse_and_round_trip(key: str, distribution: str, hour: datetime, unique: str) -> None:
    name = LogKey.parse(key)
    assert name is not None
    assert (name.distribution, name.hour, name.unique_id) == (distribution, hour, unique)
    assert name.format() == key


@pytest.mark.parametrize(
    "key",
    [
        "notes.txt",
        "E1.2026-13-01-00.a.gz",
        "E1.2026-01-01-24.a.gz",
        "E1.2026-01-01.a.gz",
        "logs/",
    ],
)
def test_other_keys_are_not_log_names(key: str) -> None:
    assert LogKey.parse(key) is None


@given(
    prefix=st.sampled_from(["", "logs/", "a/b/c/"]),
    distribution=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=14),
    hours=st.integers(0, 24 * 365 * 5),
    unique=st.text("0123456789abcdef", min_size=1, max_size=8),
)
def test_any_formatted_name_parses_back(prefix: str, distribution: str, hours: int, unique: str) -> None:
    from datetime import timedelta

    name = LogKey(prefix, distribution, datetime(2022, 1, 1, tzinfo=UTC) + timedelta(hours=hours), unique)
    assert LogKey.parse(name.format()) == name


def test_bounds_are_dates_or_date_hours_and_the_window_is_half_open() -> None:
    assert parse_bound("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_bound("2026-01-01-13") == parse_bound("2026-01-01T13") == datetime(2026, 1, 1, 13, tzinfo=UTC)
    with pytest.raises(ReconcileInputError, match="YYYY-MM-DD"):
        parse_bound("yesterday")
    with pytest.raises(ReconcileInputError, match="before"):
        HourWindow.parse("2026-01-02", "2026-01-02")
    window = HourWindow.parse("2026-01-01-22", "2026-01-02")
    assert window.hours == 2
    listed = [
        ListedObject(key, "e", 1, 0)
        for key in (
            "E1.2026-01-01-21.a.gz",
            "E1.2026-01-01-22.a.gz",
            "E2.2026-01-01-23.a.gz",
            "E1.2026-01-02-00.a.gz",
            "other",
        )
    ]
    assert [o.key for o in select_objects(listed, window)] == ["E1.2026-01-01-22.a.gz", "E2.2026-01-01-23.a.gz"]
    assert [o.key for o in select_objects(listed, window, distribution="E2")] == ["E2.2026-01-01-23.a.gz"]
