"""Enrichment steps behind one registry, run in the order ``transform.enrichments`` lists.

A new step is one module implementing :class:`~transform.enrichments.base.Enrichment` with a
``from_config(config, setup)`` factory (returning ``None`` when its section disables it), one
line in :data:`ENRICHMENTS`, and its name in ``transform.enrichments``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

from pipeline.config import TransformConfig
from transform.enrichments.base import Enrichment, EnrichmentSetup, Hit, Part
from transform.enrichments.campaign import CampaignEnrichment
from transform.enrichments.cross_navigation import CrossNavigationEnrichment
from transform.enrichments.fingerprint import FingerprintEnrichment
from transform.enrichments.ip import IpEnrichment
from transform.enrichments.pseudonymize import PseudonymizeEnrichment
from transform.enrichments.referer import RefererEnrichment
from transform.enrichments.useragent import UserAgentEnrichment
from transform.errors import TransformConfigError

EnrichmentFactory = Callable[[TransformConfig, EnrichmentSetup], Enrichment | None]

ENRICHMENTS: Final[Mapping[str, EnrichmentFactory]] = {
    CampaignEnrichment.name: CampaignEnrichment.from_config,
    RefererEnrichment.name: RefererEnrichment.from_config,
    UserAgentEnrichment.name: UserAgentEnrichment.from_config,
    IpEnrichment.name: IpEnrichment.from_config,
    PseudonymizeEnrichment.name: PseudonymizeEnrichment.from_config,
    FingerprintEnrichment.name: FingerprintEnrichment.from_config,
}
REQUIRED: Final = frozenset({FingerprintEnrichment.name})
"""Steps the pipeline cannot do without: deduplication keys on event_fingerprint."""
PRIVACY_STEPS: Final = (IpEnrichment.name, PseudonymizeEnrichment.name)
"""Steps that mask or hash values the fingerprint reads, so it must run after them."""
PAGE_URL_STEPS: Final[Mapping[str, EnrichmentFactory]] = {
    CrossNavigationEnrichment.name: CrossNavigationEnrichment.from_config,
}
"""Steps that are part of reading the page URL, as in Snowplow's Enrich: not listed in
``transform.enrichments`` but switched in their own section, and run before the listed steps
(so that ``pseudonymize`` sees what they set)."""


def build_page_url_steps(config: TransformConfig, setup: EnrichmentSetup) -> tuple[Enrichment, ...]:
    """The enabled :data:`PAGE_URL_STEPS`, in order."""
    steps = (factory(config, setup) for factory in PAGE_URL_STEPS.values())
    return tuple(step for step in steps if step is not None)


def build_enrichments(
    config: TransformConfig, setup: EnrichmentSetup, registry: Mapping[str, EnrichmentFactory] = ENRICHMENTS
) -> tuple[Enrichment, ...]:
    """The enabled steps, in configured order.

    Raises :class:`~transform.errors.TransformConfigError` naming the key for an unknown,
    repeated or missing step, and for a step whose set-up fails (a bad IP prefix, an
    unreadable referer dataset).
    """
    names = config.enrichments
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise TransformConfigError(
            f"transform.enrichments: unknown enrichment {unknown[0]!r}; known: {', '.join(registry)}"
        )
    if len(set(names)) != len(names):
        raise TransformConfigError(f"transform.enrichments lists a step twice: {list(names)}")
    missing = sorted(REQUIRED - set(names))
    if missing:
        raise TransformConfigError(f"transform.enrichments must include {', '.join(missing)} (deduplication needs it)")
    position = names.index(FingerprintEnrichment.name)
    early = [name for name in PRIVACY_STEPS if name in names[position:]]
    if early:
        raise TransformConfigError(
            f"transform.enrichments: fingerprint must come after {', '.join(early)} "
            "(it hashes the anonymized values, never the raw ones)"
        )
    steps: list[Enrichment] = []
    for name in names:
        try:
            step = registry[name](config, setup)
        except (ValueError, OSError) as exc:
            if isinstance(exc, OSError):
                reason = f"cannot read {exc.filename or 'its data'}: {exc.strerror or exc}"
            elif isinstance(exc, json.JSONDecodeError):
                reason = f"its data is not valid JSON: {exc}"
            else:
                reason = str(exc)
            raise TransformConfigError(f"transform.{name}: {reason}") from exc
        if step is not None:
            steps.append(step)
    return tuple(steps)


__all__ = [
    "ENRICHMENTS",
    "PAGE_URL_STEPS",
    "Enrichment",
    "EnrichmentSetup",
    "Hit",
    "Part",
    "build_enrichments",
    "build_page_url_steps",
]
