"""The interface every enrichment step implements, and what a step sees of an event's origin.

A step is built once from configuration (its factory in :data:`transform.enrichments.ENRICHMENTS`)
and then called once per good-so-far event, in the order ``transform.enrichments`` lists.
It either sets per-event values on the event directly (an anonymized IP, a fingerprint), or
returns a :class:`Part`: columns computed from a value that repeats across a log (a user
agent, a referrer), memoised with their validation so that the cost is paid once per
distinct value.  The canonicalizer validates the event, adds every part's errors, and merges
the parts only when nothing is wrong, so a bad row always says everything at once.

A step never raises for bad data and never does I/O per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from pipeline.formats.base import Request
from pipeline.schema import CanonicalEvent
from transform.urls import UrlParts


class Part(NamedTuple):
    """Columns of one step for one distinct input, validated once when computed."""

    columns: dict[str, Any]
    errors: tuple[str, ...]


@dataclass(slots=True)
class Hit:
    """What the enrichment steps see of the request behind an event (read it, never change it).

    A slotted class rather than a frozen one: a step reads several fields per event, and a
    slot is the cheapest attribute there is.
    """

    request: Request
    page_url: str | None
    page: UrlParts | None
    """``page_url`` split, when it is an absolute URL."""
    referrer: str | None
    referrer_parts: UrlParts | None
    useragent: str | None
    """The tracker's ``ua`` parameter, else the request's User-Agent header."""
    tracker_ip: str | None
    """The tracker's ``ip`` parameter (None for events built from plain requests)."""
    tracker_pairs: list[str] | None
    """The ``name=value`` pairs the tracker sent, without those a retry changes (eid, stm, nuid, cv);
    None for events built from plain requests."""


@dataclass(frozen=True)
class EnrichmentSetup:
    """What a step's factory may need besides ``TransformConfig``, resolved once at the edge."""

    pseudonymization_key: bytes | None = None

    def __repr__(self) -> str:  # the key never reaches logs
        return f"EnrichmentSetup(pseudonymization_key={'<set>' if self.pseudonymization_key else None})"


class Enrichment(Protocol):
    """One enrichment step (see the module docstring)."""

    @property
    def name(self) -> str:
        """The step's name in configuration, skips and bad rows (a class variable or an attribute)."""
        ...

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        """Enrich ``event`` in place, or return the memoised columns to merge into it."""
        ...
