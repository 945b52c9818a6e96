"""The dataset's Hive partitions: keyed by the hour of collector_tstamp, formatted and parsed."""

from __future__ import annotations

import pytest

from load.partitions import PartitionKey


def test_partition_key_round_trips_and_uses_collector_hour() -> None:
    """Reliability catalogue A17: partitions follow the event's collector hour, not arrival."""
    key = PartitionKey.of(1731699951000)  # 2024-11-15 19:45:51 UTC
    assert key == PartitionKey("2024-11-15", 19)
    assert key.format() == "event_date=2024-11-15/event_hour=19"
    assert PartitionKey.parse(key.format()) == key
    with pytest.raises(ValueError):
        PartitionKey.parse("date=2024/hour=1")
