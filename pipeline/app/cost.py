"""The monthly AWS cost of the pipeline at a given event rate: a pure model over list prices.

:func:`estimate` itemizes, for one deployment mode, the **fixed** costs (stream hours or shards,
KMS keys, alarms, custom metrics, the schedules, the SQS poller) and the **per-event** costs
(Lambda requests and GB-seconds from the stages' measured CPU per event, Kinesis PUT payload
units or GB, Firehose GB, S3 requests and storage, DynamoDB request units and storage,
CloudWatch Logs), in dollars per month and per million events.  Its inputs are values:
:class:`Prices`, :class:`Usage` and :class:`Footprint` from ``config/prices.toml``
(:func:`load_cost_inputs`), and the stream settings of the pipeline's configuration.

What the Parquet sink writes to DynamoDB is modeled as :mod:`load.sink` does it: per batch its
record (a read, an open, the list of outputs, the commit) and one conditional put per stream-2
chunk, each kept ``stream.dedupe_window_days`` for TTL.  Natural duplicates across batches are
removed by the hourly compactor (:mod:`load.compaction`, both modes; :data:`COMPACTION_ITEMS`):
its schedule and listings, a GET of every Parquet object the pipeline wrote and a PUT per
compacted file, free DELETEs, and its duration from the measured compaction rate
(``[measured] compact_rows_per_s``).  The design it replaced, ``stream.cross_batch_dedupe =
true`` without compaction -- one conditional put per event, kept for the window, and the sink's
wait on it (:data:`DEDUPE_ITEMS`) -- is still modeled: :attr:`Estimate.before` is the streaming
mode's cost with it, shown as the "before" line.

The model ignores free tiers, data transfer (none leaves the region), Redshift itself (the
user's cluster or workgroup) and the log bucket's own storage (CloudFront's logs are there
whatever reads them).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from pipeline.errors import ConfigError

Mode = Literal["streaming", "direct"]
MODES: Final[tuple[Mode, ...]] = ("streaming", "direct")
StreamCapacity = Literal["provisioned", "on-demand"]
STREAM_CAPACITIES: Final[tuple[StreamCapacity, ...]] = ("provisioned", "on-demand")

KIB: Final = 1024
MIB: Final = 1024 * 1024
GIB: Final = 1024**3
PUT_UNIT_BYTES: Final = 25 * KIB
FIREHOSE_ROUND_BYTES: Final = 5 * KIB
LAMBDA_FULL_VCPU_MB: Final = 1769
"""A function gets one full vCPU at 1,769 MB and a proportional share below
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html)."""
SHARD_IN_BYTES_S: Final = 1 * MIB
SHARD_OUT_BYTES_S: Final = 2 * MIB
SHARD_RECORDS_S: Final = 1000
ESM_MAX_BATCH: Final = {"transform": 100, "sink": 500}
"""Batch sizes of the stream mappings (pipeline/topology.py)."""
DEDUPE_ITEMS: Final = (
    "sink event manifest writes",
    "sink event manifest storage",
    "sink waiting on the manifest",
)
"""The line items of the sink's per-event cross-batch deduplication."""
COMPACTION_ITEMS: Final = (
    "compactor schedule",
    "compactor custom metrics (EMF)",
    "compactor listings",
    "compactor GETs",
    "compacted file PUTs",
    "compactor DELETEs (free)",
    "compactor duration",
)
"""The line items of the compaction of closed hour partitions (:mod:`load.compaction`)."""


@dataclass(frozen=True)
class Prices:
    """List prices (``[prices.*]`` of config/prices.toml), dollars."""

    values: Mapping[str, Mapping[str, Any]]
    as_of: str
    region: str
    hours_per_month: float

    def __call__(self, service: str, key: str) -> float:
        try:
            return float(self.values[service][key])
        except KeyError:
            raise ConfigError(f"prices: [prices.{service}] {key} is missing") from None

    def sources(self) -> dict[str, str]:
        return {service: str(table.get("source", "")) for service, table in self.values.items()}


@dataclass(frozen=True)
class Usage:
    """Measured figures (``[measured]``) and workload assumptions (``[usage]``)."""

    measured: Mapping[str, Any]
    assumed: Mapping[str, Any]

    def m(self, key: str) -> float:
        try:
            return float(self.measured[key])
        except KeyError:
            raise ConfigError(f"prices: [measured] {key} is missing") from None

    def a(self, key: str, sub: str | None = None) -> float:
        try:
            value = self.assumed[key]
            return float(value[sub] if sub is not None else value)
        except (KeyError, TypeError):
            raise ConfigError(f"prices: [usage] {key}{'.' + sub if sub else ''} is missing") from None


