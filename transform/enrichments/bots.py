"""The built-in ``bot_flag`` step: crawlers, spiders and robots told from browsers by their user agent.

Listed in ``[transform] steps`` (off by default), it runs on the API every custom step uses
(:mod:`transform.steps`).  A user agent that matches the bundled crawler-user-agents list
(``config/crawler-user-agents.json``, version :data:`CRAWLER_LIST_VERSION`; provenance and
licence in ``config/CRAWLERS.md``) gets ``bot:crawler-user-agents-<version>`` appended to the
event's ``etl_tags``, so a query can filter bots and knows which list judged them; with
``[transform.bot_flag] drop = true`` the event is dropped instead (a skip counted as
``step:bot_flag``).

Why crawler-user-agents rather than crawlerdetect (both on PyPI): it is published by the
list's own maintainer, current (1.67.0, October 2026), MIT, and each of its 1,504 patterns
comes with real user agents it must match, which the tests use; crawlerdetect is a third
party's port of the PHP Crawler-Detect list, synced by hand.  The list is vendored rather
than a dependency: its PyPI distribution is a loader around the same JSON that parses it at
import time, and the file ships as package data like the referer list.

Why not a derived context: Snowplow's IAB enrichment writes
``com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0``, which is not among the bundled Iglu
schemas (``config/iglu``), so such a context could not be validated or typed; ``etl_tags`` is
an atomic column every loader keeps.

Matching costs about 0.2 ms per distinct user agent (1,504 regular expressions, searched in
chunks of 25 as upstream's own loader does: one alternation of all of them is 5 times
slower), paid once per distinct user agent thanks to a :class:`~pipeline.cache.BoundedCache`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import ClassVar, Final

from pipeline.bundled import data_text
from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import EnrichmentSetup, Hit, Part
from transform.steps import DropEvent

CRAWLER_LIST: Final = "crawler-user-agents"
CRAWLER_LIST_VERSION: Final = "1.67.0"
"""The version of ``config/crawler-user-agents.json`` (its PyPI release): keep it with the file."""
CRAWLER_LIST_FILE: Final = "crawler-user-agents.json"
BOT_TAG: Final = f"bot:{CRAWLER_LIST}-{CRAWLER_LIST_VERSION}"
"""The ``etl_tags`` entry of a flagged event."""
_CHUNK: Final = 25
_ETL_TAGS_WIDTH: Final = 500  # varchar(500), as the canonicalizer caps the tags it writes


class CrawlerMatcher:
    """Whether a user agent matches any pattern of a crawler list (not memoised: the step is)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        listed = list(patterns)
        if not listed:
            raise ValueError("the crawler list has no patterns")
        try:
            self._chunks = tuple(re.compile("|".join(listed[i : i + _CHUNK])) for i in range(0, len(listed), _CHUNK))
        except re.error as exc:
            raise ValueError(f"the crawler list has a pattern that is not a regular expression: {exc}") from exc

    @classmethod
    def bundled(cls) -> CrawlerMatcher:
        """The matcher of the bundled list (raises ValueError or OSError when it cannot be read)."""
        entries = json.loads(data_text(CRAWLER_LIST_FILE))
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "pattern" in e for e in entries):
            raise ValueError(f"{CRAWLER_LIST_FILE} must be a list of objects with a 'pattern'")
        return cls(str(entry["pattern"]) for entry in entries)

    def is_crawler(self, useragent: str) -> bool:
        return any(chunk.search(useragent) for chunk in self._chunks)


class BotFlagEnrichment:
    """Tag (or drop) the events of crawlers (``[transform.bot_flag]``; see the module docstring)."""

    name: ClassVar[str] = "bot_flag"

    def __init__(self, drop: bool = False, cache_size: int = 20_000, matcher: CrawlerMatcher | None = None) -> None:
        self.drop = drop
        self._matcher = matcher or CrawlerMatcher.bundled()
        self._verdicts: BoundedCache[str, bool] = BoundedCache(cache_size, self._matcher.is_crawler)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> BotFlagEnrichment:
        settings = config.bot_flag
        return cls(settings.drop, settings.cache_size)

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        """Append :data:`BOT_TAG` to ``etl_tags`` for a crawler's user agent, or raise DropEvent with ``drop``."""
        useragent = hit.useragent
        if not useragent or not self._verdicts[useragent]:
            return None
        if self.drop:
            raise DropEvent("crawler user agent")
        tags = event.get("etl_tags")
        event["etl_tags"] = f"{tags},{BOT_TAG}"[:_ETL_TAGS_WIDTH] if tags else BOT_TAG
        return None


__all__ = ["BOT_TAG", "CRAWLER_LIST_VERSION", "BotFlagEnrichment", "CrawlerMatcher"]
