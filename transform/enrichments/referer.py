"""Referer classification (Snowplow referer-parser semantics).

Pure and stdlib-only: the dataset is Snowplow's referer-parser database in its JSON
form (``config/referers.json``; provenance in ``config/REFERERS.md``)::

    {medium: {source name: {"domains": [...], "parameters": [...]?}}}

Lookup rules, as in referer-parser (``Parser.scala`` of scala-referer-parser, which
Snowplow's Enrich runs):

* no referer host, a host that is not a host name (``bigcommerce%20wordpress%20plugin``,
  ``exa_mple.com``, ``a..b``) or an IP address, or a scheme other than ``http``,
  ``https`` and ``android-app`` -> ``None`` (no referer columns at all);
* referer host equal to the page host, or equal to / a subdomain of a configured
  internal domain -> ``RefererClass("internal", None, None)``;
* otherwise the host and its parents (``www.google.co.uk`` -> ``google.co.uk`` ->
  ``co.uk`` -> ``uk``, which also covers ``www.`` stripping) are looked up, the
  ``host + path`` rules first (data entries such as ``google.fr/imgres``; matched as a
  path prefix on a segment boundary), the longest path first at every host level,
  and only then the bare hosts, the most specific first: ``www.google.fr/imgres`` is
  Google Images although ``www.google.fr`` itself is listed under Google;
* no match -> ``RefererClass("unknown", None, None)``;
* for the ``search`` medium the term is the value of the first query parameter (in
  query-string order) whose name is one of the engine's ``parameters``, decoded
  with :func:`urllib.parse.unquote_plus`; an empty value gives ``None``.

Host comparisons are case-insensitive (a trailing dot and a ``:port`` suffix are
ignored); parameter names are case-sensitive, as in the data (Bing lists ``q``
and ``Q``).  If a domain occurs under several sources the first one in dataset
order wins (``scripts/update_referers.py`` removes such duplicates anyway).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import unquote_plus

from pipeline.bundled import data_text
from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent, validate
from transform.cleaning import clean_columns
from transform.enrichments.base import EnrichmentSetup, Hit, Part
from transform.urls import split_url

__all__ = ["INTERNAL", "SEARCH", "UNKNOWN", "RefererClass", "RefererClassifier"]

INTERNAL: Final = "internal"
SEARCH: Final = "search"
UNKNOWN: Final = "unknown"

_CACHE_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class RefererClass:
    medium: str
    source: str | None
    term: str | None


@dataclass(frozen=True, slots=True)
class _Entry:
    result: RefererClass  # term always None; search terms are filled in per call
    parameters: frozenset[str] | None  # only set for the search medium


# A resolved host: path rules to try in order (each: (path, entry)) and the fallback.
_PathRules = tuple[tuple[str, _Entry], ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    path_rules: _PathRules
    entry: _Entry | None


# referer-parser's valid URIs: these schemes, and a host Java's URI parses as a host name or an
# IP address (else its getHost() is null).  Letters beyond ASCII are accepted here (IDN hosts).
_SCHEMES: Final = frozenset({"http", "https", "android-app"})
_LABEL: Final = r"[^\W_]+(?:-+[^\W_]+)*"  # letters and digits, hyphens inside only
_HOST_NAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_INTERNAL_RESULT: Final = RefererClass(INTERNAL, None, None)
_UNKNOWN_RESULT: Final = RefererClass(UNKNOWN, None, None)
_INTERNAL_PLAN: Final = _Plan((), _Entry(_INTERNAL_RESULT, None))
_UNKNOWN_PLAN: Final = _Plan((), _Entry(_UNKNOWN_RESULT, None))


def _norm_host(host: str | None) -> str:
    if not host:
        return ""
    h = host.strip().lower()
    if ":" in h and not h.startswith("["):
        name, _, port = h.rpartition(":")
        if port.isdigit() and ":" not in name:
            h = name
    return h.strip(".")


def _norm_path(path: str) -> str:
    p = path.strip()
    if not p.startswith("/"):
        p = "/" + p
    return p.rstrip("/")  # "" for the root; compared on segment boundaries


def _is_host(host: str) -> bool:
    """A host name (labels of letters, digits and inner hyphens) or an IP address."""
    if _HOST_NAME.fullmatch(host):
        return True
    if host.startswith("[") and "]" in host:  # "[2001:db8::1]", "[2001:db8::1]:443"
        host = host[1 : host.index("]")]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _path_matches(rule: str, path: str) -> bool:
    return path == rule or (path.startswith(rule) and path[len(rule)] == "/")


def _suffixes(host: str) -> Iterable[str]:
    """``a.b.c`` -> ``a.b.c``, ``b.c``, ``c``."""
    yield host
    idx = host.find(".")
    while idx != -1:
        host = host[idx + 1 :]
        yield host
        idx = host.find(".")


def _search_term(query: str | None, parameters: frozenset[str]) -> str | None:
    if not query:
        return None
    query = query.split("#", 1)[0].lstrip("?")
    for pair in query.split("&"):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if name not in parameters:
            name = unquote_plus(name)
            if name not in parameters:
                continue
        term = unquote_plus(value) if sep else ""
        return term or None
    return None


class RefererClassifier:
    """Classify referers into medium / source / search term.

    Build once and reuse: the lookup tables are built in ``__init__`` and host
    resolutions are memoised in a small bounded cache.
    """

    __slots__ = ("_cache", "_exact", "_internal", "_paths")

    def __init__(self, dataset: Mapping[str, Any], internal_domains: Iterable[str] = ()) -> None:  # noqa: PLR0912 - validates the dataset shape entry by entry, each problem its own message
        if not isinstance(dataset, Mapping):
            raise ValueError("referer dataset must be a mapping of medium -> sources")
        exact: dict[str, _Entry] = {}
        paths: dict[str, list[tuple[str, _Entry]]] = {}
        for medium, sources in dataset.items():
            if not isinstance(medium, str) or not isinstance(sources, Mapping):
                raise ValueError(f"referer dataset: medium {medium!r} must map source names to entries")
            if medium == INTERNAL:
                raise ValueError("referer dataset: medium 'internal' is reserved")
            for source, spec in sources.items():
                if not isinstance(spec, Mapping) or not isinstance(spec.get("domains"), list):
                    raise ValueError(f"referer dataset: {medium}/{source} needs a 'domains' list")
                params_raw = spec.get("parameters")
                if params_raw is not None and not isinstance(params_raw, list):
                    raise ValueError(f"referer dataset: {medium}/{source} 'parameters' must be a list")
                params = frozenset(str(p) for p in params_raw or ()) if medium == SEARCH else None
                entry = _Entry(RefererClass(medium, str(source), None), params)
                for domain in spec["domains"]:
                    if not isinstance(domain, str):
                        raise ValueError(f"referer dataset: {medium}/{source} has a non-string domain")
                    host_part, slash, path_part = domain.strip().partition("/")
                    host = _norm_host(host_part)
                    if not host:
                        continue
                    if slash and _norm_path(path_part):
                        rules = paths.setdefault(host, [])
                        rule = _norm_path(path_part)
                        if all(existing != rule for existing, _ in rules):
                            rules.append((rule, entry))
                    else:
                        exact.setdefault(host, entry)
        self._exact = exact
        # longest path first, so the most specific rule wins
        self._paths: dict[str, _PathRules] = {
            host: tuple(sorted(rules, key=lambda r: -len(r[0]))) for host, rules in paths.items()
        }
        self._internal = frozenset(h for h in (_norm_host(d) for d in internal_domains) if h)
        self._cache: BoundedCache[tuple[str, str], _Plan | None] = BoundedCache(
            _CACHE_MAX, lambda key: self._plan(*key)
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str] | None = None,
        internal_domains: Iterable[str] = (),
    ) -> RefererClassifier:
        """Load a referers JSON file; ``None`` means the bundled ``config/referers.json``."""
        if path is None:
            text = data_text("referers.json")
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        return cls(json.loads(text), internal_domains)

    def _plan(self, host: str, page_host: str) -> _Plan | None:
        """How to classify a referer from ``host``; None when it is not a host (no referer)."""
        if not _is_host(host):
            return None
        if host == page_host:
            return _INTERNAL_PLAN
        path_rules: list[tuple[str, _Entry]] = []
        entry: _Entry | None = None
        internal = self._internal
        for candidate in _suffixes(host):
            if candidate in internal:
                return _INTERNAL_PLAN
            rules = self._paths.get(candidate)
            if rules:
                path_rules.extend(rules)
            if entry is None:
                entry = self._exact.get(candidate)
        if not path_rules:
            return _Plan((), entry) if entry is not None else _UNKNOWN_PLAN
        # Every level's path rules before any bare host, as referer-parser does; the longest
        # path first, and among equal paths the most specific host (the sort is stable).
        path_rules.sort(key=lambda rule: -len(rule[0]))
        return _Plan(tuple(path_rules), entry)

    def classify(
        self,
        refr_host: str | None,
        refr_path: str | None,
        refr_query: str | None,
        page_host: str | None,
        *,
        scheme: str | None = None,
    ) -> RefererClass | None:
        """The referer's class, or None when there is no referer (see the module docstring).

        ``scheme`` (lower case) is checked when given: referer-parser classifies ``http``,
        ``https`` and ``android-app`` referers only.
        """
        host = _norm_host(refr_host)
        if not host or (scheme is not None and scheme not in _SCHEMES):
            return None
        key = (host, _norm_host(page_host))
        plan = self._cache[key]
        if plan is None:
            return None

        entry = plan.entry
        if plan.path_rules:
            path = _norm_path(refr_path or "")
            for rule, rule_entry in plan.path_rules:
                if _path_matches(rule, path):
                    entry = rule_entry
                    break
        if entry is None:
            return _UNKNOWN_RESULT
        if entry.parameters is None:
            return entry.result
        term = _search_term(refr_query, entry.parameters)
        if term is None:
            return entry.result
        return RefererClass(entry.result.medium, entry.result.source, term)


class RefererEnrichment:
    """refr_medium, refr_source and refr_term from the referrer (``[transform.referer]``).

    The classification depends on the page host (a referrer on the page's own site is
    ``internal``), so it is memoised per (referrer, page host).
    """

    name: ClassVar[str] = "referer"

    def __init__(self, classifier: RefererClassifier, cache_size: int = 10_000) -> None:
        self._classifier = classifier
        self._parts: BoundedCache[tuple[str, str | None], Part] = BoundedCache(cache_size, self._part)

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> RefererEnrichment | None:
        settings = config.referer
        if not settings.enabled:
            return None
        return cls(RefererClassifier.from_file(settings.dataset or None, config.internal_domains))

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        if hit.referrer_parts is None or hit.referrer is None:
            return None
        page = hit.page
        return self._parts[(hit.referrer, page.host if page is not None else None)]

    def _part(self, key: tuple[str, str | None]) -> Part:
        referrer, page_host = key
        columns: dict[str, Any] = {}
        refr = split_url(referrer)
        if refr is not None:
            found = self._classifier.classify(refr.host, refr.path, refr.query, page_host, scheme=refr.scheme)
            if found is not None:
                columns["refr_medium"] = found.medium
                if found.source:
                    columns["refr_source"] = found.source
                if found.term:
                    columns["refr_term"] = found.term
        clean_columns(columns)  # a search term may hold a decoded tab or control character
        return Part(columns, tuple(validate(columns)))
