"""The direct mode's function on moto: S3 notifications -> the file core -> Parquet and bad rows on S3.

GIVEN log objects in a moto bucket, the ledger table and SQS-shaped notifications
WHEN pipeline.app.direct handles them (in-process, with a fake Lambda context and clock)
THEN the dataset holds what ``clickstream-etl backfill`` makes of the same files, every line
     is accounted for, and replays, overlaps, crashes, throttling and timeouts change nothing.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from extract.notifications import ObjectNotice
from extract.stage import object_digest
from load.partitions import PartitionKey
from load.redshift.backfill_plan import S3Location, S3Object, plan_backfill
from pipeline.app import direct
from pipeline.app.backfill import plan_sources, run_backfill
from pipeline.app.direct import (
    MAX_TIMEOUTS,
    DirectDeps,
    DirectRetryError,
    DirectWriteAccessError,
    NaturalDedupe,
    PartKey,
    PartPlanner,
    build_deps,
    handle,
    source_stem,
)
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import Ledger, LedgerEntry, ObjectId, create_table
from pipeline.config import PipelineConfig, load_config
from pipeline.schema import FIELDS
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.generate import GenerateOptions, generate_logs
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, s3_object_created_event, sqs_wrapped

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "samples" / "cloudfront").glob("*.gz"))
CANONICAL = [f.name for f in FIELDS]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def direct_config(overrides: dict[str, Any] | None = None) -> PipelineConfig:
    base = {
        "resources.log_bucket": "test-direct-logs",
        "resources.output_bucket": "test-direct-output",
        "resources.ledger_table": "test-direct-ledger",
    }
    return load_config(environ={}, overrides={**base, **(overrides or {})})


@dataclass
class Env:
    """The direct mode's resources on moto: two buckets and the ledger (no streams)."""

    config: PipelineConfig
    s3: Any
    dynamodb: Any
    clock: FakeClock

    @classmethod
    def create(cls, config: PipelineConfig | None = None) -> Env:
        config = config or direct_config()
        env = cls(config, make_client("s3", config.aws), make_client("dynamodb", config.aws), FakeClock())
        for bucket in (config.resources.log_bucket, config.resources.output_bucket):
            env.s3.create_bucket(Bucket=bucket)
        create_table(env.dynamodb, config.resources.ledger_table)
        return env

    def ledger(self) -> Ledger:
        return Ledger(self.dynamodb, self.config.resources.ledger_table, clock=self.clock.now)

    def deps(self, **changes: Any) -> DirectDeps:
        deps = build_deps(self.config, s3=self.s3, dynamodb=self.dynamodb, environ={})
        return replace(deps, ledger=self.ledger(), clock=self.clock.now, **changes)

    def context(self, remaining_ms: int = 900_000) -> FakeLambdaContext:
        return FakeLambdaContext(
            remaining_ms=remaining_ms, clock=self.clock.now, function_name="clickstream-etl-direct"
        )

    def run(self, event: dict[str, Any], deps: DirectDeps | None = None, remaining_ms: int = 900_000) -> dict[str, Any]:
        return handle(event, self.context(remaining_ms), deps or self.deps())

    def upload(self, key: str, body: bytes, *, bucket: str | None = None) -> ObjectNotice:
        bucket = bucket or self.config.resources.log_bucket
        etag = self.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        return ObjectNotice(bucket, key, etag, len(body))

    def outputs(self, prefix: str = "") -> dict[str, bytes]:
        bucket = self.config.resources.output_bucket
        out: dict[str, bytes] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out

    def events(self) -> list[dict[str, Any]]:
        parts = self.outputs(self.config.resources.events_prefix)
        return [row for body in parts.values() for row in pq.read_table(io.BytesIO(body)).to_pylist()]

    def bad_rows(self) -> list[dict[str, Any]]:
        bodies = self.outputs(self.config.resources.bad_prefix).values()
        return [json.loads(line) for body in bodies for line in body.decode().splitlines()]

    def entry(self, notice: ObjectNotice) -> LedgerEntry | None:
        return self.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag))

    def clear(self) -> None:
        """Forget everything processed: the outputs and the ledger entries (the logs stay)."""
        r = self.config.resources
        for key in self.outputs():
            self.s3.delete_object(Bucket=r.output_bucket, Key=key)
        for item in self.dynamodb.scan(TableName=r.ledger_table)["Items"]:
            self.dynamodb.delete_item(TableName=r.ledger_table, Key={"pk": item["pk"]})


