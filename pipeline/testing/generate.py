"""Deterministic generator of realistic CloudFront access logs (standard logging, legacy W3C).

Stdlib only.  The same :class:`GenerateOptions` always produce byte-identical files: every
random choice comes from a ``random.Random`` seeded from the options and the file index, and
gzip members are written with ``mtime=0`` and an empty file name.

Two profiles (``GenerateOptions.profile``): ``classic``, described here, and ``high-cardinality``,
like real traffic (its section below says how; the benchmarks' headline).

Classic traffic mix (roughly): 55 % Snowplow pixel tracker hits (``GET /i``, a few ``/ice.png``),
30 % HTML page requests, 15 % static assets (with a few 304s and 404s).  A pool of visitors
(each with a duid, user agent, IP, edge location...) browses the site; their tracker hits
carry page views, page pings, structured, self-describing and ecommerce events, and about
1 % of tracker hits are exact retries (same ``eid``, same parameters except ``stm``).

Values are encoded the way CloudFront writes them (its access-log documentation, "Log file fields"):
``cs-uri-query`` keeps the tracker's percent-encoding and CloudFront then encodes ``%`` as
``%25`` (``%3A`` appears as ``%253A``); ``cs(User-Agent)``, ``cs(Referer)`` and
``x-forwarded-for`` are URL-encoded once (spaces become ``%20``).

Malformed lines are injected at ``malformed_ratio``: a missing field, an extra field, invalid
UTF-8 in the user agent, an impossible date, a tracker hit with ``e=zz`` and one with
``eid=not-a-uuid``.  Lines are ``str``; the invalid UTF-8 line carries lone surrogates
(``surrogateescape``) that the writer turns into the raw bytes ``b"\\xff\\xfe"``.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import hashlib
import io
import itertools
import json
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import quote

from pipeline.formats.cloudfront import GENERATIONS, legacy_layout
from pipeline.testing.user_agents import USER_AGENTS as _REAL_USER_AGENTS

__all__ = [
    "MALFORMED_KINDS",
    "PROFILES",
    "GenerateOptions",
    "encode_bytes",
    "file_name",
    "generate_logs",
    "iter_log_lines",
    "write_log_file",
]

# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class GenerateOptions:
    """What :func:`generate_logs` writes: how many files and lines, the seed, the hours covered, the layout."""

    __test__ = False  # not a pytest test class

    files: int = 4
    lines_per_file: int = 1000
    seed: int = 42
    start: datetime = datetime(2024, 11, 15, tzinfo=UTC)
    """First hour covered (truncated to the hour, UTC)."""
    hours: int = 24
    """Files are spread over this many hours, one hour per file in round-robin."""
    fields: int = 33
    """Legacy generation (field count), one of GENERATIONS."""
    malformed_ratio: float | None = None
    """Share of deliberately malformed lines; None: the profile's own (0.2 % classic, 0.5 % high-cardinality)."""
    distribution_id: str = "E2EXAMPLE1ABCD"
    gzip: bool = True
    profile: str = "classic"
    """What the traffic looks like, one of PROFILES: ``classic`` (a small cast of visitors, pages and
    user agents, repeated) or ``high-cardinality`` (like real traffic: a distinct IP on most lines,
    thousands of URLs and referers, a few hundred user agents; the benchmarks' headline)."""

    @property
    def malformed_share(self) -> float:
        """The malformed-line share in effect: ``malformed_ratio``, or the profile's default."""
        if self.malformed_ratio is not None:
            return self.malformed_ratio
        return _PROFILE_MALFORMED[self.profile]

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {self.profile!r}")
        if self.fields not in GENERATIONS:
            raise ValueError(f"fields must be one of {GENERATIONS}, not {self.fields}")
        if self.files < 0 or self.lines_per_file < 0:
            raise ValueError("files and lines_per_file must be >= 0")
        if self.hours < 1:
            raise ValueError("hours must be >= 1")
        if not 0.0 <= self.malformed_share <= 1.0:
            raise ValueError("malformed_ratio must be within [0, 1]")
        if not re.fullmatch(r"[A-Z0-9]+", self.distribution_id):
            raise ValueError(f"distribution_id must be upper-case alphanumeric: {self.distribution_id!r}")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")


PROFILES: Final[tuple[str, ...]] = ("classic", "high-cardinality")
_PROFILE_MALFORMED: Final[dict[str, float]] = {"classic": 0.002, "high-cardinality": 0.005}

MALFORMED_KINDS: Final[tuple[str, ...]] = (
    "missing_field",
    "extra_field",
    "invalid_utf8",
    "bad_date",
    "bad_event_type",
    "bad_event_id",
)

# --------------------------------------------------------------------------------------------
# Static vocabulary

CF_HOST: Final = "d111111abcdef8.cloudfront.net"
SITE_HOST: Final = "www.example.com"
SITE: Final = f"https://{SITE_HOST}"
_PIXEL_GIF_LEN: Final = 43

# (user agent, weight, is_bot)
USER_AGENTS: Final[tuple[tuple[str, int, bool], ...]] = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        22,
        False,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36",
        8,
        False,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
        9,
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
        16,
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
        14,
        False,
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", 3, False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", 4, False),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        6,
        False,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.7 Mobile/15E148 Safari/604.1",
        3,
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        3,
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        3,
        False,
    ),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 2, True),
    (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        1,
        True,
    ),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 1, True),
    ("curl/8.5.0", 1, True),
)
_UA_WEIGHTS: Final = tuple(weight for _, weight, _ in USER_AGENTS)

EDGE_LOCATIONS: Final[tuple[str, ...]] = (
    "IAD89-C1",
    "IAD55-P4",
    "DFW56-P1",
    "SEA19-C2",
    "FRA56-P7",
    "FRA60-P1",
    "SOF50-P2",
    "LHR61-P3",
    "CDG52-P2",
    "AMS58-P4",
    "DUB56-P1",
    "NRT57-P3",
    "SIN2-P5",
    "GRU3-C1",
)

# path -> (title, approximate html size)
PAGES: Final[tuple[tuple[str, str, int], ...]] = (
    ("/", "Acme – Home", 48_213),
    ("/products", "All products | Acme", 61_877),
    ("/products/widget-42", "Widget 42 – Acme Store", 38_902),
    ("/products/gadget-7", "Gadget 7 – Acme Store", 37_415),
    ("/pricing", "Pricing | Acme", 22_031),
    ("/blog", "Blog | Acme", 29_664),
    ("/blog/2024/11/hello-world", "Hello, World! | Acme Blog", 24_380),
    ("/blog/2024/10/cafe-culture", "Café culture at Acme – Blog", 26_105),
    ("/about", "About us · Acme", 17_540),
    ("/contact", "Contact | Acme", 12_876),
    ("/cart", "Your cart | Acme", 9_311),
    ("/checkout", "Checkout | Acme", 11_092),
    ("/search", "Search results | Acme", 19_770),
)
_PAGE_WEIGHTS: Final = (20, 8, 10, 8, 6, 5, 6, 4, 3, 2, 3, 2, 4)
_TITLES: Final = {path: title for path, title, _ in PAGES}
_HTML_SIZES: Final = {path: size for path, _, size in PAGES}

# path -> (content type, size)
ASSETS: Final[tuple[tuple[str, str, int], ...]] = (
    ("/static/app.3f2a.js", "application/javascript", 184_322),
    ("/static/vendor.91bc.js", "application/javascript", 402_117),
    ("/static/site.css", "text/css", 41_906),
    ("/img/logo.png", "image/png", 12_448),
    ("/img/hero.webp", "image/webp", 96_310),
    ("/favicon.ico", "image/x-icon", 15_086),
    ("/static/sp.js", "application/javascript", 78_233),
)
MISSING_ASSETS: Final[tuple[str, ...]] = ("/apple-touch-icon.png", "/img/old-banner.jpg", "/wp-login.php")

