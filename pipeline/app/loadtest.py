"""Load testing (issue 13, item 5): synthetic traffic at a given rate, measured from ingestion to sink.

``clickstream-etl loadtest --rate N --duration S`` puts synthetic tracker events on stream 1 -- of
the emulated chain (:class:`~pipeline.app.local.runtime.LocalChain`, the default) or of a deployed
pipeline (``--stream NAME``) -- reads the sink back and reports throughput, latency percentiles and
every event lost or duplicated on the way.

What the traffic is, and why
----------------------------
Each event is a Snowplow structured event (``e=se``), one CloudFront access-log line of the
tracker pixel ``GET /i``, packed into :class:`~pipeline.records.RawBatch` records as Extract packs
an object's lines, so Transform, the sink and Firehose run their deployed code on it.

* ``eid`` = ``RRRRRRRR-0000-4000-8000-SSSSSSSSSSSS``: the run id (8 hex digits, random per run) and
  the event's sequence number (12 hex digits).  The sink keeps ``eid`` as ``event_id``, so a
  sink row names the run and the event exactly: loss and duplication are counted per event, and
  rows of other runs or of real traffic in the same bucket are recognised and left alone.
* ``stm`` (``dvce_sent_tstamp``) = the **ingestion time**: the clock, in epoch ms, just before the
  PutRecords call that carries the event.  ``stm`` is the tracker protocol's "when the event was
  sent", which is what ingestion is here; it also survives into the sink, but the loadtest keeps
  its own table of ingestion times (seq -> ms) and never needs to read it back.  The log line's
  ``date``/``time`` (the collector timestamp, second resolution) is the same instant.
* ``aid`` = ``clickstream-etl-loadtest`` and ``se_la`` = the run id, for anyone querying the output.

Sink time
---------
* Local chain: the clock when the Parquet sink handler **returned** the invocation whose response
  lists the object holding the row (its objects are committed then).  Rows of an object the
  handler never reported (a stray copy) count for loss and duplication but have no latency.
* Deployed pipeline: the object's S3 ``LastModified`` (one-second resolution), read back from
  ``--output``.

Latency = sink time - ingestion time, per event (its first row); percentiles are nearest-rank.
Throughput = distinct events received / (last sink time - first ingestion time).

Bounds: ``rate * duration`` events at most, refused above :data:`DEFAULT_MAX_EVENTS` unless
``--max-events`` raises the cap, which is also a hard cap on what is sent; sending stops when
``duration + BURST_S`` has passed even if fewer were sent (the burst: a last put delayed by a
slow round still goes).  The pace is :class:`~pipeline.app.replay.Pacer`
(a token bucket, burst :data:`BURST_S`, started empty): at most ``rate * t`` events plus one chunk
are put in the first ``t`` seconds, and over any window of ``w`` seconds at most
``rate * (w + BURST_S)`` plus one chunk.  Ctrl-C stops the sending; what was sent is still
drained (locally) or waited for (deployed) and reported.

Cleanup: the emulated chain is torn down with its moto.  In a deployed pipeline the loadtest
deletes an output object only when every row in it is one of this run's events; objects holding
other rows too are left and counted, and the DynamoDB claims (TTL) and Firehose's Redshift rows
are not touched (the report says how to find them).
"""

from __future__ import annotations

import io
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from pipeline.aws.kinesis import OutRecord, RecordWriter
from pipeline.config import PipelineConfig, StreamConfig
from pipeline.errors import InputError, TerminalError, TransientError
from pipeline.records import RawBatch, encode_raw
from pipeline.testing.logs import LogBuilder, tracker_query

if TYPE_CHECKING:
    from pipeline.app.local.runtime import LocalChain

APP_ID: Final = "clickstream-etl-loadtest"
DEFAULT_MAX_EVENTS: Final = 100_000
"""The most events a loadtest sends unless ``--max-events`` says otherwise."""
BURST_S: Final = 0.5
"""The pacer's burst: a put delayed by a slow chain round may catch up by this much, no more."""
CHUNK_S: Final = 0.05
"""Events are put in chunks of ``rate * CHUNK_S`` (at least one): one PutRecords call per chunk."""
LINES_PER_RECORD: Final = 200
"""At most this many events per stream-1 record (about 120 KB, within Extract's 256 KiB budget)."""
SYNTHETIC_BUCKET: Final = "clickstream-etl-loadtest"
"""The ``bucket`` coordinate of the synthetic records: no such object exists, none is read."""
PERCENTILES: Final = (50, 95, 99)
LOCAL_SINK_TIME: Final = "the Parquet sink handler returned the invocation that wrote the event's object"
REMOTE_SINK_TIME: Final = "S3 LastModified of the object holding the event (1 s resolution)"

