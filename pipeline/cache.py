"""The one bounded cache every memo in the package uses.

Log values repeat heavily (a page URL, a user agent, a date), so the pipeline memoises
pure computations on them; memory must still not grow with the input.  A
:class:`BoundedCache` is a ``dict`` that forgets everything when it is full, and that can
refuse keys too long to be worth holding (contexts and ``ue_px`` payloads rarely repeat).

Given a ``compute`` function it is a memo: ``cache[key]`` returns ``compute(key)``,
computed on the first miss.  A hit is a plain dict lookup, with no Python call, which
matters at a few hundred thousand lookups a second.  Clearing all at once costs nothing per
lookup, unlike an LRU's bookkeeping, and a memo is only ever a shortcut: results are the
same with or without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """At most ``max_entries`` entries; keys longer than ``max_key_length`` are computed but not kept."""

    __slots__ = ("_compute", "max_entries", "max_key_length")

    def __init__(
        self, max_entries: int, compute: Callable[[K], V] | None = None, *, max_key_length: int | None = None
    ) -> None:
        super().__init__()
        if max_entries < 1:
            raise ValueError(f"a cache needs room for at least one entry, got {max_entries}")
        self.max_entries = max_entries
        self.max_key_length = max_key_length
        self._compute = compute

    def __missing__(self, key: K) -> V:
        """``cache[key]`` on a miss: compute, remember, return (KeyError without ``compute``).

        An exception from ``compute`` propagates and nothing is remembered.
        """
        if self._compute is None:
            raise KeyError(key)
        return self.put(key, self._compute(key))

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` under ``key`` (clearing the cache first when it is full); return ``value``."""
        limit = self.max_key_length
        if limit is not None and len(key) > limit:  # type: ignore[arg-type]  # a length limit is for sized keys
            return value
        if len(self) >= self.max_entries:
            self.clear()
        self[key] = value
        return value

    def __repr__(self) -> str:
        return f"BoundedCache({len(self)}/{self.max_entries})"
