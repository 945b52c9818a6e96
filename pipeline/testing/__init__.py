"""The public testing kit: build inputs the way CloudFront and AWS make them, run the pipeline on them.

Inputs (foundation only: importing them needs no AWS, moto, boto3 or pyarrow):

* log lines and files -- :func:`tracker_hit`, :func:`cloudfront_line`, :func:`cloudfront_log`,
  :func:`gzip_log`; self-describing JSON -- :func:`self_describing_event`, :func:`contexts`,
  :func:`entity`; the lower-level :class:`LogBuilder`, :func:`tracker_query`, :func:`cloudfront_encode`
  (:mod:`pipeline.testing.logs`);
* Lambda events -- :func:`s3_object_created_event` (with S3's key encoding), :func:`sqs_wrapped`,
  :func:`eventbridge_object_created`, :func:`s3_test_event`, :func:`kinesis_event`, :func:`firehose_event`;
  :class:`FakeLambdaContext` with a controllable :class:`FakeClock` (:mod:`pipeline.testing.lambda_events`);
* in-memory sinks -- :class:`MemoryRecordWriter`, :class:`MemoryBadRowSink` (:mod:`pipeline.testing.sinks`);
* assertions -- :func:`assert_conserved`, :func:`assert_no_duplicates`, :func:`assert_no_bad_rows`,
  :func:`assert_event_matches` (:mod:`pipeline.testing.assertions`);
* realistic sample logs -- :func:`generate_logs` (:mod:`pipeline.testing.generate`).

Runners (they import the stages, and moto when used; loaded on first access of their names):

* :func:`run_transform`, :func:`run_extract`, :func:`raw_batches`, :class:`StageRun`, :class:`ExtractRun`
  (:mod:`pipeline.testing.stages`);
* :func:`run_chain`, :class:`ChainSession` (Snowplow Micro's API: good, bad, counts, reset, export),
  :func:`emulated_account`, :class:`EmulatedAccount` (:mod:`pipeline.testing.chain`);
* the event source mapping simulator -- :func:`simulate`, :class:`EsmSettings`, :class:`KinesisPoller`
  (:mod:`pipeline.testing.esm`).

The pytest plugin (:mod:`pipeline.testing.plugin`, installed with the package) provides the
fixtures ``clickstream_config``, ``clickstream_aws``, ``clickstream_sample_logs`` and ``chain``::

    from pipeline.testing import assert_event_matches, run_transform, tracker_hit

    def test_page_view():
        run = run_transform([tracker_hit(e="pv", url="https://example.com/a?x=1", aid="shop", p="web", tv="js-3")])
        assert_event_matches(run.event, {"event": "page_view", "page_urlquery": "x=1", "app_id": "shop"})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from pipeline.testing.assertions import (
    assert_conserved,
    assert_event_matches,
    assert_no_bad_rows,
    assert_no_duplicates,
    describe_bad_row,
)
from pipeline.testing.generate import GenerateOptions, generate_logs, iter_log_lines, write_log_file
from pipeline.testing.lambda_events import (
    FakeClock,
    FakeLambdaContext,
    FirehoseInputRecord,
    KinesisRecord,
    eventbridge_object_created,
    firehose_event,
    kinesis_event,
    s3_object_created_event,
    s3_test_event,
    sqs_wrapped,
)
from pipeline.testing.logs import (
    CONTEXTS_SCHEMA,
    DEFAULT_VALUES,
    LOG_FIELD_KEYWORDS,
    UNSTRUCT_EVENT_SCHEMA,
    LogBuilder,
    cloudfront_encode,
    cloudfront_line,
    cloudfront_log,
    contexts,
    entity,
    gzip_log,
    self_describing_event,
    tracker_hit,
    tracker_query,
)
from pipeline.testing.sinks import MemoryBadRowSink, MemoryRecordWriter

if TYPE_CHECKING:
    from pipeline.testing.chain import (
        ChainCounts,
        ChainExport,
        ChainRun,
        ChainSession,
        EmulatedAccount,
        emulated_account,
        run_chain,
    )
    from pipeline.testing.esm import (
        DiscardedBatch,
        DrainResult,
        EsmOutcome,
        EsmSettings,
        Invocation,
        KinesisPoller,
        simulate,
    )
    from pipeline.testing.stages import ExtractRun, StageRun, raw_batches, run_extract, run_transform

# Names of the runner modules, imported on first access: they load the stages (and moto when
# used), which a test of the builders, or a Lambda cold start, must not pay for.
_LAZY: Final[dict[str, str]] = {
    **dict.fromkeys(("ExtractRun", "StageRun", "raw_batches", "run_extract", "run_transform"), "stages"),
    **dict.fromkeys(
        ("ChainCounts", "ChainExport", "ChainRun", "ChainSession", "EmulatedAccount", "emulated_account", "run_chain"),
        "chain",
    ),
    **dict.fromkeys(
        ("DiscardedBatch", "DrainResult", "EsmOutcome", "EsmSettings", "Invocation", "KinesisPoller", "simulate"),
        "esm",
    ),
}


def __getattr__(name: str) -> Any:
    """The runners' names, imported from their module on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTEXTS_SCHEMA",
    "DEFAULT_VALUES",
    "LOG_FIELD_KEYWORDS",
    "UNSTRUCT_EVENT_SCHEMA",
    "ChainCounts",
    "ChainExport",
    "ChainRun",
    "ChainSession",
    "DiscardedBatch",
    "DrainResult",
    "EmulatedAccount",
    "EsmOutcome",
    "EsmSettings",
    "ExtractRun",
    "FakeClock",
    "FakeLambdaContext",
    "FirehoseInputRecord",
    "GenerateOptions",
    "Invocation",
    "KinesisPoller",
    "KinesisRecord",
    "LogBuilder",
    "MemoryBadRowSink",
    "MemoryRecordWriter",
    "StageRun",
    "assert_conserved",
    "assert_event_matches",
    "assert_no_bad_rows",
    "assert_no_duplicates",
    "cloudfront_encode",
    "cloudfront_line",
    "cloudfront_log",
    "contexts",
    "describe_bad_row",
    "emulated_account",
    "entity",
    "eventbridge_object_created",
    "firehose_event",
    "generate_logs",
    "gzip_log",
    "iter_log_lines",
    "kinesis_event",
    "raw_batches",
    "run_chain",
    "run_extract",
    "run_transform",
    "s3_object_created_event",
    "s3_test_event",
    "self_describing_event",
    "simulate",
    "sqs_wrapped",
    "tracker_hit",
    "tracker_query",
    "write_log_file",
]