SEARCH_TERMS: Final[tuple[str, ...]] = (
    "acme widgets",
    "widget 42 review",
    "best gadget 2024",
    "acme pricing",
    "café acme",
    "acme",
)
SITE_SEARCHES: Final[tuple[str, ...]] = ("blue widget", "gadget", "gift card", "crème brûlée maker")
CAMPAIGNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("facebook", "social", "black_friday_2024"),
    ("twitter", "social", "launch"),
    ("newsletter", "email", "nov_2024_digest"),
    ("google", "cpc", "brand"),
    ("bing", "cpc", "generic widgets"),
)
TIMEZONES: Final[tuple[str, ...]] = (
    "Europe/London",
    "Europe/Berlin",
    "Europe/Sofia",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Singapore",
)
LANGUAGES: Final[tuple[str, ...]] = ("en-GB", "en-US", "de-DE", "bg-BG", "fr-FR", "pt-BR", "ja-JP", "en")
DESKTOP_RES: Final[tuple[str, ...]] = ("1920x1080", "2560x1440", "1536x864", "1440x900", "1366x768")
MOBILE_RES: Final[tuple[str, ...]] = ("390x844", "393x873", "412x915", "375x667", "820x1180")
TRACKER_VERSIONS: Final[tuple[str, ...]] = ("js-3.17.0", "js-3.17.0", "js-3.23.1", "js-2.18.2")
APP_IDS: Final[tuple[str, ...]] = ("acme-web", "acme-web", "acme-web", "acme-shop")
FIRST_NAMES: Final[tuple[str, ...]] = ("jane.doe", "john.smith", "maria", "ivan.petrov", "li.wei", "sam")

UNSTRUCT_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
WEB_PAGE_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"

# Characters CloudFront leaves alone when it URL-encodes a field ('%' is never safe: it becomes %25).
_CF_SAFE_QUERY: Final = "=&/:;,+()!*'@$?~._-"
_CF_SAFE_HEADER: Final = "/:;,+()!*'@$?=&~._-#[]"
# What JavaScript's encodeURIComponent leaves alone (plus quote's own always-safe set).
_JS_SAFE: Final = "!~*'()"


def _js_encode(value: str) -> str:
    """encodeURIComponent: what the JavaScript tracker does to each parameter value."""
    return quote(value, safe=_JS_SAFE)


def _cf_query(query: str) -> str:
    """How CloudFront logs cs-uri-query: '%' -> '%25', spaces -> '%20', other unsafe bytes encoded."""
    return quote(query, safe=_CF_SAFE_QUERY) if query else "-"


def _cf_header(value: str | None) -> str:
    """How CloudFront logs cs(User-Agent) / cs(Referer): URL-encoded once."""
    return quote(value, safe=_CF_SAFE_HEADER) if value else "-"


def _b64url(document: object) -> str:
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _request_id(rng: random.Random) -> str:
    """A 56-character x-edge-request-id: 54 base64url characters and '=='."""
    return base64.urlsafe_b64encode(rng.getrandbits(320).to_bytes(40, "big")).decode("ascii")


def _ipv4(rng: random.Random) -> str:
    prefix = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{prefix}.{rng.randint(1, 254)}"


def _ipv6(rng: random.Random) -> str:
    groups = [f"{rng.getrandbits(16):x}" for _ in range(4)]
    return "2001:db8:" + ":".join(groups[:2]) + "::" + ":".join(groups[2:])


# --------------------------------------------------------------------------------------------
# Visitors and sessions


@dataclass(frozen=True)
class _Visitor:
    number: int
    user_agent: str
    is_bot: bool
    mobile: bool
    ip: str
    forwarded_for: str | None
    edge: str
    http_version: str
    tls: str
    duid: str
    first_vid: int
    res: str
    lang: str
    tz: str
    uid: str | None
    tracker_version: str
    app_id: str
    color_depth: str

    @classmethod
    def create(cls, seed: int, number: int) -> _Visitor:
        rng = random.Random(f"clickstream-etl:visitor:{seed}:{number}")
        ua_index = rng.choices(range(len(USER_AGENTS)), weights=_UA_WEIGHTS)[0]
        user_agent, _, is_bot = USER_AGENTS[ua_index]
        mobile = any(token in user_agent for token in ("iPhone", "Android", "iPad"))
        ip = _ipv6(rng) if rng.random() < 0.15 else _ipv4(rng)
        forwarded = None
        if not is_bot and rng.random() < 0.05:
            forwarded = f"{_ipv4(rng)}, 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if is_bot:
            http_version = "HTTP/1.1"
        else:
            http_version = rng.choices(("HTTP/2.0", "HTTP/1.1", "HTTP/3.0"), weights=(70, 15, 15))[0]
        uid: str | None = None
        roll = rng.random()
        if roll < 0.12:
            uid = f"{rng.choice(FIRST_NAMES)}{rng.randint(1, 99)}@example.org"
        elif roll < 0.2:
            uid = str(rng.randint(10_000, 9_999_999))
        return cls(
            number=number,
            user_agent=user_agent,
            is_bot=is_bot,
            mobile=mobile,
            ip=ip,
            forwarded_for=forwarded,
            edge=rng.choice(EDGE_LOCATIONS),
            http_version=http_version,
            tls="TLSv1.3" if rng.random() < 0.8 else "TLSv1.2",
            duid=_uuid4(rng),
            first_vid=rng.randint(1, 12),
            res=rng.choice(MOBILE_RES if mobile else DESKTOP_RES),
            lang=rng.choice(LANGUAGES),
            tz=rng.choice(TIMEZONES),
            uid=uid,
            tracker_version=rng.choice(TRACKER_VERSIONS),
            app_id=rng.choice(APP_IDS),
            color_depth=rng.choice(("24", "24", "24", "30", "32")),
        )


@dataclass
class _Session:
    visitor: _Visitor
    sid: str
    vid: int
    entry_referrer: str | None
    landing_query: str
    url: str | None = None
    path: str = "/"
    referrer: str | None = None
    page_view_id: str = ""
    pv_sent: bool = False
    pages: int = 0
    scroll_y: int = 0
    viewport: str = "1280x720"
    doc_size: str = "1280x3000"


@dataclass
class _TrackerHit:
    session: _Session
    params: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _ResponseSizes:
    """How a profile draws a line's byte counts: response headers, and the request beyond its known parts."""

    header_max: int
    request_base: int
    request_spread: int


_CLASSIC_SIZES: Final = _ResponseSizes(header_max=520, request_base=120, request_spread=400)
_SHOP_SIZES: Final = _ResponseSizes(header_max=620, request_base=160, request_spread=900)


def _finish_record(  # noqa: PLR0913 - the response fields of one log line
    rng: random.Random,
    record: dict[str, str],
    stem: str,
    query: str,
    referer: str | None,
    status: int,
    result: str,
    content_type: str | None,
    body: int | None,
    sizes: _ResponseSizes,
) -> dict[str, str]:
    """Fill a log line's request and response fields (both profiles; the draws in the same order)."""
    header_bytes = rng.randint(280, sizes.header_max)
    record["cs-uri-stem"] = stem
    record["cs-uri-query"] = _cf_query(query)
    record["cs(Referer)"] = _cf_header(referer)
    record["sc-status"] = str(status)
    record["x-edge-result-type"] = result
    record["x-edge-response-result-type"] = result
    record["x-edge-detailed-result-type"] = result
    record["sc-content-type"] = content_type or "-"
    record["sc-content-len"] = "-" if body is None else str(body)
    record["sc-bytes"] = str(header_bytes + (body or 0))
    request_bytes = sizes.request_base + len(stem) + len(query) + len(record["cs(User-Agent)"]) + len(referer or "")
    record["cs-bytes"] = str(request_bytes + rng.randint(0, sizes.request_spread))
    return record


def _ssl_cipher(tls: str) -> str:
    return "TLS_AES_128_GCM_SHA256" if tls == "TLSv1.3" else "ECDHE-RSA-AES128-GCM-SHA256"


# --------------------------------------------------------------------------------------------
# One file


