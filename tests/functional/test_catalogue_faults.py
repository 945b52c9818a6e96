"""Reliability catalogue (b), faults: the expectations the stage tests did not pin yet.

Each test names its catalogue ID.  Faults are injected the ways reliability.md section 5
lists: botocore ``before-call`` hooks on moto-backed clients (per-entry PutRecords failures,
whole-call errors), the ESM simulator for Lambda's retries, and injected clocks and sleeps,
so nothing here waits or times anything.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from extract.handler import handle as extract
from pipeline.app.backfill import SUMMARY_FILE, plan_sources, run_backfill
from pipeline.app.local.esm import simulate
from pipeline.app.local.runtime import esm_settings
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    KinesisAccessError,
    KinesisPutError,
    KinesisWriter,
    OutRecord,
)
from pipeline.aws.ledger import ObjectId
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.generate import GenerateOptions, generate_logs
from pipeline.testing.lambda_events import FakeLambdaContext, s3_object_created_event
from pipeline.topology import stream_mappings
from tests.functional.aws_chain import Chain, chain_config
from transform.handler import handle as transform

SMALL_GROUPS = {"stream.record_target_bytes": 2048, "stream.put_batch_records": 2}
PutRecordsHook = Callable[..., Any]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def log_text(lines: int, *, page: str = "p") -> bytes:
    builder = LogBuilder()
    for n in range(lines):
        builder.add(uri_stem="/i", query=tracker_query({"e": "pv", "url": f"https://shop.example/{page}/{n}"}))
    return builder.to_gzip()


def event_for(notice: Any) -> dict[str, Any]:
    return s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)


def object_id(notice: Any) -> ObjectId:
    return ObjectId(notice.bucket, notice.key, notice.etag)


def shipped_lines(chain: Chain) -> Counter[tuple[str, int]]:
    return Counter((b.key, n) for b in chain.raw_batches() for n in b.line_numbers)


def put_records_response(results: list[dict[str, Any]]) -> tuple[AWSResponse, dict[str, Any]]:
    """What a ``before-call`` hook returns instead of calling moto: Kinesis's HTTP 200 with per-entry results."""
    failed = sum(1 for r in results if "ErrorCode" in r)
    body = {"FailedRecordCount": failed, "Records": results, "ResponseMetadata": {"HTTPStatusCode": 200}}
    return AWSResponse("https://kinesis.us-east-1.amazonaws.com", 200, {}, None), body


def failing_calls(times: int, fault: Callable[[], Exception]) -> tuple[PutRecordsHook, dict[str, int]]:
    """A ``before-call`` hook raising ``fault()`` on the first ``times`` PutRecords calls, then passing to moto."""
    calls = {"n": 0}

    def hook(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] <= times:
            raise fault()

    return hook, calls


