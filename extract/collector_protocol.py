"""The Snowplow collector protocol as pure decisions: an HTTP request in, a plan out.

:func:`plan_request` decides everything about one request without I/O: its route, the
network user id and the cookie, the stream-1 records to put (tracker events, and the bad
rows of oversized events and turned-away requests) and the response to give once they are
durable.  The adapter (:mod:`extract.collector`) puts the records and answers the planned
response, or :func:`unavailable` when the put fails; so no request is acknowledged before
its events are on stream 1.

Status codes follow the JavaScript tracker's retry rule: it retries every status except
400, 401, 403, 410 and 422, so a request that can never succeed answers 400, and one that
may succeed later (the stream is down or throttled) answers 503.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final, Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from pipeline import __version__
from pipeline.aws.kinesis import OutRecord
from pipeline.badrows import RAW_PAYLOAD_CAP, FailureKind
from pipeline.config import CollectorConfig
from pipeline.formats.collector import ANONYMOUS_NUID, CollectorPayload, CollectorPayloads, event_query
from pipeline.records import RawBatch, encode_raw

PIXEL: Final = base64.b64decode("R0lGODlhAQABAPAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""The 43-byte transparent GIF Snowplow's collector answers a pixel request with."""
COLLECTOR_VERSION: Final = f"clickstream-etl-collector-{__version__}"
"""v_collector of the collector's events (Snowplow's collectors report e.g. ``ssc-2.9.0-kinesis``)."""
HEALTH_PATH: Final = "/health"
PAYLOAD_DATA_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-"
BATCH_BUCKET: Final = "collector"
"""The ``bucket`` of a collector batch: its events' bad rows name ``s3://collector/<route>/...``."""
_BAD_HEAD_BYTES: Final = 4096  # what a size_violation bad row keeps of an oversized event
NO_CACHE: Final[Mapping[str, str]] = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}
Route = Literal["pixel", "tp2", "redirect", "health", "unknown"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request as the collector needs it (header names lower-case)."""

    method: str
    path: str
    query: str
    """The raw query string, without ``?``."""
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    body: bytes
    source_ip: str | None
    request_id: str
    received_ms: int
    """The collector's clock when the request arrived, epoch milliseconds."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    cookies: tuple[str, ...] = ()
    """``Set-Cookie`` values."""


@dataclass(frozen=True, slots=True)
class CollectorPlan:
    """What one request needs: records to make durable, then ``response``."""

    route: Route
    response: HttpResponse
    records: tuple[OutRecord, ...] = ()
    events: int = 0
    """Tracker events in ``records`` (not counting bad rows)."""
    bad: int = 0
    """Bad-row lines in ``records``."""
    visitor: str | None = None
    """The network user id of a request that stored tracker events (None when anonymous or
    when nothing was stored): what the real-time counter counts (:mod:`extract.realtime`)."""


def unavailable(plan: CollectorPlan) -> HttpResponse:
    """The answer when the plan's records could not be made durable: 503, which trackers retry.

    No cookie is set: the request did not happen as far as the pipeline knows.
    """
    return HttpResponse(503, {**_cors_only(plan.response.headers), "Retry-After": "1"}, b"unavailable")


def _cors_only(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("Access-Control-") or k == "Vary"}


def route_of(path: str, config: CollectorConfig) -> Route:
    if path in config.pixel_paths:
        return "pixel"
    if path in config.tp2_paths:
        return "tp2"
    if path in config.redirect_paths:
        return "redirect"
    if path == HEALTH_PATH:
        return "health"
    return "unknown"


def plan_request(  # noqa: PLR0911 - one answer per route and failure
    request: HttpRequest,
    config: CollectorConfig,
    *,
    record_target_bytes: int,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> CollectorPlan:
    """Decide the records and the response of one request (pure; never raises)."""
    route = route_of(request.path, config)
    method = request.method.upper()
    cors = cors_headers(request.headers.get("origin"), config)
    if route == "unknown":
        return CollectorPlan(route, HttpResponse(404, cors, b"not found"))
    if method == "OPTIONS":
        return CollectorPlan(route, preflight(request.headers.get("origin"), config))
    if route == "health":
        return CollectorPlan(route, HttpResponse(200 if method in ("GET", "HEAD") else 405, {}, b"ok"))
    allowed = ("POST", "GET", "HEAD") if route == "tp2" else ("GET", "HEAD")
    if method not in allowed:
        return CollectorPlan(route, HttpResponse(405, {**cors, "Allow": ", ".join(allowed)}, b"method not allowed"))
    success = _success(route, method, cors)
    if _do_not_track(request.cookies, config):
        return CollectorPlan(route, success)  # the visitor opted out: 200, nothing stored, no cookie
    identity = network_identity(request, config, new_id)
    context = _Context(request, identity, config)
    if route == "redirect":
        target = redirect_target(request.query, config)
        if isinstance(target, str):
            return context.reject(route, 400, FailureKind.TRACKER_PROTOCOL, target, record_target_bytes, cors)
        success = HttpResponse(302, {**cors, **NO_CACHE, "Location": target.geturl()}, b"")
    if method == "POST":
        if len(request.body) > config.max_request_bytes:
            message = f"request body is {len(request.body)} bytes, over the {config.max_request_bytes}-byte cap"
            return context.reject(route, 413, FailureKind.SIZE_VIOLATION, message, record_target_bytes, cors)
        events = payload_events(request.body)
        if isinstance(events, str):
            return context.reject(route, 400, FailureKind.TRACKER_PROTOCOL, events, record_target_bytes, cors)
        queries = [event_query(event) for event in events]
    else:
        queries = [request.query]
    lines, bad = context.event_lines(queries)
    records = context.records(route, lines, record_target_bytes)
    if identity.set_cookie:
        cookie = set_cookie(identity.nuid, request, config)
        success = HttpResponse(success.status, success.headers, success.body, (cookie,))
    visitor = None if identity.anonymous or len(lines) == bad else identity.nuid
    return CollectorPlan(route, success, records, len(lines) - bad, bad, visitor)


def _success(route: Route, method: str, cors: Mapping[str, str]) -> HttpResponse:
    if route == "tp2" and method == "POST":
        return HttpResponse(200, {**cors, "Content-Type": "text/plain; charset=utf-8"}, b"ok")
    body = b"" if method == "HEAD" else PIXEL
    return HttpResponse(200, {**cors, **NO_CACHE, "Content-Type": "image/gif"}, body)


# ----------------------------------------------------------------------------- CORS
def origin_allowed(origin: str | None, config: CollectorConfig) -> bool:
    return bool(origin) and ("*" in config.cors_origins or origin in config.cors_origins)


def cors_headers(origin: str | None, config: CollectorConfig) -> dict[str, str]:
    """The CORS headers of an answer to ``origin``: echoed with credentials (the tracker's POST
    sends cookies, and a credentialed request never accepts ``*``), or none."""
    if origin is None or not origin_allowed(origin, config):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


def preflight(origin: str | None, config: CollectorConfig) -> HttpResponse:
    headers = cors_headers(origin, config)
    if headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, SP-Anonymous",
                "Access-Control-Max-Age": "3600",
            }
        )
    return HttpResponse(200, headers, b"")


