"""The one bounded cache every memo in the package uses.

Log values repeat heavily (a page URL, a user agent, a date), so the transform memoises
pure computations on them; memory must still not grow with the input.  A
:class:`BoundedCache` is a ``dict`` (lookups stay the C ``dict.get``) that forgets
everything when it is full, and that can refuse keys too long to be worth holding
(contexts and ``ue_px`` payloads rarely repeat).  Clearing all at once costs nothing per
lookup, unlike an LRU's bookkeeping, and a memo is only ever a shortcut: results are the
same with or without it.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """A memo of at most ``max_entries`` entries; keys longer than ``max_key_length`` are not kept."""

    __slots__ = ("max_entries", "max_key_length")

    def __init__(self, max_entries: int, *, max_key_length: int | None = None) -> None:
        super().__init__()
        if max_entries < 1:
            raise ValueError(f"a cache needs room for at least one entry, got {max_entries}")
        self.max_entries = max_entries
        self.max_key_length = max_key_length

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` under ``key`` (clearing the cache first when it is full); return ``value``."""
        limit = self.max_key_length
        if limit is not None and isinstance(key, Sized) and len(key) > limit:
            return value
        if len(self) >= self.max_entries:
            self.clear()
        self[key] = value
        return value

    def __repr__(self) -> str:
        return f"BoundedCache({len(self)}/{self.max_entries})"