@dataclass(frozen=True)
class Footprint:
    """Fixed resources of one mode (the template's, or ``[footprint.*]``)."""

    streams: int
    kms_keys: int
    alarms: int
    custom_metrics: int
    sqs_polled_queues: int
    redshift: bool = False
    redshift_alarms: int = 0
    redshift_metrics: int = 0

    @classmethod
    def from_table(cls, table: Mapping[str, Any], redshift: Mapping[str, Any]) -> Footprint:
        try:
            return cls(
                streams=int(table["streams"]),
                kms_keys=int(table["kms_keys"]),
                alarms=int(table["alarms"]),
                custom_metrics=int(table["custom_metrics"]),
                sqs_polled_queues=int(table["sqs_polled_queues"]),
                redshift_alarms=int(redshift.get("alarms", 0)),
                redshift_metrics=int(redshift.get("custom_metrics", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"prices: a [footprint] table lacks {exc}") from None


@dataclass(frozen=True)
class StreamSettings:
    """The pipeline configuration's settings the model reads (``[stream]``)."""

    record_target_bytes: int = 262144
    cross_batch_dedupe: bool = False
    dedupe_window_days: int = 30
    dedupe_concurrency: int = 16
    compaction: bool = True
    """The hourly compactor runs (``load.compact_after_hours``; the template deploys it in both modes)."""
    max_rows_per_file: int = 1_000_000
    """``load.max_rows_per_file``: a compacted partition is one file per this many rows."""
    compact_concurrency: int = 16
    """``load.compact_concurrency``: the compactor's GETs and DELETEs in flight."""
    compact_after_hours: int = 7
    """``load.compact_after_hours``: the hours a partition's objects wait before they are compacted."""


BEFORE: Final = StreamSettings(cross_batch_dedupe=True, compaction=False)
"""The sink's former design: one conditional DynamoDB write per event, no compaction (the "before" line)."""


@dataclass(frozen=True)
class CostInputs:
    prices: Prices
    usage: Usage
    footprints: Mapping[Mode, Footprint]
    peers: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class LineItem:
    group: Literal["fixed", "per event"]
    service: str
    item: str
    quantity: float
    unit: str
    monthly: float


@dataclass(frozen=True)
class Estimate:
    """One mode's itemized monthly cost at ``events_per_second``."""

    mode: Mode
    events_per_second: float
    events_per_month: float
    stream_capacity: StreamCapacity
    redshift: bool
    items: tuple[LineItem, ...]
    notes: tuple[str, ...] = ()
    before: Estimate | None = None
    """The streaming mode's cost with the former design (:data:`BEFORE`), when this one differs."""

    @property
    def total(self) -> float:
        return sum(i.monthly for i in self.items)

    @property
    def fixed(self) -> float:
        return sum(i.monthly for i in self.items if i.group == "fixed")

    @property
    def per_event(self) -> float:
        return self.total - self.fixed

    def per_million(self, monthly: float | None = None) -> float:
        value = self.total if monthly is None else monthly
        return value / self.events_per_month * 1e6 if self.events_per_month else 0.0

    @property
    def dedupe(self) -> float:
        """The sink's per-event cross-batch deduplication (writes and storage), dollars per month."""
        return sum(i.monthly for i in self.items if i.item in DEDUPE_ITEMS)

    @property
    def compaction(self) -> float:
        """The compactor (schedule, listings, GETs, PUTs, duration), dollars per month."""
        return sum(i.monthly for i in self.items if i.item in COMPACTION_ITEMS)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "events_per_second": self.events_per_second,
            "events_per_month": round(self.events_per_month),
            "stream_capacity": self.stream_capacity if self.mode == "streaming" else None,
            "redshift": self.redshift,
            "monthly_usd": round(self.total, 2),
            "fixed_usd": round(self.fixed, 2),
            "per_event_usd": round(self.per_event, 2),
            "per_million_events_usd": round(self.per_million(), 4),
            "dedupe_usd": round(self.dedupe, 2),
            "compaction_usd": round(self.compaction, 2),
            "before_usd": round(self.before.total, 2) if self.before else None,
            "before_per_million_events_usd": round(self.before.per_million(), 4) if self.before else None,
            "items": [
                {
                    "group": i.group,
                    "service": i.service,
                    "item": i.item,
                    "quantity": round(i.quantity, 3),
                    "unit": i.unit,
                    "monthly_usd": round(i.monthly, 4),
                }
                for i in self.items
            ],
            "notes": list(self.notes),
        }


def load_cost_inputs(overlay: str | Path | None = None) -> CostInputs:
    """The shipped config/prices.toml, with the tables of ``overlay`` (a TOML file) laid over it."""
    from pipeline.bundled import data_text

    document = tomllib.loads(data_text("prices.toml"))
    if overlay:
        try:
            extra = tomllib.loads(Path(overlay).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the prices overlay {overlay}: {exc}") from exc
        document = _merge(document, extra)
    return cost_inputs(document)


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            _merge(base[key], value) if isinstance(value, Mapping) and isinstance(base.get(key), Mapping) else value
        )
    return merged


def cost_inputs(document: Mapping[str, Any]) -> CostInputs:
    """The model's inputs from a parsed prices document."""
    meta = document.get("meta", {})
    footprint = document.get("footprint", {})
    redshift = footprint.get("redshift", {})
    return CostInputs(
        prices=Prices(
            document.get("prices", {}),
            str(meta.get("as_of", "?")),
            str(meta.get("region", "us-east-1")),
            float(meta.get("hours_per_month", 730)),
        ),
        usage=Usage(document.get("measured", {}), document.get("usage", {})),
        footprints={mode: Footprint.from_table(footprint.get(mode, {}), redshift) for mode in MODES},
        peers=document.get("peers", {}),
    )


class _Items:
    def __init__(self) -> None:
        self.items: list[LineItem] = []

    def add(
        self, group: Literal["fixed", "per event"], service: str, item: str, quantity: float, unit: str, monthly: float
    ) -> None:
        self.items.append(LineItem(group, service, item, quantity, unit, monthly))


def _cpu_gb_s(cpu_s: float, memory_mb: float, speed: float) -> float:
    """GB-seconds of ``cpu_s`` of single-threaded CPU work in a function of ``memory_mb``."""
    share = min(memory_mb / LAMBDA_FULL_VCPU_MB, 1.0)
    return cpu_s * speed / share * memory_mb / 1024


def _put_units(object_bytes: float, target: int) -> float:
    """Kinesis PUT payload units of one object's bytes packed into records of ``target`` bytes."""
    full = math.floor(object_bytes / target)
    rest = object_bytes - full * target
    return full * math.ceil(target / PUT_UNIT_BYTES) + math.ceil(rest / PUT_UNIT_BYTES)


def _records(object_bytes: float, target: int) -> int:
    return max(1, math.ceil(object_bytes / target))


def _shards(bytes_s: float, records_s: float, consumers: int) -> int:
    return max(
        1,
        math.ceil(bytes_s / SHARD_IN_BYTES_S),
        math.ceil(records_s / SHARD_RECORDS_S),
        math.ceil(bytes_s * consumers / SHARD_OUT_BYTES_S),
    )


def estimate(  # noqa: PLR0915 - the model: one statement per line item, in the bill's order
    mode: Mode,
    events_per_second: float,
    inputs: CostInputs,
    *,
    stream: StreamSettings | None = None,
    stream_capacity: StreamCapacity = "provisioned",
    redshift: bool = False,
    footprint: Footprint | None = None,
) -> Estimate:
    """The itemized monthly cost of ``mode`` at ``events_per_second`` (average over the month).

    ``footprint`` replaces the mode's ``[footprint]`` (deploy passes the template's counts).
    Raises ConfigError when an input the model needs is missing from the prices document.
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if events_per_second < 0:
        raise ConfigError("the event rate cannot be negative")
    stream = stream or StreamSettings()
    p, u = inputs.prices, inputs.usage
    fp = replace(footprint or inputs.footprints[mode], redshift=redshift)
    hours = p.hours_per_month
    seconds = hours * 3600
    events = events_per_second * seconds
    lambda_gb_s = p("lambda", f"{u.assumed.get('architecture', 'arm64')}_gb_second")
    request = p("lambda", "requests_per_million") / 1e6
    speed = u.a("cpu_speed_factor")
    out = _Items()

    # --- log objects: what reaches Extract (streaming) or the direct function
    lines = events * u.m("lines_per_event")
    objects = max(u.a("min_log_objects_per_hour") * hours, lines / u.a("lines_per_log_object"))
    events_per_object = events / objects

    def function(name: str, invocations: float, cpu_us_per_event: float, extra_wait_s: float = 0.0) -> None:
        memory = u.a("memory_mb", name)
        cpu_gb_s = _cpu_gb_s(events * cpu_us_per_event / 1e6, memory, speed)
        wait_gb_s = (invocations * u.a("io_ms_per_invocation", name) / 1000 + extra_wait_s) * memory / 1024
        out.add("per event", "Lambda", f"{name} requests", invocations, "invocations", invocations * request)
        out.add(
            "per event",
            "Lambda",
            f"{name} duration",
            cpu_gb_s + wait_gb_s,
            "GB-s",
            (cpu_gb_s + wait_gb_s) * lambda_gb_s,
        )

    def dynamodb(item: str, wru: float, rru: float = 0.0) -> None:
        cost = wru * p("dynamodb", "write_request_units_per_million") / 1e6
        cost += rru * p("dynamodb", "read_request_units_per_million") / 1e6
        out.add("per event", "DynamoDB", item, wru + rru, "request units", cost)

    def storage(item: str, *kinds: tuple[float, float]) -> None:
        """``kinds``: (items written per month, bytes per item).  Items live dedupe_window_days (TTL),
        so the table holds that many days of them."""
        gb = sum(count * size for count, size in kinds) / (hours / 24) * stream.dedupe_window_days / GIB
        per_gb = p("dynamodb", "storage_gb_month") + p("dynamodb", "pitr_gb_month")
        out.add("per event", "DynamoDB", item, gb, "GB stored (+PITR)", gb * per_gb)

    # --- fixed
    kms = fp.kms_keys
    out.add("fixed", "KMS", "customer managed keys", kms, "keys", kms * p("kms", "key_month"))
    kms_requests = kms * u.a("kms_requests_per_key_month")
    out.add(
        "fixed", "KMS", "data-key requests", kms_requests, "requests", kms_requests / 1e4 * p("kms", "requests_per_10k")
    )
    alarms = fp.alarms + (fp.redshift_alarms if redshift else 0)
    out.add("fixed", "CloudWatch", "alarms", alarms, "alarms", alarms * p("cloudwatch", "alarm_month"))
    metrics = fp.custom_metrics + (fp.redshift_metrics if redshift else 0)
    out.add(
        "fixed",
        "CloudWatch",
        "custom metrics (EMF)",
        metrics,
        "metrics",
        metrics * p("cloudwatch", "custom_metric_month"),
    )
    polls = fp.sqs_polled_queues * u.a("sqs_pollers") * seconds / u.a("sqs_poll_s")
    out.add(
        "fixed",
        "SQS",
        "notification queue long polling",
        polls,
        "requests",
        polls * p("sqs", "requests_per_million") / 1e6,
    )
    runs = hours * 60 / u.a("reconciler_every_minutes")
    schedules = [("reconciler", runs)]
    if redshift:
        schedules.append(("loader", hours * 60 / u.a("loader_every_minutes")))
    compactions = hours * 60 / u.a("compactor_every_minutes") if stream.compaction else 0.0
    if compactions:
        schedules.append(("compactor", compactions))
    for name, count in schedules:
        memory = u.a("memory_mb", name)
        gb_s = count * u.a("io_ms_per_invocation", name) / 1000 * memory / 1024
        out.add(
            "fixed",
            "Lambda",
            f"{name} schedule",
            count,
            "runs",
            count * (request + p("scheduler", "invocations_per_million") / 1e6) + gb_s * lambda_gb_s,
        )
    out.add("fixed", "S3", "reconciler listings", runs, "LIST", runs * p("s3", "put_per_thousand") / 1000)

    # --- per object, both modes
    out.add("per event", "S3", "log object GETs", objects, "GET", objects * p("s3", "get_per_thousand") / 1000)
    out.add(
        "per event",
        "SQS",
        "notifications (send, delete)",
        2 * objects,
        "requests",
        2 * objects * p("sqs", "requests_per_million") / 1e6,
    )
    # The object ledger (pipeline/aws/ledger.py): claim, a checkpoint per PutRecords group, complete;
    # the reconciler reads each object's entry once.
    dynamodb("object ledger", 3 * objects, 2 * objects)

    notes: list[str] = []
    if mode == "streaming":
        target = stream.record_target_bytes
        s1_object = events_per_object * u.m("stream1_bytes")
        s2_object = events_per_object * u.m("stream2_bytes")
        records1 = _records(s1_object, target)
        chunks_per_record = _records(s2_object / records1, target)
        records2 = records1 * chunks_per_record
        consumers2 = 2 if redshift else 1
        peak = u.a("peak_factor")
        shards1 = _shards(events_per_second * u.m("stream1_bytes") * peak, objects / seconds * records1 * peak, 1)
        shards2 = _shards(
            events_per_second * u.m("stream2_bytes") * peak, objects / seconds * records2 * peak, consumers2
        )
        # Lambda reads each shard about once a second: at most that many invocations per shard.
        transform_calls = min(objects * math.ceil(records1 / ESM_MAX_BATCH["transform"]), shards1 * seconds)
        sink_calls = min(objects * math.ceil(records2 / ESM_MAX_BATCH["sink"]), shards2 * seconds)
        if stream_capacity == "provisioned":
            out.add(
                "fixed",
                "Kinesis",
                f"shards ({shards1} raw + {shards2} events, {peak:g}x peak)",
                (shards1 + shards2) * hours,
                "shard-hours",
                (shards1 + shards2) * hours * p("kinesis", "shard_hour"),
            )
            units = objects * (_put_units(s1_object, target) + records1 * _put_units(s2_object / records1, target))
            out.add(
                "per event",
                "Kinesis",
                "PUT payload units (25 KB)",
                units,
                "units",
                units * p("kinesis", "put_payload_units_per_million") / 1e6,
            )
        else:
            out.add(
                "fixed",
                "Kinesis",
                "on-demand stream hours",
                fp.streams * hours,
                "stream-hours",
                fp.streams * hours * p("kinesis", "on_demand_stream_hour"),
            )
            gb_in = events * (u.m("stream1_bytes") + u.m("stream2_bytes")) / GIB
            gb_out = events * (u.m("stream1_bytes") + consumers2 * u.m("stream2_bytes")) / GIB
            out.add(
                "per event", "Kinesis", "on-demand data in", gb_in, "GB", gb_in * p("kinesis", "on_demand_gb_ingested")
            )
            out.add(
                "per event",
                "Kinesis",
                "on-demand data out",
                gb_out,
                "GB",
                gb_out * p("kinesis", "on_demand_gb_retrieved"),
            )
        function("extract", objects, u.m("extract_cpu_us"))
        function("transform", transform_calls, u.m("transform_cpu_us"))
        call_s = u.a("dynamodb_call_ms") / 1000 / max(stream.dedupe_concurrency, 1)
        function("sink", sink_calls, u.m("sink_cpu_us"), records2 * objects * call_s)
        chunk_claims = records2 * objects
        # Per batch: read the record, open it, list the outputs, commit (load/sink.py).
        dynamodb("sink batch records", 3 * sink_calls, sink_calls)
        dynamodb("sink chunk claims", chunk_claims)
        storage(
            "sink batch and chunk storage",
            (chunk_claims, u.a("claim_item_bytes")),
            (sink_calls, u.a("batch_item_bytes")),
        )
        if stream.cross_batch_dedupe:
            dynamodb(DEDUPE_ITEMS[0], events)
            storage(DEDUPE_ITEMS[1], (events, u.a("claim_item_bytes")))
            # The sink's invocation waits on those writes (dedupe_concurrency in flight): billed duration.
            wait_gb_s = events * call_s * u.a("memory_mb", "sink") / 1024
            out.add("per event", "Lambda", DEDUPE_ITEMS[2], wait_gb_s, "GB-s", wait_gb_s * lambda_gb_s)
        else:
            notes.append(
                "stream.cross_batch_dedupe = false: no per-event manifest; natural duplicates across batches are "
                "removed by the compaction of closed partitions, and by the Redshift merge"
            )
        puts = sink_calls * (u.a("hour_objects_per_batch") + u.a("bad_row_objects_per_batch"))
        out.add("per event", "S3", "Parquet and bad-row PUTs", puts, "PUT", puts * p("s3", "put_per_thousand") / 1000)
        parquet_objects = sink_calls * u.a("hour_objects_per_batch")
        invocations = objects + transform_calls + sink_calls
        if redshift:
            stream2_bytes = events * u.m("stream2_bytes")
            per_record = math.ceil(s2_object / records1 / FIREHOSE_ROUND_BYTES) * FIREHOSE_ROUND_BYTES
            gb = records2 * objects * per_record / GIB
            out.add("per event", "Firehose", "ingestion (5 KB rounding)", gb, "GB", gb * p("firehose", "gb_ingested"))
            calls = max(
                stream2_bytes / (u.a("firehose_lambda_buffer_mb") * MIB), seconds / u.a("firehose_lambda_buffer_s")
            )
            function("firehose", calls, u.m("firehose_cpu_us"))
            staged = max(stream2_bytes / (u.a("firehose_s3_buffer_mb") * MIB), seconds / u.a("firehose_s3_buffer_s"))
            out.add(
                "per event", "S3", "Firehose staging PUTs", staged, "PUT", staged * p("s3", "put_per_thousand") / 1000
            )
            invocations += calls
    else:
        function("direct", objects, u.m("direct_cpu_us"))
        puts = objects * (u.a("hour_objects_per_batch") + u.a("bad_row_objects_per_batch"))
        out.add("per event", "S3", "Parquet and bad-row PUTs", puts, "PUT", puts * p("s3", "put_per_thousand") / 1000)
        parquet_objects = objects * u.a("hour_objects_per_batch")
        invocations = objects
        notes.append("direct: idempotence per object (the object ledger); no per-event manifest")
    _compaction_items(out, stream, inputs, events, parquet_objects, compactions, lambda_gb_s)
    parquet_gb = events * u.m("parquet_bytes") / GIB
    out.add(
        "per event",
        "S3",
        "Parquet storage (each month's data)",
        parquet_gb,
        "GB-month",
        parquet_gb * p("s3", "storage_gb_month"),
    )
    invocations += sum(count for _, count in schedules)
    logs_gb = invocations * u.a("log_bytes_per_invocation") / GIB
    out.add("per event", "CloudWatch", "Logs ingestion", logs_gb, "GB", logs_gb * p("cloudwatch", "logs_gb_ingested"))
    before = _former_design(mode, events_per_second, inputs, stream, stream_capacity, redshift, footprint)
    return Estimate(mode, events_per_second, events, stream_capacity, redshift, tuple(out.items), tuple(notes), before)


def _former_design(
    mode: Mode,
    events_per_second: float,
    inputs: CostInputs,
    stream: StreamSettings,
    stream_capacity: StreamCapacity,
    redshift: bool,
    footprint: Footprint | None,
) -> Estimate | None:
    """The streaming estimate with the sink's former design (:data:`BEFORE`), unless it is that already."""
    if mode != "streaming" or (stream.cross_batch_dedupe, stream.compaction) == (True, False):
        return None
    return estimate(
        mode,
        events_per_second,
        inputs,
        stream=replace(stream, cross_batch_dedupe=True, compaction=False),
        stream_capacity=stream_capacity,
        redshift=redshift,
        footprint=footprint,
    )


COMPACTOR_METRICS: Final = 4
"""The metric names the compactor's handler emits (load/compact_handler.py); not in the ``[footprint]``
tables, which count the other handlers'."""


def _compaction_items(
    out: _Items,
    stream: StreamSettings,
    inputs: CostInputs,
    events: float,
    parquet_objects: float,
    runs: float,
    lambda_gb_s: float,
) -> None:
    """The compactor's per-event items: every Parquet object written is read once and deleted once
    when its partition closes (DELETE is free), each partition becomes ceil(rows / max_rows_per_file)
    files, and the merge runs at the measured rows per second (CPU-bound; the downloads and deletes
    wait ``compactor_ms_per_object``, ``compact_concurrency`` in flight)."""
    if not runs:
        return
    p, u = inputs.prices, inputs.usage
    hours = p.hours_per_month
    partitions = hours  # one hour partition closes every hour
    rows_per_partition = events / partitions
    get = p("s3", "get_per_thousand") / 1000
    put = p("s3", "put_per_thousand") / 1000
    # Each run lists the dataset: a year of compacted partitions (one object each) plus the hours
    # not compacted yet, 1,000 keys per LIST.
    open_hours = stream.compact_after_hours + 1
    listed = u.a("compactor_listed_partitions") + open_hours * parquet_objects / partitions
    lists = runs * math.ceil(listed / 1000)
    metric = p("cloudwatch", "custom_metric_month")
    out.add("fixed", "CloudWatch", COMPACTION_ITEMS[1], COMPACTOR_METRICS, "metrics", COMPACTOR_METRICS * metric)
    out.add("fixed", "S3", COMPACTION_ITEMS[2], lists, "LIST", lists * put)
    out.add("per event", "S3", COMPACTION_ITEMS[3], parquet_objects, "GET", parquet_objects * get)
    files = partitions * max(1, math.ceil(rows_per_partition / max(stream.max_rows_per_file, 1)))
    out.add("per event", "S3", COMPACTION_ITEMS[4], files, "PUT", files * put)
    out.add("per event", "S3", COMPACTION_ITEMS[5], parquet_objects, "DELETE", 0.0)
    memory = u.a("memory_mb", "compactor")
    cpu_gb_s = _cpu_gb_s(events / u.m("compact_rows_per_s"), memory, u.a("cpu_speed_factor"))
    wait_s = 2 * parquet_objects * u.a("compactor_ms_per_object") / 1000 / max(stream.compact_concurrency, 1)
    gb_s = cpu_gb_s + wait_s * memory / 1024
    out.add("per event", "Lambda", COMPACTION_ITEMS[6], gb_s, "GB-s", gb_s * lambda_gb_s)


@dataclass(frozen=True)
class PeerFigure:
    name: str
    scope: str
    source: str
    at_events_per_second: float
    monthly: float
    per_million: float


def peer_figures(inputs: CostInputs) -> list[PeerFigure]:
    """The peers' published figures, each as monthly and per million events at its own rate."""
    figures = []
    for peer in inputs.peers.values():
        rate = float(peer["at_events_per_second"])
        events = rate * inputs.prices.hours_per_month * 3600
        if "per_million" in peer:
            per_million = float(peer["per_million"])
            monthly = per_million * events / 1e6
        else:
            monthly = float(peer["monthly"])
            per_million = monthly / events * 1e6
        figures.append(
            PeerFigure(
                str(peer["name"]), str(peer.get("scope", "")), str(peer.get("source", "")), rate, monthly, per_million
            )
        )
    return figures


@dataclass(frozen=True)
class CostTable:
    """Both modes at several rates (the README's table)."""

    rows: tuple[tuple[float, Estimate, Estimate], ...] = field(default_factory=tuple)


def cost_table(rates: tuple[float, ...], inputs: CostInputs, **kwargs: Any) -> CostTable:
    return CostTable(
        tuple(
            (rate, estimate("streaming", rate, inputs, **kwargs), estimate("direct", rate, inputs, **kwargs))
            for rate in rates
        )
    )


def without_dedupe(inputs: CostInputs, e: Estimate, stream: StreamSettings | None = None, **kwargs: Any) -> Estimate:
    """The same estimate with ``stream.cross_batch_dedupe = false`` (before/after of the manifest)."""
    settings = replace(stream or StreamSettings(), cross_batch_dedupe=False)
    return estimate(
        e.mode,
        e.events_per_second,
        inputs,
        stream=settings,
        stream_capacity=e.stream_capacity,
        redshift=e.redshift,
        **kwargs,
    )


def _money(value: float) -> str:
    return f"{value:,.2f}" if value >= 0.01 or value == 0 else f"{value:.4f}"


def render_estimate(e: Estimate, inputs: CostInputs, *, alternative: Estimate | None = None) -> list[str]:
    """The itemized table of one estimate, as text lines."""
    capacity = f", {e.stream_capacity} streams" if e.mode == "streaming" else ""
    redshift = ", with Redshift" if e.redshift else ""
    lines = [
        f"{e.mode} mode at {e.events_per_second:g} events/s ({e.events_per_month:,.0f} events a month{capacity}"
        f"{redshift}); {inputs.prices.region} list prices of {inputs.prices.as_of}",
        f"  {'':9} {'service':10} {'item':46} {'quantity':>24} {'$/month':>10} {'$/M events':>10}",
    ]
    for group in ("fixed", "per event"):
        for i in (i for i in e.items if i.group == group):
            quantity = f"{i.quantity:,.0f} {i.unit}" if i.quantity >= 10 else f"{i.quantity:,.2f} {i.unit}"
            lines.append(
                f"  {group:9} {i.service:10} {i.item:46} {quantity:>24} {_money(i.monthly):>10} "
                f"{e.per_million(i.monthly):>10.4f}"
            )
    lines.append(f"  {'fixed':9} {'':10} {'total':46} {'':>24} {_money(e.fixed):>10} {e.per_million(e.fixed):>10.4f}")
    lines.append(
        f"  {'per event':9} {'':10} {'total':46} {'':>24} {_money(e.per_event):>10} {e.per_million(e.per_event):>10.4f}"
    )
    lines.append(f"  {'TOTAL':9} {'':10} {'':46} {'':>24} {_money(e.total):>10} {e.per_million():>10.4f}")
    if e.dedupe and e.total:
        lines.append(
            f"  the sink's event manifest (one conditional DynamoDB write per event, kept for the dedupe window) is "
            f"${_money(e.dedupe)} a month, {e.dedupe / e.total:.0%} of the total"
        )
    if e.compaction and e.total:
        lines.append(
            f"  the compactor (natural duplicates across batches, removed from closed hour partitions) is "
            f"${_money(e.compaction)} a month, {e.compaction / e.total:.0%} of the total"
        )
    if alternative is not None:
        lines.append(
            f"  with stream.cross_batch_dedupe = false: ${_money(alternative.total)} a month, "
            f"${alternative.per_million():.4f} per million events (natural duplicates then removed by compaction "
            "and the Redshift merge)"
        )
    if e.before is not None:
        lines.append(
            f"  before (the sink's per-event manifest, stream.cross_batch_dedupe = true, no compaction): "
            f"${_money(e.before.total)} a month, ${e.before.per_million():.4f} per million events; "
            f"now ${_money(e.total)}, ${e.per_million():.4f} per million"
        )
    lines.extend(f"  note: {note}" for note in e.notes)
    return lines


def render_peers(inputs: CostInputs) -> list[str]:
    """The peers' published figures, then the collector's front doors beside them (issue 15)."""
    lines = ["peers (published figures):"]
    for peer in peer_figures(inputs):
        lines.append(
            f"  {peer.name}: ${peer.per_million:.2f} per million events, ${peer.monthly:,.0f} a month at "
            f"{peer.at_events_per_second:g} events/s ({peer.scope}) {peer.source}"
        )
    return lines + render_front_doors(inputs)


REPLAY_TRANSITIONS_PER_BATCH: Final = 4
"""State transitions of one batch of the replay's Distributed Map: its child run's start, the task's
entry and exit, its end (retries add one each)."""
REPLAY_TRANSITIONS_PER_RUN: Final = 4


@dataclass(frozen=True)
class ReplayCost:
    """What replaying stored logs through the deployed streaming pipeline costs, dollars."""

    events: float
    pipeline: float
    """The per-event part of the streaming mode's bill (Lambda, Kinesis PUT units, S3, DynamoDB)."""
    state_machine: float
    """Step Functions' state transitions, when the Distributed Map runs the replay."""

    @property
    def total(self) -> float:
        return self.pipeline + self.state_machine


def replay_cost(
    decompressed_bytes: float, objects: int, inputs: CostInputs, *, batch_size: int, map_engine: bool = True
) -> ReplayCost:
    """The cost of replaying ``objects`` log objects of ``decompressed_bytes`` through the streaming pipeline.

    Events are the bytes over the measured raw bytes per event; each costs the per-event part of the
    streaming mode's estimate at a rate high enough that the log-object floor does not weigh in
    (the stream's shard-hours are the deployment's, paid with or without a replay).
    """
    events = decompressed_bytes / inputs.usage.m("raw_bytes")
    steady = estimate("streaming", 1000.0, inputs)
    per_event = steady.per_event / steady.events_per_month if steady.events_per_month else 0.0
    state_machine = 0.0
    if map_engine and objects:
        batches = math.ceil(objects / max(batch_size, 1))
        transitions = REPLAY_TRANSITIONS_PER_RUN + REPLAY_TRANSITIONS_PER_BATCH * batches
        state_machine = transitions / 1000 * inputs.prices("stepfunctions", "standard_transitions_per_thousand")
    return ReplayCost(events, events * per_event, state_machine)


# ---- dashboard (issue 16)
ROLLUP_METRICS: Final = 1
"""The metric names the rollup's handler emits (load/rollup_handler.py: DaysRolledUp)."""
ROLLUP_ALARMS: Final = 2
ROLLUP_MEMORY_MB: Final = 1024


def dashboard_cost(events_per_month: float, inputs: CostInputs, *, arm64: bool = True) -> list[LineItem]:
    """The dashboard's monthly line items: the hourly rollup (Lambda, S3 listing, GETs and PUTs, its
    alarms and metric) and the static site behind CloudFront (requests, transfer, the basic-auth
    function, S3 GETs of cache misses), from ``[usage.dashboard]`` and ``[prices.*]``."""
    p, u = inputs.prices, inputs.usage
    out = _Items()
    runs = u.a("dashboard", "rollup_runs_per_month")
    days = inputs.prices.hours_per_month / 24
    events_per_run = events_per_month / days / 2  # today's events, half a day on average
    cpu_s = runs * events_per_run / u.a("dashboard", "rollup_events_per_cpu_s")
    gb_s = cpu_s * max(ROLLUP_MEMORY_MB, 1) / 1024
    out.add(
        "per event",
        "lambda",
        "rollup duration",
        gb_s,
        "GB-s",
        gb_s * p("lambda", f"{'arm64' if arm64 else 'x86_64'}_gb_second"),
    )
    out.add("fixed", "lambda", "rollup requests", runs, "invocations", runs / 1e6 * p("lambda", "requests_per_million"))
    lists = runs * math.ceil(u.a("dashboard", "listed_objects") / 1000)
    out.add("fixed", "s3", "rollup listings", lists, "LIST", lists / 1000 * p("s3", "put_per_thousand"))
    gets = runs * u.a("dashboard", "rollup_objects_per_day")
    out.add(
        "per event", "s3", "rollup GETs of the day's events", gets, "GET", gets / 1000 * p("s3", "get_per_thousand")
    )
    puts = runs * 7  # five tables, the fingerprint and the manifest
    out.add("fixed", "s3", "rollup PUTs", puts, "PUT", puts / 1000 * p("s3", "put_per_thousand"))
    out.add(
        "fixed", "cloudwatch", "rollup alarms", ROLLUP_ALARMS, "alarms", ROLLUP_ALARMS * p("cloudwatch", "alarm_month")
    )
    out.add(
        "fixed", "cloudwatch", "rollup custom metric (EMF)", ROLLUP_METRICS, "metrics",
        ROLLUP_METRICS * p("cloudwatch", "custom_metric_month"),
    )  # fmt: skip
    requests = u.a("dashboard", "views_per_month") * u.a("dashboard", "requests_per_view")
    out.add(
        "fixed",
        "cloudfront",
        "site requests",
        requests,
        "requests",
        requests / 10_000 * p("cloudfront", "https_requests_per_10k"),
    )
    out.add(
        "fixed",
        "cloudfront",
        "basic-auth function",
        requests,
        "invocations",
        requests / 1e6 * p("cloudfront", "functions_per_million"),
    )
    gb = u.a("dashboard", "views_per_month") * u.a("dashboard", "mb_per_view") / 1024
    out.add("fixed", "cloudfront", "site transfer", gb, "GB", gb * p("cloudfront", "gb_out"))
    misses = requests * u.a("dashboard", "cache_miss_share")
    out.add("fixed", "s3", "site GETs (cache misses)", misses, "GET", misses / 1000 * p("s3", "get_per_thousand"))
    return out.items


def is_hosted_site_item(item: LineItem) -> bool:
    """Whether ``item`` is the hosted site's (template ``Dashboard`` enabled: CloudFront, its
    function, the site's S3 GETs); the rollup's items come with every stack (``RollupFunction``)."""
    return item.service == "cloudfront" or item.item.startswith("site ")


@dataclass(frozen=True)
class DashboardCost:
    """The dashboard's monthly cost at ``events_per_month``: :func:`dashboard_cost`'s items, split."""

    events_per_month: float
    views_per_month: float
    items: tuple[LineItem, ...]

    @property
    def rollup(self) -> float:
        return sum(i.monthly for i in self.items if not is_hosted_site_item(i))

    @property
    def site(self) -> float:
        return sum(i.monthly for i in self.items if is_hosted_site_item(i))

    @property
    def total(self) -> float:
        return self.rollup + self.site

    def to_json(self) -> dict[str, Any]:
        return {
            "events_per_month": self.events_per_month,
            "views_per_month": self.views_per_month,
            "rollup_usd": round(self.rollup, 4),
            "hosted_site_usd": round(self.site, 4),
            "total_usd": round(self.total, 4),
            "items": [{**vars(i), "monthly": round(i.monthly, 4)} for i in self.items],
        }


def dashboard_estimate(events_per_month: float, inputs: CostInputs) -> DashboardCost:
    """:func:`dashboard_cost` at ``events_per_month`` with the views it assumes (``[usage.dashboard]``)."""
    arm64 = inputs.usage.assumed.get("architecture", "arm64") == "arm64"
    return DashboardCost(
        events_per_month,
        inputs.usage.a("dashboard", "views_per_month"),
        tuple(dashboard_cost(events_per_month, inputs, arm64=arm64)),
    )


def render_dashboard(d: DashboardCost) -> list[str]:
    """The dashboard's own table (issue 16), on top of either mode's total, as text lines."""
    lines = [
        f"dashboard (issue 16) at {d.events_per_month:,.0f} events a month and {d.views_per_month:,.0f} views a month "
        "of the hosted site; on top of either mode's total",
        f"  {'':9} {'service':10} {'item':46} {'quantity':>24} {'$/month':>10}",
    ]
    for i in d.items:
        quantity = f"{i.quantity:,.0f} {i.unit}" if i.quantity >= 10 else f"{i.quantity:,.2f} {i.unit}"
        lines.append(f"  {i.group:9} {i.service:10} {i.item:46} {quantity:>24} {_money(i.monthly):>10}")
    lines.append(f"  {'':9} {'':10} {'rollup (every stack: RollupFunction)':46} {'':>24} {_money(d.rollup):>10}")
    lines.append(f"  {'':9} {'':10} {'hosted site (Dashboard enabled)':46} {'':>24} {_money(d.site):>10}")
    lines.append(f"  {'TOTAL':9} {'':10} {'':46} {'':>24} {_money(d.total):>10}")
    return lines


# ---------------------------------------------------------------------- collector (issue 15)
FRONT_DOORS: Final = ("function-url", "http-api", "rest-api")
"""The collector's front doors the model prices: the template deploys the first two
(``Collector``); a REST API is priced for comparison."""
_FRONT_DOOR_REQUESTS: Final = {"http-api": "http_api_requests_per_million", "rest-api": "rest_api_requests_per_million"}


@dataclass(frozen=True)
class FrontDoorCost:
    """What a million tracker requests cost at the collector's front door, dollars, item by item.

    Per request: the front door's own request price (none for a Function URL), the collector
    function's request and duration (its CPU, plus the PutRecords it waits for before answering),
    optionally CloudFront's HTTPS requests, and the PUT payload unit of its stream-1 record.  The
    stream's shard-hours are the pipeline's fixed cost (:func:`estimate`), not the front door's.
    """

    front_door: str
    cloudfront: bool
    items: tuple[tuple[str, float], ...]

    @property
    def per_million(self) -> float:
        return sum(value for _, value in self.items)

    @property
    def before_kinesis(self) -> float:
        """The front door and the function only: the figure the issue quotes ($0.23, $1.23, $3.73)."""
        return sum(value for item, value in self.items if not item.startswith(("Kinesis", "CloudFront")))


def front_door_cost(inputs: CostInputs, front_door: str, *, cloudfront: bool = False) -> FrontDoorCost:
    """The collector's cost per million requests behind ``front_door`` (one of :data:`FRONT_DOORS`)."""
    if front_door not in FRONT_DOORS:
        raise ConfigError(f"unknown front door {front_door!r}; known: {', '.join(FRONT_DOORS)}")
    p, u = inputs.prices, inputs.usage
    memory = u.a("collector_memory_mb")
    speed = u.a("cpu_speed_factor")
    cpu_gb_s = _cpu_gb_s(u.m("collector_cpu_us") / 1e6, memory, speed)
    wait_gb_s = u.a("collector_put_ms") / 1000 * memory / 1024
    gb_s_price = p("lambda", f"{u.assumed.get('architecture', 'arm64')}_gb_second")
    items: list[tuple[str, float]] = []
    if front_door in _FRONT_DOOR_REQUESTS:
        items.append((f"API Gateway {front_door} requests", p("apigateway", _FRONT_DOOR_REQUESTS[front_door])))
    items.append(("Lambda requests", p("lambda", "requests_per_million")))
    items.append((f"Lambda duration ({memory:g} MB)", (cpu_gb_s + wait_gb_s) * 1e6 * gb_s_price))
    if cloudfront:
        items.append(("CloudFront HTTPS requests", p("cloudfront", "https_requests_per_10k") * 100))
    items.append(("Kinesis PUT payload units (one record a request)", p("kinesis", "put_payload_units_per_million")))
    return FrontDoorCost(front_door, cloudfront, tuple(items))


def realtime_counter_cost(inputs: CostInputs) -> tuple[float, float]:
    """The real-time counter (issue 16): dollars per million collector requests (one DynamoDB
    write each and the collector's wait for it), and dollars a month of the tile's reads."""
    p, u = inputs.prices, inputs.usage
    memory = u.a("collector_memory_mb")
    gb_s_price = p("lambda", f"{u.assumed.get('architecture', 'arm64')}_gb_second")
    wait = u.a("dynamodb_call_ms") / 1000 * memory / 1024 * 1e6 * gb_s_price
    per_million = p("dynamodb", "write_request_units_per_million") + wait
    query_kb = u.a("realtime_visitors_in_ttl") * u.a("realtime_item_bytes") / 1024
    read_units = max(1.0, -(-query_kb // 4)) / 2  # eventually consistent: half a unit per 4 KB
    reads = read_units * u.a("realtime_refreshes_per_month") / 1e6 * p("dynamodb", "read_request_units_per_million")
    return per_million, reads


def render_front_doors(inputs: CostInputs) -> list[str]:
    """The collector's front doors per million requests, beside the AWS clickstream solution's ingestion figure."""
    lines = ["collector front door (issue 15), per million tracker requests:"]
    for door in FRONT_DOORS:
        for cloudfront in (False, True):
            cost = front_door_cost(inputs, door, cloudfront=cloudfront)
            detail = ", ".join(f"{item} {value:.3f}" for item, value in cost.items)
            behind = " behind CloudFront" if cloudfront else ""
            lines.append(
                f"  {door}{behind}: ${cost.per_million:.2f} "
                f"(${cost.before_kinesis:.2f} before Kinesis and CloudFront; {detail})"
            )
    clickstream = [peer for key, peer in inputs.peers.items() if key == "aws_clickstream"]
    if clickstream:
        lines.append(
            f"  the AWS clickstream solution publishes ${float(clickstream[0]['per_million']):.2f} per million "
            "requests for its ingestion (ALB and ECS collectors)"
        )
    writes, reads = realtime_counter_cost(inputs)
    lines.append(
        f"  real-time counter (issue 16): +${writes:.2f} per million requests (one DynamoDB PutItem each), "
        f"${reads:.2f} a month of tile reads ({inputs.usage.a('realtime_visitors_in_ttl'):,.0f} visitors "
        "within the TTL, one open dashboard)"
    )
    return lines
