"""The replay's Distributed Map (issue 12, item 4): batch events, paced Extract invocations, the
Step Functions engine on moto, and the whole replay end to end on run-local's chain.

The state machine's definition is checked statically in tests/unit/test_template.py; here the
code that feeds it and what it invokes run for real.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws

from extract.handler import handle as extract
from extract.notifications import parse_notifications
from pipeline.app.local.runtime import LocalChain
from pipeline.app.reconcile import HourWindow, ReconcileDeps, plan_raw
from pipeline.app.replay import Estimator, plan_replay
from pipeline.app.replay_map import (
    LocalMap,
    MapReplayDeps,
    StepFunctionsMap,
    batch_events,
    execution_input,
    max_concurrency_for,
    replay_with_map,
)
from pipeline.aws.clients import make_client
from pipeline.aws.kinesis import OutRecord
from pipeline.config import load_config
from pipeline.pacing import RateLimits
from pipeline.testing.lambda_events import FakeClock, FakeLambdaContext
from pipeline.topology import REPLAY_ITEMS_PER_BATCH, REPLAY_MAX_BATCH_BYTES, REPLAY_PREFIX
from tests.functional.aws_chain import Chain, chain_config
from tests.functional.aws_chain import page_view_log as log

WINDOW = HourWindow.parse("2026-01-01", "2026-01-02")


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


# ------------------------------------------------------------------ batch events (the ItemBatcher)
def _execution(pace: RateLimits | None = None, bucket: str = "raw") -> dict[str, Any]:
    return execution_input(
        bucket=bucket,
        manifest_key=f"{REPLAY_PREFIX}r/manifest.json",
        results_prefix=f"{REPLAY_PREFIX}r/results",
        max_concurrency=2,
        pace=pace or RateLimits(500, 400_000),
    )


def test_batches_hold_at_most_the_batchers_items_and_bytes_and_every_item_once() -> None:
    items = [{"key": f"cf/E1.2026-01-01-00.{i:05d}.gz", "etag": f"e{i}", "size": i} for i in range(23)]
    events = list(batch_events(items, _execution()))
    assert [len(e["Items"]) for e in events] == [REPLAY_ITEMS_PER_BATCH, REPLAY_ITEMS_PER_BATCH, 3]
    assert [i for e in events for i in e["Items"]] == items
    assert all(e["BatchInput"] == {"bucket": "raw", "pace": RateLimits(500, 400_000).to_json()} for e in events)
    long_keys = [{"key": "cf/" + "k" * 30_000 + f"{i}.gz", "etag": "e", "size": 1} for i in range(9)]
    events = list(batch_events(long_keys, _execution()))
    assert len(events) > 1
    assert all(len(json.dumps(e)) <= REPLAY_MAX_BATCH_BYTES for e in events)
    assert [i for e in events for i in e["Items"]] == long_keys


def test_a_batch_event_becomes_paced_notices_and_a_malformed_one_is_refused_not_read() -> None:
    pace = RateLimits(100, 50_000)
    [event] = batch_events(
        [
            {"key": "cf/a b.gz", "etag": '"abc"', "size": 10},
            {"Key": "cf/b.gz", "Etag": '"def"', "Size": 20},  # S3 ListObjectsV2 / inventory items
        ],
        _execution(pace),
    )
    notices = parse_notifications(event)
    assert [(n.bucket, n.key, n.etag, n.size, n.pace) for n in notices.objects] == [
        ("raw", "cf/a b.gz", "abc", 10, pace),
        ("raw", "cf/b.gz", "def", 20, pace),
    ]
    bad = parse_notifications({"Items": [{"key": "", "size": 1}, "x"], "BatchInput": {"bucket": "raw"}})
    assert not bad.objects and bad.malformed_direct == 2 and bad.ignored["malformed_map_item"] == 2
    bad = parse_notifications({"Items": [{"key": "k"}], "BatchInput": {"bucket": "raw", "pace": {"records_per_s": 0}}})
    assert bad.malformed_direct == 1 and bad.ignored["malformed_pace"] == 1
    assert parse_notifications({"Items": [], "BatchInput": {}}).malformed_direct == 1


def test_concurrency_is_one_per_shard_capped_and_a_request_wins() -> None:
    assert max_concurrency_for(1) == 1
    assert max_concurrency_for(4) == 4
    assert max_concurrency_for(64) == 8
    assert max_concurrency_for(64, 20) == 20


# ------------------------------------------------------------------ Extract paces its puts
class TimedWriter:
    """The real writer, remembering when (on the fake clock) each put started and what it carried."""

    def __init__(self, inner: Any, clock: FakeClock) -> None:
        self.inner = inner
        self.clock = clock
        self.puts: list[tuple[float, int, int]] = []
        self.stats = inner.stats

    def put(self, records: Any) -> None:
        self.puts.append((self.clock.now(), len(records), sum(r.size for r in records)))
        self.inner.put(records)


def test_an_invocation_of_the_map_paces_its_puts_to_the_batchs_share_of_the_shards(aws: None) -> None:
    """GIVEN a batch of three objects whose pace is 20 records/s and 40,000 bytes/s
    WHEN Extract handles the batch (records of at most 4 KiB, so each object takes several puts)
    THEN every object completes, and the records and bytes of the puts started within any window
    stay within the pace times the window, plus the window's last put (the bucket starts empty)."""
    config = chain_config({"stream.record_target_bytes": 4096, "stream.put_batch_records": 3})
    chain = Chain.create(config)
    notices = [chain.upload(f"cf/E1.2026-01-01-0{h}.x{h}.gz", log(60)) for h in range(3)]
    clock = FakeClock(time.time() + 5)
    writer = TimedWriter(chain.writer(config.resources.raw_stream), clock)
    deps = replace(
        chain.extract_deps(writer=writer, ledger=chain.ledger(clock=clock.now)), clock=clock.now, sleep=clock.advance
    )
    pace = RateLimits(20, 40_000)
    items = [{"key": n.key, "etag": n.etag, "size": n.size} for n in notices]
    [event] = batch_events(items, _execution(pace, config.resources.log_bucket))

    response = extract(event, FakeLambdaContext(clock=clock.now), deps)

    assert [o["outcome"] for o in response["objects"]] == ["complete"] * 3
    puts = writer.puts
    assert len(puts) > 6
    for i in range(len(puts)):
        for j in range(i, len(puts)):
            window = puts[j][0] - puts[i][0]
            records = sum(p[1] for p in puts[i : j + 1])
            size = sum(p[2] for p in puts[i : j + 1])
            # What starts within a window is the pace times the window, plus the last put (burst 0);
            # the slack is the fake clock's float resolution at today's epoch (about 0.2 µs).
            assert records <= pace.records_per_s * window + puts[j][1] + 0.01
            assert size <= pace.bytes_per_s * window + puts[j][2] + 0.1
    assert puts[-1][0] - puts[0][0] >= sum(p[2] for p in puts[:-1]) / pace.bytes_per_s - 1e-5


