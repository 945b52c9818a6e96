"""Daily rollups of the events dataset for the static dashboard (issue 16).

Beside ``DEST/events/event_date=D/event_hour=H/*.parquet`` this module writes small, immutable
Parquet files, one per table and day, that a browser reads over HTTP instead of a database:

* ``rollups/site/date=D/part-<digest>.parquet``: one row a day -- page views, visits, visitors
  (exact for the day), bounces, the visits' total duration, events, bot events excluded, and the
  day's visitors as HyperLogLog registers (``visitors_hll``) so that any range can be merged;
* ``rollups/hourly/...``: page views, visits and visitors per hour of the day;
* ``rollups/pages/...``: per page path, views, entries (visits whose first page view it is) and
  exits (visits whose last page view it is);
* ``rollups/sources/...``: per referer medium and source and ``utm_*`` (``mkt_*``) values of a
  visit's first event: visits, page views, bounces, duration;
* ``rollups/technology/...``: per browser family, OS family and device class of a visit's first
  event: visits and page views;
* ``rollups/_inputs/date=D.json``: the day's input fingerprint (every events object of the day,
  with its size and ETag -- the MD5 of its bytes for a local dataset) and the digest it hashes
  to, which names the day's files;
* ``rollups/manifest.json``: every day's files, the one mutable object (the dashboard's index:
  HTTP cannot list a folder).

Definitions (the tests compute the same from the events with DuckDB)
--------------------------------------------------------------------
* Events flagged by the bot step (``etl_tags`` holding a ``bot:`` tag, :mod:`transform.enrichments.bots`)
  are left out of every figure (counted in ``bot_events``).
* An event's time is ``derived_tstamp``, else ``collector_tstamp``; its day and hour are its
  partition's (``collector_tstamp``'s).
* A visit is the tracker's ``domain_sessionid``; an event without one is put in a visit by a
  30-minute inactivity rule over a hashed key: ``network_userid``, else IP address and user agent.
  A visit is counted on each day it has events (its part of that day).
* A visitor is ``domain_userid``, else ``network_userid``, else IP address and user agent (hashed).
* A bounce is a visit with exactly one page view and no event other than page views and page pings.
  A visit's duration is its last event's time minus its first's.
* A visit's first event (by time, then ``event_id``) gives its source and technology; its first and
  last page views give the entry and exit pages.

Unique visitors over a range: HyperLogLog
-----------------------------------------
Visitors of a range are not the sum of its days'.  Each day keeps the registers of a HyperLogLog
sketch (``2**HLL_PRECISION`` = 4,096 one-byte registers over a 64-bit BLAKE2b hash of the visitor
key); a range's sketch is the element-wise maximum of its days', and its estimate is the standard
HyperLogLog estimator with the small-range (linear counting) correction
(Flajolet et al. 2007; Heule et al. 2013).  The relative standard error is
``1.04 / sqrt(4096)`` = 1.6%, so an estimate is within :data:`HLL_ERROR_BOUND` (3 standard errors,
4.9%) of the true count 99.7% of the time; below about 10,000 visitors linear counting is far
tighter than that.  The registers are plain bytes so that the dashboard merges and estimates them
in JavaScript (``web/dashboard/src/hll.js``) exactly as :func:`hll_estimate` does here.  The
registers are ours rather than a library's: ``datasketch`` pulls numpy and scipy into the Lambda
artifact, and Apache DataSketches' serialized HLL is not a format a browser can merge without
porting the library.

Plan, then execute
------------------
:func:`plan_rollups` is pure: from a listing of the events objects and of the existing rollups it
names the days whose fingerprint changed (late events re-roll only their days) and the files to
write and retire.  :func:`roll_up_day` is pure over :class:`RollupEvent` records; :func:`run_rollups`
reads, computes and writes through a :class:`RollupStore` (a local folder or an S3 prefix).  The
same inputs give byte-identical files: rows are sorted, Parquet is written with fixed settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, Protocol

from load.errors import DestinationError, SinkWriteError
from pipeline.aws.errors import aws_exceptions, translate

ROLLUP_VERSION: Final = 1
"""Part of every day's digest: a change of definitions re-rolls every day."""
TABLES: Final = ("site", "hourly", "pages", "sources", "technology")
SESSION_GAP_MS: Final = 30 * 60 * 1000
HLL_PRECISION: Final = 12
HLL_REGISTERS: Final = 1 << HLL_PRECISION
HLL_ERROR_BOUND: Final = 3 * 1.04 / math.sqrt(HLL_REGISTERS)
"""Relative error of a visitors estimate, 3 standard errors (99.7% of estimates fall within)."""
DIGEST_DIGITS: Final = 16
BOT_TAG_PREFIX: Final = "bot:"
EVENTS_PREFIX: Final = "events/"
ROLLUPS_PREFIX: Final = "rollups/"
MANIFEST_KEY: Final = "rollups/manifest.json"
INTERACTIONS_IGNORED: Final = frozenset({"page_view", "page_ping"})
"""Events that do not make a visit engaged (any other event does: a click, a struct event)."""
SOURCE_FIELDS: Final = (
    "refr_medium",
    "refr_source",
    "mkt_medium",
    "mkt_source",
    "mkt_campaign",
    "mkt_term",
    "mkt_content",
)
TECHNOLOGY_FIELDS: Final = ("br_family", "os_family", "dvce_type")
READ_COLUMNS: Final = (
    "event_id",
    "event",
    "collector_tstamp",
    "derived_tstamp",
    "etl_tags",
    "page_urlpath",
    "domain_sessionid",
    "domain_userid",
    "network_userid",
    "user_ipaddress",
    "useragent",
    *SOURCE_FIELDS,
    *TECHNOLOGY_FIELDS,
)

