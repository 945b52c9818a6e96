"""The local HTTP adapter in front of the emulated chain, and ``run-local --collector`` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from extract.collector import build_deps
from extract.collector_protocol import PIXEL
from pipeline.app.local.collector_server import ObservedChain, serving
from pipeline.app.local.runtime import emulated_aws
from tests.conftest import make_config
from tests.unit.test_collector_parity import TP2, tp2_body, tracker_events

QUERY = "e=pv&eid=11111111-1111-4111-8111-111111111111&aid=shop&p=web&tv=js-4&url=https%3A%2F%2Fx.example%2F"


def test_the_adapter_speaks_http_and_every_acknowledged_event_lands() -> None:
    config = make_config()
    landed: list[dict[str, object]] = []
    with emulated_aws(server=False):
        chain = ObservedChain(config, on_events=landed.extend)
        chain.create_resources()
        with serving(chain, build_deps(config, kinesis=chain.kinesis)) as server:
            with urllib.request.urlopen(f"{server.url}/i?{QUERY}") as pixel:
                assert pixel.status == 200 and pixel.read() == PIXEL
                assert pixel.headers["Set-Cookie"].startswith("sp=") and "SameSite=None" in pixel.headers["Set-Cookie"]
            post = urllib.request.Request(
                server.url + TP2,
                data=tp2_body(tracker_events()).encode(),
                headers={"Content-Type": "application/json", "Origin": "https://www.example.com"},
            )
            with urllib.request.urlopen(post) as ok:
                assert ok.read() == b"ok" and ok.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
            try:
                urllib.request.urlopen(urllib.request.Request(server.url + TP2, data=b"nope"))
            except urllib.error.HTTPError as error:
                assert error.code == 400
            else:
                raise AssertionError("a malformed body must answer 400")
        report = chain.run()
    assert report.complete, report.render()
    assert len(landed) == 5 and report.parquet_rows == 5 and report.bad_rows == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_local_collector_serves_until_stopped_then_exports(tmp_path: Path) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "pipeline.app.cli", "run-local", "--collector", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner, banner
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/i?{QUERY}") as response:
            assert response.status == 200
        printed = json.loads(process.stdout.readline())  # the event, as it lands
        assert printed["event_id"] == "11111111-1111-4111-8111-111111111111" and printed["event"] == "page_view"
        time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "reconciled" in output and "MISMATCH" not in output
    assert list((tmp_path / "out" / "events").rglob("*.parquet"))
