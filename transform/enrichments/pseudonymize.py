"""Keyed pseudonymization (HMAC-SHA256) of user identifiers.

The key comes from configuration or the environment, never from code; the same key gives
the same pseudonym, so joins across events still work while raw ids never leave Transform.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar

from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import EnrichmentSetup, Hit, Part
from transform.errors import TransformConfigError


class Pseudonymizer:
    """HMAC-SHA256 hex digests of identifier values under one secret key."""

    def __init__(self, key: bytes, fields: tuple[str, ...]) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymization key must be at least 16 bytes")
        self._key = key
        self.fields = fields
        self._cache: BoundedCache[str, str] = BoundedCache(100_000, self._hmac)

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(fields={self.fields!r})"

    def digest(self, value: str) -> str:
        return self._cache[value]

    def _hmac(self, value: str) -> str:
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def apply(self, event: dict[str, object]) -> None:
        for name in self.fields:
            value = event.get(name)
            if isinstance(value, str) and value:
                event[name] = self.digest(value)


class PseudonymizeEnrichment:
    """HMAC-SHA256 of the configured identifier columns (``[transform.pseudonymize]``)."""

    name: ClassVar[str] = "pseudonymize"

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._pseudonymizer = pseudonymizer

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> PseudonymizeEnrichment | None:
        settings = config.pseudonymize
        if not settings.enabled:
            return None
        if setup.pseudonymization_key is None:
            raise TransformConfigError("pseudonymization is enabled but no key was given")
        return cls(Pseudonymizer(setup.pseudonymization_key, settings.fields))

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        self._pseudonymizer.apply(event)
        return None