_EVENT_KEY = re.compile(r"events/event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{2})/[^/]+\.parquet", re.ASCII)
_PART = re.compile(r"part-([0-9a-f]{16})\.parquet", re.ASCII)


# ------------------------------------------------------------------------------ records (pure)
@dataclass(frozen=True, slots=True)
class RollupEvent:
    """The fields of one event that the rollups read."""

    event_id: str
    event: str
    hour: int
    tstamp_ms: int
    """``derived_tstamp``, else ``collector_tstamp`` (milliseconds since the epoch)."""
    is_bot: bool = False
    page_path: str = ""
    domain_sessionid: str = ""
    domain_userid: str = ""
    network_userid: str = ""
    ip_address: str = ""
    useragent: str = ""
    source: tuple[str, ...] = ("",) * len(SOURCE_FIELDS)
    technology: tuple[str, ...] = ("",) * len(TECHNOLOGY_FIELDS)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def visitor_key(event: RollupEvent) -> str:
    """The visitor of ``event``: ``domain_userid``, else ``network_userid``, else IP and user agent."""
    if event.domain_userid:
        return "d:" + event.domain_userid
    if event.network_userid:
        return "n:" + event.network_userid
    return "i:" + hashlib.blake2b(f"{event.ip_address}\x00{event.useragent}".encode(), digest_size=12).hexdigest()


def _inactivity_key(event: RollupEvent) -> str:
    if event.network_userid:
        return "n:" + event.network_userid
    return "i:" + hashlib.blake2b(f"{event.ip_address}\x00{event.useragent}".encode(), digest_size=12).hexdigest()


def assign_visits(events: Sequence[RollupEvent]) -> list[str]:
    """The visit key of each event (same order): ``domain_sessionid``, else 30 minutes of inactivity."""
    keys = [""] * len(events)
    fallback: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        if event.domain_sessionid:
            keys[index] = "s:" + event.domain_sessionid
        else:
            fallback[_inactivity_key(event)].append(index)
    for key, indexes in fallback.items():
        indexes.sort(key=lambda i: (events[i].tstamp_ms, events[i].event_id))
        start = last = events[indexes[0]].tstamp_ms
        for i in indexes:
            stamp = events[i].tstamp_ms
            if stamp - last > SESSION_GAP_MS:
                start = stamp
            last = stamp
            keys[i] = f"{key}@{start}"
    return keys


