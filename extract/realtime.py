"""The real-time tile's rolling counter: visitors seen by the collector in the last few minutes.

Layout (one DynamoDB table, on demand, TTL on ``expires_at``): one item per visitor,
``pk = "visitors"`` and ``sk`` = the first 8 bytes (16 hex digits) of HMAC-SHA256(salt, nuid),
with ``last_seen`` (epoch seconds) and ``expires_at``.  The collector puts the item once per
request after the stream-1 put succeeded (a ``PutItem`` overwrite: idempotent, no read, one
write unit); the reader Queries the partition with ``last_seen >= now - window`` and
``Select=COUNT``.

Why this layout, against the alternatives the issue weighed:

* one item per (minute, visitor) counted with ``Select=COUNT`` cannot de-duplicate a visitor
  across minutes, so five minutes would over-count returning visitors;
* a string set of hashes per minute grows one item towards the 400 KB item limit on a busy site
  and still needs the five sets unioned by the reader;
* one item per visitor holding its last-seen time is exact, bounded by the TTL (items expire
  after ``realtime_ttl_s``; DynamoDB deletes expired items lazily, hence the filter on
  ``last_seen`` and not on the TTL), and costs one write per request and one Query per tile
  refresh, which reads (and pays for) the items within the TTL only: 4 KB read units of
  ~60-byte items, so about 70 visitors per read unit.

One partition for the whole deployment: a DynamoDB partition takes 1,000 writes a second,
far above the request rate this counter is for (the seed's "less than $5 a month").

Privacy: the item holds a salted, truncated hash of the network user id, never the id itself,
nor an IP address or a URL; the answer of ``GET /realtime`` is one number.
See https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html (lazy expiry).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from extract.errors import ExtractError
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.config import CollectorConfig
from pipeline.errors import TerminalError, TransientError

REALTIME_PATH: Final = "/realtime"
PARTITION: Final = "visitors"
VISITOR_HASH_BYTES: Final = 8
"""8 bytes: a collision among even a million concurrent visitors is ~3e-8 likely."""


class RealtimeCounterError(ExtractError, TransientError):
    """A counter write or read failed in a way a retry may fix (throttling, a timeout)."""


class RealtimeCounterAccessError(ExtractError, TerminalError):
    """A counter write or read was refused (missing table, permissions): fix the deployment."""


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    """The counter's part of ``[collector]`` (``config/default.toml`` documents each key)."""

    table: str
    salt: str
    window_s: int
    ttl_s: int
    cors_origins: tuple[str, ...]

    @classmethod
    def of(cls, config: CollectorConfig) -> RealtimeSettings:
        return cls(
            config.realtime_table,
            config.realtime_salt,
            config.realtime_window_s,
            config.realtime_ttl_s,
            config.realtime_cors_origins,
        )


@dataclass(frozen=True, slots=True)
class VisitorMark:
    """One counter item: a visitor (hashed) seen at ``seen_s``."""

    visitor_hash: str
    seen_s: int
    expires_at_s: int


def visitor_hash(nuid: str, salt: str) -> str:
    """The counter's key of a network user id: HMAC-SHA256 under ``salt``, truncated, hex."""
    digest = hmac.new(salt.encode("utf-8"), nuid.encode("utf-8"), hashlib.sha256).digest()
    return digest[:VISITOR_HASH_BYTES].hex()


def plan_mark(nuid: str | None, anonymous: bool, received_ms: int, settings: RealtimeSettings) -> VisitorMark | None:
    """The item to put for one acknowledged request, or None: the counter is off, the request
    carried no visitor, or it was anonymous (``SP-Anonymous``: the visitor asked not to be known)."""
    if not settings.table or not nuid or anonymous:
        return None
    seen_s = received_ms // 1000
    return VisitorMark(visitor_hash(nuid, settings.salt), seen_s, seen_s + settings.ttl_s)


@dataclass(frozen=True, slots=True)
class RealtimeAnswer:
    visitors: int
    window_s: int
    as_of_s: int

    def to_json(self) -> dict[str, Any]:
        as_of = datetime.fromtimestamp(self.as_of_s, UTC).isoformat().replace("+00:00", "Z")
        return {"visitors": self.visitors, "window_s": self.window_s, "as_of": as_of}


