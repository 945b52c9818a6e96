"""Reliability catalogue (c), load: what holds at volume, asserted without a clock.

The house rule is no timing assertions in tests: throughput (L01) and time budgets (L06) are
measured by ``benchmarks/``.  What these tests pin instead is what volume must not change:
every line accounted for, memory that does not grow with the input, request and record
sizes within Kinesis' limits, the arithmetic of packing and of PutRecords calls, listing
and resuming over many objects, and the spread of partition keys over shards.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import math
import random
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from extract.handler import continuation_event
from extract.handler import handle as extract
from extract.notifications import ObjectNotice
from extract.reconciler import ReconcileDeps, ReconcileSettings
from extract.reconciler import handle as reconcile
from extract.stage import extract_object, partition_key
from pipeline.app.local.esm import MAX_PAYLOAD_BYTES, EsmSettings, simulate
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    KinesisPutError,
    KinesisWriter,
    OutRecord,
    plan_requests,
)
from pipeline.aws.ledger import Ledger, create_table
from pipeline.formats import read_limits
from pipeline.records import RawBatch, decode_events, decode_raw, encode_event, encode_raw, event_chunk_id, pack_events
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, KinesisRecord, s3_object_created_event
from tests.functional.aws_chain import Chain, chain_config
from transform.canonicalize import Canonicalizer
from transform.handler import handle as transform
from transform.stage import LineFormats, transform_batch

MIB = 1024 * 1024
FIXED_FIELDS = 1024
"""Room a stream-1 record takes beyond its target: bucket, key, ETag and format name, which the
packer's budget leaves out (it keeps 8 KiB of the 1 MiB limit for them), and the partition key."""


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def tracker_lines(count: int, *, fields: int = 33, start: int = 0) -> tuple[str, list[str]]:
    """The ``#Fields`` header text and ``count`` distinct tracker page views (a template, filled per line).

    Event ids are all distinct; pages repeat every 1,000 lines, as a site's pages do.
    """
    builder = LogBuilder(fields=fields)
    template = builder.line(
        uri_stem="/i",
        query=tracker_query(
            {"e": "pv", "url": "https://shop.example/p/NNNNNNNN", "eid": "00000000-0000-4000-8000-NNNNNNNNNNNN"}
        ),
    )
    head, _, tail = template.partition("NNNNNNNN")
    middle, _, end = tail.partition("NNNNNNNNNNNN")
    lines = [f"{head}{n % 1000:08d}{middle}{n:012d}{end}" for n in range(start, start + count)]
    return f"#Version: 1.0\n{builder.layout.format()}\n", lines


def gzipped(header: str, lines: Sequence[str]) -> bytes:
    return gzip.compress((header + "".join(line + "\n" for line in lines)).encode("utf-8"), compresslevel=1)


