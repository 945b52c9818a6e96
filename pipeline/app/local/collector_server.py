"""``run-local --collector``: the collector Lambda's handler behind a small HTTP server on 127.0.0.1.

:class:`CollectorServer` turns each HTTP request into the Function URL event the deployed
front door sends (payload format 2.0), calls :func:`extract.collector.handle` -- the same code
the Lambda runs -- and writes its response back.  :func:`serving` runs it in front of an
emulated chain (:class:`~pipeline.app.local.runtime.LocalChain`), stepping the chain in the
background so events land seconds after the tracker sends them.  moto's backends are not
thread-safe, so the server and the chain take turns under one lock.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final

from extract.collector import CollectorDeps, handle
from pipeline.app.local.runtime import LocalChain
from pipeline.aws.kinesis import OutRecord, RecordWriter
from pipeline.records import decode_raw
from pipeline.schema import CanonicalEvent
from transform.stage import TransformOutput

LOCALHOST: Final = "127.0.0.1"
_STEP_INTERVAL_S: Final = 0.1


def function_url_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    client_ip: str,
    received_ms: int,
) -> dict[str, Any]:
    """The Function URL event (payload format 2.0) of one HTTP request; ``target`` is its path and query."""
    path, _, query = target.partition("?")
    folded: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        else:
            folded[key] = f"{folded[key]},{value}" if key in folded else value
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path or "/",
        "rawQueryString": query,
        "cookies": cookies,
        "headers": folded,
        "requestContext": {
            "http": {"method": method, "path": path or "/", "protocol": "HTTP/1.1", "sourceIp": client_ip},
            "requestId": str(uuid.uuid4()),
            "timeEpoch": received_ms,
        },
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }


class CollectorServer:
    """The collector handler on ``http://127.0.0.1:PORT`` (port 0 picks a free one)."""

    def __init__(
        self,
        deps: CollectorDeps,
        *,
        port: int = 0,
        lock: threading.Lock | None = None,
        observer: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        """``observer`` hears each (Function URL event, response) pair, as handled."""
        self.deps = deps
        self.observer = observer
        self.lock = lock or threading.Lock()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = function_url_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    self.client_address[0],
                    int(time.time() * 1000),
                )
                with server.lock:
                    response = handle(event, server.deps)
                    server.requests += 1
                    if server.observer is not None:
                        server.observer(event, response)
                payload = base64.b64decode(response["body"]) if response.get("body") else b""
                self.send_response(response["statusCode"])
                for name, value in response.get("headers", {}).items():
                    self.send_header(name, value)
                for cookie in response.get("cookies", []):
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = do_OPTIONS = _serve  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                return  # quiet: run-local prints the events instead

        self._httpd = HTTPServer((LOCALHOST, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()


class ObservedChain(LocalChain):
    """A :class:`LocalChain` that tells ``on_events`` about the events of each stream-1 record it transforms."""

    def __init__(self, *args: Any, on_events: Callable[[list[CanonicalEvent]], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_events = on_events

    def _count_transform(self, output: TransformOutput) -> None:
        super()._count_transform(output)
        if output.events:
            self._on_events(output.events)


class _ShippedCount:
    """A record writer that counts what it made durable as the chain's shipped lines (the
    collector is stream 1's second producer), so the reconciliation balances."""

    def __init__(self, inner: RecordWriter, chain: LocalChain) -> None:
        self._inner = inner
        self._report = chain.report

    def put(self, records: Sequence[OutRecord]) -> None:
        self._inner.put(records)
        lines = sum(len(decode_raw(record.data).lines) for record in records)
        self._report.lines_read += lines
        self._report.lines_shipped += lines
        self._report.raw_records += len(records)


@contextmanager
def serving(
    chain: LocalChain,
    deps: CollectorDeps,
    *,
    port: int = 0,
    observer: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> Iterator[CollectorServer]:
    """The collector server in front of ``chain``, stepped in the background until the block ends.

    On exit the server stops first, then the chain is stepped once more under the lock, so every
    acknowledged request has been through it.
    """
    counted = dataclasses.replace(deps, writer=_ShippedCount(deps.writer, chain))
    server = CollectorServer(counted, port=port, observer=observer)
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(_STEP_INTERVAL_S):
            with server.lock:
                chain.step()

    pumper = threading.Thread(target=pump, name="chain", daemon=True)
    server.start()
    pumper.start()
    try:
        yield server
    finally:
        server.stop()
        stop.set()
        pumper.join()
        with server.lock:
            chain.step()