# ------------------------------------------------------------------------------ HyperLogLog (pure)
def hll_registers(keys: Iterable[str]) -> bytes:
    """The :data:`HLL_REGISTERS` one-byte registers of a HyperLogLog sketch of ``keys``."""
    registers = bytearray(HLL_REGISTERS)
    rest_bits = 64 - HLL_PRECISION
    for key in keys:
        hashed = _hash64(key)
        index = hashed >> rest_bits
        rest = hashed & ((1 << rest_bits) - 1)
        rank = rest_bits - rest.bit_length() + 1
        registers[index] = max(registers[index], rank)
    return bytes(registers)


def hll_merge(sketches: Iterable[bytes]) -> bytes:
    """The sketch of the union: the element-wise maximum of the registers."""
    merged = bytearray(HLL_REGISTERS)
    for sketch in sketches:
        merged = bytearray(max(a, b) for a, b in zip(merged, sketch, strict=True))
    return bytes(merged)


def hll_estimate(registers: bytes) -> float:
    """The distinct count estimated from ``registers`` (HyperLogLog, small-range corrected)."""
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / sum(2.0**-r for r in registers)
    zeros = registers.count(0)
    if raw <= 2.5 * m and zeros:
        return m * math.log(m / zeros)
    return raw


# ------------------------------------------------------------------------------ one day (pure)
@dataclass(frozen=True)
class DayRollup:
    """A day's tables, each a list of rows (dicts of column to value), sorted."""

    date: str
    tables: dict[str, list[dict[str, Any]]]


@dataclass
class _Visit:
    events: list[RollupEvent] = field(default_factory=list)


def roll_up_day(day: str, events: Sequence[RollupEvent]) -> DayRollup:
    """The five tables of ``day`` from its events (bots counted, then left out)."""
    bots = sum(1 for e in events if e.is_bot)
    humans = [e for e in events if not e.is_bot]
    humans.sort(key=lambda e: (e.tstamp_ms, e.event_id))
    visit_keys = assign_visits(humans)
    visits: dict[str, list[RollupEvent]] = defaultdict(list)
    for event, key in zip(humans, visit_keys, strict=True):
        visits[key].append(event)
    visitors = {visitor_key(e) for e in humans}

    page_rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    source_rows: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    tech_rows: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    pageviews = bounces = duration = 0
    for event in humans:
        if event.event == "page_view":
            page_rows[event.page_path][0] += 1
    for visit in visits.values():  # events are in time order
        views = [e for e in visit if e.event == "page_view"]
        engaged = any(e.event not in INTERACTIONS_IGNORED for e in visit)
        bounce = int(len(views) == 1 and not engaged)
        length = visit[-1].tstamp_ms - visit[0].tstamp_ms
        pageviews += len(views)
        bounces += bounce
        duration += length
        if views:
            page_rows[views[0].page_path][1] += 1
            page_rows[views[-1].page_path][2] += 1
        first = visit[0]
        source = source_rows[first.source]
        source[0] += 1
        source[1] += len(views)
        source[2] += bounce
        source[3] += length
        tech = tech_rows[first.technology]
        tech[0] += 1
        tech[1] += len(views)

    hours: dict[int, tuple[list[int], set[str], set[str]]] = {}
    for event, key in zip(humans, visit_keys, strict=True):
        views_visits_visitors = hours.setdefault(event.hour, ([0], set(), set()))
        views_visits_visitors[0][0] += event.event == "page_view"
        views_visits_visitors[1].add(key)
        views_visits_visitors[2].add(visitor_key(event))

    site = {
        "date": day,
        "pageviews": pageviews,
        "visits": len(visits),
        "visitors": len(visitors),
        "bounces": bounces,
        "visit_duration_ms": duration,
        "events": len(humans),
        "bot_events": bots,
        "visitors_hll": hll_registers(sorted(visitors)),
    }
    tables: dict[str, list[dict[str, Any]]] = {
        "site": [site],
        "hourly": [
            {"date": day, "hour": hour, "pageviews": v[0][0], "visits": len(v[1]), "visitors": len(v[2])}
            for hour, v in sorted(hours.items())
        ],
        "pages": [
            {"date": day, "page": page, "pageviews": c[0], "entries": c[1], "exits": c[2]}
            for page, c in sorted(page_rows.items())
        ],
        "sources": [
            {
                "date": day,
                **dict(zip(SOURCE_FIELDS, key, strict=True)),
                "visits": c[0],
                "pageviews": c[1],
                "bounces": c[2],
                "visit_duration_ms": c[3],
            }
            for key, c in sorted(source_rows.items())
        ],
        "technology": [
            {"date": day, **dict(zip(TECHNOLOGY_FIELDS, key, strict=True)), "visits": c[0], "pageviews": c[1]}
            for key, c in sorted(tech_rows.items())
        ],
    }
    return DayRollup(day, tables)


