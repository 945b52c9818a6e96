"""The whole chain on emulated AWS, asked the questions Snowplow Micro answers.

:func:`emulated_account` opens a moto account (in-process, fake credentials) holding the
pipeline's resources as configured -- buckets, both streams, the ledger table, the notification
queue -- created by run-local's own code (:class:`~pipeline.app.local.runtime.LocalChain`).
:class:`ChainSession` drives that chain as AWS would (S3 notification -> Extract -> stream 1 ->
Transform -> stream 2 -> Parquet sink and Firehose, through the event source mapping simulator)
and keeps what came out::

    with emulated_account() as account:
        chain = ChainSession(account)
        chain.send([tracker_hit(e="pv", url="https://a.example/")])
        assert chain.counts().good == 1
        assert chain.good(event_type="page_view")[0]["page_urlhost"] == "a.example"

Micro's API, in Python: ``/micro/all`` is :meth:`ChainSession.counts`, ``/micro/good`` is
:meth:`ChainSession.good` (filters by event type, schema, contexts), ``/micro/bad`` is
:meth:`ChainSession.bad`, ``/micro/reset`` is :meth:`ChainSession.reset`, and
:meth:`ChainSession.export` writes both as JSON lines.  :func:`run_chain` is the one-shot form.

Good events are those Transform made durable on stream 2, as canonical-event dicts (the same
shape :func:`pipeline.testing.stages.run_transform` returns); a redelivered batch counts once,
natural duplicates in the input are kept (the sinks drop them later).  Bad rows are Extract's
and Transform's, typed :class:`~pipeline.badrows.BadRow`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipeline.app.local.runtime import LOG_PREFIX, LocalChain, emulated_aws
from pipeline.badrows import BadRow
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import PipelineError
from pipeline.formats.cloudfront import GZIP_MAGIC
from pipeline.records import encode_event
from pipeline.schema import CanonicalEvent
from pipeline.summary import FileSummary
from pipeline.testing.logs import cloudfront_log
from pipeline.testing.sinks import MemoryBadRowSink
from transform.stage import TransformOutput

LogInput = str | bytes | Path | Sequence[str]
"""A log to send: a file's text (``str``), an object's bytes (gzipped or not), a file, or lines
(``list``/``tuple`` of ``str``, given the 33-field headers by :func:`~pipeline.testing.logs.cloudfront_log`)."""

MAX_ROUNDS: Final = 200
# Short names of the tracker's event types, as Snowplow Micro's event_type filter also takes them.
_EVENT_TYPES: Final = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ue": "unstruct",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}


class ChainSettleError(PipelineError):
    """The emulated chain kept working after :data:`MAX_ROUNDS` rounds (a bug in a stage or the test)."""


def log_bytes(log: LogInput) -> bytes:
    """The object body for a :data:`LogInput`."""
    if isinstance(log, bytes):
        return log
    if isinstance(log, Path):
        return log.read_bytes()
    if isinstance(log, str):
        return log.encode("utf-8", "surrogateescape")
    return cloudfront_log(log).encode("utf-8", "surrogateescape")


def default_config(overrides: dict[str, Any] | None = None, *, overlay: Path | None = None) -> PipelineConfig:
    """The shipped defaults, the TOML file ``overlay`` if given, then ``overrides`` (dotted keys),
    ignoring the environment's ``CLICKSTREAM_*``."""
    return load_config(overlay, environ={}, overrides=overrides)


class _ObservedChain(LocalChain):
    """run-local's chain, letting the session hear each Transform output once it is durable."""

    def __init__(self, config: PipelineConfig, *, shards: int) -> None:
        super().__init__(config, shards=shards)
        self.outputs: dict[str, TransformOutput] = {}

    def _count_transform(self, output: TransformOutput) -> None:
        super()._count_transform(output)
        # Keyed by batch, as the chain counts them: a redelivered record replaces its first output.
        self.outputs[output.batch_id] = output


@dataclass
class EmulatedAccount:
    """A moto account holding the pipeline's resources, named as ``config`` says (see :func:`emulated_account`)."""

    __test__ = False  # not a pytest test class

    config: PipelineConfig
    local_chain: LocalChain
    """run-local's chain on this account: its clients (``s3``, ``kinesis``, ``dynamodb``, ``sqs``) and wiring."""

    @property
    def s3(self) -> Any:
        """A boto3 S3 client on the emulated account."""
        return self.local_chain.s3

    @property
    def kinesis(self) -> Any:
        """A boto3 Kinesis client on the emulated account."""
        return self.local_chain.kinesis

    @property
    def dynamodb(self) -> Any:
        """A boto3 DynamoDB client on the emulated account."""
        return self.local_chain.dynamodb

    @property
    def sqs(self) -> Any:
        """A boto3 SQS client on the emulated account (the notification queue is ``local_chain.queue_url``)."""
        return self.local_chain.sqs

    def objects(self, prefix: str = "", *, bucket: str | None = None) -> dict[str, bytes]:
        """Every object under ``prefix`` of ``bucket`` (default: the output bucket), by key."""
        bucket = bucket or self.config.resources.output_bucket
        out: dict[str, bytes] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out


