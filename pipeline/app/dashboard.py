"""The dashboard's server and static build (issue 16): the bundled site plus the rollups, nothing else.

The site (``pipeline/app/dashboard_site/``: ``index.html``, ``app.js``, ``app.css``, built from
``web/dashboard/`` by ``npm run build`` and shipped as package data) fetches
``rollups/manifest.json`` and the day files it names, relative to its own address.  So:

* :func:`serve` answers on 127.0.0.1 with the site's files and, from the dataset (a folder or
  ``s3://bucket/prefix`` through the client factory), exactly the manifest and the rollup part
  files -- every other path, ``events/`` and ``bad/`` included, is a 404: the events never leave;
* :func:`build_site` writes the same into a folder (site files, ``rollups/manifest.json`` and the
  files it names), to host a copy anywhere static files are served;
* :func:`publish_site` puts the site's files (only) into the stack's ``DashboardSiteBucket``
  (``template.yaml``, Dashboard enabled): its distribution serves ``rollups/`` straight from the
  output bucket, where the rollup function writes them, so nothing is copied after each run;
* :func:`password_hash` is the ``DashboardPasswordHash`` parameter of a user and password.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Final

from load.rollup import MANIFEST_KEY, TABLES, LocalStore, RollupStore, S3Store
from pipeline.errors import InputError, TerminalError, TransientError

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

    def __init__(self, port: int, store: RollupStore, site: Path, realtime_url: str | None = None) -> None:
        self.store = store
        self.site = site
        self.site_config = site_config(realtime_url)
        self.bytes_sent = 0
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        if path in SITE_FILES:
            self._send((self.server.site / path).read_bytes(), SITE_FILES[path], "no-cache")
        elif path == SITE_CONFIG:
            self._send(self.server.site_config, "application/json", "no-cache")
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


SITE_CONFIG: Final = "config.json"
"""The site's settings beside ``index.html``: ``{"realtime_url": ...}`` turns the real-time tile
on (the collector's ``GET /realtime``, issue 16); ``{}`` keeps it hidden."""


def site_config(realtime_url: str | None) -> bytes:
    """The bytes of ``config.json`` (deterministic: sorted keys, no spaces)."""
    settings = {"realtime_url": realtime_url} if realtime_url else {}
    return json.dumps(settings, sort_keys=True, separators=(",", ":")).encode("utf-8")


def serve(
    store: RollupStore, port: int = 0, site: Path | None = None, *, realtime_url: str | None = None
) -> DashboardServer:
    """A :class:`DashboardServer` bound to 127.0.0.1:``port`` (0: any free port); call ``serve_forever``.

    ``realtime_url`` (a collector's ``/realtime``) shows the real-time tile; None hides it."""
    return DashboardServer(port, store, site or site_folder(), realtime_url)


def build_site(
    store: RollupStore, out: Path, site: Path | None = None, *, realtime_url: str | None = None
) -> list[str]:
    """Write the static site (and its ``config.json`` with ``realtime_url``) and the rollups it
    reads into ``out``; the paths written, relative to it."""
    site = site or site_folder()
    written = []
    for name in SITE_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes((site / name).read_bytes())
        written.append(name)
    if realtime_url:  # without it no config.json: the site finds none and hides the tile
        (out / SITE_CONFIG).write_bytes(site_config(realtime_url))
        written.append(SITE_CONFIG)
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


# ---- hosting on the stack's DashboardSiteBucket (template.yaml, Dashboard enabled)
SITE_CACHE_CONTROL: Final = "no-cache"
"""The site's file names carry no digest, so browsers and CloudFront revalidate them (an ETag
check): a publish shows at once, and the parts the site reads are cached by their own names."""
DASHBOARD_USER_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
"""The template's ``DashboardUser`` pattern: the CloudFront Function holds it in a JS string literal."""


class PublishError(TransientError):
    """An S3 call of a publish failed in a way worth retrying (throttling, a timeout): run it again."""


class PublishRefusedError(TerminalError):
    """S3 refused a publish (no such bucket, access denied): fix the bucket name or the credentials."""


@dataclass(frozen=True)
class SiteObject:
    """One object of a publish: its key in the bucket and how it is served."""

    key: str
    content_type: str
    cache_control: str
    body: bytes


def publish_plan(prefix: str, site: Path | None = None, *, realtime_url: str | None = None) -> list[SiteObject]:
    """The objects that host the site under ``prefix`` of a bucket: the site's files (and its
    ``config.json`` with ``realtime_url``), no rollups."""
    site = site or site_folder()
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    files = [
        SiteObject(base + name, content_type, SITE_CACHE_CONTROL, (site / name).read_bytes())
        for name, content_type in SITE_FILES.items()
    ]
    if not realtime_url:
        return files
    return [*files, SiteObject(base + SITE_CONFIG, "application/json", SITE_CACHE_CONTROL, site_config(realtime_url))]


def publish_site(s3: Any, bucket: str, plan: list[SiteObject]) -> list[str]:
    """Put ``plan``'s objects into ``bucket`` through the injected S3 client; the keys written.

    The bucket's default encryption (DataKey) applies; ``index.html`` goes last, so a viewer never
    gets a page whose script is not there yet.  Raises :class:`PublishError` (retry) or
    :class:`PublishRefusedError` (do not).
    """
    from pipeline.aws.errors import aws_exceptions, translate

    ordered = sorted(plan, key=lambda o: o.key.endswith("index.html"))
    for item in ordered:
        try:
            s3.put_object(
                Bucket=bucket,
                Key=item.key,
                Body=item.body,
                ContentType=item.content_type,
                CacheControl=item.cache_control,
            )
        except aws_exceptions() as exc:
            raise translate(
                exc, f"publish s3://{bucket}/{item.key}", transient=PublishError, terminal=PublishRefusedError
            ) from exc
    return [item.key for item in ordered]


def password_hash(user: str, password: str) -> str:
    """``DashboardPasswordHash``: the lowercase hex SHA-256 of ``user:password`` (RFC 7617's pair).

    The CloudFront Function hashes the credentials a browser sends and compares; only this hash is
    deployed.  SHA-256 is fast, which is all CloudFront Functions offer, so choose a long random
    password.  Raises :class:`InputError` for a user name the template's pattern refuses (it has
    no ``:``; the password may) or an empty password.
    """
    if not DASHBOARD_USER_PATTERN.fullmatch(user):
        raise InputError(f"dashboard user {user!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    if not password:
        raise InputError("the dashboard password is empty")
    return hashlib.sha256(f"{user}:{password}".encode()).hexdigest()
