"""Deterministic generator of realistic CloudFront access logs (standard logging, legacy W3C).

Stdlib only.  The same :class:`GenerateOptions` always produce byte-identical files: every
random choice comes from a ``random.Random`` seeded from the options and the file index, and
gzip members are written with ``mtime=0`` and an empty file name.

Traffic mix (roughly): 55 % Snowplow pixel tracker hits (``GET /i``, a few ``/ice.png``),
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
import gzip
import hashlib
import io
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

__all__ = [
    "MALFORMED_KINDS",
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
    malformed_ratio: float = 0.002
    distribution_id: str = "E2EXAMPLE1ABCD"
    gzip: bool = True

    def validate(self) -> None:
        if self.fields not in GENERATIONS:
            raise ValueError(f"fields must be one of {GENERATIONS}, not {self.fields}")
        if self.files < 0 or self.lines_per_file < 0:
            raise ValueError("files and lines_per_file must be >= 0")
        if self.hours < 1:
            raise ValueError("hours must be >= 1")
        if not 0.0 <= self.malformed_ratio <= 1.0:
            raise ValueError("malformed_ratio must be within [0, 1]")
        if not re.fullmatch(r"[A-Z0-9]+", self.distribution_id):
            raise ValueError(f"distribution_id must be upper-case alphanumeric: {self.distribution_id!r}")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")


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
        rng = self.rng
        header_bytes = rng.randint(280, 520)
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
        request_bytes = 120 + len(stem) + len(query) + len(record["cs(User-Agent)"]) + len(referer or "")
        record["cs-bytes"] = str(request_bytes + rng.randint(0, 400))
        return record

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
    if options.malformed_ratio <= 0 or options.lines_per_file == 0:
        return 0
    count = round(options.lines_per_file * options.malformed_ratio)
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
# Public API


def iter_log_lines(options: GenerateOptions, file_index: int) -> Iterator[str]:
    """The lines of one file, headers included, without terminators.

    The invalid-UTF-8 malformed line carries lone surrogates; encode with :func:`encode_bytes`.
    """
    options.validate()
    layout = legacy_layout(options.fields)
    names = layout.names
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