# ----------------------------------------------------------------------------- identity and cookies
@dataclass(frozen=True, slots=True)
class NetworkIdentity:
    nuid: str
    anonymous: bool
    set_cookie: bool


def network_identity(request: HttpRequest, config: CollectorConfig, new_id: Callable[[], str]) -> NetworkIdentity:
    """The request's network user id: all zeros for ``SP-Anonymous`` (and no cookie); else the
    ``nuid`` query parameter (an override), else the collector cookie when it holds a UUID, else new."""
    if "sp-anonymous" in request.headers:
        return NetworkIdentity(ANONYMOUS_NUID, True, False)
    override = next((value for name, value in parse_qsl(request.query) if name == "nuid" and value), None)
    cookie = request.cookies.get(config.cookie_name) if config.cookie_enabled else None
    nuid = override or (cookie if cookie and _is_uuid(cookie) else None) or new_id()
    return NetworkIdentity(nuid, False, config.cookie_enabled)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def set_cookie(nuid: str, request: HttpRequest, config: CollectorConfig) -> str:
    """The collector cookie: Secure and SameSite=None (sent on the tracker's cross-site requests),
    HttpOnly (no script reads it), for ``cookie_expiry_days``; Domain from the Origin's allow-listed domain."""
    max_age = config.cookie_expiry_days * 86_400
    expires = datetime.fromtimestamp(request.received_ms / 1000 + max_age, UTC)
    parts = [f"{config.cookie_name}={nuid}", f"Expires={format_datetime(expires, usegmt=True)}", f"Max-Age={max_age}"]
    domain = cookie_domain(request.headers.get("origin"), config)
    if domain:
        parts.append(f"Domain={domain}")
    parts += ["Path=/", "Secure", "HttpOnly", "SameSite=None"]
    return "; ".join(parts)


def cookie_domain(origin: str | None, config: CollectorConfig) -> str | None:
    """The first of ``cookie_domains`` the Origin's host is or is under; None for a host-only cookie."""
    host = (urlsplit(origin).hostname or "") if origin else ""
    for domain in config.cookie_domains:
        bare = domain.lstrip(".").lower()
        if host == bare or host.endswith("." + bare):
            return bare
    return None


def _do_not_track(cookies: Mapping[str, str], config: CollectorConfig) -> bool:
    name, sep, value = config.do_not_track_cookie.partition("=")
    return bool(name) and sep == "=" and cookies.get(name.strip()) == value.strip()


def redirect_target(query: str, config: CollectorConfig) -> SplitResult | str:
    """The ``u`` of a redirect as a split URL when its host is allowed, else why not (a str)."""
    if not config.redirect_domains:
        return "redirects are off (collector.redirect_domains is empty)"
    target = next((value for name, value in parse_qsl(query) if name == "u"), None)
    if not target:
        return "redirect without a u parameter"
    split = urlsplit(target)
    host = (split.hostname or "").lower()
    if split.scheme not in ("http", "https") or not any(
        host == d.lower() or host.endswith("." + d.lower()) for d in config.redirect_domains
    ):
        return f"redirect target host {host[:100]!r} is not in collector.redirect_domains"
    return split