_LAYOUT_BUILDER: Final = LogBuilder(fields=33)
_SEQ_DIGITS: Final = 12


class LoadTestInputError(InputError):
    """The loadtest's arguments cannot be used (a rate or duration out of bounds, a bad S3 URL)."""


class LoadTestReadError(TransientError):
    """Reading the sink back failed (throttling, network); run the loadtest again."""


class LoadTestAccessError(TerminalError):
    """AWS refused a call of the loadtest (permissions, a missing stream or bucket); fix that first."""


# ------------------------------------------------------------------------ plan
@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What a loadtest sends: ``events`` events at ``rate`` events/s for at most ``duration_s`` seconds."""

    run_id: str
    rate: float
    duration_s: float
    events: int


def new_run_id() -> str:
    """A fresh run id: 8 random hex digits."""
    return secrets.token_hex(4)


def plan_load(rate: float, duration_s: float, max_events: int | None = None, run_id: str | None = None) -> LoadPlan:
    """The plan for ``rate`` events/s over ``duration_s`` seconds.

    Raises :class:`LoadTestInputError` for a non-positive rate or duration, or when
    ``rate * duration_s`` exceeds ``max_events`` (default :data:`DEFAULT_MAX_EVENTS`).
    """
    if not (rate > 0 and math.isfinite(rate)) or not (duration_s > 0 and math.isfinite(duration_s)):
        raise LoadTestInputError("--rate and --duration must be above 0")
    cap = DEFAULT_MAX_EVENTS if max_events is None else max_events
    if cap < 1:
        raise LoadTestInputError("--max-events must be at least 1")
    events = math.ceil(rate * duration_s - 1e-9)
    if events > cap:
        raise LoadTestInputError(
            f"--rate {rate:g} for --duration {duration_s:g} s is {events:,} events, above the cap of {cap:,}; "
            f"give --max-events {events} to allow it"
        )
    return LoadPlan(run_id or new_run_id(), rate, duration_s, max(events, 1))


# ------------------------------------------------------------------------ synthetic events
def event_id(run_id: str, seq: int) -> str:
    """The ``eid`` of event ``seq`` of run ``run_id`` (a UUID-shaped string, lower case)."""
    return f"{run_id}-0000-4000-8000-{seq:0{_SEQ_DIGITS}x}"


def parse_event_id(eid: str) -> tuple[str, int] | None:
    """``(run_id, seq)`` of a loadtest ``eid``, or None when it is not one."""
    parts = eid.split("-")
    if len(parts) != 5 or parts[1:4] != ["0000", "4000", "8000"] or len(parts[0]) != 8:  # noqa: PLR2004
        return None
    try:
        int(parts[0], 16)
        return parts[0], int(parts[4], 16)
    except ValueError:
        return None


def tracker_line(run_id: str, seq: int, sent_ms: int) -> str:
    """The CloudFront log line of one synthetic tracker hit, received at ``sent_ms``."""
    stamp = datetime.fromtimestamp(sent_ms / 1000, UTC)
    query = tracker_query(
        {
            "e": "se",
            "eid": event_id(run_id, seq),
            "aid": APP_ID,
            "p": "srv",
            "tv": "clickstream-etl-loadtest",
            "se_ca": "loadtest",
            "se_ac": "event",
            "se_la": run_id,
            "dtm": str(sent_ms),
            "stm": str(sent_ms),
        }
    )
    return _LAYOUT_BUILDER.line(
        date=stamp.strftime("%Y-%m-%d"),
        time=stamp.strftime("%H:%M:%S"),
        query=query,
        request_id=f"loadtest{run_id}{seq:012d}",
    )


def build_records(run_id: str, first_seq: int, count: int, sent_ms: int) -> list[OutRecord]:
    """Stream-1 records for events ``first_seq .. first_seq + count - 1``, packed as Extract packs lines.

    Each record is a :class:`RawBatch` of at most :data:`LINES_PER_RECORD` lines whose ``key`` names
    the run, so its batch id (and the chunk ids the sink claims) are unique to the run.
    """
    records: list[OutRecord] = []
    fields = " ".join(_LAYOUT_BUILDER.layout.names)
    for start in range(first_seq, first_seq + count, LINES_PER_RECORD):
        seqs = tuple(range(start, min(start + LINES_PER_RECORD, first_seq + count)))
        batch = RawBatch(
            SYNTHETIC_BUCKET,
            f"loadtest/{run_id}/{start:0{_SEQ_DIGITS}d}",
            run_id,
            sent_ms,
            fields,
            seqs,
            tuple(tracker_line(run_id, seq, sent_ms) for seq in seqs),
        )
        records.append(OutRecord(encode_raw(batch), batch.batch_id))
    return records


# ------------------------------------------------------------------------ sending
@dataclass
class SendLog:
    """What was put: each event's ingestion time (epoch ms), by sequence number."""

    ingested_ms: dict[int, int] = field(default_factory=dict)
    records: int = 0
    started: float = 0.0
    finished: float = 0.0
    interrupted: bool = False

    @property
    def sent(self) -> int:
        return len(self.ingested_ms)