def accept_puts(seen: list[list[tuple[bytes, str]]]) -> Any:
    """A ``before-call`` hook answering PutRecords as Kinesis does when all is well, recording each request."""

    def hook(params: dict[str, Any], **_: Any) -> Any:
        entries = json.loads(params["body"])["Records"]
        seen.append([(base64.b64decode(e["Data"]), e["PartitionKey"]) for e in entries])
        results = [
            {"SequenceNumber": str(len(seen) * 1000 + i), "ShardId": "shardId-000000000000"}
            for i in range(len(entries))
        ]
        body = {"FailedRecordCount": 0, "Records": results, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://kinesis.us-east-1.amazonaws.com", 200, {}, None), body

    return hook


def within_kinesis_limits(request: Sequence[tuple[bytes, str]]) -> bool:
    sizes = [len(data) + len(key.encode("utf-8")) for data, key in request]
    return (
        1 <= len(sizes) <= MAX_RECORDS_PER_CALL and sum(sizes) <= MAX_BYTES_PER_CALL and max(sizes) <= MAX_RECORD_BYTES
    )


# ------------------------------------------------------------------------------- L01, L03
@pytest.mark.slow
def test_l03_a_100k_line_object_on_moto_conserves_every_line_through_extract_and_transform(aws: None) -> None:
    """Reliability catalogue L03; also the untimed half of L01 (the same 100k-line parse and canonicalize).

    GIVEN one object of 100,000 tracker lines, 64 KiB stream-1 records, 20 records per PutRecords
    WHEN Extract ships it to a moto stream and Transform's core turns every record into events
    THEN every line reaches stream 1 once and becomes one event (I1 across both stages);
         PutRecords was called ceil(records / 20) times, each request within Kinesis' limits;
         every record is at most the target size, and each but a call's last is filled to
         95% of it at least (the packer counts 10 bytes per line for its Avro framing).
    """
    target, per_call = 64 * 1024, 20
    config = chain_config({"stream.record_target_bytes": target, "stream.put_batch_records": per_call})
    chain = Chain.create(config)
    header, lines = tracker_lines(100_000)
    notice = chain.upload("cf/E1.2024-11-15-10.large.gz", gzipped(header, lines))
    requests: list[list[int]] = []
    sent: list[bytes] = []

    def measure(params: dict[str, Any], **_: Any) -> None:
        """Sizes each request and keeps its records, then lets moto take the call (which enforces the limits)."""
        entries = json.loads(params["body"])["Records"]
        data = [base64.b64decode(e["Data"]) for e in entries]
        requests.append([len(d) + len(e["PartitionKey"].encode()) for d, e in zip(data, entries, strict=True)])
        sent.extend(data)

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", measure)
    [result] = extract(
        s3_object_created_event(notice.bucket, notice.key, etag=notice.etag), FakeLambdaContext(), chain.extract_deps()
    )["objects"]

    assert result["outcome"] == "complete"
    assert result["lines_read"] == 100_002 == result["lines_shipped"] + result["bad"] + result["skipped"]
    assert (result["lines_shipped"], result["skipped"]) == (100_000, 2)
    records = result["records"]
    assert len(requests) == math.ceil(records / per_call) and sum(map(len, requests)) == records
    assert all(len(r) <= per_call and sum(r) <= MAX_BYTES_PER_CALL for r in requests)
    assert all(size <= target + FIXED_FIELDS for request in requests for size in request)
    assert all(size > 0.95 * target for request in requests for size in request[:-1])

    batches = [decode_raw(data) for data in sent]
    assert Counter(n for b in batches for n in b.line_numbers) == Counter(range(3, 100_003))
    canonicalizer, formats = Canonicalizer(config.transform), LineFormats()
    events = bad = skipped = 0
    for batch in batches:
        out = transform_batch(batch, canonicalizer, target, formats)
        assert out.conserved
        events, bad, skipped = events + len(out.events), bad + len(out.bad), skipped + sum(out.skipped.values())
    assert (events, bad, skipped) == (100_000, 0, 0)


# ------------------------------------------------------------------------------------ L02
class GeneratedLog(io.RawIOBase):
    """A gzipped log produced while it is read: a header member, then one member of lines repeated."""

    def __init__(self, header: bytes, member_text: bytes, total_bytes: int) -> None:
        self._pending = [gzip.compress(header)]
        self._member = gzip.compress(member_text, compresslevel=1)
        self._members_left = total_bytes // len(member_text)
        self.lines = header.count(b"\n") + self._members_left * member_text.count(b"\n")
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        if not self._buffer:
            if self._pending:
                self._buffer = memoryview(self._pending.pop())
            elif self._members_left:
                self._buffer = memoryview(self._member)
                self._members_left -= 1
            else:
                return 0
        size = min(len(out), len(self._buffer))
        out[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class CountingWriter:
    """Stream 1 as counts only: keeps nothing, checks each PutRecords request against the limits."""

    def __init__(self) -> None:
        self.records = self.lines = 0

    def put(self, records: Sequence[OutRecord]) -> None:
        assert within_kinesis_limits([(r.data, r.partition_key) for r in records])
        self.records += len(records)
        self.lines += sum(len(decode_raw(r.data).lines) for r in records)


class NoBadRows:
    def write(self, rows: Sequence[Any], **_: Any) -> None:
        assert not rows


def extract_peak_allocation(total_bytes: int, member_text: bytes, header: bytes) -> tuple[int, int, int]:
    """Extract one generated object of ``total_bytes`` decompressed; (lines read, lines shipped, peak bytes)."""
    config = chain_config()
    with mock_aws():
        dynamodb = make_client("dynamodb", config.aws)
        create_table(dynamodb, config.resources.ledger_table)
        s3 = make_client("s3", config.aws)
        log = GeneratedLog(header, member_text, total_bytes)
        stubber = Stubber(s3)  # the body is the generator: nothing holds the object
        stubber.add_response(
            "get_object",
            {
                "Body": StreamingBody(io.BufferedReader(log, 1 << 16), None),
                "LastModified": datetime(2024, 11, 15, tzinfo=UTC),
            },
        )
        writer = CountingWriter()
        with stubber:
            tracemalloc.start()
            try:
                result = extract_object(
                    ObjectNotice("test-clickstream-logs", "cf/E1.2024-11-15-10.huge.gz", "e" * 32, None),
                    s3=s3,
                    writer=writer,
                    bad_sink=NoBadRows(),
                    ledger=Ledger(dynamodb, config.resources.ledger_table),
                    config=config,
                    # A cap just over the object: a reader that decoded a member twice hits it (a bad row).
                    limits=replace(read_limits(config.extract), max_decompressed_bytes=total_bytes + MIB),
                    request_id="l02",
                    remaining_ms=lambda: 900_000,
                )
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert result.outcome == "complete" and result.lines_read == log.lines
        assert writer.lines == result.lines_shipped
        return result.lines_read, result.lines_shipped, peak


@pytest.mark.slow
def test_l02_extract_streams_a_generated_object_with_peak_allocations_that_do_not_grow_with_it() -> None:
    """Reliability catalogue L02, at 8 and 48 MiB decompressed (1 GiB reads the same way, only slower).

    GIVEN a gzipped log generated while it is read (multi-member, each member over the reader's
          256 KiB output step), behind a Stubber-answered GetObject
    WHEN Extract reads, packs and ships it (stream 1 as counts only)
    THEN every line is read and shipped once, and the peak of Python allocations stays under
         32 MiB and grows by less than 2 MiB from 8 to 48 MiB of input: no full read.
    """
    header, lines = tracker_lines(4000)
    member_text = "".join(line + "\n" for line in lines).encode("utf-8")
    small = extract_peak_allocation(8 * MIB, member_text, header.encode("utf-8"))
    large = extract_peak_allocation(48 * MIB, member_text, header.encode("utf-8"))
    assert large[1] == (48 * MIB // len(member_text)) * 4000 and large[0] == large[1] + 2
    assert small[2] < 32 * MIB and large[2] < 32 * MIB
    assert large[2] - small[2] < 2 * MIB, (small, large)


# ------------------------------------------------------------------------------------ L04
def test_l04_extract_packs_lines_into_records_within_the_limit_and_unpacks_them_all_in_order(aws: None) -> None:
    """Reliability catalogue L04, stream 1 (many lines per record).

    For any line lengths up to 60 kB and any record target, every record with its partition key
    is at most the target and its fixed fields (a longer line alone in its record) and under
    1 MiB, and decoding the records gives back every line, once, in order.
    """
    chain = Chain.create(chain_config())
    seen: list[list[tuple[bytes, str]]] = []
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", accept_puts(seen))
    header = LogBuilder().to_text()
    objects = iter(range(1_000_000))

    @settings(max_examples=25, deadline=None)
    @given(
        sizes=st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=120),
        target=st.sampled_from([4096, 65_536, 262_144]),
    )
    def packs(sizes: list[int], target: int) -> None:
        shipping = replace(chain, config=chain_config({"stream.record_target_bytes": target}))
        lines = [LogBuilder().line(uri_stem="/i", query="p=" + "x" * size) for size in sizes]
        notice = chain.upload(f"cf/E1.2024-11-15-10.pack-{next(objects)}.gz", gzipped(header, lines))
        seen.clear()
        event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
        [result] = extract(event, FakeLambdaContext(), shipping.extract_deps())["objects"]
        assert result["outcome"] == "complete" and result["lines_shipped"] == len(lines)
        records = [record for request in seen for record in request]
        assert all(within_kinesis_limits(request) for request in seen)
        batches = [decode_raw(data) for data, _ in records]
        for (data, key), batch in zip(records, batches, strict=True):
            assert key == partition_key(batch)
            assert len(data) + len(key) <= target + FIXED_FIELDS or len(batch.lines) == 1
        assert [line for batch in batches for line in batch.lines] == lines
        assert [n for batch in batches for n in batch.line_numbers] == list(range(3, 3 + len(lines)))

    packs()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=300_000), max_size=60), target=st.integers(1024, 262_144))
