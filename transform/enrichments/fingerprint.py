"""event_fingerprint: a hash of what identifies a hit, so natural duplicates can be recognised.

For a tracker hit it is the hash of the sorted ``name=value`` pairs as sent, without the
parameters a retry changes (``eid``, ``stm``, ``nuid``, ``cv``), as Snowplow's event
fingerprint enrichment computes it; for an event built from a plain request it is the hash
of the logged fields that identify the request.  The algorithm is
``transform.fingerprint_algorithm``.

Values a privacy step masks, hashes or redacts (the client IP, ``user_id``, ``domain_userid``,
the page and referrer URLs) enter the hash in their output form only, never as sent: an
unkeyed hash of a raw IP can be reversed by trying the 256 addresses of its /24.  That is why
the step runs after the ``ip`` and ``pseudonymize`` steps (the configuration refuses another
order) and sees the URLs already redacted (``[transform.redact]``), and why its values differ
from Snowplow's for hits carrying them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import EnrichmentSetup, Hit, Part


class FingerprintEnrichment:
    name: ClassVar[str] = "fingerprint"

    def __init__(self, algorithm: str) -> None:
        self._hash = _hasher(algorithm)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> FingerprintEnrichment:
        return cls(config.fingerprint_algorithm)

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        pairs = hit.tracker_pairs
        if pairs is not None:
            pairs.sort()
            basis = "&".join(pairs)
        else:
            basis = "\t".join(hit.request.identity)
        get = event.get
        basis = (
            f"{basis}\t{get('user_ipaddress') or ''}\t{get('user_id') or ''}\t{get('domain_userid') or ''}"
            f"\t{hit.page_url or ''}\t{hit.referrer or ''}"
        )
        event["event_fingerprint"] = self._hash(basis.encode("utf-8", "surrogatepass")).hexdigest()
        return None


def _hasher(algorithm: str) -> Callable[[bytes], Any]:
    """The hash constructor (called with the data, its ``hexdigest()`` taken by the caller)."""
    if algorithm == "md5":
        return partial(hashlib.md5, usedforsecurity=False)
    if algorithm == "sha1":
        return partial(hashlib.sha1, usedforsecurity=False)
    return hashlib.sha256