def realtime_cors(origin: str | None, settings: RealtimeSettings) -> dict[str, str]:
    """CORS of ``GET /realtime``: a credential-less read, so ``*`` may answer ``*``."""
    if "*" in settings.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin and origin in settings.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def answer_body(answer: RealtimeAnswer) -> bytes:
    return json.dumps(answer.to_json(), separators=(",", ":")).encode("utf-8")


class RealtimeCounter(Protocol):
    def mark(self, mark: VisitorMark) -> None: ...

    def count(self, now_s: int, window_s: int) -> int: ...


class DynamoRealtimeCounter:
    """The counter on a DynamoDB table (client injected; nothing created at import)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table

    def mark(self, mark: VisitorMark) -> None:
        """Put (overwrite) the visitor's item.  Raises :class:`RealtimeCounterError` or
        :class:`RealtimeCounterAccessError`."""
        item = {
            "pk": {"S": PARTITION},
            "sk": {"S": mark.visitor_hash},
            "last_seen": {"N": str(mark.seen_s)},
            "expires_at": {"N": str(mark.expires_at_s)},
        }
        try:
            self._dynamodb.put_item(TableName=self._table, Item=item)
        except aws_exceptions() as exc:
            raise self._translate(exc, "DynamoDB PutItem (realtime counter)") from exc

    def count(self, now_s: int, window_s: int) -> int:
        """Visitors whose last request is at most ``window_s`` old at ``now_s``."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "last_seen >= :since",
            "ExpressionAttributeValues": {":pk": {"S": PARTITION}, ":since": {"N": str(now_s - window_s)}},
            "Select": "COUNT",
        }
        total = 0
        while True:
            try:
                page = self._dynamodb.query(**params)
            except aws_exceptions() as exc:
                raise self._translate(exc, "DynamoDB Query (realtime counter)") from exc
            total += int(page.get("Count", 0))
            last = page.get("LastEvaluatedKey")
            if not last:
                return total
            params["ExclusiveStartKey"] = last

    @staticmethod
    def _translate(exc: BaseException, what: str) -> Exception:
        return translate(exc, what, transient=RealtimeCounterError, terminal=RealtimeCounterAccessError)


class MemoryRealtimeCounter:
    """An in-memory counter for tests and previews: the same window rule as the table's."""

    __test__ = False

    def __init__(self) -> None:
        self.items: dict[str, VisitorMark] = {}

    def mark(self, mark: VisitorMark) -> None:
        self.items[mark.visitor_hash] = mark

    def count(self, now_s: int, window_s: int) -> int:
        return sum(1 for item in self.items.values() if item.seen_s >= now_s - window_s and item.expires_at_s > now_s)


def realtime_response_parts(
    method: str,
    origin: str | None,
    settings: RealtimeSettings,
    counter: RealtimeCounter | None,
    clock: Callable[[], float],
) -> tuple[int, Mapping[str, str], bytes]:
    """Status, headers and body of a request to ``/realtime``.

    404 when the counter is off (no table configured), 405 for anything but GET/HEAD/OPTIONS,
    503 when the read fails (retry later); else 200 with ``{"visitors", "window_s", "as_of"}``.
    """
    cors = realtime_cors(origin, settings)
    if counter is None or not settings.table:
        return 404, cors, b"not found"
    verb = method.upper()
    if verb == "OPTIONS":
        headers = {**cors, "Access-Control-Allow-Methods": "GET, OPTIONS", "Access-Control-Max-Age": "3600"}
        return 200, headers if cors else {}, b""
    if verb not in ("GET", "HEAD"):
        return 405, {**cors, "Allow": "GET, HEAD"}, b"method not allowed"
    now_s = int(clock())
    try:
        visitors = counter.count(now_s, settings.window_s)
    except (RealtimeCounterError, RealtimeCounterAccessError):
        return 503, {**cors, "Retry-After": "5"}, b"unavailable"
    body = answer_body(RealtimeAnswer(visitors, settings.window_s, now_s))
    headers = {**cors, "Content-Type": "application/json", "Cache-Control": "no-store"}
    return 200, headers, b"" if verb == "HEAD" else body


LOCAL_TABLE: Final = "clickstream-etl-realtime"
"""The counter table ``run-local --collector`` creates in its emulated AWS."""


def create_realtime_table(dynamodb: Any, table: str) -> None:
    """Create the counter table as the template declares it (for run-local and tests; the
    deployed table is the template's ``RealtimeTable``)."""
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
