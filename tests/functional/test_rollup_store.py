"""Rollups written through a store (a folder, or S3 on moto): rerun byte-identical, late events
re-roll their day only; the dashboard's server and static build hand out the rollups and the
site, never the events."""

from __future__ import annotations

import argparse
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from load.rollup import MANIFEST_KEY, LocalStore, S3Store, roll_up
from pipeline.app.commands import dashboard as dashboard_command
from pipeline.app.commands import rollup as rollup_command
from pipeline.app.dashboard import build_site, is_served_key, serve
from pipeline.aws.clients import make_client
from pipeline.config import load_config

BUCKET = "clickstream-rollup-test"
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event", pa.string()),
        ("collector_tstamp", pa.timestamp("us", tz="UTC")),
        ("derived_tstamp", pa.timestamp("us", tz="UTC")),
        ("etl_tags", pa.string()),
        ("page_urlpath", pa.string()),
        ("domain_sessionid", pa.string()),
        ("domain_userid", pa.string()),
        ("refr_source", pa.string()),
    ]
)


def events_parquet(day: int, hour: int, count: int, tag: str = "") -> bytes:
    stamp = datetime(2024, 11, day, hour, 5, tzinfo=UTC)
    rows = [
        {
            "event_id": f"{tag}{day}-{hour}-{i}",
            "event": "page_view",
            "collector_tstamp": stamp,
            "derived_tstamp": stamp,
            "etl_tags": "bot:crawler-user-agents-1" if i == 0 else None,
            "page_urlpath": f"/p{i % 3}",
            "domain_sessionid": f"s{i % 4}",
            "domain_userid": f"u{i % 5}",
            "refr_source": "Google" if i % 2 else None,
        }
        for i in range(count)
    ]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sink)
    return sink.getvalue()


def event_key(day: int, hour: int, name: str = "part-00000") -> str:
    return f"events/event_date=2024-11-{day:02d}/event_hour={hour:02d}/{name}.parquet"


def write_dataset(root: Path) -> None:
    for day in (1, 2):
        path = root / event_key(day, 10)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(events_parquet(day, 10, 12))


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "rollups").rglob("*")) if p.is_file()
    }