def test_l04_stream_2_chunks_stay_within_their_target_and_decode_to_the_same_events(
    sizes: list[int], target: int
) -> None:
    """Reliability catalogue L04, stream 2: events packed as JSON lines, many per record.

    Every chunk is at most the target unless it holds one event alone (events here up to 600 kB),
    and with its partition key (the chunk id) under 1 MiB; decoding gives back every event, in order.
    """
    events = [{"event_id": f"id-{n}", "collector_tstamp": n, "page_title": "é" * size} for n, size in enumerate(sizes)]
    chunks = list(pack_events((encode_event(e) for e in events), target))
    decoded = [decode_events(chunk) for chunk in chunks]
    assert [e for chunk in decoded for e in chunk] == events
    for index, (chunk, inside) in enumerate(zip(chunks, decoded, strict=True)):
        assert len(chunk) <= target or len(inside) == 1
        assert len(chunk) + len(event_chunk_id("b" * 32, index)) <= MAX_RECORD_BYTES


def test_l04_packed_records_keep_a_shard_under_1000_records_per_second_at_its_1_mib_write_limit(aws: None) -> None:
    """Reliability catalogue L04, the per-shard arithmetic.

    A shard takes 1 MiB/s and 1000 records/s.  With the shipped record target (256 KiB), a
    shard writing at its byte limit takes 1 MiB / (smallest full record) records per second:
    single digits, so the record limit never binds; one record carries about 500 lines.
    """
    config = chain_config()
    chain = Chain.create(config)
    header, lines = tracker_lines(6000)
    notice = chain.upload("cf/E1.2024-11-15-10.rate.gz", gzipped(header, lines))
    seen: list[list[tuple[bytes, str]]] = []
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", accept_puts(seen))
    extract(
        s3_object_created_event(notice.bucket, notice.key, etag=notice.etag), FakeLambdaContext(), chain.extract_deps()
    )
    full = [len(data) + len(key) for request in seen for data, key in request[:-1]]
    assert full and min(full) > 0.95 * config.stream.record_target_bytes
    records_per_second_at_byte_limit = MIB / min(full)
    assert records_per_second_at_byte_limit < 10  # against a limit of 1000
    lines_per_record = len(lines) / sum(map(len, seen))
    assert lines_per_record > 100


