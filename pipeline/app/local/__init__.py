"""Local emulation of the AWS plumbing moto lacks.

* :mod:`pipeline.app.local.esm` -- a Kinesis -> Lambda event source mapping simulator (batching,
  ``ReportBatchItemFailures`` checkpoints, retries, bisect, on-failure metadata) and a poller that
  reads a real (or moto) stream shard by shard;
* :mod:`pipeline.app.local.firehose` -- a Kinesis-sourced Firehose delivery stream with a
  transformation Lambda and S3 delivery, including the ``processing-failed`` error output.

Handlers run in-process; nothing here starts threads or sleeps.
"""
