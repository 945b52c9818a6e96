"""CloudFront log line -> canonical event: bind, decode, enrich, identify, validate.

:meth:`Canonicalizer.process` is the whole transform of one line.  It is pure: the same
line, source and configuration always give the same result (``etl_tstamp`` is an input),
and it never raises for bad data -- every problem becomes a :class:`BadRow`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import unquote

from pipeline import ARTIFACT, __version__
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.config import TransformConfig
from pipeline.formats.cloudfront import FieldLayout, LogLine
from pipeline.schema import CanonicalEvent, validate
from transform.campaign import CampaignRules
from transform.errors import TransformConfigError
from transform.ip import IpAnonymizer
from transform.pseudonymize import Pseudonymizer
from transform.referer import RefererClassifier
from transform.tracker import EVENT_TYPES, apply_query
from transform.urls import query_params, split_url
from transform.useragent import UserAgentEnricher

V_ETL: Final = f"{ARTIFACT}-{__version__}"
# Namespace of the deterministic event ids derived from a request (uuid5).
EVENT_ID_NAMESPACE: Final = uuid.UUID("6f1b0c2e-3a59-5d8e-9a57-2c1e0b8f4d31")
PAGE_VIEW: Final = EVENT_TYPES["pv"]
_URL_PARTS: Final = ("urlscheme", "urlhost", "urlport", "urlpath", "urlquery", "urlfragment")
_PAGE_COLUMNS: Final = tuple(f"page_{part}" for part in _URL_PARTS)
_REFR_COLUMNS: Final = tuple(f"refr_{part}" for part in _URL_PARTS)
_ENRICHMENT_CACHE_SIZE: Final = 10_000


class Skip(NamedTuple):
    """A line deliberately not turned into an event (counted under ``reason``)."""

    reason: str


SKIP_NOT_TRACKER: Final = Skip("not_tracker")
SKIP_ASSET: Final = Skip("asset")
SKIP_METHOD: Final = Skip("method")

Result = CanonicalEvent | BadRow | Skip


class _Part(NamedTuple):
    """Columns of one enrichment for one distinct input, validated once when computed."""

    columns: dict[str, Any]
    errors: tuple[str, ...]
    host: str | None = None


@dataclass(frozen=True, slots=True)
class _Binding:
    """Column positions of one ``#Fields`` layout (-1 where the layout lacks the field)."""

    width: int
    date: int
    time: int
    timestamp_ms: int
    timestamp_s: int
    c_ip: int
    method: int
    host: int
    stem: int
    status: int
    referer: int
    useragent: int
    query: int
    request_id: int
    host_header: int
    protocol: int
    forwarded_for: int
    sc_bytes: int
    missing: tuple[str, ...]


def _bind(layout: FieldLayout) -> _Binding:
    index = layout.index

    def at(name: str) -> int:
        return index.get(name, -1)

    missing = []
    has_time = ("date" in index and "time" in index) or "timestamp(ms)" in index or "timestamp" in index
    if not has_time:
        missing.append("date+time (or timestamp)")
    if "cs-uri-stem" not in index:
        missing.append("cs-uri-stem")
    return _Binding(
        width=layout.width,
        date=at("date"),
        time=at("time"),
        timestamp_ms=at("timestamp(ms)"),
        timestamp_s=at("timestamp"),
        c_ip=at("c-ip"),
        method=at("cs-method"),
        host=at("cs(Host)"),
        stem=at("cs-uri-stem"),
        status=at("sc-status"),
        referer=at("cs(Referer)"),
        useragent=at("cs(User-Agent)"),
        query=at("cs-uri-query"),
        request_id=at("x-edge-request-id"),
        host_header=at("x-host-header"),
        protocol=at("cs-protocol"),
        forwarded_for=at("x-forwarded-for"),
        sc_bytes=at("sc-bytes"),
        missing=tuple(missing),
    )


