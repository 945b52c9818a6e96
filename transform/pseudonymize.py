"""Keyed pseudonymization (HMAC-SHA256) of user identifiers.

The key comes from configuration or the environment, never from code; the same key gives
the same pseudonym, so joins across events still work while raw ids never leave Transform.
"""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """HMAC-SHA256 hex digests of identifier values under one secret key."""

    def __init__(self, key: bytes, fields: tuple[str, ...]) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymization key must be at least 16 bytes")
        self._key = key
        self.fields = fields
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(fields={self.fields!r})"

    def digest(self, value: str) -> str:
        cached = self._cache.get(value)
        if cached is None:
            cached = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[value] = cached
        return cached

    def apply(self, event: dict[str, object]) -> None:
        for name in self.fields:
            value = event.get(name)
            if isinstance(value, str) and value:
                event[name] = self.digest(value)