def client_error(code: str, status: int = 400) -> Callable[[], ClientError]:
    return lambda: ClientError(
        {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords"
    )


# ------------------------------------------------------------------------------------- F01
def test_f01_an_entry_refused_on_every_attempt_is_resent_alone_then_the_object_stays_unacknowledged(
    aws: None,
) -> None:
    """Reliability catalogue F01.

    GIVEN Kinesis accepting every entry of Extract's PutRecords but one, which it refuses
          (ProvisionedThroughputExceededException) on every attempt
    WHEN Extract ships the object (stream.put_max_attempts = 5, jitter from a seeded generator)
    THEN only the refused entry is resent, four times, after sleeps that grow exponentially under
         full jitter; then the invocation fails with KinesisPutError, the accepted entries are on
         the stream once each, the object is not COMPLETE and its lease is released; a retry
         without the fault ships every line.
    """
    config = chain_config({**SMALL_GROUPS, "stream.put_max_attempts": 5})
    chain = Chain.create(config)
    stream = config.resources.raw_stream
    notice = chain.upload("cf/refused.gz", log_text(12))
    clean = make_client("kinesis", config.aws)  # no hook: what the fault accepts really reaches moto
    calls: list[list[str]] = []
    refused: set[str] = set()

    def some_entries_refused(params: dict[str, Any], **_: Any) -> Any:
        records = json.loads(params["body"])["Records"]
        calls.append([r["PartitionKey"] for r in records])
        if not refused:
            refused.add(records[1]["PartitionKey"])
        results = []
        for record in records:
            if record["PartitionKey"] in refused:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            else:
                entry = {"Data": base64.b64decode(record["Data"]), "PartitionKey": record["PartitionKey"]}
                results.append(clean.put_records(StreamName=stream, Records=[entry])["Records"][0])
        return put_records_response(results)

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", some_entries_refused)
    sleeps: list[float] = []
    writer = KinesisWriter(chain.kinesis, stream, config.stream, sleep=sleeps.append, jitter=random.Random(3).random)
    with pytest.raises(KinesisPutError, match="after 5 attempts"):
        extract(event_for(notice), FakeLambdaContext(), chain.extract_deps(writer=writer))

    [bad] = refused
    assert len(calls[0]) == 2 and calls[1:] == [[bad]] * 4  # the accepted entry is never resent
    caps = [min(config.stream.put_max_delay_ms, config.stream.put_base_delay_ms * 2**n) / 1000 for n in range(4)]
    assert len(sleeps) == 4 and all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))
    assert len(set(sleeps)) == 4  # jittered, not a fixed schedule
    on_stream = Counter(r.partition_key for r in chain.stream_records(stream))
    assert on_stream == {key: 1 for key in calls[0] if key != bad}
    entry = chain.ledger().get(object_id(notice))
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0

    chain.kinesis.meta.events.unregister("before-call.kinesis.PutRecords", some_entries_refused)
    [retry] = extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())["objects"]
    assert retry["outcome"] == "complete"
    assert {n for _, n in shipped_lines(chain)} == set(range(3, 15))  # nothing lost
    # What the failed attempt had put is put again by the retry, byte for byte: the sinks dedupe it.
    by_key: dict[str, set[bytes]] = {}
    for record in chain.stream_records(stream):
        by_key.setdefault(record.partition_key, set()).add(record.data)
    assert all(len(data) == 1 for data in by_key.values())


# ------------------------------------------------------------------------------------- F02
WHOLE_CALL_FAULTS: dict[str, Callable[[], Exception]] = {
    "internal-failure-500": client_error("InternalFailure", 500),
    "service-unavailable-503": client_error("ServiceUnavailable", 503),
    "throttling-400": client_error("ThrottlingException"),
    "read-timeout": lambda: ReadTimeoutError(endpoint_url="https://kinesis.us-east-1.amazonaws.com"),
    "connect-timeout": lambda: ConnectTimeoutError(endpoint_url="https://kinesis.us-east-1.amazonaws.com"),
    "endpoint-unreachable": lambda: EndpointConnectionError(endpoint_url="https://kinesis.us-east-1.amazonaws.com"),
}


@pytest.mark.parametrize("fault", list(WHOLE_CALL_FAULTS))
def test_f02_whole_call_faults_are_retried_within_the_bound_then_raise_without_acknowledging(
    aws: None, fault: str
) -> None:
    """Reliability catalogue F02: 5xx, throttling, read and connect timeouts, an unreachable endpoint.

    GIVEN PutRecords failing whole with ``fault``
    WHEN it keeps failing THEN Extract gives up after stream.put_max_attempts calls (3) with
         KinesisPutError, nothing on the stream, the object unacknowledged and released;
    WHEN it then fails twice more and recovers THEN the retry completes after two backoffs.
    """
    config = chain_config({"stream.put_max_attempts": 3})
    chain = Chain.create(config)
    notice = chain.upload(f"cf/{fault}.gz", log_text(5))
    hook, calls = failing_calls(3 + 2, WHOLE_CALL_FAULTS[fault])
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)

    with pytest.raises(KinesisPutError, match="after 3 attempts"):
        extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())
    assert calls["n"] == 3 and len(chain.sleeps) == 2
    assert chain.stream_records(config.resources.raw_stream) == []
    entry = chain.ledger().get(object_id(notice))
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0

    chain.sleeps.clear()
    [retry] = extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())["objects"]
    assert retry["outcome"] == "complete" and calls["n"] == 3 + 3 and len(chain.sleeps) == 2
    assert sorted(n for _, n in shipped_lines(chain)) == list(range(3, 8))


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_f02_every_client_gets_the_configured_botocore_retry_mode_attempts_and_timeouts(mode: str) -> None:
    """Reliability catalogue F02: botocore's own retries, under the writer's, come from ``[aws]``.

    ``aws.max_attempts`` counts every attempt, the first included (botocore's ``total_max_attempts``).
    """
    config = chain_config(
        {"aws.retry_mode": mode, "aws.max_attempts": 4, "aws.connect_timeout_ms": 1500, "aws.read_timeout_ms": 7000}
    )
    for service in ("kinesis", "s3", "dynamodb"):
        client = make_client(service, config.aws)
        assert client.meta.config.retries == {"mode": mode, "total_max_attempts": 4}, service
        assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (1.5, 7.0)


