"""``clickstream-etl reconcile`` on moto: lost notifications re-driven by date range (F08), Firehose's
processing-failed records put back on stream 2 exactly once, and a dry run that writes nothing (F20)."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from extract.handler import handle as extract
from extract.notifications import ObjectNotice
from extract.reconciler import invoke_extract, redrive_event
from pipeline.app.commands import reconcile as command
from pipeline.app.local.firehose import FirehoseEmulator
from pipeline.app.reconcile import (
    HourWindow,
    ReconcileDeps,
    firehose_error_prefix,
    reconcile,
    redrive_partition_key,
)
from pipeline.aws.clients import make_client
from pipeline.aws.ledger import ObjectId
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext, kinesis_event, s3_object_created_event
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.aws_chain import page_view_log as log
from transform.handler import handle as transform

WRITES = {
    "PutRecords",
    "PutRecord",
    "Invoke",
    "InvokeAsync",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "PutObjectTagging",
}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


class Calls:
    """Every boto3 operation made through the clients it is attached to, by name."""

    def __init__(self, *clients: Any) -> None:
        self.names: list[str] = []
        for client in clients:
            client.meta.events.register("before-call", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)

    @property
    def writes(self) -> list[str]:
        return [name for name in self.names if name in WRITES]


class Setup:
    def __init__(self) -> None:
        self.chain = Chain.create(chain_config())
        # S3 stamps LastModified with the real time, after the fake clock starts: keep the clock ahead
        self.clock = FakeClock(time.time() + 5)
        self.ledger = self.chain.ledger(clock=self.clock.now)
        self.redriven: list[ObjectNotice] = []

    def deps(self, *, firehose: bool = False, redrive: Any = None) -> ReconcileDeps:
        writer = self.chain.writer(self.chain.config.resources.events_stream) if firehose else None
        return ReconcileDeps(self.chain.config, self.chain.s3, self.ledger, redrive or self.redriven.append, writer)

    def extract(self, notice: ObjectNotice) -> dict[str, Any]:
        event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
        [result] = extract(event, FakeLambdaContext(clock=self.clock.now), self.chain.extract_deps(ledger=self.ledger))[
            "objects"
        ]
        return dict(result)


WINDOW = HourWindow.parse("2026-01-01", "2026-01-02")


def test_reconcile_redrives_the_lost_object_of_the_range_and_leaves_the_complete_one_alone(aws: None) -> None:
    """Reliability catalogue F08 by date range.

    GIVEN under cf/: an object whose notification was lost (in S3, no ledger entry), a COMPLETE one,
          a FAILED one, one named for an hour outside the window, one of another distribution,
          and a key that is not a CloudFront name
    WHEN reconcile runs over 2026-01-01 for distribution E2EXAMPLE
    THEN it re-drives the lost object only (which Extract then completes) and reports the FAILED
         one; a second run re-drives nothing.
    """
    setup = Setup()
    chain = setup.chain
    lost = chain.upload("cf/E2EXAMPLE.2026-01-01-05.aaaa1111.gz", log(3))
    done = chain.upload("cf/E2EXAMPLE.2026-01-01-23.bbbb2222.gz", log(2))
    failed = chain.upload("cf/E2EXAMPLE.2026-01-01-00.cccc3333.gz", log(1))
    chain.upload("cf/E2EXAMPLE.2026-01-02-00.dddd4444.gz", log(1))  # until is exclusive
    chain.upload("cf/E2EXAMPLE.2025-12-31-23.eeee5555.gz", log(1))
    chain.upload("cf/E3OTHER.2026-01-01-05.ffff6666.gz", log(1))
    chain.upload("cf/notes.txt", b"not a log")
    assert setup.extract(done)["outcome"] == "complete"
    claim = setup.ledger.claim(ObjectId(failed.bucket, failed.key, failed.etag), "someone", lease_ms=1000)
    setup.ledger.complete(claim, {}, status="FAILED", detail="corrupt")  # type: ignore[arg-type]

    summary = reconcile(setup.deps(), WINDOW, prefix="cf/", distribution="E2EXAMPLE")

    assert [n.key for n in setup.redriven] == [lost.key]
    assert setup.redriven[0].etag == lost.etag
    assert summary.objects == {"complete": 1, "failed": 1, "unrecorded": 1}
    assert summary.left == [{"uri": f"s3://{failed.bucket}/{failed.key}", "state": "failed"}]
    [result] = extract(
        redrive_event(setup.redriven[0]),
        FakeLambdaContext(clock=setup.clock.now),
        chain.extract_deps(ledger=setup.ledger),
    )["objects"]
    assert result["outcome"] == "complete" and result["lines_read"] >= 3
    setup.redriven.clear()
    again = reconcile(setup.deps(), WINDOW, prefix="cf/", distribution="E2EXAMPLE")
    assert setup.redriven == [] and again.objects == {"complete": 2, "failed": 1}


def test_an_object_younger_than_min_age_is_left_to_its_notification(aws: None) -> None:
    setup = Setup()
    setup.chain.upload("cf/E2EXAMPLE.2026-01-01-05.aaaa1111.gz", log(1))
    summary = reconcile(setup.deps(), WINDOW, min_age_ms=3_600_000)
    assert setup.redriven == [] and summary.objects == {"too_young": 1}


def test_the_deployed_redrive_invokes_extract_asynchronously_once_per_object(aws: None) -> None:
    """The command's wiring: an asynchronous Invoke of the Extract function, the reconciler's event."""
    setup = Setup()
    lost = setup.chain.upload("cf/E2EXAMPLE.2026-01-01-05.aaaa1111.gz", log(1))
    lambda_client = make_client("lambda", setup.chain.config.aws)
    payloads: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        payloads.append({"type": params["InvocationType"], "payload": json.loads(params["Payload"])})

    lambda_client.meta.events.register("provide-client-params.lambda.Invoke", capture)
    with pytest.raises(Exception, match="Function not found"):  # moto has no function: the call is made, refused
        reconcile(setup.deps(redrive=invoke_extract(lambda_client, "clickstream-etl-extract")), WINDOW)
    assert payloads == [{"type": "Event", "payload": redrive_event(lost)}]


def _firehose_failures(setup: Setup) -> tuple[list[bytes], list[bytes]]:
    """Events on stream 2 (Extract + Transform on moto), then Firehose whose transformation always
    fails: every record lands under processing-failed/ with its original data.  Returns the
    stream-2 event records and a record that is not ours, also put on stream 2."""
    chain = setup.chain
    config = chain.config
    setup.extract(chain.upload("cf/E2EXAMPLE.2026-01-01-05.aaaa1111.gz", log(5)))
    raw = chain.stream_records(config.resources.raw_stream)
    transform(kinesis_event(raw), FakeLambdaContext(), chain.transform_deps())
    originals = [r.data for r in chain.stream_records(config.resources.events_stream)]
    chain.kinesis.put_record(StreamName=config.resources.events_stream, Data=b"not ours", PartitionKey="x")

    def crashing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("transformation down")

    emulator = FirehoseEmulator(
        chain.kinesis,
        chain.s3,
        config.resources.events_stream,
        config.resources.output_bucket,
        config.resources.firehose_prefix,
        firehose_error_prefix(config),
        crashing,
        retries=0,
    )
    drained = emulator.drain()
    assert drained.failed == len(originals) + 1 and drained.error_objects
    return originals, [b"not ours"]


def test_firehose_processing_failed_records_are_put_back_on_stream_2_exactly_once(aws: None) -> None:
    """GIVEN records Firehose's transformation failed (processing-failed/, original data kept) and a COPY
    failure manifest under errors/
    WHEN reconcile runs twice
    THEN the first run puts each canonical-event record back on stream 2 once, byte for byte, leaves the
         record that is not ours in place (counted) and reports the COPY failure for the loader; the
         second run puts nothing (the error object is COMPLETE in the ledger)."""
    setup = Setup()
    chain = setup.chain
    events_stream = chain.config.resources.events_stream
    originals, not_ours = _firehose_failures(setup)
    copy_manifest = firehose_error_prefix(chain.config) + "manifests/2026/01/01/05/copy-failed-manifest"
    chain.s3.put_object(Bucket=chain.config.resources.output_bucket, Key=copy_manifest, Body=b"{}")
    before = len(chain.stream_records(events_stream))

    summary = reconcile(setup.deps(firehose=True), WINDOW)

    after = chain.stream_records(events_stream)
    redriven = after[before:]
    assert sorted(r.data for r in redriven) == sorted(originals)
    assert all(r.partition_key == redrive_partition_key(r.data) for r in redriven)
    assert summary.records_redriven == len(originals) and summary.records_not_events == len(not_ours)
    assert summary.copy_failures == [f"s3://{chain.config.resources.output_bucket}/{copy_manifest}"]
    assert summary.error_objects["redrive"] >= 1

    again = reconcile(setup.deps(firehose=True), WINDOW)
    assert len(chain.stream_records(events_stream)) == len(after)
    assert again.records_redriven == 0 and set(again.error_objects) == {"redriven", "copy_failed"}


def test_a_dry_run_lists_only_and_makes_no_write_or_invoke_call(aws: None) -> None:
    setup = Setup()
    chain = setup.chain
    _firehose_failures(setup)
    lost = chain.upload("cf/E2EXAMPLE.2026-01-01-06.bbbb2222.gz", log(1))
    before = len(chain.stream_records(chain.config.resources.events_stream))
    lambda_client = make_client("lambda", chain.config.aws)
    calls = Calls(chain.s3, chain.kinesis, chain.dynamodb, lambda_client)

    deps = setup.deps(firehose=True, redrive=invoke_extract(lambda_client, "clickstream-etl-extract"))
    summary = reconcile(deps, WINDOW, dry_run=True)

    assert calls.writes == []
    assert set(calls.names) <= {"ListObjectsV2", "BatchGetItem", "GetObject"}
    assert summary.redriven == [f"s3://{lost.bucket}/{lost.key}"]
    assert summary.records_redriven > 0  # would be
    assert len(chain.stream_records(chain.config.resources.events_stream)) == before


def test_the_command_prints_json_and_exits_1_when_an_object_is_failed(aws: None) -> None:
    setup = Setup()
    failed = setup.chain.upload("cf/E2EXAMPLE.2026-01-01-00.cccc3333.gz", log(1))
    setup.chain.upload("cf/E2EXAMPLE.2026-01-01-01.aaaa1111.gz", log(1))
    claim = setup.ledger.claim(ObjectId(failed.bucket, failed.key, failed.etag), "someone", lease_ms=1000)
    setup.ledger.complete(claim, {}, status="FAILED")  # type: ignore[arg-type]
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--since", "2026-01-01", "--until", "2026-01-01-12", "--min-age", "0", "--json"])
    out = io.StringIO()
    assert command.run(args, deps=setup.deps(), out=out) == 1
    report = json.loads(out.getvalue())
    assert report["since"] == "2026-01-01-00" and report["until"] == "2026-01-01-12"
    assert report["objects"] == {"failed": 1, "unrecorded": 1}
    assert len(setup.redriven) == 1


def test_the_command_refuses_a_window_that_ends_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--since", "2026-01-02", "--until", "2026-01-01"])
    assert command.run(args, deps=object()) == 2  # type: ignore[arg-type]
    assert "must be before" in capsys.readouterr().err


# ------------------------------------------------------------------ replay (issue 12, item 4)
def _replay_args(*extra: str) -> argparse.Namespace:
    from pipeline.app.commands import replay as replay_command

    parser = argparse.ArgumentParser()
    replay_command.add_arguments(parser)
    return parser.parse_args(
        ["s3://test-clickstream-logs/cf/", "--since", "2026-01-01", "--until", "2026-01-02", *extra]
    )


def test_replay_invokes_extract_per_object_paced_and_reconciles_with_the_ledger(aws: None) -> None:
    """GIVEN three objects of the range (one COMPLETE already) and one outside it
    WHEN replay runs with Extract run in-process for each invocation (run-local's way) on a fake clock
    THEN Extract is invoked once per pending object, paced by the bytes budget, and the ledger
    reconciliation finds them all COMPLETE (exit 0)."""
    from pipeline.app.commands import replay as replay_command
    from pipeline.app.replay import ReplayDeps

    setup = Setup()
    chain = setup.chain
    keys = [chain.upload(f"cf/E2EXAMPLE.2026-01-01-0{h}.aaaa{h}.gz", log(4)) for h in range(3)]
    chain.upload("cf/E2EXAMPLE.2026-01-03-00.zzzz.gz", log(1))
    assert setup.extract(keys[0])["outcome"] == "complete"
    invoked: list[str] = []

    def run_extract(notice: ObjectNotice) -> None:  # the deployed Invoke, emulated in-process
        invoked.append(notice.key)
        extract(
            redrive_event(notice), FakeLambdaContext(clock=setup.clock.now), chain.extract_deps(ledger=setup.ledger)
        )

    listing = setup.deps(redrive=run_extract)
    replay_deps = ReplayDeps(setup.ledger, run_extract, clock=setup.clock.now, sleep=setup.clock.advance)
    out = io.StringIO()
    args = _replay_args("--rate-bytes", "1000", "--json")
    assert replay_command.run(args, deps=(listing, replay_deps), shards=1, out=out) == 0
    report = json.loads(out.getvalue())
    assert invoked == [keys[1].key, keys[2].key]
    assert report["already_complete"] == 1 and report["invoked"] == 2 and report["complete"] == 2
    assert report["pending"] == [] and report["failed"] == []
    first_cost = report["estimated_bytes"] / 2  # the two objects are the same size
    assert report["paced_seconds"] == pytest.approx(first_cost / 1000)


def test_replay_on_moto_lambda_invokes_asynchronously_and_exits_1_while_objects_are_pending() -> None:
    """moto's Lambda (no Docker) takes the asynchronous invocations; nothing runs Extract, so after the
    bounded wait the objects are still pending and the command says so (exit 1)."""
    from pipeline.app.commands import replay as replay_command
    from pipeline.app.replay import ReplayDeps

    with mock_aws(config={"lambda": {"use_docker": False}}):
        setup = Setup()
        chain = setup.chain
        notices = [chain.upload(f"cf/E2EXAMPLE.2026-01-01-1{h}.bbbb{h}.gz", log(2)) for h in range(3)]
        config = chain.config.aws
        iam = make_client("iam", config)
        role = iam.create_role(RoleName="extract-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lambda_client = make_client("lambda", config)
        lambda_client.create_function(
            FunctionName="clickstream-etl-extract",
            Runtime="python3.12",
            Role=role,
            Handler="extract.handler.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )
        calls: list[dict[str, Any]] = []
        lambda_client.meta.events.register(
            "provide-client-params.lambda.Invoke",
            lambda params, **_: calls.append({"type": params["InvocationType"], "key": json.loads(params["Payload"])}),
        )
        redrive = invoke_extract(lambda_client, "clickstream-etl-extract")
        replay_deps = ReplayDeps(setup.ledger, redrive, clock=setup.clock.now, sleep=setup.clock.advance)
        out = io.StringIO()
        code = replay_command.run(
            _replay_args("--wait", "60"), deps=(setup.deps(redrive=redrive), replay_deps), shards=2, out=out
        )
        assert code == 1
        assert [c["type"] for c in calls] == ["Event"] * 3
        assert [c["key"] for c in calls] == [redrive_event(n) for n in notices]
        assert "3 pending" in out.getvalue() and "PENDING  s3://" in out.getvalue()


def test_a_replay_dry_run_invokes_nothing(aws: None) -> None:
    from pipeline.app.commands import replay as replay_command
    from pipeline.app.replay import ReplayDeps

    setup = Setup()
    setup.chain.upload("cf/E2EXAMPLE.2026-01-01-05.aaaa1111.gz", log(2))
    lambda_client = make_client("lambda", setup.chain.config.aws)
    calls = Calls(setup.chain.s3, setup.chain.dynamodb, lambda_client)
    redrive = invoke_extract(lambda_client, "clickstream-etl-extract")
    replay_deps = ReplayDeps(setup.ledger, redrive, clock=setup.clock.now, sleep=setup.clock.advance)
    out = io.StringIO()
    assert (
        replay_command.run(
            _replay_args("--dry-run"), deps=(setup.deps(redrive=redrive), replay_deps), shards=1, out=out
        )
        == 0
    )
    assert calls.writes == [] and "would invoke Extract for 1 objects" in out.getvalue()