# ----------------------------------------------------------------------------- bodies and lines
def payload_events(body: bytes) -> list[dict[str, object]] | str:
    """The events of a tp2 POST body (``payload_data``), or what is wrong with it."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"tp2 body is not JSON: {exc}"
    if not isinstance(value, dict) or not str(value.get("schema", "")).startswith(PAYLOAD_DATA_SCHEMA):
        return f"tp2 body is not a self-describing {PAYLOAD_DATA_SCHEMA}x payload"
    data = value.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(event, dict) for event in data):
        return "tp2 payload_data has no list of event objects in data"
    return data


class _Context:
    """What every line of one request shares."""

    def __init__(self, request: HttpRequest, identity: NetworkIdentity, config: CollectorConfig) -> None:
        self.request = request
        self.identity = identity
        self.config = config
        headers = request.headers
        self.common = {
            "useragent": headers.get("user-agent") or None,
            "referer": headers.get("referer") or None,
            "client_ip": None if identity.anonymous else request.source_ip,
            "forwarded_for": None if identity.anonymous else headers.get("x-forwarded-for") or None,
            "host": headers.get("host") or None,
            "nuid": identity.nuid,
            "version": COLLECTOR_VERSION,
        }
        self.eids: list[str] = []

    def event_lines(self, queries: list[str]) -> tuple[list[str], int]:
        lines: list[str] = []
        bad = 0
        request = self.request
        for index, query in enumerate(queries):
            eid = next((unquote(p[4:]) for p in query.split("&") if p.startswith("eid=")), None)
            if eid:
                self.eids.append(eid)
            request_id = f"{request.request_id}-{index}"
            line = CollectorPayload(request.received_ms, request_id, query, **self.common).to_line()  # type: ignore[arg-type]
            size = len(line.encode("utf-8"))
            if size > self.config.max_event_bytes:
                bad += 1
                line = CollectorPayload(
                    request.received_ms,
                    request_id,
                    bad=FailureKind.SIZE_VIOLATION.value,
                    messages=(f"event is {size} bytes, over the {self.config.max_event_bytes}-byte max_event_bytes",),
                    raw=query.encode("utf-8")[:_BAD_HEAD_BYTES].decode("utf-8", "ignore"),
                    size=size,
                ).to_line()
            lines.append(line)
        return lines, bad

    def reject(
        self,
        route: Route,
        status: int,
        kind: FailureKind,
        message: str,
        record_target_bytes: int,
        cors: Mapping[str, str],
    ) -> CollectorPlan:
        """A request turned away: one bad-row line on stream 1, then ``status``."""
        request = self.request
        body = request.body or request.query.encode("utf-8")
        raw = body[: min(RAW_PAYLOAD_CAP, self.config.max_event_bytes // 2)].decode("utf-8", "replace")
        line = CollectorPayload(
            request.received_ms,
            f"{request.request_id}-0",
            bad=kind.value,
            messages=(f"{request.method} {request.path}: {message}",),
            raw=raw,
            size=len(body),
        ).to_line()
        records = self.records(route, [line], record_target_bytes)
        return CollectorPlan(route, HttpResponse(status, dict(cors), message.encode("utf-8")), records, 0, 1)

    def records(self, route: Route, lines: list[str], target_bytes: int) -> tuple[OutRecord, ...]:
        """The lines in stream-1 batches of about ``target_bytes``, keyed for a spread over shards.

        A batch's id (hence its stream-2 chunk ids) depends only on the request's event ids when
        every event has one, so a tracker's retry of a request that was in fact stored makes
        chunks the sinks recognise and skip.
        """
        request = self.request
        if self.eids and len(self.eids) == len(lines):
            basis = "eid:" + ",".join(sorted(self.eids))
        else:
            basis = "request:" + request.request_id
        digest = hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        # The network user id spreads one visitor's requests over one shard (in order); an
        # anonymous request's all-zero id is a constant, so it takes its event id instead.
        if not self.identity.anonymous:
            key = self.identity.nuid
        else:
            key = self.eids[0] if self.eids else request.request_id
        out: list[OutRecord] = []
        group: list[tuple[int, str]] = []
        size = 0
        for number, line in enumerate(lines, 1):
            if group and size + len(line) > target_bytes:
                out.append(self._record(route, digest, len(out), group, key))
                group, size = [], 0
            group.append((number, line))
            size += len(line) + 8
        if group:
            out.append(self._record(route, digest, len(out), group, key))
        return tuple(out)

    def _record(self, route: Route, digest: str, part: int, group: list[tuple[int, str]], key: str) -> OutRecord:
        batch = RawBatch(
            bucket=BATCH_BUCKET,
            key=f"{route}/{digest}/{part}",
            etag=digest,
            etl_tstamp=self.request.received_ms,
            fields="",
            line_numbers=tuple(number for number, _ in group),
            lines=tuple(line for _, line in group),
            format=CollectorPayloads.name,
        )
        return OutRecord(encode_raw(batch), key[:256])