# ------------------------------------------------------------------------------------- F03
@pytest.mark.parametrize(
    "code",
    ["KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException",
     "KMSOptInRequired"],
)  # fmt: skip
def test_f03_a_kms_key_that_cannot_be_used_fails_at_once_without_a_retry_loop(aws: None, code: str) -> None:
    """Reliability catalogue F03: a denied, disabled, missing or pending key is terminal.

    One PutRecords call, no sleep, KinesisAccessError; the object is released, not COMPLETE.
    """
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/kms-key.gz", log_text(4))
    hook, calls = failing_calls(100, client_error(code))
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    with pytest.raises(KinesisAccessError, match=code):
        extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())
    assert calls["n"] == 1 and chain.sleeps == []
    entry = chain.ledger().get(object_id(notice))
    assert entry is not None and entry.status == "IN_PROGRESS" and entry.lease_until == 0


def test_f03_kms_throttling_is_retried_with_backoff_and_the_object_completes(aws: None) -> None:
    """Reliability catalogue F03: KMSThrottlingException is transient."""
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/kms-throttled.gz", log_text(4))
    hook, calls = failing_calls(2, client_error("KMSThrottlingException"))
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", hook)
    [result] = extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())["objects"]
    assert result["outcome"] == "complete" and result["lines_shipped"] == 4
    assert calls["n"] == 3 and len(chain.sleeps) == 2


# ------------------------------------------------------------------------------------- F04
def test_f04_moto_accepts_every_planned_request_for_600_records_of_12_mb_with_non_ascii_keys(aws: None) -> None:
    """Reliability catalogue F04: moto refuses more than 500 records, 5 MiB per call or 1 MiB per record.

    GIVEN 600 records of 20 kB under non-ASCII partition keys, and one of exactly 1 MiB with its key's UTF-8 bytes
    WHEN the writer puts them on a moto stream
    THEN every call is within the limits, and the stream holds every record once, in order.
    """
    config = chain_config()
    chain = Chain.create(config)
    stream = config.resources.raw_stream
    records = [OutRecord(bytes([index % 251]) * 20_000, f"clé-{index}-日本") for index in range(600)]
    key = "ключ-max"
    records.insert(300, OutRecord(b"m" * (MAX_RECORD_BYTES - len(key.encode("utf-8"))), key))
    requests: list[tuple[int, int]] = []

    def measure(params: dict[str, Any], **_: Any) -> None:
        entries = json.loads(params["body"])["Records"]
        sizes = [len(base64.b64decode(e["Data"])) + len(e["PartitionKey"].encode("utf-8")) for e in entries]
        assert max(sizes) <= MAX_RECORD_BYTES
        requests.append((len(entries), sum(sizes)))

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", measure)
    writer = KinesisWriter(chain.kinesis, stream, config.stream, sleep=chain.sleeps.append)
    writer.put(records)

    assert len(requests) >= 3 and sum(n for n, _ in requests) == len(records)
    assert all(n <= MAX_RECORDS_PER_CALL and size <= MAX_BYTES_PER_CALL for n, size in requests)
    assert writer.stats.retried_entries == 0 and chain.sleeps == []
    on_stream = [(r.data, r.partition_key) for r in chain.stream_records(stream)]
    assert on_stream == [(r.data, r.partition_key) for r in records]