class _FileGenerator:
    def __init__(self, options: GenerateOptions, file_index: int) -> None:
        self.options = options
        self.index = file_index
        self.rng = random.Random(f"clickstream-etl:file:{options.seed}:{file_index}")
        self.hour_start = _hour_of(options, file_index)
        self.hour_ms = int(self.hour_start.timestamp()) * 1000
        lines = max(options.lines_per_file, 1)
        active = max(3, lines // 7)
        pool = max(50, active * 4)
        self.active = self.rng.sample(range(pool), active)
        self.sessions: dict[int, _Session] = {}
        self.history: list[_TrackerHit] = []

    # -- visitors ------------------------------------------------------------------------------
    def _session(self, human: bool = False) -> _Session:
        """A visitor of the active set (heavy users first); ``human`` skips bots."""
        rng = self.rng
        number = self.active[int(len(self.active) * rng.random() ** 2)]
        visitor = _Visitor.create(self.options.seed, number)
        while human and visitor.is_bot:
            number = self.active[rng.randrange(len(self.active))] if rng.random() < 0.9 else number + 7919
            visitor = _Visitor.create(self.options.seed, number)
        session = self.sessions.get(number)
        if session is None:
            session = self._new_session(visitor)
            self.sessions[number] = session
        return session

    def _new_session(self, visitor: _Visitor) -> _Session:
        rng = self.rng
        vid = visitor.first_vid + (self.index % self.options.hours) // 3
        referrer: str | None
        landing_query = ""
        roll = rng.random()
        term = rng.choice(SEARCH_TERMS)
        if visitor.is_bot:
            referrer = None
        elif roll < 0.30:
            referrer = f"https://www.google.com/search?q={quote(term, safe='').replace('%20', '+')}"
            if rng.random() < 0.3:
                landing_query = f"gclid={base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip('=')}"
        elif roll < 0.38:
            referrer = f"https://www.bing.com/search?q={quote(term, safe='').replace('%20', '+')}&form=QBLH"
            if rng.random() < 0.3:
                landing_query = f"msclkid={rng.getrandbits(128):032x}"
        elif roll < 0.46:
            referrer = "https://l.facebook.com/"
            landing_query = _utm(rng, CAMPAIGNS[0])
        elif roll < 0.51:
            referrer = f"https://t.co/{base64.b32encode(rng.randbytes(5)).decode().lower()}"
            landing_query = _utm(rng, CAMPAIGNS[1])
        elif roll < 0.55:
            referrer = "https://mail.google.com/"
            landing_query = _utm(rng, CAMPAIGNS[2])
        else:
            referrer = None
            if rng.random() < 0.05:
                landing_query = _utm(rng, rng.choice(CAMPAIGNS))
        width, height = (int(part) for part in visitor.res.split("x"))
        vp_w = width if visitor.mobile else max(320, width - rng.choice((0, 0, 17, 200, 600)))
        vp_h = height - rng.choice((110, 120, 160, 250))
        return _Session(
            visitor=visitor,
            sid=_uuid4(rng),
            vid=vid,
            entry_referrer=referrer,
            landing_query=landing_query,
            viewport=f"{vp_w}x{vp_h}",
        )

    def _navigate(self, session: _Session) -> str:
        """Move the session to a new page; returns the page request's query string."""
        rng = self.rng
        path = rng.choices([p for p, _, _ in PAGES], weights=_PAGE_WEIGHTS)[0]
        query = ""
        if session.pages == 0:
            session.referrer = session.entry_referrer
            query = session.landing_query
        else:
            session.referrer = session.url
        if path == "/search":
            query = "q=" + quote(rng.choice(SITE_SEARCHES), safe="")
        elif path.startswith("/products/") and rng.random() < 0.15:
            query = (query + "&" if query else "") + f"variant={rng.choice(('blue', 'red', 'xl'))}"
        session.path = path
        session.url = SITE + path + ("?" + query if query else "")
        session.page_view_id = _uuid4(rng)
        session.pv_sent = False
        session.pages += 1
        session.scroll_y = 0
        width = int(session.viewport.split("x")[0])
        session.doc_size = f"{width}x{rng.randint(900, 9000)}"
        return query

    # -- lines ----------------------------------------------------------------------------------
    def record(self, kind: str, offset_ms: int, malformed: str | None = None) -> dict[str, str]:
        if malformed in ("bad_event_type", "bad_event_id"):
            kind = "tracker"
        if kind == "tracker":
            return self._tracker(offset_ms, malformed)
        if kind == "page":
            return self._page(offset_ms)
        return self._asset(offset_ms)

    def _common(self, session: _Session, offset_ms: int) -> dict[str, str]:
        rng = self.rng
        when = self.hour_start + timedelta(milliseconds=offset_ms)
        visitor = session.visitor
        taken = round(rng.uniform(0.001, 0.2), 3)
        return {
            "date": when.strftime("%Y-%m-%d"),
            "time": when.strftime("%H:%M:%S"),
            "x-edge-location": visitor.edge,
            "c-ip": visitor.ip,
            "cs-method": "GET",
            "cs(Host)": CF_HOST,
            "cs(User-Agent)": _cf_header(visitor.user_agent),
            "cs(Cookie)": "-",
            "x-edge-request-id": _request_id(rng),
            "x-host-header": SITE_HOST,
            "cs-protocol": "https",
            "time-taken": f"{taken:.3f}",
            "x-forwarded-for": _cf_header(visitor.forwarded_for),
            "ssl-protocol": visitor.tls,
            "ssl-cipher": _ssl_cipher(visitor.tls),
            "cs-protocol-version": visitor.http_version,
            "fle-status": "-",
            "fle-encrypted-fields": "-",
            "c-port": str(rng.randint(1024, 65535)),
            "time-to-first-byte": f"{max(0.001, round(taken * rng.uniform(0.3, 1.0), 3)):.3f}",
            "sc-range-start": "-",
            "sc-range-end": "-",
        }

    def _finish(
        self,
        record: dict[str, str],
        *,
        stem: str,
        query: str,
        referer: str | None,
        status: int,
        result: str,
        content_type: str | None,
        body: int | None,
    ) -> dict[str, str]:
        return _finish_record(
            self.rng, record, stem, query, referer, status, result, content_type, body, _CLASSIC_SIZES
        )

    def _page(self, offset_ms: int) -> dict[str, str]:
        rng = self.rng
        session = self._session()
        query = self._navigate(session)
        if session.visitor.is_bot:
            session.pv_sent = True  # bots run no JavaScript
        record = self._common(session, offset_ms)
        result = rng.choices(("Miss", "Hit", "RefreshHit"), weights=(40, 50, 10))[0]
        size = _HTML_SIZES[session.path] + rng.randint(-300, 300)
        return self._finish(
            record,
            stem=session.path,
            query=query,
            referer=session.referrer,
            status=200,
            result=result,
            content_type="text/html",
            body=size,
        )

    def _asset(self, offset_ms: int) -> dict[str, str]:
        rng = self.rng
        session = self._session()
        if session.url is None:
            self._navigate(session)
        record = self._common(session, offset_ms)
        roll = rng.random()
        referer = session.url
        if roll < 0.04:
            stem = rng.choice(MISSING_ASSETS)
            return self._finish(
                record,
                stem=stem,
                query="",
                referer=referer,
                status=404,
                result="Error",
                content_type="text/html",
                body=rng.randint(900, 1100),
            )
        stem, content_type, size = rng.choice(ASSETS)
        query = "v=20241101" if stem.endswith(".css") and rng.random() < 0.3 else ""
        if roll < 0.12:
            return self._finish(
                record,
                stem=stem,
                query=query,
                referer=referer,
                status=304,
                result="Hit",
                content_type=None,
                body=None,
            )
        result = rng.choices(("Hit", "Miss", "RefreshHit"), weights=(85, 10, 5))[0]
        return self._finish(
            record,
            stem=stem,
            query=query,
            referer=referer,
            status=200,
            result=result,
            content_type=content_type,
            body=size,
        )

    def _tracker(self, offset_ms: int, malformed: str | None) -> dict[str, str]:
        rng = self.rng
        line_ms = self.hour_ms + offset_ms
        stm = str(line_ms - rng.randint(5, 250))
        if malformed is None and self.history and rng.random() < 0.01:
            original = rng.choice(self.history[-20:])
            params = [(key, stm if key == "stm" else value) for key, value in original.params]
            session = original.session
        else:
            session = self._session(human=True)
            params = self._tracker_params(session, stm)
            if malformed == "bad_event_type":
                params = [(key, "zz" if key == "e" else value) for key, value in params]
            elif malformed == "bad_event_id":
                params = [(key, "not-a-uuid" if key == "eid" else value) for key, value in params]
            else:
                self.history.append(_TrackerHit(session, params))
                if len(self.history) > 200:
                    del self.history[:100]
        query = "&".join(f"{key}={_js_encode(value)}" for key, value in params)
        stem = "/ice.png" if rng.random() < 0.03 else "/i"
        record = self._common(session, offset_ms)
        referer = session.url if rng.random() < 0.2 else SITE + "/"
        result = rng.choices(("Hit", "RefreshHit", "Miss"), weights=(90, 5, 5))[0]
        return self._finish(
            record,
            stem=stem,
            query=query,
            referer=referer,
            status=200,
            result=result,
            content_type="image/gif",
            body=_PIXEL_GIF_LEN,
        )

    def _tracker_params(self, session: _Session, stm: str) -> list[tuple[str, str]]:  # noqa: PLR0912, PLR0915 - one branch per tracker event type the generator emits
        rng = self.rng
        visitor = session.visitor
        event = rng.choices(("pv", "pp", "se", "ue", "tr"), weights=(30, 40, 12, 12, 6))[0]
        if session.url is None or (event == "pv" and session.pv_sent):
            self._navigate(session)
        if not session.pv_sent:
            event = "pv"
        assert session.url is not None
        queued = rng.random() < 0.05
        dtm = int(stm) - (rng.randint(2_000, 600_000) if queued else rng.randint(2, 1_500))

        def base(event_type: str) -> list[tuple[str, str]]:
            params = [
                ("e", event_type),
                ("url", session.url or SITE + "/"),
                ("page", _TITLES[session.path]),
            ]
            if session.referrer:
                params.append(("refr", session.referrer))
            params += [
                ("tv", visitor.tracker_version),
                ("tna", "sp"),
                ("aid", visitor.app_id),
                ("p", "web"),
                ("tz", visitor.tz),
                ("lang", visitor.lang),
                ("cs", "UTF-8"),
                ("res", visitor.res),
                ("cd", visitor.color_depth),
                ("cookie", "1"),
                ("eid", _uuid4(rng)),
                ("dtm", str(dtm)),
            ]
            return params

        params: list[tuple[str, str]] = []
        if event == "pv":
            session.pv_sent = True
            params = base("pv")
        elif event == "pp":
            params = base("pp")
            session.scroll_y = min(session.scroll_y + rng.randint(0, 1200), 9000)
            params += [
                ("pp_mix", "0"),
                ("pp_max", str(rng.choice((0, 0, 0, 15)))),
                ("pp_miy", str(max(0, session.scroll_y - rng.randint(0, 800)))),
                ("pp_may", str(session.scroll_y)),
            ]
        elif event == "se":
            params = base("se")
            category, action = rng.choice(
                (("video", "play"), ("form", "submit"), ("nav", "click"), ("product", "add-to-cart"))
            )
            params += [("se_ca", category), ("se_ac", action)]
            if rng.random() < 0.7:
                params.append(("se_la", rng.choice(("hero video", "newsletter", "top menu", "Widget 42"))))
            if rng.random() < 0.4:
                params.append(("se_pr", rng.choice(("variant=blue", "size xl", "position 3"))))
            if rng.random() < 0.5:
                params.append(("se_va", rng.choice(("1", "2.5", "19.99", "100"))))
        elif event == "ue":
            params = base("ue")
            if rng.random() < 0.5:
                inner: dict[str, object] = {
                    "schema": "iglu:com.acme/button_click/jsonschema/1-0-0",
                    "data": {"id": rng.choice(("cta", "buy-now", "signup", "close-banner"))},
                }
            else:
                inner = {
                    "schema": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                    "data": {
                        "targetUrl": rng.choice((SITE + "/pricing", "https://docs.example.com/start")),
                        "elementId": rng.choice(("nav-pricing", "footer-docs")),
                        "elementClasses": ["link", "nav"],
                    },
                }
            envelope = {"schema": UNSTRUCT_SCHEMA, "data": inner}
            if rng.random() < 0.8:
                params.append(("ue_px", _b64url(envelope)))
            else:
                params.append(("ue_pr", json.dumps(envelope, separators=(",", ":"))))
        else:  # ecommerce: a transaction or a transaction item
            order = f"ORD-{rng.randint(100_000, 999_999)}"
            qty = rng.randint(1, 3)
            price = rng.choice((19.99, 4.5, 129.0, 42.0))
            tax = round(price * qty * 0.2, 2)
            ship = rng.choice((0.0, 4.99))
            if rng.random() < 0.5:
                params = base("tr")
                params += [
                    ("tr_id", order),
                    ("tr_af", "web"),
                    ("tr_tt", f"{price * qty + tax + ship:.2f}"),
                    ("tr_tx", f"{tax:.2f}"),
                    ("tr_sh", f"{ship:.2f}"),
                    ("tr_ci", rng.choice(("London", "Sofia", "München"))),
                    ("tr_co", rng.choice(("GB", "BG", "DE"))),
                    ("tr_cu", "EUR" if rng.random() < 0.5 else "GBP"),
                ]
            else:
                params = base("ti")
                params += [
                    ("ti_id", order),
                    ("ti_sk", rng.choice(("W-42", "G-7", "GC-50"))),
                    ("ti_nm", rng.choice(("Widget 42", "Gadget 7", "Gift card"))),
                    ("ti_ca", "widgets"),
                    ("ti_pr", f"{price:.2f}"),
                    ("ti_qu", str(qty)),
                    ("ti_cu", "EUR"),
                ]
        roll = rng.random()
        if roll < 0.7:
            contexts = {
                "schema": CONTEXTS_SCHEMA,
                "data": [{"schema": WEB_PAGE_SCHEMA, "data": {"id": session.page_view_id}}],
            }
            params.append(("cx", _b64url(contexts)))
        elif roll < 0.8:
            contexts = {
                "schema": CONTEXTS_SCHEMA,
                "data": [{"schema": WEB_PAGE_SCHEMA, "data": {"id": session.page_view_id}}],
            }
            params.append(("co", json.dumps(contexts, separators=(",", ":"))))
        params += [
            ("vp", session.viewport),
            ("ds", session.doc_size),
            ("vid", str(session.vid)),
            ("sid", session.sid),
            ("duid", visitor.duid),
        ]
        if visitor.uid is not None:
            params.append(("uid", visitor.uid))
        params.append(("stm", stm))
        return params


def _utm(rng: random.Random, campaign: tuple[str, str, str]) -> str:
    source, medium, name = campaign
    parts = [
        f"utm_source={quote(source, safe='')}",
        f"utm_medium={quote(medium, safe='')}",
        f"utm_campaign={quote(name, safe='')}",
    ]
    if rng.random() < 0.4:
        parts.append(f"utm_term={quote(rng.choice(SEARCH_TERMS), safe='')}")
    if rng.random() < 0.3:
        parts.append(f"utm_content={rng.choice(('banner-a', 'banner-b', 'text link'))}".replace(" ", "%20"))
    return "&".join(parts)


def _malformed_count(options: GenerateOptions) -> int:
    if options.malformed_share <= 0 or options.lines_per_file == 0:
        return 0
    count = round(options.lines_per_file * options.malformed_share)
    if options.lines_per_file >= 200:
        count = max(count, 1)
    return min(count, options.lines_per_file)


def _hour_of(options: GenerateOptions, file_index: int) -> datetime:
    first = options.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return first + timedelta(hours=file_index % options.hours)


def _corrupt(fields: list[str], kind: str, names: Sequence[str], rng: random.Random) -> list[str]:
    if kind == "missing_field":
        del fields[rng.randrange(2, len(fields))]
    elif kind == "extra_field":
        fields.insert(rng.randrange(3, len(fields) + 1), "-")
    elif kind == "invalid_utf8":
        ua = names.index("cs(User-Agent)")
        # Lone surrogates: written with errors="surrogateescape" they become b"\xff\xfe".
        fields[ua] = fields[ua][:20] + "\udcff\udcfe" + fields[ua][20:]
    elif kind == "bad_date":
        fields[0] = "2024-13-45"
    return fields


# --------------------------------------------------------------------------------------------
# The high-cardinality profile: traffic that looks like a real shop's, not a small repeated cast
#
# About 80 % tracker hits and 20 % asset requests (bots fetch assets, never the pixel), 0.5 %
# malformed lines, lines of about 1.1 KB.  Every visit is a new visitor; the client address of a
# mobile visit (carrier-grade NAT) or an IPv6 one (privacy addresses) changes from hit to hit, so
# most lines have an address of their own.  A catalogue of thousands of products, listings, blog
# and help pages, campaign-tagged landings and varied external referers gives thousands of
# distinct URLs and referers; user agents come from pipeline.testing.user_agents, weighted.  Every
# hit has its own eid (no retries), dtm and stm; most carry a web_page context (cx).

_HC_HUMAN_UAS: Final = tuple((ua, weight) for ua, weight, is_bot in _REAL_USER_AGENTS if not is_bot)
_HC_HUMAN_WEIGHTS: Final = tuple(itertools.accumulate(weight for _, weight in _HC_HUMAN_UAS))
_HC_BOT_UAS: Final = tuple((ua, weight) for ua, weight, is_bot in _REAL_USER_AGENTS if is_bot)
_HC_BOT_WEIGHTS: Final = tuple(itertools.accumulate(weight for _, weight in _HC_BOT_UAS))
_HC_TRACKER_SHARE: Final = 0.8
_HC_BOT_ASSET_SHARE: Final = 0.2
"""Share of asset requests made by crawlers and tools (about 4 % of all lines)."""

_HC_CATEGORIES: Final[tuple[str, ...]] = (
    "kitchen", "kitchen/cookware", "kitchen/knives", "garden", "garden/tools", "outdoor", "outdoor/camping",
    "electronics", "electronics/audio", "electronics/cameras", "home", "home/lighting", "home/textiles",
    "office", "toys", "sports", "sports/cycling", "beauty", "books", "gifts", "pets", "tools", "travel", "sale",
)  # fmt: skip
_HC_ADJECTIVES: Final[tuple[str, ...]] = (
    "classic", "compact", "deluxe", "eco", "ultra", "smart", "mini", "pro", "vintage", "modern", "rugged",
    "silent", "wireless", "foldable", "nordic", "premium", "travel", "heavy-duty", "slim", "crème", "café",
    "bright", "soft", "steel", "bamboo", "ceramic", "cordless", "portable", "everyday", "limited",
)  # fmt: skip
_HC_NOUNS: Final[tuple[str, ...]] = (
    "widget", "gadget", "lamp", "kettle", "backpack", "tent", "speaker", "headphones", "camera", "mug",
    "skillet", "knife", "blanket", "chair", "desk", "bottle", "jacket", "bike-light", "drone", "planter",
    "watering-can", "grill", "toaster", "blender", "notebook", "pen-set", "candle", "rug", "towel", "helmet",
    "tripod", "charger", "keyboard", "mouse", "monitor-stand", "scale", "grinder", "teapot", "lunchbox", "wallet",
)  # fmt: skip
_HC_TOPICS: Final[tuple[str, ...]] = (
    "shipping", "returns", "payments", "warranty", "account", "orders", "gift-cards", "sizing", "care", "privacy",
)  # fmt: skip
_HC_COLOURS: Final[tuple[str, ...]] = ("black", "white", "red", "blue", "green", "sand", "grey", "olive")
_HC_SIZES: Final[tuple[str, ...]] = ("xs", "s", "m", "l", "xl", "one-size")
_HC_SORTS: Final[tuple[str, ...]] = ("relevance", "price_asc", "price_desc", "newest", "rating")
_HC_PRODUCTS: Final = 8_000
_HC_NEWS_SITES: Final[tuple[str, ...]] = (
    "www.theguardian.com", "www.nytimes.com", "www.bbc.co.uk", "www.wired.com", "www.theverge.com",
    "www.spiegel.de", "www.lemonde.fr", "www.dnevnik.bg", "www.engadget.com", "www.techradar.com",
    "www.buzzfeed.com", "www.independent.co.uk", "www.forbes.com", "www.businessinsider.com", "www.heise.de",
)  # fmt: skip
_HC_SUBREDDITS: Final[tuple[str, ...]] = ("BuyItForLife", "camping", "Cooking", "gadgets", "HomeImprovement", "deals")
_HC_SOURCES: Final[tuple[tuple[str, str], ...]] = (
    ("google", "cpc"), ("facebook", "paid_social"), ("instagram", "paid_social"), ("newsletter", "email"),
    ("tiktok", "paid_social"), ("bing", "cpc"), ("affiliate", "affiliate"), ("pinterest", "social"),
)  # fmt: skip
_HC_SEASONS: Final[tuple[str, ...]] = ("black_friday", "cyber_monday", "winter_sale", "xmas", "new_in", "clearance")
_HC_EVENTS: Final[tuple[str, ...]] = ("pv", "pp", "se", "ue", "tr")
_HC_EVENT_WEIGHTS: Final[tuple[int, ...]] = (14, 54, 12, 16, 4)
_HC_STATIC: Final[tuple[tuple[str, str, int], ...]] = (
    ("js", "application/javascript", 48_000), ("css", "text/css", 22_000), ("woff2", "font/woff2", 31_000),
)  # fmt: skip
_HC_CHUNKS: Final[tuple[str, ...]] = (
    "main", "vendor", "runtime", "product", "listing", "checkout", "cart", "search", "account", "blog",
    "polyfills", "analytics", "carousel", "reviews", "consent", "chat",
)  # fmt: skip
_HC_PROBES: Final[tuple[str, ...]] = ("/wp-login.php", "/.env", "/apple-touch-icon.png", "/xmlrpc.php", "/robots.txt")
# Address blocks no public client comes from (RFC 6890 and multicast): a generated IPv4 avoids them.
_HC_NOT_PUBLIC_FIRST_OCTETS: Final = frozenset((0, 10, 100, 127, 169, 172, 192, 198, 203))
_HC_PUBLIC_FIRST_OCTETS: Final = tuple(n for n in range(1, 224) if n not in _HC_NOT_PUBLIC_FIRST_OCTETS)
_HC_IPV6_PREFIXES: Final[tuple[str, ...]] = ("2a01:cb", "2a02:8", "2600:1", "2003:e", "2409:8", "2806:1", "2a00:2")


def _pick(rng: random.Random, items: Sequence[tuple[str, int]], cumulative: Sequence[int]) -> str:
    return items[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])][0]