# ------------------------------------------------------------------------------ plan (pure)
@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object of the dataset: its key relative to DEST, size and ETag."""

    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One day of the dataset: its inputs, their digest, and whether its rollups are current."""

    date: str
    inputs: tuple[StoredObject, ...]
    digest: str
    current: bool
    stale: tuple[str, ...] = ()
    """Rollup files of the day that an older digest named: retired once the new ones are written."""

    def key(self, table: str) -> str:
        return f"{ROLLUPS_PREFIX}{table}/date={self.date}/part-{self.digest}.parquet"

    @property
    def fingerprint_key(self) -> str:
        return f"{ROLLUPS_PREFIX}_inputs/date={self.date}.json"

    def fingerprint(self) -> bytes:
        body = {
            "version": ROLLUP_VERSION,
            "date": self.date,
            "digest": self.digest,
            "inputs": [[o.key, o.size, o.etag] for o in self.inputs],
        }
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


@dataclass(frozen=True, slots=True)
class RollupPlan:
    days: tuple[DayPlan, ...]
    """Every day of the dataset (the manifest names them all), in date order."""
    selected: tuple[str, ...]
    """The days within --since/--until whose rollups are not current: these are rolled up."""

    def to_json(self) -> dict[str, Any]:
        return {
            "days": len(self.days),
            "to_roll_up": list(self.selected),
            "current": [d.date for d in self.days if d.current],
        }


def day_digest(day: str, inputs: Sequence[StoredObject]) -> str:
    text = json.dumps([ROLLUP_VERSION, day, [[o.key, o.size, o.etag] for o in inputs]])
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_DIGITS]


def plan_rollups(
    listing: Iterable[StoredObject], *, since: date | None = None, until: date | None = None
) -> RollupPlan:
    """Which days to roll up: those in range whose inputs' digest has no complete set of rollup files."""
    inputs: dict[str, list[StoredObject]] = defaultdict(list)
    rollups: dict[str, set[str]] = defaultdict(set)  # day -> keys of its rollup files
    for obj in listing:
        match = _EVENT_KEY.fullmatch(obj.key)
        if match:
            inputs[match.group(1)].append(obj)
            continue
        parts = obj.key.split("/")
        if len(parts) == 4 and parts[0] == "rollups" and parts[1] in TABLES and parts[2].startswith("date="):
            if _PART.fullmatch(parts[3]):
                rollups[parts[2][5:]].add(obj.key)
    days = []
    selected = []
    for day in sorted(inputs):
        objects = tuple(sorted(inputs[day], key=lambda o: o.key))
        digest = day_digest(day, objects)
        plan = DayPlan(day, objects, digest, current=False)
        wanted = {plan.key(t) for t in TABLES}
        current = wanted <= rollups[day]
        stale = tuple(sorted(rollups[day] - wanted))
        plan = DayPlan(day, objects, digest, current=current, stale=stale)
        days.append(plan)
        in_range = (since is None or day >= since.isoformat()) and (until is None or day <= until.isoformat())
        if in_range and (not current or stale):
            selected.append(day)
    return RollupPlan(tuple(days), tuple(selected))


