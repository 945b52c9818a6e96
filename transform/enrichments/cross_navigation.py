"""Snowplow's cross-domain linker: ``_sp`` in the page URL into refr_domain_userid and refr_dvce_tstamp.

When a user follows a link decorated by the JavaScript tracker's cross-domain linker, the
destination page URL carries ``_sp=<domain_userid>.<timestamp in ms>``; newer trackers append
``.<session_id>.<user_id>.<source_id>.<source_platform>.<reason>`` (base64url for the user id,
source id and reason).  Snowplow's Enrich (``CrossNavigationEnrichment.parseCrossDomain``, called
by ``EnrichmentManager.getCrossDomain`` for every event with a page URL, whether or not the
cross-navigation enrichment is configured; that enrichment only adds a context) does this:

* no ``_sp`` or an empty one: nothing;
* the value split on ``.``, keeping empty parts: more than seven parts set nothing and fail
  nothing;
* part 1, cleaned of tabs and control characters, is refr_domain_userid unless empty;
* part 2, unless empty, must be epoch milliseconds (an integer, optional sign) within the
  timestamps the warehouse holds: it is refr_dvce_tstamp; anything else fails the event, and
  then neither field is set.

Here the failure is a ``schema_violation`` bad row whose message names ``refr_dvce_tstamp`` and
the value, with every other problem of the event.  Two differences, both where this pipeline's
schema is narrower: the timestamp must lie in 1970..9999 (Snowplow accepts years 0..9999), and
the extended parts are not read (they feed only Snowplow's ``cross_navigation`` context, which
this step does not emit; Snowplow's base64 decoder is lenient, so they never fail there either).
When ``_sp`` is repeated, the last one counts, as in Snowplow's query-string map.

It runs with the page URL, before the configured enrichments (so that ``pseudonymize`` can hash
refr_domain_userid when listed there), on by default (``[transform.cross_navigation]``), and is
memoised per page query string: a page's pings share it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final
from urllib.parse import unquote_plus

from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import MAX_EPOCH_MS, MIN_EPOCH_MS, CanonicalEvent, validate
from transform.cleaning import clean_text
from transform.enrichments.base import EnrichmentSetup, Hit, Part

LINKER_PARAMETER: Final = "_sp"
_PARTS: Final = 7  # domain_user_id, timestamp, session_id, user_id, source_id, source_platform, reason
_EPOCH_MS: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
_JAVA_LONG: Final = 2**63  # Snowplow parses with Long: a longer number is "not in the expected format"
_CACHE_SIZE: Final = 10_000


def linker_value(query: str) -> str | None:
    """The decoded value of the last ``_sp`` parameter of a query string (None when there is none)."""
    found = None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name == LINKER_PARAMETER:
            found = unquote_plus(value) if ("%" in value or "+" in value) else value
    return found


def parse_linker(value: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The columns an ``_sp`` value sets, and the problems it has (see the module docstring)."""
    if not value:
        return {}, ()
    parts = value.split(".")
    if len(parts) > _PARTS:
        return {}, ()
    columns: dict[str, Any] = {}
    duid = clean_text(parts[0])
    if duid:
        columns["refr_domain_userid"] = duid
    if len(parts) > 1 and parts[1]:
        raw = parts[1]
        if not _EPOCH_MS.fullmatch(raw) or not -_JAVA_LONG <= int(raw) < _JAVA_LONG:
            return {}, (f"refr_dvce_tstamp: _sp timestamp {raw[:100]!r} is not in the expected format: ms since epoch",)
        tstamp = int(raw)
        if not MIN_EPOCH_MS <= tstamp <= MAX_EPOCH_MS:
            return {}, (f"refr_dvce_tstamp: _sp timestamp {tstamp} is outside 1970-01-01..9999-12-31",)
        columns["refr_dvce_tstamp"] = tstamp
    return columns, ()


class CrossNavigationEnrichment:
    """refr_domain_userid and refr_dvce_tstamp from the page URL's ``_sp`` (``[transform.cross_navigation]``)."""

    name: ClassVar[str] = "cross_navigation"

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._parts: BoundedCache[str, Part | None] = BoundedCache(cache_size, self._part)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> CrossNavigationEnrichment | None:
        return cls() if config.cross_navigation.enabled else None

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        """Set the linker's columns on ``event`` (in place, so that later steps see them); a bad
        value is returned as a :class:`Part` whose errors make the event a bad row."""
        page = hit.page
        if page is None or not page.query:
            return None
        part = self._parts[page.query]
        if part is None or part.errors:
            return part
        event.update(part.columns)
        return None

    @staticmethod
    def _part(query: str) -> Part | None:
        if LINKER_PARAMETER not in query and "%" not in query:  # the common case: no linker at all
            return None
        value = linker_value(query)
        if value is None:
            return None
        columns, problems = parse_linker(value)
        if not columns and not problems:
            return None
        return Part(columns, (*problems, *validate(columns)))


__all__ = ["CrossNavigationEnrichment", "linker_value", "parse_linker"]
