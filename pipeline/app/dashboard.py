"""The dashboard's server and static build (issue 16): the bundled site plus the rollups, nothing else.

The site (``pipeline/app/dashboard_site/``: ``index.html``, ``app.js``, ``app.css``, built from
``web/dashboard/`` by ``npm run build`` and shipped as package data) fetches
``rollups/manifest.json`` and the day files it names, relative to its own address.  So:

* :func:`serve` answers on 127.0.0.1 with the site's files and, from the dataset (a folder or
  ``s3://bucket/prefix`` through the client factory), exactly the manifest and the rollup part
  files -- every other path, ``events/`` and ``bad/`` included, is a 404: the events never leave;
* :func:`build_site` writes the same into a folder (site files, ``rollups/manifest.json`` and the
  files it names) for an S3 bucket behind CloudFront; the deployed stack serves ``rollups/`` from
  the output bucket instead (``template.yaml``), and the build is the way to host a copy elsewhere.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Final

from load.rollup import MANIFEST_KEY, TABLES, LocalStore, RollupStore, S3Store
from pipeline.errors import InputError

SITE_FILES: Final = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript", "app.css": "text/css"}
_ROLLUP_PART = re.compile(
    rf"rollups/(?:{'|'.join(TABLES)})/date=\d{{4}}-\d{{2}}-\d{{2}}/part-[0-9a-f]{{16}}\.parquet", re.ASCII
)


def site_folder() -> Path:
    """The built site shipped in the package (``npm run build`` in ``web/dashboard/`` writes it)."""
    folder = Path(str(resources.files("pipeline.app").joinpath("dashboard_site")))
    if not (folder / "app.js").is_file():
        raise InputError(f"the dashboard is not built ({folder}): run npm ci && npm run build in web/dashboard/")
    return folder


def open_store(dest: str, config_path: str | None = None, *, s3: Any = None) -> RollupStore:
    """The dataset at ``dest`` (a folder or ``s3://bucket/prefix``); ``s3`` replaces the client (tests)."""
    from pipeline.app.sources import S3Url, is_s3

    if is_s3(dest):
        url = S3Url.parse(dest)
        if s3 is None:
            from pipeline.aws.clients import make_client
            from pipeline.config import load_config

            s3 = make_client("s3", load_config(config_path).aws)
        return S3Store(s3, url.bucket, url.prefix)
    root = Path(dest)
    if not root.is_dir():
        raise InputError(f"DEST {dest} is not a folder (or s3://bucket/prefix)")
    return LocalStore(root)


def is_served_key(key: str) -> bool:
    """Whether the server may answer ``key`` from the dataset: the manifest and rollup parts only."""
    return key == MANIFEST_KEY or _ROLLUP_PART.fullmatch(key) is not None


class DashboardServer(ThreadingHTTPServer):
    """An HTTP server of the site and the rollups; counts the bytes of bodies sent (``bytes_sent``)."""

    daemon_threads = True

    def __init__(self, port: int, store: RollupStore, site: Path) -> None:
        self.store = store
        self.site = site
        self.bytes_sent = 0
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        if path in SITE_FILES:
            self._send((self.server.site / path).read_bytes(), SITE_FILES[path], "no-cache")
        elif is_served_key(path):
            from pipeline.errors import PipelineError

            try:
                data = self.server.store.read(path)
            except (OSError, PipelineError):
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            if path == MANIFEST_KEY:
                self._send(data, "application/json", "no-cache")
            else:  # a part's name is its inputs' digest: it never changes
                self._send(data, "application/vnd.apache.parquet", "public, max-age=31536000, immutable")
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, content_type: str, cache: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)
        self.server.bytes_sent += len(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the command prints the address once."""


def serve(store: RollupStore, port: int = 0, site: Path | None = None) -> DashboardServer:
    """A :class:`DashboardServer` bound to 127.0.0.1:``port`` (0: any free port); call ``serve_forever``."""
    return DashboardServer(port, store, site or site_folder())


def build_site(store: RollupStore, out: Path, site: Path | None = None) -> list[str]:
    """Write the static site and the rollups it reads into ``out``; the paths written, relative to it."""
    site = site or site_folder()
    written = []
    for name in SITE_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes((site / name).read_bytes())
        written.append(name)
    try:
        manifest_bytes = store.read(MANIFEST_KEY)
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"no rollups in {store.url()}: run clickstream-etl rollup first") from exc
    manifest = json.loads(manifest_bytes)
    keys = sorted(key for day in manifest["days"].values() for key in day.values())
    for key in [*keys, MANIFEST_KEY]:
        if not is_served_key(key):
            raise InputError(f"the manifest names {key!r}, which is not a rollup file")
        target = out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(manifest_bytes if key == MANIFEST_KEY else store.read(key))
        written.append(key)
    return written
