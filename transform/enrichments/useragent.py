"""User-agent enrichment through ua-parser.

Fills Snowplow's atomic browser/OS/device columns (br_name, br_family, br_version, br_type,
os_name, os_family, os_manufacturer, dvce_type, dvce_ismobile) from ua-parser's result.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent, validate
from transform.cleaning import clean_columns
from transform.enrichments.base import EnrichmentSetup, Hit, Part

_TABLET_HINTS: Final = ("ipad", "tablet", "kindle", "silk", "playbook", "nexus 7", "nexus 9", "sm-t", "tab ")
_MOBILE_OS: Final = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Tizen"})
_DESKTOP_OS: Final = frozenset({"Windows", "Mac OS X", "macOS", "Linux", "Ubuntu", "Chrome OS", "Fedora", "FreeBSD"})
_MANUFACTURER: Final = {
    "Windows": "Microsoft Corporation",
    "Windows Phone": "Microsoft Corporation",
    "Mac OS X": "Apple Inc.",
    "macOS": "Apple Inc.",
    "iOS": "Apple Inc.",
    "Android": "Google Inc.",
    "Chrome OS": "Google Inc.",
}

Columns = dict[str, Any]


def _version(*parts: str | None) -> str | None:
    kept = []
    for part in parts:
        if part is None:
            break
        kept.append(part)
    return ".".join(kept) or None


class UserAgentParser:
    """Resolve a user agent into canonical columns (not memoised: the enrichment step is)."""

    def __init__(self) -> None:
        from ua_parser import BasicResolver, Domain, load_builtins, load_lazy_builtins

        try:  # the Rust-backed resolver (ua-parser-rs) is the fast one; it needs no compiled Python regexes
            from ua_parser.regex import Resolver as RegexResolver

            self._resolve: Any = RegexResolver(load_lazy_builtins())
        except ImportError:  # pragma: no cover - depends on the installed extra
            self._resolve = BasicResolver(load_builtins())
        self._domain = Domain.ALL

    def columns(self, useragent: str) -> Columns:
        """The canonical columns for a user agent string."""
        parsed = self._resolve(useragent, self._domain)
        agent, os_, device = parsed.user_agent, parsed.os, parsed.device
        out: list[tuple[str, Any]] = []
        family = agent.family if agent is not None else None
        if family and family != "Other":
            out.append(("br_family", family))
            out.append(("br_name", f"{family} {agent.major}" if agent.major else family))
            version = _version(agent.major, agent.minor, agent.patch)
            if version:
                out.append(("br_version", version))
        os_family = os_.family if os_ is not None else None
        if os_family and os_family != "Other":
            out.append(("os_family", os_family))
            out.append(("os_name", f"{os_family} {os_.major}" if os_.major else os_family))
            if os_family in _MANUFACTURER:
                out.append(("os_manufacturer", _MANUFACTURER[os_family]))
        device_family = device.family if device is not None else "Other"
        lowered = useragent.lower()
        if device_family == "Spider":
            out.append(("br_type", "Robot"))
            dvce_type = "Robot"
        elif any(hint in lowered for hint in _TABLET_HINTS) or (os_family == "Android" and "mobile" not in lowered):
            dvce_type = "Tablet"
        elif os_family in _MOBILE_OS or "mobile" in lowered:
            dvce_type = "Mobile"
        elif os_family in _DESKTOP_OS:
            dvce_type = "Computer"
        else:
            dvce_type = "Unknown"
        if family and family != "Other" and dvce_type != "Robot":
            out.append(("br_type", "Browser (mobile)" if dvce_type in ("Mobile", "Tablet") else "Browser"))
        out.append(("dvce_type", dvce_type))
        out.append(("dvce_ismobile", dvce_type in ("Mobile", "Tablet")))
        return dict(out)


class UserAgentEnrichment:
    """Browser, OS and device columns from the user agent (``[transform.useragent]``)."""

    name: ClassVar[str] = "useragent"

    def __init__(self, cache_size: int, parser: UserAgentParser | None = None) -> None:
        # Made on the first user agent: compiling ua-parser's rules takes a tenth of a second,
        # which a configuration check (the backfill's parent process) need not pay.
        self._parser = parser
        self._parts: BoundedCache[str, Part] = BoundedCache(cache_size, self._part)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> UserAgentEnrichment | None:
        settings = config.useragent
        return cls(settings.cache_size) if settings.enabled else None

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        useragent = hit.useragent
        if not useragent:
            return None
        return self._parts[useragent]

    def _part(self, useragent: str) -> Part:
        if self._parser is None:
            self._parser = UserAgentParser()
        columns = clean_columns(self._parser.columns(useragent))
        return Part(columns, tuple(validate(columns)))