def send(
    plan: LoadPlan,
    writer: RecordWriter,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    *,
    log: SendLog | None = None,
) -> SendLog:
    """Put ``plan.events`` events with ``writer``, paced at ``plan.rate``, for at most ``plan.duration_s``.

    ``clock`` is epoch seconds; ``sleep`` is what the pacer waits with (the local chain runs its
    rounds in it).  Ctrl-C stops the sending and marks the log interrupted: what was put stays
    in ``log`` (pass one in to keep it whatever happens).
    """
    from pipeline.app.replay import Cost, Pacer, RateLimits

    log = log or SendLog()
    # Only the records dimension paces; the bytes of a chunk are far below any shard's limit at
    # the rates a loadtest is for, and the deployed stream's own throttling is retried by the writer.
    pacer = Pacer(RateLimits(plan.rate, float(1 << 40), BURST_S), clock, sleep)
    # The bucket starts full; spending its burst first makes the first second carry ``rate``
    # events, not ``rate * (1 + BURST_S)``: the burst only lets a put delayed by a slow round catch up.
    pacer.acquire(Cost(math.ceil(plan.rate * BURST_S), 0))
    chunk = max(1, min(math.ceil(plan.rate * CHUNK_S), 10 * LINES_PER_RECORD))
    log.started = clock()
    # A put delayed past the end by a slow round (or a slow PutRecords) still goes within the burst.
    deadline = log.started + plan.duration_s + BURST_S
    try:
        while log.sent < plan.events:
            count = min(chunk, plan.events - log.sent)
            pacer.acquire(Cost(count, 0))
            now = clock()
            if now >= deadline:
                break
            sent_ms = int(now * 1000)
            records = build_records(plan.run_id, log.sent, count, sent_ms)
            writer.put(records)
            log.ingested_ms.update(dict.fromkeys(range(log.sent, log.sent + count), sent_ms))
            log.records += len(records)
    except KeyboardInterrupt:
        log.interrupted = True
    log.finished = clock()
    return log