def notify(*notices: ObjectNotice) -> dict[str, Any]:
    """One SQS message per object, as the notification queue delivers them."""
    return sqs_wrapped([s3_object_created_event(n.bucket, n.key, etag=n.etag, size=n.size or 0) for n in notices])


def upload_samples(env: Env) -> list[ObjectNotice]:
    return [env.upload(f"cloudfront/{path.name}", path.read_bytes()) for path in SAMPLES]


def page_views(lines: int, *, duplicate_every: int = 0, bad_every: int = 0) -> bytes:
    """A log of tracker page views; every ``duplicate_every``-th line sent twice, a short line every ``bad_every``."""
    builder = LogBuilder()
    for n in range(lines):
        params = {"e": "pv", "eid": f"00000000-0000-4000-8000-{n:012d}", "url": f"https://shop.example/p/{n}"}
        line = builder.line(uri_stem="/i", query=tracker_query(params), request_id=f"req{n}")
        builder.add_raw(line)
        if duplicate_every and n % duplicate_every == 0:
            builder.add_raw(line)  # the same hit logged twice: a natural duplicate
        if bad_every and n % bad_every == bad_every - 1:
            builder.add_raw("too\tfew\tfields")
    return builder.to_gzip()


def fail_puts_after(client: Any, good: int, code: str = "InternalError", status: int = 500) -> dict[str, int]:
    """Make ``client``'s PutObject fail (``code``) once ``good`` calls have succeeded; returns the call count."""
    calls = {"n": 0, "failing": 1}

    def hook(**_: Any) -> None:
        calls["n"] += 1
        if calls["failing"] and calls["n"] > good:
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "PutObject",
            )

    client.meta.events.register("before-call.s3.PutObject", hook)
    return calls


def reconciles(result: dict[str, Any]) -> bool:
    lines, parts = result["lines_read"], result["events"] + result["bad"] + result["skipped"] + result["duplicates"]
    return bool(lines == parts)


# ------------------------------------------------------------------------------ same as the backfill
def backfill_of(path: Path, dest: Path, config: PipelineConfig, mtime_s: float) -> dict[str, Any]:
    """``clickstream-etl backfill`` of one file (its mtime set to the object's LastModified)."""
    os.utime(path, (mtime_s, mtime_s))
    summary = run_backfill(plan_sources(str(path)), dest, config)
    events = [
        row
        for part in sorted((dest / "events").rglob("*.parquet"))
        for row in pq.read_table(part).to_pylist()
    ]
    return {"summary": summary, "events": events}


def _by_identity(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (dict(event) for event in events),
        key=lambda e: (e["event_id"], e["event_fingerprint"], e["collector_tstamp"]),
    )