def _public_ipv4(rng: random.Random) -> tuple[int, int, int]:
    """The first three octets of a public /24."""
    return rng.choice(_HC_PUBLIC_FIRST_OCTETS), rng.randrange(256), rng.randrange(256)


def _slug_title(slug: str) -> str:
    return " ".join(word.capitalize() for word in slug.replace("-", " ").split())


@dataclass
class _Visit:
    """One visitor's session on the high-cardinality site; addresses may change between its hits."""

    user_agent: str
    is_bot: bool
    mobile: bool
    ipv4_net: tuple[int, int, int]
    ipv6_prefix: str | None
    rotates: bool
    """A new address on each hit (mobile carrier NAT, IPv6 privacy addresses)."""
    host: int
    forwarded_for: str | None
    edge: str
    http_version: str
    tls: str
    duid: str
    sid: str
    vid: int
    res: str
    viewport: str
    lang: str
    tz: str
    uid: str | None
    tracker_version: str
    app_id: str
    remaining: int
    referrer: str | None
    landing_query: str
    url: str = ""
    title: str = ""
    page_view_id: str = ""
    pv_sent: bool = False
    pages: int = 0
    scroll_y: int = 0
    doc_size: str = "1280x3000"


class _HighCardinalityFile:
    """The lines of one high-cardinality file (see the section comment); all randomness from ``rng``."""

    def __init__(self, options: GenerateOptions, file_index: int) -> None:
        self.options = options
        self.index = file_index
        self.rng = random.Random(f"clickstream-etl:high-cardinality:{options.seed}:{file_index}")
        self.hour_start = _hour_of(options, file_index)
        self.hour_ms = int(self.hour_start.timestamp()) * 1000
        lines = max(options.lines_per_file, 1)
        self.visits = [self._new_visit() for _ in range(max(10, min(400, lines // 25)))]

    # -- visits ---------------------------------------------------------------------------------
    def _new_visit(self, bot: bool = False) -> _Visit:
        rng = self.rng
        if bot:
            user_agent = _pick(rng, _HC_BOT_UAS, _HC_BOT_WEIGHTS)
        else:
            user_agent = _pick(rng, _HC_HUMAN_UAS, _HC_HUMAN_WEIGHTS)
        mobile = any(token in user_agent for token in ("iPhone", "Android", "iPad", "Mobile"))
        ipv6_prefix = None
        if not bot and rng.random() < 0.15:
            ipv6_prefix = f"{rng.choice(_HC_IPV6_PREFIXES)}{rng.getrandbits(8):02x}:{rng.getrandbits(16):x}"
        forwarded = None
        if not bot and rng.random() < 0.06:
            client = f"{'.'.join(map(str, _public_ipv4(rng)))}.{rng.randint(1, 254)}"
            hops = [client] + [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randint(1, 254)}"] * rng.randint(
                0, 2
            )
            forwarded = ", ".join(hops)
        width, height = (int(part) for part in rng.choice(MOBILE_RES if mobile else DESKTOP_RES).split("x"))
        vp_w = width if mobile else max(320, width - rng.choice((0, 0, 17, 200, 600)))
        uid: str | None = None
        if rng.random() < 0.15:
            uid = f"u{rng.getrandbits(40):x}" if rng.random() < 0.5 else str(rng.randint(10_000, 99_999_999))
        referrer, landing_query = self._entry(rng, bot)
        return _Visit(
            user_agent=user_agent,
            is_bot=bot,
            mobile=mobile,
            ipv4_net=_public_ipv4(rng),
            ipv6_prefix=ipv6_prefix,
            rotates=ipv6_prefix is not None or (mobile and rng.random() < 0.9),
            host=rng.randint(1, 254),
            forwarded_for=forwarded,
            edge=rng.choice(EDGE_LOCATIONS),
            http_version="HTTP/1.1" if bot else rng.choices(("HTTP/2.0", "HTTP/1.1", "HTTP/3.0"), (70, 10, 20))[0],
            tls="TLSv1.3" if rng.random() < 0.85 else "TLSv1.2",
            duid=_uuid4(rng),
            sid=_uuid4(rng),
            vid=1 + int(rng.expovariate(0.4)),
            res=f"{width}x{height}",
            viewport=f"{vp_w}x{height - rng.choice((110, 120, 160, 250))}",
            lang=rng.choice(LANGUAGES),
            tz=rng.choice(TIMEZONES),
            uid=uid,
            tracker_version=rng.choice(("js-3.24.2", "js-3.24.2", "js-3.23.1", "js-3.17.0", "js-4.1.0")),
            app_id=rng.choice(("acme-web", "acme-web", "acme-web", "acme-shop")),
            remaining=1 + int(rng.expovariate(1 / 7)),
            referrer=referrer,
            landing_query=landing_query,
        )

    def _entry(self, rng: random.Random, bot: bool) -> tuple[str | None, str]:  # noqa: PLR0911 - one return per traffic source
        """Where a visit comes from: (external referrer or None, landing page query string)."""
        if bot:
            return None, ""
        roll = rng.random()
        words = f"{rng.choice(_HC_ADJECTIVES)} {rng.choice(_HC_NOUNS).replace('-', ' ')}"
        if roll < 0.25:  # Google sends only its origin (its referrer policy), the click id marks ads
            query = _campaign(rng) if rng.random() < 0.3 else ""
            if query and rng.random() < 0.7:
                query += f"&gclid={base64.urlsafe_b64encode(rng.randbytes(27)).decode().rstrip('=')}"
            return "https://www.google.com/", query
        if roll < 0.33:
            return f"https://www.bing.com/search?q={quote(words, safe='').replace('%20', '+')}&form=QBLH", ""
        if roll < 0.37:
            return f"https://duckduckgo.com/?q={quote(words, safe='')}&t=h_", ""
        if roll < 0.47:
            site = rng.choice(_HC_NEWS_SITES)
            article = f"{rng.choice(_HC_ADJECTIVES)}-{rng.choice(_HC_NOUNS)}-review-{rng.randint(1, 99_999)}"
            return f"https://{site}/{rng.choice(('tech', 'lifestyle', 'deals', 'home'))}/{article}", ""
        if roll < 0.52:
            post = f"{rng.getrandbits(30):x}"
            return (
                f"https://www.reddit.com/r/{rng.choice(_HC_SUBREDDITS)}/comments/{post}/{words.replace(' ', '_')}/",
                "",
            )
        if roll < 0.62:
            fbclid = base64.urlsafe_b64encode(rng.randbytes(33)).decode().rstrip("=")
            return "https://l.facebook.com/", f"{_campaign(rng)}&fbclid={fbclid}"
        if roll < 0.67:
            return f"https://t.co/{base64.b32encode(rng.randbytes(5)).decode().lower()}", _campaign(rng)
        if roll < 0.72:
            return "https://mail.google.com/", _campaign(rng)
        return None, (_campaign(rng) if rng.random() < 0.05 else "")

    def _visit(self, human: bool) -> _Visit:
        """A visit to continue (a new one replaces a finished one); ``human``: not a crawler."""
        rng = self.rng
        if not human and rng.random() < _HC_BOT_ASSET_SHARE:
            return self._new_visit(bot=True)  # crawlers and tools: one request each
        slot = rng.randrange(len(self.visits))
        visit = self.visits[slot]
        if visit.remaining <= 0:
            visit = self.visits[slot] = self._new_visit()
        visit.remaining -= 1
        return visit

    def _address(self, visit: _Visit) -> str:
        rng = self.rng
        if visit.ipv6_prefix is not None:
            # The prefix holds three of the eight groups; the interface id changes on each hit.
            return visit.ipv6_prefix + "".join(f":{rng.getrandbits(16):x}" for _ in range(5))
        a, b, c = visit.ipv4_net
        if visit.rotates:
            return f"{a}.{b}.{rng.randrange(256)}.{rng.randint(1, 254)}"
        return f"{a}.{b}.{c}.{visit.host}"

    # -- pages ----------------------------------------------------------------------------------
    def _navigate(self, visit: _Visit) -> None:  # noqa: PLR0912 - one branch per kind of page on the site
        rng = self.rng
        roll = rng.random()
        query = ""
        if roll < 0.40:
            product = rng.randint(1, _HC_PRODUCTS)
            slug = f"{_HC_ADJECTIVES[product % 30]}-{_HC_NOUNS[product % 40]}-{product}"
            path = f"/products/{_HC_CATEGORIES[product % len(_HC_CATEGORIES)]}/{slug}"
            title = f"{_slug_title(slug)} – Acme Store"
            if rng.random() < 0.25:
                query = f"variant={rng.choice(_HC_COLOURS)}&size={rng.choice(_HC_SIZES)}"
        elif roll < 0.55:
            category = rng.choice(_HC_CATEGORIES)
            path = f"/c/{category}"
            title = f"{_slug_title(category.replace('/', ' '))} | Acme"
            if rng.random() < 0.6:
                query = f"page={rng.randint(1, 12)}&sort={rng.choice(_HC_SORTS)}"
        elif roll < 0.65:
            path, title = "/", "Acme – Home"
        elif roll < 0.73:
            words = " ".join(rng.sample(_HC_ADJECTIVES, 1) + rng.sample(_HC_NOUNS, rng.randint(1, 2)))
            path, title = "/search", f"“{words}” – Search | Acme"
            query = f"q={quote(words, safe='')}" + (f"&page={rng.randint(2, 5)}" if rng.random() < 0.2 else "")
        elif roll < 0.83:
            kind = rng.choice(("guide", "ideas", "tips", "review"))
            slug = f"{rng.choice(_HC_ADJECTIVES)}-{rng.choice(_HC_NOUNS)}-{kind}"
            path = f"/blog/{rng.randint(2019, 2024)}/{rng.randint(1, 12):02d}/{slug}"
            title = f"{_slug_title(slug)} | Acme Blog"
        elif roll < 0.88:
            topic = rng.choice(_HC_TOPICS)
            path, title = f"/help/{topic}/article-{rng.randint(100, 999)}", f"{_slug_title(topic)} – Help Centre"
        elif roll < 0.94:
            path, title = "/cart", "Your cart | Acme"
        elif roll < 0.97:
            path, title = f"/checkout/step-{rng.randint(1, 3)}", "Checkout | Acme"
        else:
            path, title = f"/account/orders/{rng.randint(1_000_000, 9_999_999)}", "Your order | Acme"
        if visit.pages == 0:
            query = "&".join(part for part in (visit.landing_query, query) if part)
        else:
            visit.referrer = visit.url
        visit.url = SITE + path + ("?" + query if query else "")
        visit.title = title
        visit.page_view_id = _uuid4(rng)
        visit.pv_sent = False
        visit.pages += 1
        visit.scroll_y = 0
        visit.doc_size = f"{visit.viewport.split('x')[0]}x{rng.randint(900, 12_000)}"

    # -- lines ----------------------------------------------------------------------------------
    def record(self, tracker: bool, offset_ms: int, malformed: str | None) -> dict[str, str]:
        if tracker or malformed in ("bad_event_type", "bad_event_id"):
            return self._tracker(offset_ms, malformed)
        return self._asset(offset_ms)

    def _common(self, visit: _Visit, offset_ms: int) -> dict[str, str]:
        rng = self.rng
        when = self.hour_start + timedelta(milliseconds=offset_ms)
        taken = round(rng.uniform(0.001, 0.25), 3)
        return {
            "date": when.strftime("%Y-%m-%d"),
            "time": when.strftime("%H:%M:%S"),
            "x-edge-location": visit.edge,
            "c-ip": self._address(visit),
            "cs-method": "GET",
            "cs(Host)": CF_HOST,
            "cs(User-Agent)": _cf_header(visit.user_agent),
            "cs(Cookie)": "-",
            "x-edge-request-id": _request_id(rng),
            "x-host-header": SITE_HOST,
            "cs-protocol": "https",
            "time-taken": f"{taken:.3f}",
            "x-forwarded-for": _cf_header(visit.forwarded_for),
            "ssl-protocol": visit.tls,
            "ssl-cipher": _ssl_cipher(visit.tls),
            "cs-protocol-version": visit.http_version,
            "fle-status": "-",
            "fle-encrypted-fields": "-",
            "c-port": str(rng.randint(1024, 65535)),
            "time-to-first-byte": f"{max(0.001, round(taken * rng.uniform(0.3, 1.0), 3)):.3f}",
            "sc-range-start": "-",
            "sc-range-end": "-",
        }

    def _finish(  # noqa: PLR0913 - the response fields of one log line
        self,
        record: dict[str, str],
        stem: str,
        query: str,
        referer: str | None,
        status: int,
        result: str,
        content_type: str | None,
        body: int | None,
    ) -> dict[str, str]:
        return _finish_record(self.rng, record, stem, query, referer, status, result, content_type, body, _SHOP_SIZES)

    def _asset(self, offset_ms: int) -> dict[str, str]:
        rng = self.rng
        visit = self._visit(human=False)
        if not visit.url:
            self._navigate(visit)
        record = self._common(visit, offset_ms)
        referer = None if visit.is_bot else visit.url
        roll = rng.random()
        if roll < 0.05 or (visit.is_bot and roll < 0.3):
            return self._finish(record, rng.choice(_HC_PROBES), "", referer, 404, "Error", "text/html", 1024)
        if roll < 0.55:
            product = rng.randint(1, _HC_PRODUCTS)
            width = rng.choice((160, 320, 640, 1280))
            stem, content_type, size = (
                f"/img/products/{product}/{width}.webp",
                "image/webp",
                width * rng.randint(40, 90),
            )
            query = f"v={rng.randint(1, 9)}" if rng.random() < 0.3 else ""
        else:
            extension, content_type, size = rng.choice(_HC_STATIC)
            chunk = rng.choice(_HC_CHUNKS)
            build = hashlib.sha256(f"{chunk}{rng.randint(1, 4)}".encode()).hexdigest()[:10]  # a few deploys
            stem = f"/static/{extension}/{chunk}.{build}.{extension}"
            size += rng.randint(-5_000, 5_000)
            query = ""
        if rng.random() < 0.1:
            return self._finish(record, stem, query, referer, 304, "Hit", None, None)
        result = rng.choices(("Hit", "Miss", "RefreshHit"), weights=(85, 10, 5))[0]
        return self._finish(record, stem, query, referer, 200, result, content_type, size)

    def _tracker(self, offset_ms: int, malformed: str | None) -> dict[str, str]:
        rng = self.rng
        visit = self._visit(human=True)
        stm = str(self.hour_ms + offset_ms - rng.randint(5, 250))
        params = self._tracker_params(visit, stm)
        if malformed == "bad_event_type":
            params = [(key, "zz" if key == "e" else value) for key, value in params]
        elif malformed == "bad_event_id":
            params = [(key, "not-a-uuid" if key == "eid" else value) for key, value in params]
        query = "&".join(f"{key}={_js_encode(value)}" for key, value in params)
        record = self._common(visit, offset_ms)
        # Most sites keep the default strict-origin-when-cross-origin policy (the collector is
        # another origin); the rest send the whole page URL.
        referer = SITE + "/" if rng.random() < 0.75 else visit.url
        result = rng.choices(("Hit", "RefreshHit", "Miss"), weights=(90, 5, 5))[0]
        stem = "/ice.png" if rng.random() < 0.03 else "/i"
        return self._finish(record, stem, query, referer, 200, result, "image/gif", _PIXEL_GIF_LEN)

    def _tracker_params(self, visit: _Visit, stm: str) -> list[tuple[str, str]]:
        rng = self.rng
        event = rng.choices(_HC_EVENTS, weights=_HC_EVENT_WEIGHTS)[0]
        if not visit.url or (event == "pv" and visit.pv_sent):
            self._navigate(visit)
        if not visit.pv_sent:
            event = "pv"
        queued = rng.random() < 0.03
        dtm = int(stm) - (rng.randint(2_000, 600_000) if queued else rng.randint(2, 1_500))
        params = [
            ("e", event if event != "tr" else rng.choice(("tr", "ti"))),
            ("url", visit.url),
            ("page", visit.title),
        ]
        if visit.referrer:
            params.append(("refr", visit.referrer))
        params += [
            ("tv", visit.tracker_version),
            ("tna", "sp"),
            ("aid", visit.app_id),
            ("p", "web"),
            ("tz", visit.tz),
            ("lang", visit.lang),
            ("cs", "UTF-8"),
            ("res", visit.res),
            ("cd", "24"),
            ("cookie", "1"),
            ("eid", _uuid4(rng)),
            ("dtm", str(dtm)),
        ]
        params += self._event_params(visit, params[0][1])
        if rng.random() < 0.9:
            contexts = {
                "schema": CONTEXTS_SCHEMA,
                "data": [{"schema": WEB_PAGE_SCHEMA, "data": {"id": visit.page_view_id}}],
            }
            params.append(("cx", _b64url(contexts)))
        params += [("vp", visit.viewport), ("ds", visit.doc_size), ("vid", str(visit.vid)), ("sid", visit.sid)]
        params.append(("duid", visit.duid))
        if visit.uid is not None:
            params.append(("uid", visit.uid))
        params.append(("stm", stm))
        return params

    def _event_params(self, visit: _Visit, event: str) -> list[tuple[str, str]]:  # noqa: PLR0911 - one return per event type
        rng = self.rng
        if event == "pv":
            visit.pv_sent = True
            return []
        if event == "pp":
            visit.scroll_y = min(visit.scroll_y + rng.randint(0, 1500), 11_000)
            return [
                ("pp_mix", "0"),
                ("pp_max", str(rng.choice((0, 0, 0, 15)))),
                ("pp_miy", str(max(0, visit.scroll_y - rng.randint(0, 800)))),
                ("pp_may", str(visit.scroll_y)),
            ]
        if event == "se":
            product = rng.randint(1, _HC_PRODUCTS)
            params = [
                ("se_ca", rng.choice(("product", "listing", "video", "form", "nav", "carousel"))),
                ("se_ac", rng.choice(("add-to-cart", "click", "play", "submit", "swipe", "filter"))),
                ("se_la", f"{_HC_ADJECTIVES[product % 30]} {_HC_NOUNS[product % 40]} {product}"),
            ]
            if rng.random() < 0.5:
                params.append(("se_pr", f"colour={rng.choice(_HC_COLOURS)}"))
            if rng.random() < 0.6:
                params.append(("se_va", f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"))
            return params
        if event == "ue":
            if rng.random() < 0.4:
                inner: dict[str, object] = {
                    "schema": "iglu:com.acme/button_click/jsonschema/1-0-0",
                    "data": {"id": f"{rng.choice(('cta', 'buy-now', 'signup', 'wishlist'))}-{rng.randint(1, 500)}"},
                }
            else:
                product = rng.randint(1, _HC_PRODUCTS)
                target = f"{SITE}/products/{_HC_CATEGORIES[product % len(_HC_CATEGORIES)]}/item-{product}"
                inner = {
                    "schema": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                    "data": {
                        "targetUrl": target,
                        "elementId": f"tile-{rng.randint(1, 48)}",
                        "elementClasses": ["tile"],
                    },
                }
            envelope = {"schema": UNSTRUCT_SCHEMA, "data": inner}
            if rng.random() < 0.85:
                return [("ue_px", _b64url(envelope))]
            return [("ue_pr", json.dumps(envelope, separators=(",", ":")))]
        order = f"ORD-{rng.randint(10_000_000, 99_999_999)}"
        price = rng.randint(5, 400) + rng.choice((0.0, 0.5, 0.99))
        qty = rng.randint(1, 3)
        if event == "tr":
            tax = round(price * qty * 0.2, 2)
            return [
                ("tr_id", order),
                ("tr_af", "web"),
                ("tr_tt", f"{price * qty + tax:.2f}"),
                ("tr_tx", f"{tax:.2f}"),
                ("tr_sh", f"{rng.choice((0.0, 4.99)):.2f}"),
                ("tr_ci", rng.choice(("London", "Sofia", "München", "Lyon", "Austin"))),
                ("tr_co", rng.choice(("GB", "BG", "DE", "FR", "US"))),
                ("tr_cu", rng.choice(("EUR", "GBP", "USD"))),
            ]
        product = rng.randint(1, _HC_PRODUCTS)
        return [
            ("ti_id", order),
            ("ti_sk", f"SKU-{product:05d}"),
            ("ti_nm", f"{_slug_title(_HC_ADJECTIVES[product % 30])} {_slug_title(_HC_NOUNS[product % 40])}"),
            ("ti_ca", _HC_CATEGORIES[product % len(_HC_CATEGORIES)]),
            ("ti_pr", f"{price:.2f}"),
            ("ti_qu", str(qty)),
            ("ti_cu", "EUR"),
        ]


def _campaign(rng: random.Random) -> str:
    source, medium = rng.choice(_HC_SOURCES)
    name = f"{rng.choice(_HC_SEASONS)}_{rng.choice((2023, 2024))}_{rng.randint(1, 400)}"
    parts = [f"utm_source={source}", f"utm_medium={medium}", f"utm_campaign={name}"]
    if rng.random() < 0.5:
        parts.append(f"utm_term={quote(rng.choice(_HC_ADJECTIVES) + ' ' + rng.choice(_HC_NOUNS), safe='')}")
    if rng.random() < 0.4:
        parts.append(f"utm_content=creative-{rng.randint(1, 120)}")
    return "&".join(parts)


def _malformed_schedule(options: GenerateOptions, file_index: int, rng: random.Random) -> dict[int, str]:
    """Which line positions of a file are malformed, and how (the kinds in turn, per file offset)."""
    total = options.lines_per_file
    bad = _malformed_count(options)
    positions = sorted(rng.sample(range(total), bad)) if bad else []
    first_kind = (file_index * max(bad, 1)) % len(MALFORMED_KINDS)
    return {position: MALFORMED_KINDS[(first_kind + n) % len(MALFORMED_KINDS)] for n, position in enumerate(positions)}


def _high_cardinality_lines(options: GenerateOptions, file_index: int, names: Sequence[str]) -> Iterator[str]:
    gen = _HighCardinalityFile(options, file_index)
    rng = gen.rng
    offsets = sorted(rng.randrange(0, 3_600_000) for _ in range(options.lines_per_file))
    malformed_at = _malformed_schedule(options, file_index, rng)
    for position, offset in enumerate(offsets):
        malformed = malformed_at.get(position)
        record = gen.record(rng.random() < _HC_TRACKER_SHARE, offset, malformed)
        fields = [record.get(name, "-") for name in names]
        if malformed is not None:
            fields = _corrupt(fields, malformed, names, rng)
        yield "\t".join(fields)


# --------------------------------------------------------------------------------------------
# Public API


def iter_log_lines(options: GenerateOptions, file_index: int) -> Iterator[str]:
    """The lines of one file, headers included, without terminators.

    The invalid-UTF-8 malformed line carries lone surrogates; encode with :func:`encode_bytes`.
    """
    options.validate()
    layout = legacy_layout(options.fields)
    names = layout.names
    if options.profile == "high-cardinality":
        yield "#Version: 1.0"
        yield layout.format()
        yield from _high_cardinality_lines(options, file_index, names)
        return
    gen = _FileGenerator(options, file_index)
    rng = gen.rng
    yield "#Version: 1.0"
    yield layout.format()
    total = options.lines_per_file
    offsets = sorted(rng.randrange(0, 3_600_000) for _ in range(total))
    bad = _malformed_count(options)
    bad_positions = sorted(rng.sample(range(total), bad)) if bad else []
    first_kind = (file_index * max(bad, 1)) % len(MALFORMED_KINDS)
    malformed_at = {
        position: MALFORMED_KINDS[(first_kind + n) % len(MALFORMED_KINDS)] for n, position in enumerate(bad_positions)
    }
    for position, offset in enumerate(offsets):
        roll = rng.random()
        kind = "tracker" if roll < 0.55 else ("page" if roll < 0.85 else "asset")
        malformed = malformed_at.get(position)
        record = gen.record(kind, offset, malformed)
        fields = [record.get(name, "-") for name in names]
        if malformed is not None:
            fields = _corrupt(fields, malformed, names, rng)
        yield "\t".join(fields)


def encode_bytes(line: str) -> bytes:
    """Encode a generated line as the bytes written to the file (lone surrogates → raw bytes)."""
    return line.encode("utf-8", "surrogateescape")


def file_name(options: GenerateOptions, file_index: int) -> str:
    """``<distribution-ID>.YYYY-MM-DD-HH.<8 hex>[.gz]``, the unique id derived from seed and index."""
    hour = _hour_of(options, file_index)
    unique = hashlib.sha256(f"clickstream-etl:{options.seed}:{file_index}".encode()).hexdigest()[:8]
    name = f"{options.distribution_id}.{hour:%Y-%m-%d-%H}.{unique}"
    return name + ".gz" if options.gzip else name


def write_log_file(out_dir: Path, options: GenerateOptions, file_index: int) -> Path:
    """Write file number ``file_index`` into ``out_dir`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(options, file_index)
    payload = b"".join(encode_bytes(line) + b"\n" for line in iter_log_lines(options, file_index))
    if options.gzip:
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as member:
            member.write(payload)
        payload = buffer.getvalue()
    path.write_bytes(payload)
    return path


def generate_logs(out_dir: Path, options: GenerateOptions = GenerateOptions()) -> list[Path]:  # noqa: B008
    """Write ``options.files`` log files into ``out_dir``; returns their paths in index order."""
    options.validate()
    return [write_log_file(Path(out_dir), options, index) for index in range(options.files)]
