"""Run one stage's real handler on given log lines and get typed results back.

* :func:`run_transform` -- no AWS at all: the lines are packed into stream-1 batches as Extract
  packs them, delivered to the Transform handler in a Kinesis event, and its outputs land in
  in-memory sinks (:mod:`pipeline.testing.sinks`);
* :func:`run_extract` -- the Extract handler on an emulated account (moto): the log is uploaded,
  an S3 notification invokes the handler, and stream 1 and the bad rows land in memory.

Both return the events as canonical-event dicts keyed by field name (Transform), the bad rows
as :class:`~pipeline.badrows.BadRow`, and a :class:`~pipeline.summary.FileSummary` whose
``lines_read == good + bad + skipped`` can be checked with
:func:`~pipeline.testing.assertions.assert_conserved`::

    run = run_transform([tracker_hit(e="pv", url="https://a.example/?q=1")])
    assert_no_bad_rows(run)
    assert run.event["page_urlquery"] == "q=1"
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Final

from extract.handler import handle as extract_handle
from pipeline.badrows import BadRow
from pipeline.config import PipelineConfig
from pipeline.formats.base import FieldLayout
from pipeline.formats.cloudfront import GZIP_MAGIC
from pipeline.records import RawBatch, encode_raw
from pipeline.schema import CanonicalEvent
from pipeline.summary import FileSummary
from pipeline.testing.chain import (
    EmulatedAccount,
    LogInput,
    RunOutcome,
    default_config,
    emulated_account,
    log_bytes,
)
from pipeline.testing.lambda_events import FakeLambdaContext, KinesisRecord, kinesis_event, s3_object_created_event
from pipeline.testing.logs import cloudfront_log
from pipeline.testing.sinks import MemoryBadRowSink, MemoryRecordWriter
from transform.handler import build_deps as build_transform_deps
from transform.handler import handle as transform_handle
from transform.stage import TransformOutput

DEFAULT_BUCKET: Final = "kit-logs"
DEFAULT_KEY: Final = "cloudfront/E2STAGEKIT0001.2024-11-15-19.0a1b2c3d.gz"
DEFAULT_ETL_TSTAMP: Final = 1_731_700_000_000
"""The ``etl_tstamp`` of batches :func:`run_transform` makes (Extract stamps the object's LastModified)."""


@dataclass(frozen=True)
class StageRun(RunOutcome):
    """What one Transform invocation made of its input: events, bad rows, accounting, what it wrote."""

    __test__ = False  # not a pytest test class

    events: tuple[CanonicalEvent, ...]
    """Canonical events (dicts keyed by canonical field name), in input order."""
    bad: tuple[BadRow, ...]
    summary: FileSummary
    batch_item_failures: tuple[str, ...] = ()
    """Sequence numbers the handler reported as failed (retried by Lambda); empty when all went well."""
    stream: MemoryRecordWriter = field(default_factory=MemoryRecordWriter)
    """The stream-2 records the handler put (``stream.events()`` decodes them)."""


@dataclass(frozen=True)
class ExtractRun:
    """What one Extract invocation made of a log object: stream-1 batches, bad rows, accounting."""

    __test__ = False  # not a pytest test class

    batches: tuple[RawBatch, ...]
    """The stream-1 records it put, decoded; give them to :func:`run_transform` to continue."""
    bad: tuple[BadRow, ...]
    summary: FileSummary
    """``good`` counts the lines shipped to stream 1."""
    outcome: str
    """The object's outcome (``complete``, ``duplicate``, ``continued``...)."""
    response: dict[str, Any] = field(default_factory=dict)
    """The handler's response as Lambda would receive it."""

    @property
    def conserved(self) -> bool:
        """Whether every line read was shipped, a bad row or a counted skip."""
        return self.summary.conserved

    @property
    def lines(self) -> list[str]:
        """Every shipped line, in order."""
        return [line for batch in self.batches for line in batch.lines]


def _text_of(log: LogInput) -> str:
    data = log_bytes(log)
    if data.startswith(GZIP_MAGIC):
        data = gzip.decompress(data)
    return data.decode("utf-8", "surrogateescape")


def raw_batches(
    log: LogInput, *, bucket: str = DEFAULT_BUCKET, key: str = DEFAULT_KEY, etl_tstamp: int = DEFAULT_ETL_TSTAMP
) -> list[RawBatch]:
    """The stream-1 batches Extract would ship for ``log``: one per ``#Fields`` layout, physical line numbers.

    Header, comment and blank lines are not shipped (Extract counts them as skipped);
    lines before any ``#Fields`` header ship with no layout (Transform makes them bad rows).
    """
    groups: list[tuple[str, list[int], list[str]]] = [("", [], [])]
    etag = hashlib.md5(log_bytes(log), usedforsecurity=False).hexdigest()
    for number, line in enumerate(_text_of(log).split("\n"), 1):
        text = line.rstrip("\r")
        if text.startswith("#Fields:"):
            groups.append((" ".join(FieldLayout.parse(text).names), [], []))
        elif text and not text.startswith("#"):
            groups[-1][1].append(number)
            groups[-1][2].append(text)
    return [
        RawBatch(bucket, key, etag, etl_tstamp, fields, tuple(numbers), tuple(lines))
        for fields, numbers, lines in groups
        if lines
    ]


def run_transform(
    log: LogInput | Sequence[RawBatch],
    *,
    config: PipelineConfig | None = None,
    s3: Any = None,
) -> StageRun:
    """Run the Transform handler on ``log`` (a file's text or bytes, lines, or batches from :func:`run_extract`).

    Lines given as a list get the 33-field headers (:func:`~pipeline.testing.logs.cloudfront_log`).
    ``config`` defaults to the shipped configuration (environment ignored); ``s3`` is a client for
    an S3 schema registry, when the configuration names one.  Nothing reaches AWS.
    """
    config = config or default_config()
    if isinstance(log, Sequence) and not isinstance(log, str | bytes) and log and isinstance(log[0], RawBatch):
        batches = [b for b in log if isinstance(b, RawBatch)]
    else:
        lines_or_file: Any = log
        if isinstance(log, Sequence) and not isinstance(log, str | bytes):
            lines_or_file = cloudfront_log([str(line) for line in log])
        batches = raw_batches(lines_or_file)
    writer, bad_sink = MemoryRecordWriter(), MemoryBadRowSink()
    deps = dataclasses.replace(build_transform_deps(config, s3=s3, kinesis=None), writer=writer, bad_sink=bad_sink)
    records = [
        KinesisRecord(encode_raw(batch), batch.batch_id, f"{49_000_000_000_000_000_000 + index:d}")
        for index, batch in enumerate(batches)
    ]
    outputs: list[TransformOutput] = []
    failures: tuple[str, ...] = ()
    if records:  # an event source mapping never invokes a function with no records
        response = transform_handle(kinesis_event(records), FakeLambdaContext(), deps, on_output=outputs.append)
        failures = tuple(str(item["itemIdentifier"]) for item in response.get("batchItemFailures") or [])
    summary = FileSummary(batches[0].object_uri if batches else "s3://kit-logs/empty")
    for output in outputs:
        summary.lines_read += output.lines
        summary.good += len(output.events)
        summary.bad += len(output.bad)
        summary.skipped += sum(output.skipped.values())
        summary.bad_by_kind.update(row.kind.value for row in output.bad)
        summary.skipped_by_reason.update(output.skipped)
    events = tuple(event for output in outputs for event in output.events)
    bad = tuple(row for output in outputs for row in output.bad)
    return StageRun(events, bad, summary, failures, writer)


def run_extract(
    log: LogInput,
    *,
    config: PipelineConfig | None = None,
    account: EmulatedAccount | None = None,
    key: str | None = None,
) -> ExtractRun:
    """Upload ``log`` and run the Extract handler on its S3 notification, on ``account`` or a fresh one.

    The object goes to the log bucket under ``extract-kit/`` (outside the prefix whose
    notifications feed the chain, so a :class:`~pipeline.testing.chain.ChainSession` on the same
    account does not process it too).  Stream 1 and the bad rows are kept in memory.
    """
    body = log_bytes(log)
    with nullcontext(account) if account is not None else emulated_account(config or default_config()) as acct:
        bucket = acct.config.resources.log_bucket
        digest = hashlib.sha256(body).hexdigest()[:8]
        suffix = ".gz" if body.startswith(GZIP_MAGIC) else ""  # Extract expects gzip of a ".gz" key
        key = key or f"extract-kit/E2EXTRACTKIT.2024-11-15-19.{digest}{suffix}"
        etag = acct.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        writer, bad_sink = MemoryRecordWriter(), MemoryBadRowSink()
        deps = dataclasses.replace(acct.local_chain.extract_deps, writer=writer, bad_sink=bad_sink)
        event = s3_object_created_event(bucket, key, etag=etag, size=len(body))
        response = extract_handle(event, FakeLambdaContext(), deps)
    item = response["objects"][0]
    summary = FileSummary(f"s3://{bucket}/{key}", lines_read=item["lines_read"])
    summary.good, summary.bad, summary.skipped = item["lines_shipped"], item["bad"], item["skipped"]
    summary.bad_by_kind.update(row.kind.value for row in bad_sink.rows)
    return ExtractRun(tuple(writer.raw_batches()), tuple(bad_sink.rows), summary, str(item["outcome"]), response)