@contextmanager
def emulated_account(config: PipelineConfig | None = None, *, shards: int = 1) -> Iterator[EmulatedAccount]:
    """moto in-process, with fake credentials, holding the resources of ``config`` (default: :func:`default_config`).

    Everything lives as long as the ``with`` block; clients made inside it reach moto only.
    Needs moto (``pip install 'clickstream-etl[local]'``).
    """
    if importlib.util.find_spec("moto") is None:
        raise ModuleNotFoundError("the emulated AWS account needs moto: pip install 'clickstream-etl[local]'")
    with emulated_aws(server=False):
        local = _ObservedChain(config or default_config(), shards=shards)
        local.create_resources()
        yield EmulatedAccount(local.config, local)


@dataclass(frozen=True)
class ChainCounts:
    """What Snowplow Micro's ``/micro/all`` answers, with the good events counted by type."""

    __test__ = False  # not a pytest test class

    total: int
    good: int
    bad: int
    by_event_type: dict[str, int] = field(default_factory=dict)
    """Good events by their ``event`` field (``page_view``, ``struct``, ``unstruct``...)."""


class RunOutcome:
    """What every run of the kit answers: whether its lines are conserved, and its only event."""

    events: tuple[CanonicalEvent, ...]
    bad: tuple[BadRow, ...]
    summary: FileSummary

    @property
    def conserved(self) -> bool:
        """Whether every line read is an event, a bad row or a counted skip."""
        return self.summary.conserved

    @property
    def event(self) -> CanonicalEvent:
        """The only event (fails, printing the bad rows, unless there is exactly one)."""
        __tracebackhide__ = True  # pytest shows the caller's line, not this property's
        if len(self.events) != 1:
            raise AssertionError(f"expected one event, got {len(self.events)}; bad rows: {list(self.bad)}")
        return self.events[0]


@dataclass(frozen=True)
class ChainRun(RunOutcome):
    """What became of one log sent through the chain: its events, bad rows and accounting."""

    __test__ = False  # not a pytest test class

    events: tuple[CanonicalEvent, ...]
    bad: tuple[BadRow, ...]
    summary: FileSummary
    """Every line of the object: ``lines_read == good + bad + skipped`` over both stages."""
    key: str
    """The S3 key the log was uploaded to."""