# ------------------------------------------------------------------------ matching
@dataclass(frozen=True, slots=True)
class SinkRow:
    """A row of the sink: its ``event_id`` and its sink time (epoch ms; None when unknown)."""

    event_id: str
    sink_ms: int | None


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ``values`` (None when empty): the smallest value with at
    least ``p`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Matching:
    """The sink's rows of one run against what the run sent."""

    received: int = 0
    """Distinct events of the run found in the sink (at least one row each)."""
    missing: list[int] = field(default_factory=list)
    """Sequence numbers sent and not found (neither a row nor a bad row)."""
    duplicated: dict[int, int] = field(default_factory=dict)
    """Sequence number -> rows, for events with more than one row."""
    unexpected: int = 0
    """Rows naming this run but an event it never sent."""
    untimed: int = 0
    """Events whose rows are all in objects the sink never reported (no latency)."""
    foreign_rows: int = 0
    """Rows of other runs or real traffic (ignored)."""
    latencies_ms: list[int] = field(default_factory=list)
    first_ingested_ms: int | None = None
    last_sink_ms: int | None = None

    @property
    def extra_rows(self) -> int:
        return sum(rows - 1 for rows in self.duplicated.values())


def match_rows(
    run_id: str, sent: Mapping[int, int], rows: Iterable[SinkRow], bad_events: Iterable[int] = ()
) -> Matching:
    """Match sink rows to the events of ``run_id`` that were sent (``sent``: seq -> ingestion ms).

    An event is received when it has a row, duplicated when it has more than one, missing when it
    has none and no bad row (``bad_events``: the sequence numbers found in bad rows).  An event's
    latency is its earliest timed row's sink time minus its ingestion time.
    """
    result = Matching()
    counts: Counter[int] = Counter()
    first_sink: dict[int, int] = {}
    for row in rows:
        parsed = parse_event_id(row.event_id)
        if parsed is None or parsed[0] != run_id:
            result.foreign_rows += 1
            continue
        seq = parsed[1]
        if seq not in sent:
            result.unexpected += 1
            continue
        counts[seq] += 1
        if row.sink_ms is not None and (seq not in first_sink or row.sink_ms < first_sink[seq]):
            first_sink[seq] = row.sink_ms
    bad = set(bad_events)
    result.received = len(counts)
    result.missing = sorted(seq for seq in sent if seq not in counts and seq not in bad)
    result.duplicated = {seq: n for seq, n in sorted(counts.items()) if n > 1}
    result.untimed = sum(1 for seq in counts if seq not in first_sink)
    result.latencies_ms = [first_sink[seq] - sent[seq] for seq in sorted(first_sink)]
    result.first_ingested_ms = min(sent.values()) if sent else None
    result.last_sink_ms = max(first_sink.values()) if first_sink else None
    return result


# ------------------------------------------------------------------------ the report
Mode = Literal["local", "remote"]


@dataclass
class LoadTestReport:
    """The figures of one loadtest."""

    mode: Mode
    run_id: str
    rate: float
    duration_s: float
    planned: int
    sent: int
    records: int
    send_seconds: float
    matching: Matching
    bad_rows: int
    sink_time: str
    interrupted: bool = False
    timed_out: bool = False
    """Deployed mode: ``--wait`` ran out before every event was found."""
    cleanup: list[str] = field(default_factory=list)
    """What was cleaned up and what was left, one sentence each."""

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, no bad row (and something was sent)."""
        m = self.matching
        return self.sent > 0 and not m.missing and not m.duplicated and not m.unexpected and self.bad_rows == 0

    @property
    def send_rate(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Distinct events received per second, from the first ingestion to the last sink time."""
        m = self.matching
        if m.first_ingested_ms is None or m.last_sink_ms is None or m.last_sink_ms <= m.first_ingested_ms:
            return 0.0
        return m.received / ((m.last_sink_ms - m.first_ingested_ms) / 1000)

    def latency(self) -> dict[str, float | None]:
        values = self.matching.latencies_ms
        out: dict[str, float | None] = {f"p{p}": percentile(values, p) for p in PERCENTILES}
        out["max"] = max(values) if values else None
        return out

    def to_json(self) -> dict[str, Any]:
        m = self.matching
        return {
            "mode": self.mode,
            "run_id": self.run_id,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "planned": self.planned,
            "sent": self.sent,
            "records": self.records,
            "send_seconds": round(self.send_seconds, 3),
            "send_rate": round(self.send_rate, 1),
            "received": m.received,
            "missing": len(m.missing),
            "missing_first": m.missing[:20],
            "duplicated_events": len(m.duplicated),
            "duplicate_rows": m.extra_rows,
            "unexpected_rows": m.unexpected,
            "untimed_events": m.untimed,
            "foreign_rows": m.foreign_rows,
            "bad_rows": self.bad_rows,
            "throughput": round(self.throughput, 1),
            "latency_ms": self.latency(),
            "sink_time": self.sink_time,
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "cleanup": self.cleanup,
            "ok": self.ok,
        }

    def render(self) -> str:
        m = self.matching

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f} ms"

        lat = self.latency()
        rows = [
            ("run", f"{self.run_id} ({self.mode}); target {self.rate:g} events/s for {self.duration_s:g} s"),
            (
                "sent",
                f"{self.sent:,} of {self.planned:,} events in {self.records:,} stream-1 records, "
                f"{self.send_seconds:.2f} s ({self.send_rate:,.1f} events/s)"
                + (" INTERRUPTED" if self.interrupted else "")
                + (
                    "; fewer than planned: the chain did not keep up"
                    if self.sent < self.planned and not self.interrupted
                    else ""
                ),
            ),
            ("received", f"{m.received:,} distinct events at the sink"),
            ("lost", f"{len(m.missing):,}" + (f" (first: {', '.join(map(str, m.missing[:5]))})" if m.missing else "")),
            ("duplicated", f"{len(m.duplicated):,} events ({m.extra_rows:,} extra rows)"),
            ("bad rows", f"{self.bad_rows:,}"),
            ("throughput", f"{self.throughput:,.1f} events/s end to end (first ingestion to last sink time)"),
            ("latency", f"p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, p99 {ms(lat['p99'])}, max {ms(lat['max'])}"),
            ("sink time", self.sink_time + (f"; {m.untimed} events untimed" if m.untimed else "")),
        ]
        if m.unexpected or m.foreign_rows:
            rows.append(("other rows", f"{m.unexpected} naming unsent events of this run, {m.foreign_rows} of others"))
        if self.timed_out:
            rows.append(("wait", "--wait ran out before every event was found"))
        rows.extend(("cleanup", note) for note in self.cleanup)
        rows.append(("result", "ok" if self.ok else "LOSS, DUPLICATION OR BAD ROWS"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows)


def _report(
    mode: Mode, plan: LoadPlan, log: SendLog, matching: Matching, bad_rows: int, sink_time: str
) -> LoadTestReport:
    return LoadTestReport(
        mode,
        plan.run_id,
        plan.rate,
        plan.duration_s,
        plan.events,
        log.sent,
        log.records,
        max(log.finished - log.started, 0.0),
        matching,
        bad_rows,
        sink_time,
        interrupted=log.interrupted,
    )


# ------------------------------------------------------------------------ reading the sink
def parquet_event_ids(body: bytes) -> list[str]:
    """The ``event_id`` column of a Parquet object."""
    import pyarrow.parquet as pq

    column = pq.read_table(io.BytesIO(body), columns=["event_id"]).column(0).to_pylist()
    return [str(value) for value in column]


def bad_row_events(run_id: str, body: bytes) -> tuple[int, list[int]]:
    """Bad rows (JSON lines) of ``run_id`` in ``body``: how many, and the sequence numbers they name."""
    marker = f"{run_id}-0000-4000-8000-"
    rows, seqs = 0, []
    for line in body.decode("utf-8", "replace").splitlines():
        if marker not in line:
            continue
        rows += 1
        at = line.index(marker) + len(marker)
        try:
            seqs.append(int(line[at : at + _SEQ_DIGITS], 16))
        except ValueError:
            continue
    return rows, seqs


def _list(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    from pipeline.aws.errors import aws_exceptions, translate

    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except aws_exceptions() as exc:
        what = f"S3 ListObjectsV2 of s3://{bucket}/{prefix}"
        raise translate(exc, what, transient=LoadTestReadError, terminal=LoadTestAccessError) from exc


def _get(s3: Any, bucket: str, key: str) -> bytes:
    from pipeline.aws.errors import aws_exceptions, translate

    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except aws_exceptions() as exc:
        what = f"S3 GetObject of s3://{bucket}/{key}"
        raise translate(exc, what, transient=LoadTestReadError, terminal=LoadTestAccessError) from exc
    return body


# ------------------------------------------------------------------------ local mode
def run_local(
    plan: LoadPlan,
    config: PipelineConfig,
    *,
    shards: int = 2,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    before_read_back: Callable[[LocalChain], None] | None = None,
) -> LoadTestReport:
    """Run ``plan`` through the emulated chain; moto must be active (see ``emulated_aws``).

    While the pacer waits, the chain runs its rounds (Transform, sink, Firehose), so events flow as
    they are put; after the last put it drains until quiet and the sink is read back.
    ``before_read_back`` is handed the chain just before that (tests inject faults with it).
    """
    from pipeline.app.local.runtime import LocalChain
    from pipeline.aws.kinesis import KinesisWriter

    sink_ms: dict[str, int] = {}

    def observe(response: dict[str, Any]) -> None:
        now = int(clock() * 1000)
        for key in response.get("objects", []):
            sink_ms.setdefault(str(key), now)

    chain = LocalChain(config, shards=shards, sink_observer=observe)
    chain.create_resources()
    writer = KinesisWriter(chain.kinesis, config.resources.raw_stream, config.stream, sleep=sleep)

    def work_while_waiting(seconds: float) -> None:
        # The chain's rounds run in the pacer's waits (a round may outlast the wait: the pacer's
        # burst lets the next puts catch up); a quiet chain sleeps the rest.
        until = clock() + seconds
        while clock() < until:
            messages, records = chain.step()
            if not messages + records:
                sleep(max(until - clock(), 0.0))
                return

    log = SendLog()
    send(plan, writer, clock, work_while_waiting, log=log)
    chain.run()  # drain until quiet (the reconciliation it returns counts Extract, which was bypassed)
    if before_read_back is not None:
        before_read_back(chain)
    resources = config.resources
    rows: list[SinkRow] = []
    for item in _list(chain.s3, resources.output_bucket, resources.events_prefix):
        key = item["Key"]
        ids = parquet_event_ids(_get(chain.s3, resources.output_bucket, key))
        rows.extend(SinkRow(eid, sink_ms.get(key)) for eid in ids)
    bad_rows, bad_seqs = 0, []
    for item in _list(chain.s3, resources.output_bucket, resources.bad_prefix):
        count, seqs = bad_row_events(plan.run_id, _get(chain.s3, resources.output_bucket, item["Key"]))
        bad_rows += count
        bad_seqs.extend(seqs)
    matching = match_rows(plan.run_id, log.ingested_ms, rows, bad_seqs)
    report = _report("local", plan, log, matching, bad_rows, LOCAL_SINK_TIME)
    report.cleanup.append("the emulated AWS (moto) and everything in it is discarded when the run ends")
    return report


# ------------------------------------------------------------------------ deployed mode
@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/prefix`` (the prefix of the events dataset, e.g. ``s3://out/events/``)."""
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise LoadTestInputError(f"--output {url!r} is not s3://bucket/prefix")
        bucket, _, prefix = url[5:].partition("/")
        if ".." in prefix.split("/"):
            raise LoadTestInputError(f"the prefix of {url!r} must not hold '..'")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)


@dataclass(frozen=True)
class RemoteDeps:
    kinesis: Any
    """boto3 clients (boto3 ships no type stubs), made by ``pipeline.aws.clients.make_client``."""
    s3: Any
    stream: StreamConfig
    """The writer's retries and record limits."""
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


def partitions_of(ingested_ms: Iterable[int]) -> list[str]:
    """The dataset's hour partitions (``event_date=.../event_hour=HH/``) the events land in.

    The collector timestamp of a synthetic event is its ingestion second, and the sink partitions by it.
    """
    from load.partitions import PartitionKey

    return sorted({PartitionKey.of(ms).format() + "/" for ms in ingested_ms})


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """Which output objects a loadtest may delete: only those whose every row is one of its events."""

    delete: tuple[str, ...]
    mixed: tuple[str, ...]
    """Objects holding this run's rows and others: left in place."""


def plan_cleanup(objects: Mapping[str, tuple[int, int]]) -> CleanupPlan:
    """``objects``: key -> (rows of this run, other rows).  Objects with none of this run's rows are not named."""
    delete = tuple(sorted(k for k, (ours, others) in objects.items() if ours and not others))
    mixed = tuple(sorted(k for k, (ours, others) in objects.items() if ours and others))
    return CleanupPlan(delete, mixed)


def run_remote(
    plan: LoadPlan,
    stream_name: str,
    deps: RemoteDeps,
    *,
    output: S3Location | None = None,
    bad: S3Location | None = None,
    wait_s: float = 300.0,
    poll_s: float = 10.0,
    keep: bool = False,
) -> LoadTestReport:
    """Put ``plan`` on the deployed stream ``stream_name``; with ``output``, wait for its events there.

    Read-back lists only the hour partitions the events land in, matches rows by the run id, and
    polls every ``poll_s`` until every sent event is found or ``wait_s`` has passed.  Unless
    ``keep``, output objects holding only this run's rows are deleted afterwards (see :func:`plan_cleanup`).
    """
    from pipeline.aws.kinesis import KinesisWriter

    writer = KinesisWriter(deps.kinesis, stream_name, deps.stream, sleep=deps.sleep)
    log = SendLog()
    send(plan, writer, deps.clock, deps.sleep, log=log)
    if output is None:
        matching = Matching(first_ingested_ms=min(log.ingested_ms.values(), default=None))
        report = _report("remote", plan, log, matching, 0, "not read back (no --output)")
        report.cleanup.append(
            "nothing read back nor deleted; the run's events are in the output with "
            f"event_id LIKE '{plan.run_id}-0000-4000-8000-%' (app_id {APP_ID})"
        )
        return report
    interrupted = log.interrupted
    deadline = deps.clock() + wait_s
    while True:
        try:
            rows, per_object = _read_remote(deps.s3, output, plan.run_id, log.ingested_ms.values())
            bad_rows, bad_seqs = _read_bad(deps.s3, bad, plan.run_id, log.ingested_ms.values())
            matching = match_rows(plan.run_id, log.ingested_ms, rows, bad_seqs)
            if not matching.missing or deps.clock() >= deadline:
                break
            deps.sleep(max(min(poll_s, deadline - deps.clock()), 0.0))
        except KeyboardInterrupt:
            interrupted = True
            break
    report = _report("remote", plan, log, matching, bad_rows, REMOTE_SINK_TIME)
    report.interrupted = interrupted
    report.timed_out = bool(matching.missing) and not interrupted
    report.cleanup.extend(_clean_remote(deps.s3, output, plan_cleanup(per_object), keep=keep))
    report.cleanup.append(
        "not cleaned: the sink's DynamoDB claims (they expire by TTL) and Firehose's Redshift rows "
        f"(event_id LIKE '{plan.run_id}-0000-4000-8000-%'); bad rows, if any, are left too"
    )
    return report


def _read_remote(
    s3: Any, output: S3Location, run_id: str, ingested_ms: Iterable[int]
) -> tuple[list[SinkRow], dict[str, tuple[int, int]]]:
    rows: list[SinkRow] = []
    per_object: dict[str, tuple[int, int]] = {}
    for partition in partitions_of(ingested_ms):
        for item in _list(s3, output.bucket, output.prefix + partition):
            key = item["Key"]
            if not key.endswith(".parquet"):
                continue
            modified = item.get("LastModified")
            sink_ms = int(modified.timestamp() * 1000) if isinstance(modified, datetime) else None
            ids = parquet_event_ids(_get(s3, output.bucket, key))
            ours = [eid for eid in ids if (parse_event_id(eid) or ("", 0))[0] == run_id]
            if ours:
                per_object[key] = (len(ours), len(ids) - len(ours))
            rows.extend(SinkRow(eid, sink_ms) for eid in ours)
    return rows, per_object


def _read_bad(s3: Any, bad: S3Location | None, run_id: str, ingested_ms: Iterable[int]) -> tuple[int, list[int]]:
    if bad is None:
        return 0, []
    rows, seqs = 0, []
    # Bad rows are kept under <prefix><kind>/date=YYYY-MM-DD/...: only the run's dates are read.
    dates = sorted({datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d") for ms in ingested_ms})
    for item in _list(s3, bad.bucket, bad.prefix):
        key = item["Key"]
        if not any(f"date={d}/" in key for d in dates):
            continue
        count, found = bad_row_events(run_id, _get(s3, bad.bucket, key))
        rows += count
        seqs.extend(found)
    return rows, seqs


def _clean_remote(s3: Any, output: S3Location, plan: CleanupPlan, *, keep: bool) -> list[str]:
    from pipeline.aws.errors import aws_exceptions, translate

    notes: list[str] = []
    if keep:
        notes.append(f"--keep: {len(plan.delete)} objects holding only this run's events left in place")
    else:
        for key in plan.delete:
            try:
                s3.delete_object(Bucket=output.bucket, Key=key)
            except aws_exceptions() as exc:
                what = f"S3 DeleteObject of s3://{output.bucket}/{key}"
                raise translate(exc, what, transient=LoadTestReadError, terminal=LoadTestAccessError) from exc
        notes.append(f"deleted {len(plan.delete)} output objects holding only this run's events")
    if plan.mixed:
        notes.append(
            f"left {len(plan.mixed)} output objects that also hold other events (deleting them would lose "
            "those): the run's rows stay in them"
        )
    return notes
