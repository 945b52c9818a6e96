"""Campaign attribution: utm_* and click ids of the page URL into mkt_* (Snowplow's defaults)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent, validate
from transform.cleaning import clean_columns
from transform.enrichments.base import EnrichmentSetup, Hit, Part
from transform.urls import query_params

DEFAULT_CLICK_IDS: Final = {
    "gclid": "Google",
    "msclkid": "Microsoft",
    "dclid": "DoubleClick",
    "fbclid": "Facebook",
    "ttclid": "TikTok",
    "li_fat_id": "LinkedIn",
    "twclid": "Twitter",
    "yclid": "Yandex",
}


@dataclass(frozen=True)
class CampaignRules:
    """Which page-URL parameters feed each mkt_* column (first present wins)."""

    medium: Sequence[str] = ("utm_medium",)
    source: Sequence[str] = ("utm_source",)
    term: Sequence[str] = ("utm_term",)
    content: Sequence[str] = ("utm_content",)
    campaign: Sequence[str] = ("utm_campaign",)
    click_ids: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLICK_IDS))

    def columns(self, params: Mapping[str, str]) -> list[tuple[str, str]]:
        """The mkt_* columns found in decoded page-URL parameters."""
        out: list[tuple[str, str]] = []
        for column, names in (
            ("mkt_medium", self.medium),
            ("mkt_source", self.source),
            ("mkt_term", self.term),
            ("mkt_content", self.content),
            ("mkt_campaign", self.campaign),
        ):
            for name in names:
                value = params.get(name)
                if value:
                    out.append((column, value))
                    break
        for name, network in self.click_ids.items():
            value = params.get(name)
            if value:
                out.append(("mkt_clickid", value))
                out.append(("mkt_network", network))
                break
        return out


class CampaignEnrichment:
    """mkt_* columns from the page URL's query (``[transform.campaign]``), memoised per query string."""

    name: ClassVar[str] = "campaign"

    def __init__(self, rules: CampaignRules, cache_size: int = 10_000) -> None:
        self._rules = rules
        self._parts: BoundedCache[str, Part] = BoundedCache(cache_size, self._part)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> CampaignEnrichment | None:
        c = config.campaign
        if not c.enabled:
            return None
        return cls(CampaignRules(c.medium, c.source, c.term, c.content, c.campaign, c.click_ids))

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        page = hit.page
        if page is None or not page.query:
            return None
        return self._parts[page.query]

    def _part(self, query: str) -> Part:
        columns = clean_columns(dict(self._rules.columns(query_params(query))))
        return Part(columns, tuple(validate(columns)))
