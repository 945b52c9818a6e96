"""Helpers for functional tests on moto: resources from config, deps for each stage, readers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from extract.handler import build_deps as build_extract_deps
from extract.notifications import ObjectNotice
from extract.stage import ExtractDeps
from pipeline.aws.badsink import S3BadRowSink
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import KinesisWriter
from pipeline.aws.ledger import Ledger, create_table
from pipeline.config import PipelineConfig, load_config
from pipeline.records import RawBatch, decode_raw
from pipeline.testing import cloudfront_log, gzip_log, tracker_hit
from pipeline.testing.lambda_events import KinesisRecord
from transform.handler import TransformDeps
from transform.handler import build_deps as build_transform_deps


def chain_config(overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    base = {
        "resources.log_bucket": "test-clickstream-logs",
        "resources.output_bucket": "test-clickstream-output",
        "resources.raw_stream": "test-raw",
        "resources.events_stream": "test-events",
        "resources.ledger_table": "test-ledger",
    }
    return load_config(environ={}, overrides={**base, **(overrides or {})})


@dataclass
class Chain:
    config: PipelineConfig
    s3: Any
    kinesis: Any
    dynamodb: Any
    continuations: list[ObjectNotice] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    @classmethod
    def create(cls, config: PipelineConfig, shards: int = 1) -> Chain:
        aws = config.aws
        chain = cls(config, make_client("s3", aws), make_client("kinesis", aws), make_client("dynamodb", aws))
        r = config.resources
        for bucket in (r.log_bucket, r.output_bucket):
            chain.s3.create_bucket(Bucket=bucket)
        for stream in (r.raw_stream, r.events_stream):
            chain.kinesis.create_stream(StreamName=stream, ShardCount=shards)
        create_table(chain.dynamodb, r.ledger_table)
        return chain

    def ledger(self, clock: Any = None) -> Ledger:
        if clock is None:
            return Ledger(self.dynamodb, self.config.resources.ledger_table)
        return Ledger(self.dynamodb, self.config.resources.ledger_table, clock=clock)

    def writer(self, stream: str) -> KinesisWriter:
        return KinesisWriter(self.kinesis, stream, self.config.stream, sleep=self.sleeps.append, jitter=lambda: 0.5)

    def bad_sink(self) -> S3BadRowSink:
        r = self.config.resources
        return S3BadRowSink(self.s3, r.output_bucket, r.bad_prefix)

    def extract_deps(self, *, writer: Any = None, ledger: Ledger | None = None) -> ExtractDeps:
        """The handler's own wiring on these clients; the writer (recorded sleeps) and ledger may be swapped."""
        deps = build_extract_deps(
            self.config,
            s3=self.s3,
            kinesis=self.kinesis,
            dynamodb=self.dynamodb,
            continue_later=self.continuations.append,
        )
        return replace(
            deps, writer=writer or self.writer(self.config.resources.raw_stream), ledger=ledger or deps.ledger
        )

    def transform_deps(self, *, writer: Any = None, bad_sink: Any = None) -> TransformDeps:
        """The handler's own wiring on these clients; the writer and bad-row sink may be swapped."""
        deps = build_transform_deps(self.config, s3=self.s3, kinesis=self.kinesis)
        return replace(
            deps,
            writer=writer or self.writer(self.config.resources.events_stream),
            bad_sink=bad_sink or deps.bad_sink,
        )

    def upload(self, key: str, body: bytes, *, bucket: str | None = None) -> ObjectNotice:
        bucket = bucket or self.config.resources.log_bucket
        response = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return ObjectNotice(bucket, key, response["ETag"].strip('"'), len(body))

    def stream_records(self, stream: str) -> list[KinesisRecord]:
        """Every record on every shard of ``stream``, in shard then sequence order."""
        out: list[KinesisRecord] = []
        shards = self.kinesis.list_shards(StreamName=stream)["Shards"]
        for shard in shards:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                response = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                for record in response["Records"]:
                    out.append(
                        KinesisRecord(
                            record["Data"],
                            record["PartitionKey"],
                            record["SequenceNumber"],
                            shard["ShardId"],
                            record["ApproximateArrivalTimestamp"].timestamp(),
                        )
                    )
                if not response["Records"]:
                    break
                iterator = response.get("NextShardIterator")
        return out

    def raw_batches(self) -> list[RawBatch]:
        return [decode_raw(r.data) for r in self.stream_records(self.config.resources.raw_stream)]

    def objects(self, prefix: str) -> dict[str, bytes]:
        bucket = self.config.resources.output_bucket
        out: dict[str, bytes] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out


def page_view_log(lines: int) -> bytes:
    """A gzipped log of ``lines`` tracker page views, one URL each."""
    return gzip_log(cloudfront_log([tracker_hit(e="pv", url=f"https://a.example/{n}") for n in range(lines)]))


def gz(text: str) -> bytes:
    return gzip_log(text)