def test_a_paced_object_continued_later_keeps_its_pace(aws: None) -> None:
    chain = Chain.create(chain_config())
    notice = chain.upload("cf/E1.2026-01-01-00.x.gz", log(3))
    pace = RateLimits(7, 7000)
    [event] = batch_events([{"key": notice.key, "etag": notice.etag, "size": notice.size}], _execution(pace))
    [paced] = parse_notifications(event).objects
    from extract.handler import continuation_event

    [again] = parse_notifications(continuation_event(paced)).objects
    assert again.pace == pace and again.key == notice.key


# ------------------------------------------------------------------ Step Functions, on moto
def _deps_for(chain: Chain, clock: FakeClock) -> ReconcileDeps:
    return ReconcileDeps(chain.config, chain.s3, chain.ledger(clock=clock.now), redrive=lambda n: None)


def test_the_step_functions_engine_writes_the_manifest_starts_the_run_and_waits_within_its_budget(aws: None) -> None:
    """GIVEN three objects of the range, one COMPLETE already, and the state machine on moto (which never
    runs it: moto's executions stay RUNNING)
    WHEN the map replay runs with a 60 s wait on a fake clock
    THEN the manifest under _replay/ lists the two pending objects, the run's input carries the
    batch's share of the limits, and the replay gives up after 60 s with both still pending."""
    chain = Chain.create(chain_config())
    clock = FakeClock(time.time() + 5)
    listing = _deps_for(chain, clock)
    uploaded = [chain.upload(f"cf/E1.2026-01-01-0{h}.y{h}.gz", log(2)) for h in range(3)]
    event = {
        "Items": [{"key": uploaded[0].key, "etag": uploaded[0].etag}],
        "BatchInput": {"bucket": uploaded[0].bucket},
    }
    extract(event, FakeLambdaContext(clock=clock.now), chain.extract_deps(ledger=listing.ledger))
    sfn = make_client("stepfunctions", chain.config.aws)
    iam = make_client("iam", chain.config.aws)
    role = iam.create_role(RoleName="replay", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = sfn.create_state_machine(name="clickstream-etl-replay", definition="{}", roleArn=role)["stateMachineArn"]
    bucket = chain.config.resources.output_bucket
    deps = MapReplayDeps(listing.ledger, StepFunctionsMap(chain.s3, sfn, arn, bucket), bucket, clock.now, clock.advance)
    plan = plan_raw(listing, WINDOW, prefix="cf/")
    items = plan_replay(plan, Estimator.from_config(chain.config.stream))
    limits = RateLimits(800, 800_000)

    started_at = clock.now()
    summary = replay_with_map(plan, items, deps, limits, max_concurrency=4, wait_s=60, poll_s=15)

    assert summary.already_complete == 1 and summary.invoked == 2
    key = summary.manifest.removeprefix(f"s3://{bucket}/")
    manifest = json.loads(chain.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest == [{"key": n.key, "etag": n.etag, "size": n.size} for n in uploaded[1:]]
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["bucket"] == chain.config.resources.log_bucket and started["manifest_key"] == key
    assert started["results_prefix"].startswith(REPLAY_PREFIX) and started["max_concurrency"] == 4
    assert RateLimits.from_json(started["pace"]) == limits.shared_by(4)
    assert summary.status == "RUNNING" and len(summary.pending) == 2 and not summary.ok
    assert clock.now() - started_at == pytest.approx(60)  # the run's wait and the ledger's share one budget


def test_a_map_dry_run_writes_and_starts_nothing(aws: None) -> None:
    chain = Chain.create(chain_config())
    clock = FakeClock(time.time() + 5)
    listing = _deps_for(chain, clock)
    chain.upload("cf/E1.2026-01-01-00.z.gz", log(2))
    calls: list[str] = []
    chain.s3.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    sfn = make_client("stepfunctions", chain.config.aws)
    sfn.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    bucket = chain.config.resources.output_bucket
    deps = MapReplayDeps(
        listing.ledger, StepFunctionsMap(chain.s3, sfn, "arn:x", bucket), bucket, clock.now, clock.advance
    )
    plan = plan_raw(listing, WINDOW, prefix="cf/")
    items = plan_replay(plan, Estimator.from_config(chain.config.stream))
    calls.clear()
    summary = replay_with_map(plan, items, deps, RateLimits(1, 1), max_concurrency=1, wait_s=5, dry_run=True)
    assert summary.dry_run and len(summary.pending) == 1
    assert calls == []


# ------------------------------------------------------------------ end to end on run-local's chain
def _local_chain() -> LocalChain:
    config = load_config(environ={}, overrides={"aws.region": "us-east-1"})
    chain = LocalChain(config, shards=2)
    chain.create_resources()
    return chain


def _lose_notifications(chain: LocalChain) -> None:
    chain.sqs.purge_queue(QueueUrl=chain.queue_url)


def _events(chain: LocalChain) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for key, body in chain._objects(chain.config.resources.events_prefix):  # noqa: SLF001 - the chain's own reader
        if key.endswith(".parquet"):
            for event_id in pq.read_table(io.BytesIO(body), columns=["event_id"]).column("event_id").to_pylist():
                counts[event_id] = counts.get(event_id, 0) + 1
    return counts


@pytest.mark.slow
def test_a_replay_through_the_emulated_map_on_the_local_chain_gives_every_event_once(aws: None, tmp_path: Any) -> None:
    """GIVEN 23 log objects in the raw bucket whose notifications were all lost
    WHEN backfill --mode replay runs through the map emulated on run-local's chain (batches of the
    template's ItemBatcher, one Extract invocation each; the first invocation of one batch fails
    and is retried), and the chain then drains
    THEN the ledger reconciliation finds all 23 COMPLETE, the reconciler had nothing left to
    re-drive, and every event is in the dataset exactly once: the same events as a second chain fed
    by notifications."""
    from pipeline.app.commands import replay as replay_command

    chain = _local_chain()
    paths = []
    for h in range(23):
        path = tmp_path / f"E2EXAMPLE.2026-01-01-{h:02d}.f{h:02d}.gz"
        path.write_bytes(log(3 + h % 4))
        paths.append(str(path))
    chain.upload(paths)
    _lose_notifications(chain)
    failed_once: set[str] = set()

    def invoke(event: dict[str, Any]) -> bool:  # Step Functions' Lambda task, in process
        first = event["Items"][0]["key"]
        if first.endswith(".f10.gz") and first not in failed_once:
            failed_once.add(first)
            return False  # the task fails: its retrier invokes again
        response = extract(event, FakeLambdaContext(remaining_ms=900_000), chain.extract_deps)
        return not response["batchItemFailures"]

    engine = LocalMap(invoke)
    listing = ReconcileDeps(chain.config, chain.s3, chain.extract_deps.ledger, redrive=lambda n: None)
    bucket = chain.config.resources.output_bucket
    deps = MapReplayDeps(chain.extract_deps.ledger, engine, bucket, sleep=lambda s: None)
    parser = argparse.ArgumentParser()
    replay_command.add_arguments(parser)
    args = parser.parse_args(
        [f"s3://{chain.config.resources.log_bucket}/cloudfront/", "--since", "2026-01-01", "--until", "2026-01-02"]
        + ["--engine", "map", "--shards", "2", "--json", "--wait", "5"]
    )
    out = io.StringIO()
    assert replay_command.run(args, deps=(listing, None), shards=2, out=out, map_deps=deps) == 0  # type: ignore[arg-type]
    report = json.loads(out.getvalue())
    assert report["engine"] == "map" and report["invoked"] == 23 and report["complete"] == 23
    assert engine.batches == 3 and engine.failed_batches == 0 and failed_once
    reconciliation = chain.run()
    assert reconciliation.redriven_objects == 0
    events = _events(chain)
    assert events and set(events.values()) == {1}

    names = {
        "resources.log_bucket": "fed-logs",
        "resources.output_bucket": "fed-output",
        "resources.raw_stream": "fed-raw",
        "resources.events_stream": "fed-events",
        "resources.ledger_table": "fed-ledger",
    }
    fed = LocalChain(load_config(environ={}, overrides={"aws.region": "us-east-1", **names}), shards=2)
    fed.create_resources()
    fed.upload(paths)
    fed.run()
    assert _events(fed) == events


def test_a_record_is_what_the_pacer_counts() -> None:
    record = OutRecord(b"x" * 10, "key")
    assert record.size == 13


# ------------------------------------------------------------------ the backfill's replay mode
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--output", "out"], "leave out --output"),
        (["s3://other/logs/"], "one SOURCE"),
        (["--until", ""], "--since and --until"),
        (["--distribution", "E1", "--distribution", "E2"], "at most one --distribution"),
    ],
)
def test_backfill_mode_replay_refuses_what_it_cannot_replay(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.app.cli import main

    argv = ["backfill", "s3://logs/cf/", "--mode", "replay", "--since", "2026-01-01", "--until", "2026-01-02"]
    if extra[0].startswith("s3://"):
        argv.insert(2, extra[0])
    else:
        argv += extra
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_backfill_mode_replay_dry_run_plans_the_map_on_moto_and_writes_nothing(
    aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """GIVEN 205 objects of the range in the raw bucket (above the auto threshold) on moto
    WHEN backfill --mode replay --dry-run runs
    THEN it plans the state machine with every object and makes no write call."""
    from pipeline.app.cli import main

    chain = Chain.create(chain_config())
    for i in range(205):
        chain.upload(f"cf/E1.2026-01-01-{i % 24:02d}.o{i:03d}.gz", log(1))
    config = tmp_config(chain, tmp_path)
    calls: list[str] = []
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def recording(self: Any, operation: str, params: Any) -> Any:
        calls.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    argv = ["backfill", f"s3://{chain.config.resources.log_bucket}/cf/", "--mode", "replay"]
    argv += [
        "--since",
        "2026-01-01",
        "--until",
        "2026-01-02",
        "--shards",
        "2",
        "--dry-run",
        "--json",
        "--config",
        config,
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "map" and report["dry_run"] and len(report["pending"]) == 205
    assert report["max_concurrency"] == 2 and report["manifest"].startswith("s3://")
    assert calls and not [c for c in calls if not c.startswith(("List", "Get", "BatchGet", "Describe", "Head"))]


def tmp_config(chain: Chain, folder: Any) -> str:
    r = chain.config.resources
    path = folder / "pipeline.toml"
    path.write_text(
        "[resources]\n"
        f'log_bucket = "{r.log_bucket}"\noutput_bucket = "{r.output_bucket}"\nraw_stream = "{r.raw_stream}"\n'
        f'events_stream = "{r.events_stream}"\nledger_table = "{r.ledger_table}"\n'
    )
    return str(path)


def test_a_backfill_dry_run_prices_the_replay_mode(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The dry run's replay cost: events from the bytes to read, the pipeline's per-event part, and the
    state machine's transitions only when the map would run (it scales with the bytes)."""
    from pipeline.app.cli import main
    from pipeline.app.cost import load_cost_inputs, replay_cost

    for i in range(3):
        (tmp_path / f"E1.2026-01-01-0{i}.c{i}.gz").write_bytes(log(40))
    assert main(["backfill", str(tmp_path), "--output", str(tmp_path / "out"), "--dry-run", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["replay_cost"]
    inputs = load_cost_inputs()
    stored = sum(p.stat().st_size for p in tmp_path.glob("*.gz"))
    assert cost["engine"] == "invoke" and cost["state_machine_dollars"] == 0
    assert cost["events"] == round(stored * 10 / inputs.usage.m("raw_bytes"))
    assert cost["dollars"] == pytest.approx(
        replay_cost(stored * 10, 3, inputs, batch_size=10, map_engine=False).total, abs=1e-4
    )
    small, large = (replay_cost(b, 1000, inputs, batch_size=10) for b in (1e9, 2e9))
    assert large.pipeline == pytest.approx(2 * small.pipeline) and small.state_machine > 0
    assert replay_cost(1e9, 1000, inputs, batch_size=10, map_engine=False).state_machine == 0