def manifest(plan: RollupPlan) -> bytes:
    """The dashboard's index of the days whose rollup files exist once the plan has run: those current
    before it and those it rolls up (a day outside --since/--until not rolled up yet is left out).
    Sorted: the same plan gives the same bytes."""
    shown = [d for d in plan.days if d.current or d.date in plan.selected]
    body = {
        "version": ROLLUP_VERSION,
        "hll_precision": HLL_PRECISION,
        "hll_error_bound": round(HLL_ERROR_BOUND, 4),
        "tables": list(TABLES),
        "days": {d.date: {t: d.key(t) for t in TABLES} for d in shown},
    }
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


# ------------------------------------------------------------------------------ encoding
def _schema(table: str) -> Any:
    import pyarrow as pa

    counts = {
        "site": ["pageviews", "visits", "visitors", "bounces", "visit_duration_ms", "events", "bot_events"],
        "hourly": ["pageviews", "visits", "visitors"],
        "pages": ["pageviews", "entries", "exits"],
        "sources": ["visits", "pageviews", "bounces", "visit_duration_ms"],
        "technology": ["visits", "pageviews"],
    }[table]
    keys = {
        "site": [],
        "hourly": [pa.field("hour", pa.int32(), nullable=False)],
        "pages": [pa.field("page", pa.string(), nullable=False)],
        "sources": [pa.field(name, pa.string(), nullable=False) for name in SOURCE_FIELDS],
        "technology": [pa.field(name, pa.string(), nullable=False) for name in TECHNOLOGY_FIELDS],
    }[table]
    fields = [pa.field("date", pa.string(), nullable=False), *keys]
    fields += [pa.field(name, pa.int64(), nullable=False) for name in counts]
    if table == "site":
        fields.append(pa.field("visitors_hll", pa.binary(), nullable=False))
    return pa.schema(fields)


def encode_table(table: str, rows: Sequence[dict[str, Any]]) -> bytes:
    """One rollup table as Parquet bytes: fixed settings (snappy, one row group, no Arrow schema
    blob), so the same rows give the same bytes and the browser reader needs no extra codec."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(table)
    data = pa.Table.from_pylist(list(rows), schema=schema)
    sink = io.BytesIO()
    pq.write_table(data, sink, compression="snappy", store_schema=False, write_statistics=False, use_dictionary=True)
    return sink.getvalue()


def _millis(column: Any) -> list[int | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = pc.cast(column, pa.timestamp("ms", tz="UTC"), safe=False)  # microseconds are truncated
    values: list[int | None] = stamps.cast(pa.int64()).to_pylist()
    return values


def decode_events(data: bytes, hour: int) -> list[RollupEvent]:
    """The :class:`RollupEvent` records of one events Parquet object of ``hour``."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(data))
    names = set(parquet.schema_arrow.names)
    table = parquet.read(columns=[c for c in READ_COLUMNS if c in names])
    count = table.num_rows

    def strings(name: str) -> list[str]:
        if name not in names:
            return [""] * count
        return [v or "" for v in table.column(name).to_pylist()]

    collector = _millis(table.column("collector_tstamp"))
    derived = _millis(table.column("derived_tstamp")) if "derived_tstamp" in names else [None] * count
    columns = {name: strings(name) for name in READ_COLUMNS if name not in ("collector_tstamp", "derived_tstamp")}
    events = []
    for i in range(count):
        stamp = derived[i] if derived[i] is not None else collector[i]
        events.append(
            RollupEvent(
                event_id=columns["event_id"][i],
                event=columns["event"][i],
                hour=hour,
                tstamp_ms=stamp or 0,
                is_bot=any(tag.startswith(BOT_TAG_PREFIX) for tag in columns["etl_tags"][i].split(",")),
                page_path=columns["page_urlpath"][i],
                domain_sessionid=columns["domain_sessionid"][i],
                domain_userid=columns["domain_userid"][i],
                network_userid=columns["network_userid"][i],
                ip_address=columns["user_ipaddress"][i],
                useragent=columns["useragent"][i],
                source=tuple(columns[name][i] for name in SOURCE_FIELDS),
                technology=tuple(columns[name][i] for name in TECHNOLOGY_FIELDS),
            )
        )
    return events