# ------------------------------------------------------------------------------------- F09
def test_f09_an_overwritten_key_is_a_new_object_and_a_version_overwritten_unread_is_not_read(aws: None) -> None:
    """Reliability catalogue F09, on a versioned bucket.

    GIVEN key A read, then overwritten with new content; and key B overwritten before its first
          version's notification is handled
    WHEN every notification is handled (B's late one first)
    THEN A's two versions are two ledger entries (the ETag is part of the key), both read in full;
         B's first version is recorded as not read (the newest wins), its second is read;
         a repeated notification of any version ships nothing.
    """
    config = chain_config()
    chain = Chain.create(config)
    chain.s3.put_bucket_versioning(Bucket=config.resources.log_bucket, VersioningConfiguration={"Status": "Enabled"})
    a1 = chain.upload("cf/a.gz", log_text(3, page="a1"))
    [first] = extract(event_for(a1), FakeLambdaContext(), chain.extract_deps())["objects"]
    a2 = chain.upload("cf/a.gz", log_text(5, page="a2"))
    b1 = chain.upload("cf/b.gz", log_text(4, page="b1"))
    b2 = chain.upload("cf/b.gz", log_text(6, page="b2"))
    assert len({a1.etag, a2.etag}) == 2 and len({b1.etag, b2.etag}) == 2
    events = [event_for(n) for n in (b1, a2, b2)]
    results = [r for e in events for r in extract(e, FakeLambdaContext(), chain.extract_deps())["objects"]]

    assert [first["outcome"], *(r["outcome"] for r in results)] == ["complete", "ignored", "complete", "complete"]
    shipped = Counter((b.key, b.etag) for b in chain.raw_batches() for _ in b.lines)
    assert shipped == {("cf/a.gz", a1.etag): 3, ("cf/a.gz", a2.etag): 5, ("cf/b.gz", b2.etag): 6}
    ledger = chain.ledger()
    stale = ledger.get(object_id(b1))
    assert stale is not None and stale.status == "COMPLETE" and "overwritten" in stale.detail
    assert all((e := ledger.get(object_id(n))) is not None and e.status == "COMPLETE" for n in (a1, a2, b2))

    again = [
        r for n in (a1, a2, b1, b2) for r in extract(event_for(n), FakeLambdaContext(), chain.extract_deps())["objects"]
    ]
    assert [r["outcome"] for r in again] == ["duplicate"] * 4
    assert Counter((b.key, b.etag) for b in chain.raw_batches() for _ in b.lines) == shipped