_date_cache: dict[str, int | None] = {}
_time_cache: dict[str, int | None] = {}
_DAYS_BEFORE_MONTH: Final = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _date_ms(text: str) -> int | None:
    """``YYYY-MM-DD`` to epoch milliseconds at midnight UTC (arithmetic, cached), or None."""
    cached = _date_cache.get(text, -1)
    if cached != -1:
        return cached
    value: int | None = None
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii():
        y, m, d = text[:4], text[5:7], text[8:]
        if y.isdigit() and m.isdigit() and d.isdigit():
            year, month, day = int(y), int(m), int(d)
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
            if 1970 <= year <= 9999 and 1 <= month <= 12 and 1 <= day <= month_days[month - 1]:
                y1 = year - 1
                days = 365 * (year - 1970) + (y1 // 4 - y1 // 100 + y1 // 400) - 477
                days += _DAYS_BEFORE_MONTH[month] + (1 if leap and month > 2 else 0) + day - 1
                value = days * 86_400_000
    if len(_date_cache) > 10_000:
        _date_cache.clear()
    _date_cache[text] = value
    return value


def _time_ms(text: str) -> int | None:
    """``HH:MM:SS`` (optionally ``.fff``) to milliseconds after midnight, or None."""
    cached = _time_cache.get(text, -1)
    if cached != -1:
        return cached
    value: int | None = None
    if len(text) >= 8 and text[2] == ":" and text[5] == ":" and text.isascii():
        h, m, s, frac = text[:2], text[3:5], text[6:8], text[8:]
        if h.isdigit() and m.isdigit() and s.isdigit() and int(h) < 24 and int(m) < 60 and int(s) < 61:
            millis = 0
            if frac:
                if frac[0] == "." and frac[1:].isdigit() and len(frac) <= 7:
                    millis = int((frac[1:] + "000")[:3])
                else:
                    millis = -1
            if millis >= 0:
                value = (int(h) * 3600 + int(m) * 60 + int(s)) * 1000 + millis
    if len(_time_cache) > 200_000:
        _time_cache.clear()
    _time_cache[text] = value
    return value


_log_values: dict[str, str] = {}


def _log_value(text: str) -> str | None:
    """A log field with CloudFront's own URL-encoding undone once; ``-`` means absent."""
    if text == "-" or not text:
        return None
    if "%" not in text:
        return text
    cached = _log_values.get(text)
    if cached is None:
        try:
            cached = unquote(text, errors="strict")
        except UnicodeDecodeError:
            cached = text  # not decodable: keep the logged form rather than invent characters
        if len(_log_values) >= 50_000:
            _log_values.clear()
        _log_values[text] = cached
    return cached


def resolve_pseudonymization_key(config: TransformConfig, environ: dict[str, str] | None = None) -> bytes | None:
    """The HMAC key when pseudonymization is enabled: from the environment, else the config file."""
    settings = config.pseudonymize
    if not settings.enabled:
        return None
    env = os.environ if environ is None else environ
    key = env.get(settings.key_env) or settings.key
    if not key:
        raise TransformConfigError(
            f"pseudonymization is enabled but no key is set: export {settings.key_env} "
            "(at least 16 bytes) or set transform.pseudonymize.key in an overlay file"
        )
    if len(key.encode("utf-8")) < 16:
        raise TransformConfigError("the pseudonymization key must be at least 16 bytes")
    return key.encode("utf-8")


class Canonicalizer:
    """Turns CloudFront log lines into canonical events (or bad rows, or counted skips)."""

    def __init__(
        self,
        config: TransformConfig,
        *,
        pseudonymization_key: bytes | None = None,
        referers: RefererClassifier | None = None,
    ) -> None:
        self.config = config
        self._bindings: dict[FieldLayout, _Binding] = {}
        self._last_layout: FieldLayout | None = None
        self._last_binding = _bind(FieldLayout(()))
        self._tracker_paths = frozenset(config.tracker_paths)
        self._skip_ext = tuple(ext.lower() for ext in config.page_view_skip_extensions)
        self._pv_methods = frozenset(config.page_view_methods)
        ip = config.ip
        self._ip = IpAnonymizer(ip.ipv4_prefix, ip.ipv6_prefix) if ip.anonymize else IpAnonymizer(None, None)
        self._ua = UserAgentEnricher(config.useragent.cache_size) if config.useragent.enabled else None
        if config.referer.enabled:
            self._referers: RefererClassifier | None = referers or RefererClassifier.from_file(
                config.referer.dataset or None, config.internal_domains
            )
        else:
            self._referers = None
        c = config.campaign
        self._campaign = (
            CampaignRules(c.medium, c.source, c.term, c.content, c.campaign, c.click_ids) if c.enabled else None
        )
        self._page_cache: dict[str, _Part] = {}
        self._referer_cache: dict[tuple[str, str | None], _Part] = {}
        self._ua_cache: dict[str, _Part] = {}
        if config.pseudonymize.enabled:
            if pseudonymization_key is None:
                raise TransformConfigError("pseudonymization is enabled but no key was given")
            self._pseudo: Pseudonymizer | None = Pseudonymizer(pseudonymization_key, config.pseudonymize.fields)
        else:
            self._pseudo = None
        self._hash: Callable[[bytes], str] = _hasher(config.fingerprint_algorithm)

    # ------------------------------------------------------------------ entry point
    def process(self, line: LogLine, source: SourceRef, etl_tstamp: int) -> Result:
        """Transform one log line.  ``source`` names the object; its line is taken from ``line``."""
        layout = line.layout
        if layout is None:
            return self._bad(FailureKind.SCHEMA_MISMATCH, ["no #Fields header precedes this line"], line, source)
        if layout is self._last_layout:  # layouts change only at a #Fields header
            binding = self._last_binding
        else:
            found = self._bindings.get(layout)
            binding = found if found is not None else self._bindings.setdefault(layout, _bind(layout))
            self._last_layout, self._last_binding = layout, binding
        if binding.missing:
            return self._bad(
                FailureKind.SCHEMA_MISMATCH,
                [f"the #Fields header lacks required field(s): {', '.join(binding.missing)}"],
                line,
                source,
            )
        f = line.text.split("\t")
        if len(f) != binding.width:
            return self._bad(
                FailureKind.FIELD_COUNT,
                [f"expected {binding.width} tab-separated fields as the #Fields header declares, found {len(f)}"],
                line,
                source,
            )
        day = _date_cache.get(f[binding.date]) if binding.date >= 0 else None
        clock = _time_cache.get(f[binding.time]) if day is not None else None
        if clock is not None and binding.timestamp_ms < 0:
            collector: int | None = day + clock  # type: ignore[operator]
            field_errors: list[str] = []
        else:  # first sight of this date or time, another time field, or an invalid value
            collector, field_errors = self._collector_tstamp(f, binding)
        if binding.status >= 0:
            status = f[binding.status]
            if not (len(status) == 3 and status.isdigit()) and status != "-":
                field_errors.append(f"sc-status: {status[:50]!r} is not a 3-digit HTTP status")
        if binding.sc_bytes >= 0:
            sc_bytes = f[binding.sc_bytes]
            if not (sc_bytes.isdigit() and sc_bytes.isascii()) and sc_bytes != "-":
                field_errors.append(f"sc-bytes: {sc_bytes[:50]!r} is not a byte count")
        if field_errors or collector is None:
            return self._bad(FailureKind.FIELD_INVALID, field_errors, line, source)
        method = f[binding.method] if binding.method >= 0 else "GET"
        stem = f[binding.stem]
        if method == "GET" and stem in self._tracker_paths:
            return self._tracker_event(f, binding, collector, line, source, etl_tstamp)
        if self.config.non_tracker_policy == "skip":
            return SKIP_NOT_TRACKER
        if method not in self._pv_methods:
            return SKIP_METHOD
        if stem.lower().endswith(self._skip_ext):
            return SKIP_ASSET
        return self._request_page_view(f, binding, collector, line, source, etl_tstamp)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _collector_tstamp(f: list[str], b: _Binding) -> tuple[int | None, list[str]]:
        errors: list[str] = []
        if b.timestamp_ms >= 0:
            text = f[b.timestamp_ms]
            if text.isascii() and text.isdigit() and len(text) <= 15:
                return int(text), errors
            errors.append(f"timestamp(ms): {text[:50]!r} is not epoch milliseconds")
            return None, errors
        if b.date >= 0 and b.time >= 0:
            day, clock = _date_ms(f[b.date]), _time_ms(f[b.time])
            if day is None:
                errors.append(f"date: {f[b.date][:50]!r} is not a valid YYYY-MM-DD date")
            if clock is None:
                errors.append(f"time: {f[b.time][:50]!r} is not a valid HH:MM:SS time")
            if day is None or clock is None:
                return None, errors
            return day + clock, errors
        text = f[b.timestamp_s]
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < 253_402_300_800 or not text.isascii():
            errors.append(f"timestamp: {text[:50]!r} is not epoch seconds")
            return None, errors
        return round(seconds * 1000), errors

    def _bad(self, kind: FailureKind, messages: list[str], line: LogLine, source: SourceRef) -> BadRow:
        return BadRow(kind, tuple(messages), source.at(line.line_no), raw=line.text)

    def _base_event(self, collector: int, etl_tstamp: int) -> CanonicalEvent:
        return {
            "collector_tstamp": collector,
            "etl_tstamp": etl_tstamp,
            "v_collector": self.config.collector_name,
            "v_etl": V_ETL,
        }

    def _tracker_event(
        self, f: list[str], b: _Binding, collector: int, line: LogLine, source: SourceRef, etl_tstamp: int
    ) -> Result:
        query = f[b.query] if b.query >= 0 else "-"
        pairs: list[str] = []
        if query and query != "-":
            if "%25" in query:
                # CloudFront percent-encodes '%' once more when it writes the log: undo exactly once.
                query = query.replace("%25", "%")
            pairs = query.split("&")
        errors: list[str] = []
        flags: list[str] = []
        specials: dict[str, str] = {}
        fingerprinted: list[str] = []
        event = self._base_event(collector, etl_tstamp)
        apply_query(event, pairs, errors, flags, specials, fingerprinted)
        if errors:
            # One bad row says everything wrong: add what validation finds in the decoded fields.
            errors.extend(validate(event))
            return self._bad(FailureKind.TRACKER_PROTOCOL, errors, line, source)
        header_ua = _log_value(f[b.useragent]) if b.useragent >= 0 else None
        header_referer = _log_value(f[b.referer]) if b.referer >= 0 else None
        page_url = specials.get("url") or header_referer
        referrer = specials.get("refr")
        useragent = specials.get("ua") or header_ua
        tracker_ip = specials.get("ip")
        parts = self._enrich(event, f, b, page_url, referrer, useragent, tracker_ip)
        self._derive_timestamps(event, collector)
        if "event_id" not in event:
            event["event_id"] = self._derived_event_id(f, b, line, source)
        event["event_fingerprint"] = self._fingerprint(fingerprinted)
        if flags:
            event["etl_tags"] = ",".join(flags)[:500]
        return self._finish(event, parts, line, source)

    def _request_page_view(
        self, f: list[str], b: _Binding, collector: int, line: LogLine, source: SourceRef, etl_tstamp: int
    ) -> Result:
        event = self._base_event(collector, etl_tstamp)
        (
            event["event"],
            event["event_vendor"],
            event["event_name"],
            event["event_format"],
            event["event_version"],
        ) = PAGE_VIEW
        event["platform"] = "srv"
        host = None
        if b.host_header >= 0:
            host = _log_value(f[b.host_header])
        if host is None and b.host >= 0:
            host = _log_value(f[b.host])
        scheme = (f[b.protocol] if b.protocol >= 0 else "") or "https"
        if scheme not in ("http", "https"):
            scheme = "https"
        query = f[b.query] if b.query >= 0 else "-"
        page_url = None
        if host:
            page_url = f"{scheme}://{host}{_log_value(f[b.stem]) or '/'}"
            if query and query != "-":
                page_url += "?" + query.replace("%25", "%")
        referrer = _log_value(f[b.referer]) if b.referer >= 0 else None
        useragent = _log_value(f[b.useragent]) if b.useragent >= 0 else None
        parts = self._enrich(event, f, b, page_url, referrer, useragent, None)
        event["derived_tstamp"] = collector
        event["event_id"] = self._derived_event_id(f, b, line, source)
        identity = "\t".join(f[i] for i in (b.date, b.time, b.c_ip, b.stem, b.query, b.useragent, b.referer) if i >= 0)
        event["event_fingerprint"] = self._hash(identity.encode("utf-8", "surrogatepass"))
        return self._finish(event, parts, line, source)

    def _enrich(
        self,
        event: CanonicalEvent,
        f: list[str],
        b: _Binding,
        page_url: str | None,
        referrer: str | None,
        useragent: str | None,
        tracker_ip: str | None,
    ) -> list[_Part]:
        """Fill the per-request columns; return the cached enrichment parts to merge.

        Page URL, referrer and user-agent columns are computed (and validated) once per
        distinct input: they repeat heavily within a log.  :meth:`_finish` merges them.
        """
        parts: list[_Part] = []
        page_host = None
        if page_url:
            page = self._page_columns(page_url)
            page_host = page.host
            parts.append(page)
        if referrer:
            parts.append(self._referer_columns(referrer, page_host))
        if useragent:
            event["useragent"] = useragent
            if self._ua is not None:
                parts.append(self._ua_columns(useragent))
        forwarded = f[b.forwarded_for] if b.forwarded_for >= 0 else None
        if forwarded and "%" in forwarded:
            forwarded = unquote(forwarded)
        address = self._ip.user_ipaddress(tracker_ip, forwarded, f[b.c_ip] if b.c_ip >= 0 else None)
        if address is not None:
            event["user_ipaddress"] = address
        if self._pseudo is not None:
            self._pseudo.apply(event)
        return parts

    def _page_columns(self, page_url: str) -> _Part:
        """page_url, its parts and the campaign columns of its query (with the page host)."""
        cached = self._page_cache.get(page_url)
        if cached is None:
            columns: dict[str, Any] = {"page_url": page_url}
            page = split_url(page_url)
            if page is not None:
                columns.update((c, v) for c, v in zip(_PAGE_COLUMNS, page, strict=True) if v is not None)
                if self._campaign is not None and page.query:
                    columns.update(self._campaign.columns(query_params(page.query)))
            cached = _Part(columns, tuple(validate(columns)), page.host if page is not None else None)
            if len(self._page_cache) >= _ENRICHMENT_CACHE_SIZE:
                self._page_cache.clear()
            self._page_cache[page_url] = cached
        return cached

    def _referer_columns(self, referrer: str, page_host: str | None) -> _Part:
        """page_referrer, its parts and its classification (which depends on the page host)."""
        key = (referrer, page_host)
        cached = self._referer_cache.get(key)
        if cached is None:
            columns: dict[str, Any] = {"page_referrer": referrer}
            refr = split_url(referrer)
            if refr is not None:
                columns.update((c, v) for c, v in zip(_REFR_COLUMNS, refr, strict=True) if v is not None)
                if self._referers is not None:
                    found = self._referers.classify(refr.host, refr.path, refr.query, page_host)
                    if found is not None:
                        columns["refr_medium"] = found.medium
                        if found.source:
                            columns["refr_source"] = found.source
                        if found.term:
                            columns["refr_term"] = found.term
            cached = _Part(columns, tuple(validate(columns)))
            if len(self._referer_cache) >= _ENRICHMENT_CACHE_SIZE:
                self._referer_cache.clear()
            self._referer_cache[key] = cached
        return cached

    def _ua_columns(self, useragent: str) -> _Part:
        cached = self._ua_cache.get(useragent)
        if cached is None:
            assert self._ua is not None
            columns = self._ua.columns(useragent)
            cached = _Part(columns, tuple(validate(columns)))
            if len(self._ua_cache) >= _ENRICHMENT_CACHE_SIZE:
                self._ua_cache.clear()
            self._ua_cache[useragent] = cached
        return cached

    @staticmethod
    def _derive_timestamps(event: CanonicalEvent, collector: int) -> None:
        """derived_tstamp as Snowplow computes it.

        true_tstamp when sent; else collector_tstamp corrected for the device clock skew,
        collector - (dvce_sent - dvce_created), when the device created the event before
        sending it; else collector_tstamp.
        """
        true_tstamp = event.get("true_tstamp")
        if true_tstamp is not None:
            event["derived_tstamp"] = true_tstamp
            return
        created, sent = event.get("dvce_created_tstamp"), event.get("dvce_sent_tstamp")
        if created is not None and sent is not None and created < sent:
            event["derived_tstamp"] = max(collector - (sent - created), 0)
        else:
            event["derived_tstamp"] = collector

    @staticmethod
    def _derived_event_id(f: list[str], b: _Binding, line: LogLine, source: SourceRef) -> str:
        request_id = f[b.request_id] if b.request_id >= 0 else "-"
        if request_id and request_id != "-":
            name = "request:" + request_id
        else:
            # The file name (not its folder or bucket) keeps ids equal between a local copy and S3.
            name = f"line:{source.object.rsplit('/', 1)[-1]}:{line.line_no}"
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))

    def _fingerprint(self, pairs: list[str]) -> str:
        """Hash of the sorted ``name=value`` pairs as sent (without the ones a retry changes)."""
        pairs.sort()
        return self._hash("&".join(pairs).encode("utf-8", "surrogatepass"))

    def _finish(self, event: CanonicalEvent, parts: list[_Part], line: LogLine, source: SourceRef) -> Result:
        """Validate the event, merge the (already validated) enrichment parts, or fail with all errors."""
        problems = validate(event)
        for part in parts:
            problems.extend(part.errors)
        if problems:
            return self._bad(FailureKind.SCHEMA_VIOLATION, problems, line, source)
        for part in parts:
            event.update(part.columns)
        return event


def _hasher(algorithm: str) -> Callable[[bytes], str]:
    if algorithm == "md5":
        return lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest()
    if algorithm == "sha1":
        return lambda data: hashlib.sha1(data, usedforsecurity=False).hexdigest()
    return lambda data: hashlib.sha256(data).hexdigest()


__all__ = ["Canonicalizer", "Result", "Skip", "resolve_pseudonymization_key"]
