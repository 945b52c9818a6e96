"""The events dataset's partitions: Hive folders by the hour of ``collector_tstamp``.

Both destinations of the dataset -- the local folder (:mod:`load.dataset`) and the Parquet
sink's bucket (:mod:`load.sink`) -- lay events out as ``event_date=YYYY-MM-DD/event_hour=HH``.
A :class:`PartitionKey` formats and parses that path, so a rerun finds the same folder.
Pure: no pyarrow, no I/O.
"""

from __future__ import annotations

from functools import cache
from typing import Final, NamedTuple

from pipeline.schema import format_tstamp

_HOUR_MS: Final = 3_600_000


class PartitionKey(NamedTuple):
    """A Hive partition of the events dataset: ``event_date=YYYY-MM-DD/event_hour=HH``."""

    date: str
    hour: int

    def format(self) -> str:
        return f"event_date={self.date}/event_hour={self.hour:02d}"

    @classmethod
    def parse(cls, text: str) -> PartitionKey:
        parts = dict(part.split("=", 1) for part in text.strip("/").split("/"))
        try:
            return cls(parts["event_date"], int(parts["event_hour"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not an events partition path: {text!r}") from exc

    @classmethod
    def of(cls, collector_ms: int) -> PartitionKey:
        return _partition_of_hour(collector_ms // _HOUR_MS)


@cache
def _partition_of_hour(hour_index: int) -> PartitionKey:
    stamp = format_tstamp(hour_index * _HOUR_MS)
    return PartitionKey(stamp[:10], int(stamp[11:13]))