# ------------------------------------------------------------------------------------- F12
def test_f12_a_batch_that_always_fails_ends_on_the_failure_queue_after_bounded_retries_under_the_deployed_mapping(
    aws: None,
) -> None:
    """Reliability catalogue F12.

    GIVEN stream-1 records and a Transform whose stream 2 is down for good
    WHEN Lambda's event source mapping delivers them under Transform's deployed settings
         (pipeline.topology: bisect on, 5 retries, ReportBatchItemFailures)
    THEN every invocation fails (BatchProcessingError: a function error), the batch is bisected
         down to single records, each tried 1 + 5 times, then discarded to the on-failure
         destination with its shard and sequence range only; the shard moves on (no block).
    """
    config = chain_config({"stream.record_target_bytes": 2048})
    chain = Chain.create(config)
    notice = chain.upload("cf/E1.2024-11-15-10.all-fail.gz", log_text(20))
    extract(event_for(notice), FakeLambdaContext(), chain.extract_deps())
    records = chain.stream_records(config.resources.raw_stream)
    assert 3 <= len(records) <= 10

    class StreamTwoDown:
        def put(self, records: Any) -> None:
            raise KinesisPutError("stream 2 unavailable")

    deps = chain.transform_deps(writer=StreamTwoDown())
    mapping = stream_mappings(config)["transform"]
    outcome = simulate(records, lambda event, context: transform(event, context, deps), esm_settings(mapping))

    assert {i.result for i in outcome.invocations} == {"function_error"}
    assert all("BatchProcessingError" in (i.error or "") for i in outcome.invocations)
    sequence_numbers = tuple(r.sequence_number for r in records)
    assert outcome.discarded_sequence_numbers == sequence_numbers and not outcome.blocked
    assert outcome.checkpoint == sequence_numbers[-1]
    for batch in outcome.discarded:
        assert batch.batch_size == 1 and batch.approximate_invoke_count == 1 + mapping.maximum_retry_attempts
        message = batch.to_destination_record()
        assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
        info = message["KinesisBatchInfo"]
        assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
            records[0].shard_id,
            batch.start_sequence_number,
            batch.start_sequence_number,
        )
        assert base64.b64encode(records[0].data).decode()[:40] not in json.dumps(message)
    # Bounded: splitting costs no retries, so each record ends after its own 1 + 5 attempts.
    singles = [i for i in outcome.invocations if i.size == 1]
    assert len(singles) == len(records) * (1 + mapping.maximum_retry_attempts)
    assert len(outcome.invocations) < 2 * len(singles)


# ------------------------------------------------------------------------------------- F20
class Killed(BaseException):
    """The backfill process dies: nothing of ours runs after this."""


class DiesWhileWritingPartitions:
    """A Progress that kills the run once ``after`` partitions are written."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.phase_name = ""

    def phase(self, name: str, total: int, unit: str) -> None:
        self.phase_name = name

    def update(self, done: int, note: str = "") -> None:
        if self.phase_name == "writing partitions" and done >= self.after:
            raise Killed

    def close(self) -> None:
        pass


def dataset_files(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted((dest / "events").rglob("*.parquet"))}


def test_f20_a_backfill_killed_mid_write_then_rerun_and_a_replayed_window_add_no_rows(tmp_path: Path) -> None:
    """Reliability catalogue F20.

    GIVEN logs over three hours, and a backfill killed after writing its first partition
    WHEN it is run again, and then over the same (already processed) window, resumed and in full
    THEN each gives the dataset an uninterrupted run gives, file for file and byte for byte,
         with one row per natural event and nothing left in staging.
    """
    logs = tmp_path / "logs"
    generate_logs(logs, GenerateOptions(files=3, lines_per_file=300, seed=11, hours=3))
    sources = plan_sources(str(logs))
    config = chain_config()
    clean, dest = tmp_path / "clean", tmp_path / "dest"
    run_backfill(sources, clean, config)
    expected = dataset_files(clean)
    assert len(expected) == 3

    with pytest.raises(Killed):
        run_backfill(sources, dest, config, progress=DiesWhileWritingPartitions(after=1))
    assert 1 <= len(dataset_files(dest)) < 3 and not (dest / SUMMARY_FILE).exists()

    rerun = run_backfill(sources, dest, config)
    assert dataset_files(dest) == expected and rerun.failed_files == 0
    # the same window again: the resume ledger skips every file, and nothing changes
    again = run_backfill(sources, dest, config)
    assert dataset_files(dest) == expected and (again.skipped_files, again.rows_written) == (3, 0)
    # and replayed in full (--no-resume): every file is read again, and the dataset is the same
    replay = run_backfill(sources, dest, config, resume=False)
    assert dataset_files(dest) == expected and replay.rows_written == rerun.rows_written
    rows = ds.dataset(dest / "events", partitioning="hive").to_table(columns=["event_id", "event_fingerprint"])
    keys = list(zip(*(rows.column(c).to_pylist() for c in ("event_id", "event_fingerprint")), strict=True))
    assert len(keys) == len(set(keys)) == rerun.rows_written
    assert not (dest / "_staging").exists()