@pytest.mark.parametrize("source", ["samples", "generated"])
def test_given_log_files_when_processed_directly_then_the_events_are_the_backfills(
    aws: None, tmp_path: Path, source: str
) -> None:
    env = Env.create()
    if source == "samples":
        files = SAMPLES
    else:
        options = GenerateOptions(files=2, lines_per_file=400, seed=7, hours=2, malformed_ratio=0.02)
        files = generate_logs(tmp_path / "generated", options)
    notices = [env.upload(f"cloudfront/{path.name}", path.read_bytes()) for path in files]
    response = env.run(notify(*notices))
    assert response["batchItemFailures"] == []
    results = response["objects"]
    assert [r["outcome"] for r in results] == ["complete"] * len(files)
    assert all(reconciles(r) for r in results), results

    for path, notice, result in zip(files, notices, results, strict=True):
        head = env.s3.head_object(Bucket=notice.bucket, Key=notice.key)
        copy = tmp_path / "copies" / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        reference = backfill_of(copy, tmp_path / f"dest-{path.name}", env.config, head["LastModified"].timestamp())
        summary = reference["summary"]
        assert (result["lines_read"], result["bad"], result["skipped"]) == (
            summary.lines_read,
            summary.bad,
            summary.skipped,
        )
        assert (result["events"], result["duplicates"]) == (summary.rows_written, summary.duplicates_dropped)
        mine = [row for body in parts_of(env, notice).values() for row in pq.read_table(io.BytesIO(body)).to_pylist()]
        assert Counter(e["event_id"] for e in mine) == Counter(e["event_id"] for e in reference["events"])
        # the canonical columns, then the same typed entity columns as the backfill's
        assert set(CANONICAL) <= set(mine[0]) and sorted(mine[0]) == sorted(reference["events"][0])
        assert any(name.startswith("contexts_") for name in mine[0])
        # Every column, etl_tstamp included (both take the file's modification time).
        assert _by_identity(mine) == _by_identity(reference["events"])

    assert len(env.bad_rows()) == sum(r["bad"] for r in results)
    entries = [env.entry(n) for n in notices]
    assert all(e is not None and e.status == "COMPLETE" and e.counts["events"] > 0 for e in entries)


def parts_of(env: Env, notice: ObjectNotice) -> dict[str, bytes]:
    """The Parquet parts written for ``notice``'s object version (its digest is in their keys)."""
    prefix = env.config.resources.events_prefix
    digest = object_digest(ObjectId(notice.bucket, notice.key, notice.etag))
    return {key: body for key, body in env.outputs(prefix).items() if PartKey.parse(key, prefix).digest == digest}


def test_given_the_written_parts_when_the_redshift_load_plans_then_it_finds_every_partition(aws: None) -> None:
    env = Env.create()
    env.run(notify(*upload_samples(env)))
    r = env.config.resources
    listing = env.s3.list_objects_v2(Bucket=r.output_bucket, Prefix=r.events_prefix)["Contents"]
    objects = [S3Object(item["Key"], item["Size"], item["ETag"].strip('"')) for item in listing]
    plan = plan_backfill(
        S3Location.parse(f"s3://{r.output_bucket}/{r.events_prefix}"), objects, {}, env.config.redshift.manifest_prefix
    )
    assert plan.ignored_keys == 0
    assert [(p.event_date, p.event_hour) for p in plan.partitions] == [("2024-11-15", h) for h in (9, 10, 11)]
    assert sorted(f.key for p in plan.partitions for f in p.files) == sorted(o.key for o in objects)
    assert all(p.action == "load" for p in plan.partitions)


# ------------------------------------------------------------------------------ idempotence
def test_given_the_same_notification_twice_then_nothing_new_is_written(aws: None) -> None:
    env = Env.create()
    notices = upload_samples(env)
    first = env.run(notify(*notices))
    written = env.outputs()
    again = env.run(notify(*notices))
    both_in_one_batch = env.run(notify(notices[0], notices[0]))
    assert [r["outcome"] for r in first["objects"]] == ["complete"] * 3
    assert [r["outcome"] for r in again["objects"] + both_in_one_batch["objects"]] == ["duplicate"] * 5
    assert again["batchItemFailures"] == both_in_one_batch["batchItemFailures"] == []
    assert env.outputs() == written  # the same keys, the same bytes


def test_given_an_object_processed_again_from_scratch_then_the_keys_and_bytes_are_identical(aws: None) -> None:
    """Reliability I5 (determinism): a reprocessed object overwrites its own outputs with the same bytes."""
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.a.gz", page_views(120, duplicate_every=7, bad_every=10))
    deps = env.deps(part_rows=25)
    env.run(notify(notice), deps)
    written = env.outputs()
    assert len([k for k in written if k.endswith(".parquet")]) > 2
    env.dynamodb.delete_item(
        TableName=env.config.resources.ledger_table,
        Key={"pk": {"S": ObjectId(notice.bucket, notice.key, notice.etag).pk}},
    )
    [result] = env.run(notify(notice), deps)["objects"]
    assert result["outcome"] == "complete" and env.outputs() == written