# ------------------------------------------------------------------------------ stores and executor
class RollupStore(Protocol):
    """Where the dataset is: keys are relative to DEST (``events/...``, ``rollups/...``)."""

    def list(self, prefix: str) -> Iterator[StoredObject]: ...

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def url(self) -> str: ...


class LocalStore:
    """A dataset folder; an object's ETag is the MD5 of its bytes, as S3's for a single-part upload."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                data = path.read_bytes()
                key = path.relative_to(self.root).as_posix()
                yield StoredObject(key, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(data)
            temporary.replace(path)  # a reader never sees half a file
        except OSError as exc:
            raise SinkWriteError(f"could not write {path}: {exc}") from exc

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def url(self) -> str:
        return str(self.root)


class S3Store:
    """A dataset under ``s3://bucket/prefix/`` through an injected S3 client."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except aws_exceptions() as exc:
            raise translate(exc, what, transient=SinkWriteError, terminal=DestinationError) from exc

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = self._call(
            f"list s3://{self.bucket}/{self.prefix}{prefix}",
            lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)),
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                yield StoredObject(key, int(item["Size"]), str(item["ETag"]).strip('"'))

    def read(self, key: str) -> bytes:
        body = self._call(
            f"read s3://{self.bucket}/{self.prefix}{key}", self.s3.get_object, Bucket=self.bucket, Key=self.prefix + key
        )
        data: bytes = body["Body"].read()
        return data

    def write(self, key: str, data: bytes) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/vnd.apache.parquet"
        self._call(
            f"write s3://{self.bucket}/{self.prefix}{key}",
            self.s3.put_object,
            Bucket=self.bucket,
            Key=self.prefix + key,
            Body=data,
            ContentType=content_type,
        )

    def delete(self, key: str) -> None:
        self._call(
            f"delete s3://{self.bucket}/{self.prefix}{key}",
            self.s3.delete_object,
            Bucket=self.bucket,
            Key=self.prefix + key,
        )

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class RollupSummary:
    """What a run did: the days rolled up, the files written and retired, the events read."""

    days: int
    rolled_up: tuple[str, ...]
    files_written: int
    files_retired: int
    events_read: int
    bytes_written: int

    def to_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "rolled_up": list(self.rolled_up),
            "files_written": self.files_written,
            "files_retired": self.files_retired,
            "events_read": self.events_read,
            "bytes_written": self.bytes_written,
        }


def list_store(store: RollupStore) -> list[StoredObject]:
    return [*store.list(EVENTS_PREFIX), *store.list(ROLLUPS_PREFIX)]


def run_rollups(store: RollupStore, plan: RollupPlan) -> RollupSummary:
    """Roll up the plan's selected days; write each day's files, then its fingerprint, then retire
    the day's stale files; finally the manifest.  A crash leaves old and new files side by side,
    and the next run (whose plan sees the same digest) finishes the day."""
    by_date = {d.date: d for d in plan.days}
    written = retired = events_read = bytes_written = 0
    for day in plan.selected:
        day_plan = by_date[day]
        events: list[RollupEvent] = []
        for obj in day_plan.inputs:
            match = _EVENT_KEY.fullmatch(obj.key)
            assert match is not None  # the plan kept only events keys
            events.extend(decode_events(store.read(obj.key), int(match.group(2))))
        events_read += len(events)
        rollup = roll_up_day(day, events)
        for table in TABLES:
            data = encode_table(table, rollup.tables[table])
            store.write(day_plan.key(table), data)
            written += 1
            bytes_written += len(data)
        store.write(day_plan.fingerprint_key, day_plan.fingerprint())
        for key in day_plan.stale:
            store.delete(key)
            retired += 1
    store.write(MANIFEST_KEY, manifest(plan))
    return RollupSummary(len(plan.days), plan.selected, written, retired, events_read, bytes_written)


def roll_up(store: RollupStore, *, since: date | None = None, until: date | None = None) -> RollupSummary:
    """List, plan and run the rollups of ``store`` (the CLI's, the backfill's and the handler's entry)."""
    return run_rollups(store, plan_rollups(list_store(store), since=since, until=until))