def test_given_the_same_events_when_rolled_up_twice_or_elsewhere_then_the_files_are_byte_identical(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_dataset(first)
    write_dataset(second)
    assert roll_up(LocalStore(first)).rolled_up == ("2024-11-01", "2024-11-02")
    before = tree(first)
    assert roll_up(LocalStore(first)).rolled_up == ()
    assert tree(first) == before
    roll_up(LocalStore(second))
    assert tree(second) == before
    site = pq.read_table(next((first / "rollups/site").glob("date=2024-11-01/*.parquet"))).to_pylist()[0]
    assert (site["pageviews"], site["bot_events"], site["visits"]) == (11, 1, 4)  # the bot's page view left out


def test_given_late_events_when_rolled_up_then_only_their_day_is_rolled_again(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    roll_up(LocalStore(tmp_path))
    before = tree(tmp_path)
    late = tmp_path / event_key(2, 11, "sink-late")
    late.parent.mkdir(parents=True)
    late.write_bytes(events_parquet(2, 11, 6, tag="late"))
    summary = roll_up(LocalStore(tmp_path))
    assert summary.rolled_up == ("2024-11-02",) and summary.files_retired == 5
    after = tree(tmp_path)
    unchanged = {k: v for k, v in before.items() if "2024-11-01" in k}
    assert unchanged and all(after[k] == v for k, v in unchanged.items())
    day2 = sorted(k for k in after if "date=2024-11-02" in k and k.endswith(".parquet"))
    assert len(day2) == 5 and not set(day2) & set(before)  # new names, the old ones retired
    site = pq.read_table(tmp_path / next(k for k in day2 if k.startswith("rollups/site/"))).to_pylist()[0]
    assert site["pageviews"] == 11 + 5
    manifest = json.loads(after[MANIFEST_KEY])
    assert manifest["days"]["2024-11-02"]["site"] in day2


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = make_client("s3", load_config(environ={}).aws)
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_given_an_s3_dataset_when_the_rollup_command_runs_then_rollups_are_written_beside_the_events(
    s3: Any, tmp_path: Path
) -> None:
    for day in (1, 2):
        s3.put_object(Bucket=BUCKET, Key="site/" + event_key(day, 10), Body=events_parquet(day, 10, 8))
    out = io.StringIO()
    args = argparse.Namespace(dest=f"s3://{BUCKET}/site", since=None, until=None, dry_run=False, json=True, config=None)
    assert rollup_command.run(args, s3=s3, out=out) == 0
    assert json.loads(out.getvalue())["rolled_up"] == ["2024-11-01", "2024-11-02"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="site/rollups/")["Contents"]]
    assert "site/rollups/manifest.json" in keys and len(keys) == 2 * 6 + 1  # 5 tables + fingerprint a day
    built = tmp_path / "built"
    build_args = argparse.Namespace(dest=f"s3://{BUCKET}/site", port=0, build=str(built), config=None)
    assert dashboard_command.run(build_args, s3=s3, out=io.StringIO()) == 0
    assert (built / "index.html").is_file() and (built / MANIFEST_KEY).is_file()
    assert len(list((built / "rollups").rglob("part-*.parquet"))) == 10 and not (built / "events").exists()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a local test server
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_the_server_hands_out_the_site_and_rollups_and_never_the_events(s3: Any) -> None:
    for day in (1, 2):
        s3.put_object(Bucket=BUCKET, Key="d/" + event_key(day, 10), Body=events_parquet(day, 10, 8))
    s3.put_object(Bucket=BUCKET, Key="d/bad/field_count/x.jsonl", Body=b"{}")
    store = S3Store(s3, BUCKET, "d")
    roll_up(store)
    server = serve(store, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        status, page = get(base)
        assert status == 200 and b"app.js" in page
        status, manifest = get(base + MANIFEST_KEY)
        assert status == 200
        part = json.loads(manifest)["days"]["2024-11-01"]["site"]
        status, data = get(base + part)
        assert status == 200 and pq.read_table(pa.BufferReader(data)).num_rows == 1
        for path in (
            event_key(1, 10),
            "bad/field_count/x.jsonl",
            "rollups/_inputs/date=2024-11-01.json",
            "rollups/../" + event_key(1, 10),
            "rollups/site/date=2024-11-09/part-0000000000000000.parquet",
        ):
            assert get(base + path)[0] == 404, path
    finally:
        server.shutdown()
        server.server_close()
    assert not is_served_key("rollups/site/../../events/x.parquet")


def test_build_site_copies_what_the_manifest_names(tmp_path: Path) -> None:
    write_dataset(tmp_path / "dest")
    roll_up(LocalStore(tmp_path / "dest"))
    written = build_site(LocalStore(tmp_path / "dest"), tmp_path / "out")
    assert written[:3] == ["index.html", "app.js", "app.css"] and MANIFEST_KEY in written
    assert len([w for w in written if w.endswith(".parquet")]) == 10


def test_the_scheduled_handler_rolls_up_the_output_buckets_dataset(s3: Any) -> None:
    from load.rollup_handler import RollupDeps, dataset_prefix, handle

    config = load_config(environ={}, overrides={"resources.output_bucket": BUCKET})
    s3.put_object(Bucket=BUCKET, Key=event_key(3, 4), Body=events_parquet(3, 4, 5))
    assert handle({}, RollupDeps(config, s3))["rolled_up"] == ["2024-11-03"]
    assert s3.head_object(Bucket=BUCKET, Key=MANIFEST_KEY)["ContentType"] == "application/json"
    assert handle({}, RollupDeps(config, s3))["rolled_up"] == []
    assert (dataset_prefix("events/"), dataset_prefix("site/events/"), dataset_prefix("data")) == ("", "site/", "data/")


def test_the_rollup_commands_dry_run_writes_nothing_and_a_reversed_range_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.app.cli import main

    write_dataset(tmp_path)
    assert main(["rollup", str(tmp_path), "--dry-run", "--since", "2024-11-02"]) == 0
    assert "roll up  2024-11-02" in capsys.readouterr().out and not (tmp_path / "rollups").exists()
    assert main(["rollup", str(tmp_path), "--since", "2024-11-02", "--until", "2024-11-01"]) == 2
    assert main(["rollup", str(tmp_path / "missing")]) == 2
    assert main(["dashboard", str(tmp_path), "--build", str(tmp_path / "site")]) == 2  # no rollups yet
    assert "run clickstream-etl rollup first" in capsys.readouterr().err
