"""An example enrichment step: tag events whose user agent says it is a bot.

It shows what a new step takes: this module, one line in ``transform.enrichments.ENRICHMENTS``
(here the tests build a registry with it) and its name in ``transform.enrichments``.
"""

from __future__ import annotations

from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import EnrichmentSetup, Hit, Part


class BotFlag:
    name = "bot_flag"

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> BotFlag:
        return cls()

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        if hit.useragent and "bot" in hit.useragent.lower():
            event["etl_tags"] = "bot"
        return None