class ChainSession:
    """The emulated chain of an :class:`EmulatedAccount`, with Snowplow Micro's questions as methods."""

    __test__ = False  # not a pytest test class

    def __init__(self, account: EmulatedAccount) -> None:
        if not isinstance(account.local_chain, _ObservedChain):
            raise TypeError("ChainSession needs an account made by pipeline.testing.chain.emulated_account")
        self.account = account
        self._local: _ObservedChain = account.local_chain
        self._extract_bad = MemoryBadRowSink(inner=self._local.extract_deps.bad_sink)
        self._local.extract_deps = dataclasses.replace(self._local.extract_deps, bad_sink=self._extract_bad)
        self._sends = 0
        self._seen: dict[str, int] = {}  # batch id -> the send that produced it
        self._bad_seen: dict[tuple[str, str], int] = {}
        self._extract_skipped_by_reason: Counter[str] = Counter()

    @property
    def config(self) -> PipelineConfig:
        """The configuration the chain runs with."""
        return self.account.config

    # ------------------------------------------------------------------ input
    def send(self, log: LogInput, *, name: str | None = None) -> ChainRun:
        """Upload ``log`` to the log bucket and drive the chain until it is quiet; returns what it became.

        ``name`` is the object's file name under ``cloudfront/`` (default: a CloudFront-style name
        unique to this content and send).
        """
        body = log_bytes(log)
        self._sends += 1
        report = self._local.report
        before = (report.lines_read, report.extract_skipped)
        if name is None:
            digest = hashlib.sha256(body).hexdigest()[:8]
            suffix = ".gz" if body.startswith(GZIP_MAGIC) else ""
            name = f"E2CHAINKIT{self._sends:04d}.2024-11-15-19.{digest}{suffix}"
        key = LOG_PREFIX + name
        self.account.s3.put_object(Bucket=self.config.resources.log_bucket, Key=key, Body=body)
        report.objects += 1
        self._settle()
        return self._run_of(self._sends, key, before)

    def _settle(self) -> None:
        for _ in range(MAX_ROUNDS):
            messages, records = self._local.step()
            if not messages and not records:
                return
        raise ChainSettleError(f"the chain did not settle after {MAX_ROUNDS} rounds")

    def _run_of(self, number: int, key: str, before: tuple[int, int]) -> ChainRun:
        for batch_id in self._local.outputs:
            self._seen.setdefault(batch_id, number)
        for batch in self._extract_bad.by_batch:
            self._bad_seen.setdefault(batch, number)
        outputs = [o for b, o in self._local.outputs.items() if self._seen[b] == number]
        extract_bad = [r for b, rows in self._extract_bad.by_batch.items() if self._bad_seen[b] == number for r in rows]
        report = self._local.report
        lines_read, extract_skipped = report.lines_read - before[0], report.extract_skipped - before[1]
        events = tuple(event for output in outputs for event in output.events)
        bad = (*extract_bad, *(row for output in outputs for row in output.bad))
        summary = FileSummary(f"s3://{self.config.resources.log_bucket}/{key}", lines_read=lines_read)
        summary.good = len(events)
        summary.bad = len(bad)
        summary.skipped = extract_skipped + sum(sum(output.skipped.values()) for output in outputs)
        summary.bad_by_kind.update(row.kind.value for row in bad)
        for output in outputs:
            summary.skipped_by_reason.update(output.skipped)
        if extract_skipped:  # Extract reports how many lines it skipped (headers, blank lines), not why
            summary.skipped_by_reason["extract"] += extract_skipped
        return ChainRun(events, bad, summary, key)

    # ------------------------------------------------------------------ Micro's questions
    def good(
        self,
        *,
        event_type: str | None = None,
        schema: str | None = None,
        contexts: Sequence[str] = (),
    ) -> list[CanonicalEvent]:
        """Good events since the last :meth:`reset`, in arrival order, optionally filtered.

        ``event_type`` matches the ``event`` field (``"page_view"``, or the tracker's ``"pv"``);
        ``schema`` is a self-describing event's schema URI (``iglu:vendor/name/jsonschema/1-0-0``);
        ``contexts`` lists schema URIs that must all be among the event's context entities.
        """
        wanted_type = _EVENT_TYPES.get(event_type, event_type) if event_type else None
        out: list[CanonicalEvent] = []
        for output in self._local.outputs.values():
            for event in output.events:
                if wanted_type is not None and event.get("event") != wanted_type:
                    continue
                if schema is not None and event_schema(event) != schema:
                    continue
                if contexts and not set(contexts) <= set(context_schemas(event)):
                    continue
                out.append(event)
        return out

    def bad(self) -> list[BadRow]:
        """Bad rows of both stages since the last :meth:`reset` (Extract's first)."""
        return [*self._extract_bad.rows, *(row for output in self._local.outputs.values() for row in output.bad)]

    def counts(self) -> ChainCounts:
        """Totals since the last :meth:`reset`: good, bad, their sum, and good events by type."""
        good = self.good()
        bad = self.bad()
        by_type = Counter(str(event.get("event")) for event in good)
        return ChainCounts(len(good) + len(bad), len(good), len(bad), dict(sorted(by_type.items())))

    def reset(self) -> None:
        """Forget the good events and bad rows seen so far (the emulated resources stay as they are)."""
        self._local.outputs.clear()
        self._extract_bad.clear()
        self._seen.clear()
        self._bad_seen.clear()

    def export(self, dest: Path) -> ChainExport:
        """Write the good events and bad rows as JSON lines under ``dest`` (created if needed).

        ``good.jsonl`` holds one canonical event per line (as :meth:`good` returns them),
        ``bad.jsonl`` one self-describing bad row per line, ``counts.json`` :meth:`counts`.
        """
        dest.mkdir(parents=True, exist_ok=True)
        export = ChainExport(dest / "good.jsonl", dest / "bad.jsonl", dest / "counts.json")
        export.good.write_bytes(b"".join(encode_event(event) + b"\n" for event in self.good()))
        export.bad.write_text("".join(row.to_json_line() + "\n" for row in self.bad()), "utf-8")
        export.counts.write_text(json.dumps(dataclasses.asdict(self.counts()), indent=2) + "\n", "utf-8")
        return export


@dataclass(frozen=True)
class ChainExport:
    """The files :meth:`ChainSession.export` wrote."""

    __test__ = False  # not a pytest test class

    good: Path
    bad: Path
    counts: Path


def event_schema(event: CanonicalEvent) -> str | None:
    """The schema URI of a self-describing event (``iglu:vendor/name/format/version``), else None."""
    text = event.get("unstruct_event")
    if not text:
        return None
    inner = json.loads(text).get("data", {}) if isinstance(text, str) else {}
    schema = inner.get("schema") if isinstance(inner, dict) else None
    return schema if isinstance(schema, str) else None


def context_schemas(event: CanonicalEvent) -> list[str]:
    """The schema URIs of an event's context entities (``contexts``, then ``derived_contexts``)."""
    out: list[str] = []
    for name in ("contexts", "derived_contexts"):
        text = event.get(name)
        if isinstance(text, str) and text:
            data = json.loads(text).get("data", [])
            out.extend(e["schema"] for e in data if isinstance(e, dict) and isinstance(e.get("schema"), str))
    return out


def run_chain(log: LogInput, *, config: PipelineConfig | None = None) -> ChainRun:
    """Send one log through the whole chain on a fresh emulated account; returns what it became."""
    with emulated_account(config) as account:
        return ChainSession(account).send(log)