# ------------------------------------------------------------------------------------ L05
class FakeShard:
    """One shard's write limits as token buckets on a fake clock: 1 MiB/s and 1000 records/s, one second of burst."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.bytes, self.records, self.at = float(MIB), 1000.0, clock.now()
        self.accepted = self.throttled = 0

    def admit(self, size: int) -> bool:
        elapsed, self.at = self.clock.now() - self.at, self.clock.now()
        self.bytes = min(float(MIB), self.bytes + elapsed * MIB)
        self.records = min(1000.0, self.records + elapsed * 1000)
        if self.bytes < size or self.records < 1:
            self.throttled += 1
            return False
        self.bytes, self.records = self.bytes - size, self.records - 1
        self.accepted += 1
        return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "lines", "fields"), [(262_144, 16_000, 33), (400, 6_000, 12)], ids=["bytes-bind", "records-bind"]
)
def test_l05_under_sustained_throttling_extract_ships_everything_with_bounded_jittered_backoff(
    aws: None, target: int, lines: int, fields: int
) -> None:
    """Reliability catalogue L05.

    GIVEN a stream-1 shard that throttles each entry beyond 1 MiB/s or 1000 records/s (token
          buckets on a fake clock that only the writer's sleeps advance), and an object several
          times what the shard takes in a second, in 256 KiB records (the byte limit binds) or
          records of one short line (the record limit binds)
    WHEN Extract ships it, Lambda retrying a failed invocation as it would
    THEN it completes in a bounded number of invocations with every line on the stream (only
         byte-identical resends beyond), the shard never over its limits, each sleep within
         its exponential cap (full jitter), and at most put_max_attempts calls per group.
    """
    config = chain_config({"stream.record_target_bytes": target})
    chain = Chain.create(config)
    stream = config.resources.raw_stream
    header, text = tracker_lines(lines, fields=fields)
    notice = chain.upload("cf/E1.2024-11-15-10.throttled.gz", gzipped(header, text))
    clock = FakeClock()
    shard = FakeShard(clock)
    clean = make_client("kinesis", config.aws)
    calls: list[int] = []

    def throttling_shard(params: dict[str, Any], **_: Any) -> Any:
        entries = json.loads(params["body"])["Records"]
        calls.append(len(entries))
        results: list[dict[str, Any]] = []
        admitted = []
        for entry in entries:
            data = base64.b64decode(entry["Data"])
            if shard.admit(len(data) + len(entry["PartitionKey"].encode())):
                admitted.append({"Data": data, "PartitionKey": entry["PartitionKey"]})
                results.append({})
            else:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
        if admitted:
            written = iter(clean.put_records(StreamName=stream, Records=admitted)["Records"])
            results = [r if r else next(written) for r in results]
        failed = sum(1 for r in results if "ErrorCode" in r)
        body = {"FailedRecordCount": failed, "Records": results, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://kinesis.us-east-1.amazonaws.com", 200, {}, None), body

    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", throttling_shard)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    writer = KinesisWriter(chain.kinesis, stream, config.stream, sleep=sleep, jitter=random.Random(5).random)
    sleeps_by_request: list[list[float]] = []

    class Groups:
        """Extract's flushes: each is one PutRecords request, retried at most put_max_attempts times."""

        stats = writer.stats

        def put(self, records: Sequence[OutRecord]) -> None:
            assert len(list(plan_requests(records))) == 1
            sleeps.clear()
            try:
                writer.put(records)
            finally:
                sleeps_by_request.append(list(sleeps))

    deps = chain.extract_deps(writer=Groups())
    event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
    outcomes: list[str] = []
    for _ in range(10):  # Lambda's retries of a failed invocation, and continuations
        try:
            [result] = extract(event, FakeLambdaContext(), deps)["objects"]
        except KinesisPutError:  # a failed invocation: Lambda retries it
            outcomes.append("failed")
            continue
        outcomes.append(result["outcome"])
        if result["outcome"] == "complete":
            break
        event = continuation_event(notice)
    assert outcomes[-1] == "complete" and len(outcomes) <= 3, outcomes

    on_stream = chain.stream_records(stream)
    shipped = Counter(n for record in on_stream for n in decode_raw(record.data).line_numbers)
    assert set(shipped) == set(range(3, 3 + lines))  # nothing lost
    by_key: dict[str, set[bytes]] = {}
    for record in on_stream:
        by_key.setdefault(record.partition_key, set()).add(record.data)
    assert all(len(data) == 1 for data in by_key.values())  # what was resent is identical
    assert shard.throttled > 0 and shard.accepted == len(on_stream)
    attempts = config.stream.put_max_attempts
    caps = [min(config.stream.put_max_delay_ms, config.stream.put_base_delay_ms * 2**n) / 1000 for n in range(attempts)]
    assert len(calls) <= len(sleeps_by_request) * attempts
    for request_sleeps in sleeps_by_request:
        assert len(request_sleeps) < attempts
        assert all(0 <= s <= cap for s, cap in zip(request_sleeps, caps, strict=False))
    every_sleep = [s for request_sleeps in sleeps_by_request for s in request_sleeps]
    assert len(set(every_sleep)) == len(every_sleep) > 5  # jittered, never a fixed schedule


# ------------------------------------------------------------------------------------ L06
@pytest.mark.slow
def test_l06_a_10000_record_batch_is_delivered_under_6_mb_and_transformed_into_valid_requests(aws: None) -> None:
    """Reliability catalogue L06, without its time budget (measured, not asserted: see benchmarks/).

    GIVEN 10,000 stream-1 records of one line each (the most a Kinesis mapping batches; the
          event would be about 10 MB, so Lambda splits it at its 6 MB payload limit)
    WHEN the ESM simulator delivers them to Transform with BatchSize 10,000
    THEN every invocation's event is under 6 MB, every record is delivered once and reported
         successful, all 10,000 events reach stream 2, and every PutRecords request Transform
         made is within Kinesis' limits.
    """
    config = chain_config()
    chain = Chain.create(config)
    header, lines = tracker_lines(10_000, fields=12)
    fields = header.splitlines()[1].removeprefix("#Fields: ")
    records = []
    for n, line in enumerate(lines):
        batch = RawBatch(
            "test-clickstream-logs",
            f"cf/E1.2024-11-15-10.{n:05d}.gz",
            f"{n:032x}",
            1_731_700_000_000,
            fields,
            (3,),
            (line,),
        )
        records.append(KinesisRecord(encode_raw(batch), partition_key(batch), str(10**20 + n)))
    seen: list[list[tuple[bytes, str]]] = []
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", accept_puts(seen))
    deps = chain.transform_deps()
    sizes: list[int] = []
    responses: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        sizes.append(len(json.dumps(event, separators=(",", ":"))))  # the payload Lambda receives
        responses.append(transform(event, context, deps))
        return responses[-1]

    outcome = simulate(records, handler, EsmSettings(batch_size=10_000, maximum_retry_attempts=0))

    assert len(outcome.invocations) >= 2 and max(sizes) <= MAX_PAYLOAD_BYTES < sum(sizes)
    assert set(outcome.deliveries.values()) == {1} and outcome.discarded == ()
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert all(within_kinesis_limits(request) for request in seen)
    events = [e for request in seen for data, _ in request for e in decode_events(data)]
    assert len(events) == len({e["event_id"] for e in events}) == 10_000
    assert chain.objects(config.resources.bad_prefix) == {}


# ------------------------------------------------------------------------------------ L07
@pytest.mark.slow
def test_l07_the_reconciler_lists_10000_objects_page_by_page_and_resumes_each_run_where_the_last_stopped(
    aws: None,
) -> None:
    """Reliability catalogue L07, the S3 listing part (a backfill over S3 listings is not built yet).

    GIVEN 10,000 log objects none of which Extract has seen, folder markers and objects outside
          the prefix (seeded through moto's S3 backend: 10,000 PutObject calls over its mock
          take a third of a minute)
    WHEN the reconciler runs with 1,000 keys per page and at most 4,000 re-drives per run
    THEN three runs stop at 4,000, 8,000 and the end, each starting after the last key the
         previous one re-drove, and every object is re-driven exactly once, in key order.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    chain = Chain.create(chain_config())
    bucket = chain.config.resources.log_bucket
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    keys = [f"cf/E1.2024-11-15-{n % 24:02d}.{n:08x}.gz" for n in range(10_000)]
    for key in keys:
        backend.put_object(bucket, key, b"x")
    for extra in ("cf/2024/", "elsewhere/E1.2024-11-15-10.gz"):
        backend.put_object(bucket, extra, b"")
    clock = FakeClock(datetime.now(UTC).timestamp() + 3600)
    ledger = chain.ledger(clock=clock.now)
    redriven: list[ObjectNotice] = []
    settings = ReconcileSettings(bucket, "cf/", max_objects=4000, min_age_ms=0, page_size=1000)
    deps = ReconcileDeps(chain.config, chain.s3, ledger, redrive=redriven.append)

    runs = [reconcile({}, FakeLambdaContext(remaining_ms=300_000, clock=clock.now), settings, deps) for _ in range(3)]

    assert [r["stopped"] for r in runs] == ["max_objects", "max_objects", "end"]
    ordered = sorted(keys)
    assert [r["started_after"] for r in runs] == ["", ordered[3999], ordered[7999]]
    assert [sum(r["redriven"].values()) for r in runs] == [4000, 4000, 2000]
    assert [n.key for n in redriven] == ordered
    assert len({n.key for n in redriven}) == 10_000 and runs[-1]["start_after"] == ""


# ------------------------------------------------------------------------------------ L08
def shard_of(key: str, ranges: list[tuple[int, int, str]]) -> str:
    """The shard Kinesis puts a partition key on: the MD5 of its UTF-8 bytes, as a 128-bit hash key."""
    hashed = int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)  # noqa: S324 - Kinesis' own mapping
    return next(shard for low, high, shard in ranges if low <= hashed <= high)


def test_l08_partition_keys_of_both_streams_spread_evenly_over_the_shards(aws: None) -> None:
    """Reliability catalogue L08.

    GIVEN a 4-shard stream on moto, and the partition keys Extract and Transform give 10,000
          stream-1 records (600 objects of a day) and their 40,000 stream-2 chunks
    WHEN each key is mapped to the shard whose hash-key range holds its MD5 (checked against
         where moto really puts a sample)
    THEN no shard gets more than 1.15 times the records of the least loaded one, on either stream.
    """
    config = chain_config()
    chain = Chain.create(config, shards=4)
    stream = config.resources.raw_stream
    shards = chain.kinesis.list_shards(StreamName=stream)["Shards"]
    ranges = [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"])
        for s in shards
    ]
    assert len(ranges) == 4
    raw_keys: list[str] = []
    for obj in range(600):
        key, etag = f"cf/E1.2024-11-15-{obj % 24:02d}.{obj:08x}.gz", hashlib.sha256(str(obj).encode()).hexdigest()[:32]
        for first in range(3, 3 + 17 * 500, 500)[: 10_000 // 600 + (obj < 10_000 % 600)]:
            raw_keys.append(partition_key(RawBatch("test-clickstream-logs", key, etag, 0, "", (first,), ("x",))))
    assert len(raw_keys) == 10_000
    chunk_keys = [event_chunk_id(key, index) for key in raw_keys for index in range(4)]

    sample = raw_keys[:250] + chunk_keys[:250]
    placed = chain.kinesis.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": k} for k in sample])
    assert [r["ShardId"] for r in placed["Records"]] == [shard_of(k, ranges) for k in sample]
    for keys in (raw_keys, chunk_keys):
        load = Counter(shard_of(k, ranges) for k in keys)
        assert len(load) == 4 and max(load.values()) / min(load.values()) < 1.15, load
