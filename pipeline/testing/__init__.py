"""The public testing kit: build inputs the way AWS and CloudFront make them.

* :mod:`pipeline.testing.logs` -- CloudFront log lines and files (``LogBuilder``, ``tracker_query``);
* :mod:`pipeline.testing.lambda_events` -- Lambda event factories (S3, SQS, EventBridge, Kinesis,
  Firehose) and a fake Lambda context with a controllable clock;
* :mod:`pipeline.testing.generate` -- the deterministic generator of realistic sample logs.

Everything here depends on the foundation only, so a test of a transform needs no AWS::

    from pipeline.testing import LogBuilder, tracker_query
    log = LogBuilder(fields=33)
    log.add(uri_stem="/i", query=tracker_query({"e": "pv", "url": "https://example.com/"}))
    data = log.to_gzip()          # bytes of a gzipped log file
"""

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
from pipeline.testing.logs import DEFAULT_VALUES, LogBuilder, cloudfront_encode, tracker_query

__all__ = [
    "DEFAULT_VALUES",
    "FakeClock",
    "FakeLambdaContext",
    "FirehoseInputRecord",
    "GenerateOptions",
    "KinesisRecord",
    "LogBuilder",
    "cloudfront_encode",
    "eventbridge_object_created",
    "firehose_event",
    "generate_logs",
    "iter_log_lines",
    "kinesis_event",
    "s3_object_created_event",
    "s3_test_event",
    "sqs_wrapped",
    "tracker_query",
    "write_log_file",
]