def test_given_two_overlapping_invocations_then_the_second_is_refused_while_the_first_holds_the_object(
    aws: None,
) -> None:
    """Reliability F07: the ledger admits one invocation; the other's message is a batch item failure."""
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.b.gz", page_views(60))
    event = notify(notice)
    during: list[dict[str, Any]] = []

    def second_invocation(**_: Any) -> None:
        if not during:  # while the first is writing its first output
            during.append(env.run(event))

    env.s3.meta.events.register("before-call.s3.PutObject", second_invocation)
    first = env.run(event)
    [refused] = during
    assert [r["outcome"] for r in refused["objects"]] == ["busy"]
    assert refused["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert [r["outcome"] for r in first["objects"]] == ["complete"] and first["batchItemFailures"] == []
    # Redelivered after the visibility timeout: the object is done by then.
    env.s3.meta.events.unregister("before-call.s3.PutObject", second_invocation)
    env.clock.advance(1800)
    assert [r["outcome"] for r in env.run(event)["objects"]] == ["duplicate"]
    assert len(env.events()) == 60


def test_given_a_busy_object_noticed_directly_then_the_invocation_fails_to_be_retried(aws: None) -> None:
    """A re-drive by the reconciler (no SQS): only a failed invocation makes Lambda retry it."""
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.c.gz", page_views(5))
    env.ledger().claim(ObjectId(notice.bucket, notice.key, notice.etag), "another-invocation", lease_ms=60_000)
    with pytest.raises(DirectRetryError) as busy:
        env.run(s3_object_created_event(notice.bucket, notice.key, etag=notice.etag))
    assert busy.value.retryable and "busy" in str(busy.value) and env.outputs() == {}


# ------------------------------------------------------------------------------ crashes and faults
def test_given_a_crash_after_some_parquet_puts_then_the_retry_converges_to_the_same_objects_and_counts(
    aws: None,
) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.d.gz", page_views(200, duplicate_every=9, bad_every=13))
    deps = env.deps(part_rows=30)
    [clean] = env.run(notify(notice), deps)["objects"]
    expected = env.outputs()
    assert clean["outcome"] == "complete" and clean["parquet_objects"] >= 4
    env.clear()

    calls = fail_puts_after(env.s3, good=3)  # a 5xx on the fourth put
    crashed = env.run(notify(notice), deps)
    assert [r["outcome"] for r in crashed["objects"]] == ["error"]
    assert crashed["batchItemFailures"] == [{"itemIdentifier": notify(notice)["Records"][0]["messageId"]}]
    partial = env.outputs()
    assert 0 < len(partial) < len(expected) and all(expected[k] == body for k, body in partial.items())
    entry = env.entry(notice)
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0  # released for the retry

    calls["failing"] = 0
    [retry] = env.run(notify(notice), deps)["objects"]
    assert retry == clean and env.outputs() == expected
    entry = env.entry(notice)
    assert entry is not None and entry.status == "COMPLETE" and entry.counts["events"] == clean["events"]


def test_given_a_write_refused_for_good_then_the_invocation_fails_and_nothing_is_marked_done(aws: None) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.e.gz", page_views(20))
    fail_puts_after(env.s3, good=0, code="AccessDenied", status=403)
    with pytest.raises(DirectWriteAccessError):
        env.run(notify(notice))
    entry = env.entry(notice)
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0


@pytest.mark.parametrize(
    ("service", "operation", "code", "status"),
    [
        ("s3", "GetObject", "SlowDown", 503),
        ("s3", "PutObject", "SlowDown", 503),
        ("dynamodb", "UpdateItem", "ProvisionedThroughputExceededException", 400),
    ],
)
def test_given_throttling_then_the_message_is_an_item_failure_and_its_redelivery_succeeds(
    aws: None, service: str, operation: str, code: str, status: int
) -> None:
    """Reliability F02/F16: a throttled object is not acknowledged; the rest of the batch goes on."""
    env = Env.create()
    throttled = env.upload("cloudfront/E1.2024-11-15-10.f.gz", page_views(15))
    fine = env.upload("cloudfront/E1.2024-11-15-11.g.gz", page_views(10))
    event = notify(throttled, fine)
    calls = {"n": 0}

    def hook(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError(
                {"Error": {"Code": code, "Message": "Slow down"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                operation,
            )

    client = env.s3 if service == "s3" else env.dynamodb
    client.meta.events.register(f"before-call.{service}.{operation}", hook)
    first = env.run(event)
    assert [r["outcome"] for r in first["objects"]] == ["error", "complete"]
    assert code in first["objects"][0]["detail"]
    assert first["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    redelivered = env.run({"Records": [event["Records"][0]]})
    assert [r["outcome"] for r in redelivered["objects"]] == ["complete"] and redelivered["batchItemFailures"] == []
    assert Counter(e["page_urlpath"].split("/")[1] for e in env.events()) == {"p": 25}


# ------------------------------------------------------------------------------ bad input
def test_given_objects_that_are_not_logs_then_they_become_bad_rows_and_the_batch_goes_on(aws: None) -> None:
    """Reliability A04/A08: binary, truncated gzip, another format, empty: bad rows or skips, never a crash."""
    env = Env.create()
    whole = page_views(2000)
    notices = [
        env.upload("cloudfront/binary.gz", bytes(range(256)) * 40),
        env.upload("cloudfront/truncated.gz", whole[: len(whole) // 2]),
        env.upload(
            "cloudfront/nginx.log", b'203.0.113.9 - - [15/Nov/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5\n' * 3
        ),
        env.upload("cloudfront/empty.gz", gzip.compress(b"", mtime=0)),
        env.upload("cloudfront/E1.2024-11-15-10.h.gz", page_views(8)),
    ]
    response = env.run(notify(*notices))
    results = response["objects"]
    assert response["batchItemFailures"] == []
    assert [r["outcome"] for r in results] == ["complete"] * 5
    assert all(reconciles(r) for r in results), results
    binary, truncated, nginx, empty, good = results
    assert binary["bad"] == 1 and binary["events"] == 0
    assert truncated["bad"] == 1 and 0 < truncated["events"] < 2000  # the lines before the break are kept
    assert nginx["bad"] == 3 and nginx["events"] == 0
    assert empty["lines_read"] == 0 and empty["parquet_objects"] == 0
    assert good["events"] == 8
    kinds = Counter(row["data"]["failure"]["kind"] for row in env.bad_rows())
    assert kinds["corrupt_compression"] == 2 and kinds["schema_mismatch"] == 3
    assert sum(kinds.values()) == sum(r["bad"] for r in results)


def test_given_notifications_of_the_pipelines_own_output_then_they_are_ignored(aws: None) -> None:
    """Reliability S05: the dataset, the bad rows and folder keys are never read as logs."""
    env = Env.create()
    r = env.config.resources
    own = [
        env.upload(f"{r.events_prefix}event_date=2024-11-15/event_hour=10/x.parquet", b"PAR1", bucket=r.output_bucket),
        env.upload(f"{r.bad_prefix}field_count/date=2024-11-15/direct-x.jsonl", b"{}\n", bucket=r.output_bucket),
        env.upload("cloudfront/", b""),
    ]
    before = env.outputs()
    response = env.run(notify(*own))
    assert [x["outcome"] for x in response["objects"]] == ["ignored"] * 3 and response["batchItemFailures"] == []
    assert env.outputs() == before
    assert env.dynamodb.scan(TableName=r.ledger_table)["Items"] == []


# ------------------------------------------------------------------------------ limits
def test_given_an_object_over_the_size_limit_then_it_is_refused_with_a_bad_row(aws: None) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.big.gz", page_views(30))
    [result] = env.run(notify(notice), env.deps(max_object_bytes=100))["objects"]
    assert result["outcome"] == "abandoned" and (result["lines_read"], result["bad"]) == (1, 1)
    [row] = env.bad_rows()
    assert row["data"]["failure"]["kind"] == "size_violation" and row["data"]["payload"]["size"] == notice.size
    assert notice.key in row["data"]["payload"]["source"]["object"]
    entry = env.entry(notice)
    assert entry is not None and entry.status == "FAILED" and "backfill" in entry.detail
    assert env.outputs(env.config.resources.events_prefix) == {}
    # Settled: a later notification is acknowledged without reading the object again.
    assert [r["outcome"] for r in env.run(notify(notice))["objects"]] == ["failed"]


def test_given_too_little_time_to_start_then_the_object_is_deferred_unclaimed(aws: None) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.late.gz", page_views(3))
    response = env.run(notify(notice), remaining_ms=env.config.stream.timeout_margin_ms - 1)
    assert [r["outcome"] for r in response["objects"]] == ["deferred"] and len(response["batchItemFailures"]) == 1
    assert env.entry(notice) is None and env.outputs() == {}


def test_given_an_object_that_runs_out_of_time_then_it_is_not_done_and_a_later_attempt_completes(aws: None) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.slow.gz", page_views(100))
    deps = env.deps(part_rows=20)
    [clean] = env.run(notify(notice), deps)["objects"]
    expected = env.outputs()
    env.clear()

    slow = {"on": True}

    def each_put_takes_a_minute(**_: Any) -> None:
        if slow["on"]:
            env.clock.advance(60)

    env.s3.meta.events.register("before-call.s3.PutObject", each_put_takes_a_minute)
    response = env.run(notify(notice), deps, remaining_ms=100_000)  # 30 s margin: out of time after the 2nd put
    assert [r["outcome"] for r in response["objects"]] == ["timed_out"] and len(response["batchItemFailures"]) == 1
    entry = env.entry(notice)
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0
    assert entry.counts["timeouts"] == 1 and len(env.outputs()) == 2

    slow["on"] = False
    [done] = env.run(notify(notice), deps)["objects"]
    assert done == clean and env.outputs() == expected


def test_given_an_object_that_always_runs_out_of_time_then_it_is_abandoned_after_the_strikes(aws: None) -> None:
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.never.gz", page_views(100))
    deps = env.deps(part_rows=20)
    env.s3.meta.events.register("before-call.s3.PutObject", lambda **_: env.clock.advance(60))
    outcomes = [env.run(notify(notice), deps, remaining_ms=100_000)["objects"][0] for _ in range(MAX_TIMEOUTS)]
    assert [r["outcome"] for r in outcomes] == ["timed_out"] * (MAX_TIMEOUTS - 1) + ["abandoned"]
    entry = env.entry(notice)
    assert entry is not None and entry.status == "FAILED" and "timeout" in entry.detail
    # The last attempt's parts are gone; one bad row names the object.
    assert env.outputs(env.config.resources.events_prefix) == {}
    [row] = env.bad_rows()
    assert row["data"]["failure"]["kind"] == "size_violation"


# ------------------------------------------------------------------------------ accounting
def test_given_duplicates_and_bad_lines_then_the_counts_reconcile_with_what_s3_holds(aws: None) -> None:
    """Reliability I1/I2/I4: lines = events + bad rows + skips + duplicates dropped, and S3 holds exactly that."""
    env = Env.create()
    notice = env.upload("cloudfront/E1.2024-11-15-10.acct.gz", page_views(90, duplicate_every=10, bad_every=15))
    [result] = env.run(notify(notice), env.deps(part_rows=16))["objects"]
    assert result["outcome"] == "complete" and reconciles(result)
    assert (result["lines_read"], result["duplicates"], result["bad"], result["skipped"]) == (2 + 90 + 9 + 6, 9, 6, 2)
    events = env.events()
    assert len(events) == result["events"] == 90
    assert len({(e["event_id"], e["event_fingerprint"]) for e in events}) == 90  # exactly once
    assert len(env.bad_rows()) == result["bad"]
    entry = env.entry(notice)
    assert entry is not None and entry.counts == {
        "lines_read": 107,
        "events": 90,
        "bad": 6,
        "skipped": 2,
        "duplicates": 9,
        "parquet_objects": result["parquet_objects"],
        "bad_objects": result["bad_objects"],
    }


def test_the_lambda_entry_point_reports_the_counts_as_metrics(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = Env.create()
    notices = upload_samples(env)
    for key, value in (
        ("LOG_BUCKET", env.config.resources.log_bucket),
        ("OUTPUT_BUCKET", env.config.resources.output_bucket),
        ("LEDGER_TABLE", env.config.resources.ledger_table),
    ):
        monkeypatch.setenv(f"CLICKSTREAM_ETL__RESOURCES__{key}", f'"{value}"')
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    direct.default_deps.cache_clear()
    direct.metrics.clear_metrics()  # what the tests that called handle() directly left in the buffer
    try:
        capsys.readouterr()
        response = direct.handler(notify(*notices), FakeLambdaContext(function_name="clickstream-etl-direct"))
    finally:
        direct.default_deps.cache_clear()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [emf] = [d for d in documents if "Lines" in d]
    assert emf["service"] == "direct"

    def total(name: str) -> int:
        value = emf[name]
        return sum(value) if isinstance(value, list) else int(value)

    results = response["objects"]
    assert total("Lines") == sum(r["lines_read"] for r in results) == 756
    assert total("Lines") == total("Events") + total("BadRows") + total("Skipped") + total("DuplicatesDropped")
    assert total("ObjectsAbandoned") == total("RetryLater") == 0
    # The footprint the cost model counts (config/prices.toml): seven metric names.
    assert len(emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]) == 7


# ------------------------------------------------------------------------------ the pure plan
def test_part_keys_round_trip_and_match_the_redshift_loads_pattern() -> None:
    key = PartKey(PartitionKey("2024-11-15", 9), source_stem("logs/E2 ünï+x.2024-11-15-09.ab.gz"), "0123abcd", 7)
    text = key.format("events/")
    assert text == "events/event_date=2024-11-15/event_hour=09/direct-E2_n_x.2024-11-15-09.ab-0123abcd-00007.parquet"
    assert PartKey.parse(text, "events/") == key
    plan = plan_backfill(S3Location.parse("s3://bucket-a/events/"), [S3Object(text, 1, "e")], {}, "m/")
    assert plan.ignored_keys == 0 and len(plan.partitions) == 1
    with pytest.raises(ValueError, match="not a direct-mode part"):
        PartKey.parse("events/event_date=2024-11-15/event_hour=09/part-00000.parquet", "events/")


_HOUR_MS = 3_600_000


@settings(max_examples=60, deadline=None)
@given(
    hours=st.lists(st.integers(min_value=0, max_value=3), max_size=200),
    max_buffered=st.integers(min_value=1, max_value=40),
)
def test_the_planner_puts_every_event_in_one_part_within_the_bound_and_cuts_deterministically(
    hours: list[int], max_buffered: int
) -> None:
    def cut() -> list[tuple[PartKey, list[int]]]:
        planner = PartPlanner("s", "d", max_buffered)
        parts = []
        for n, hour in enumerate(hours):
            part = planner.add({"collector_tstamp": 1_731_628_800_000 + hour * _HOUR_MS, "n": n})
            if part is not None:
                parts.append(part)
        parts += planner.finish()
        return [(p.key, [e["n"] for e in p.events]) for p in parts]

    parts = cut()
    assert cut() == parts
    assert sorted(n for _, ns in parts for n in ns) == list(range(len(hours)))
    assert all(0 < len(ns) <= max_buffered for _, ns in parts)
    keys = [key for key, _ in parts]
    assert len(set(keys)) == len(keys)
    for key, ns in parts:  # each part holds its own hour only, in input order
        assert {PartitionKey.of(1_731_628_800_000 + hours[n] * _HOUR_MS) for n in ns} == {key.partition}
        assert ns == sorted(ns)
    for partition in {key.partition for key in keys}:
        assert sorted(k.part for k in keys if k.partition == partition) == list(
            range(sum(k.partition == partition for k in keys))
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xy")), max_size=50))
def test_natural_duplicates_first_wins(keys: list[tuple[str, str]]) -> None:
    dedupe = NaturalDedupe()
    kept = [key for key in keys if dedupe.first({"event_id": key[0], "event_fingerprint": key[1]})]
    assert kept == list(dict.fromkeys(keys))
