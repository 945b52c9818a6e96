"""``clickstream-etl dashboard DEST``: serve the dashboard on 127.0.0.1, or ``--build OUT`` the static site.

Serves the site shipped in the package and, from DEST (a folder or ``s3://bucket/prefix``), the
rollups only (:mod:`pipeline.app.dashboard`); run ``clickstream-etl rollup DEST`` first.  For the
stack's hosted dashboard (``Dashboard`` enabled), ``--publish s3://SITE_BUCKET`` puts the site's
files into its bucket (the distribution reads the rollups from the output bucket) and
``--password-hash USER`` prints the ``DashboardPasswordHash`` parameter (the password is read
from standard input, or prompted for on a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any, TextIO

from pipeline.app.arguments import config_argument, non_negative_int
from pipeline.app.cli import EXIT_OK
from pipeline.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dest",
        metavar="DEST",
        nargs="?",
        help="the dataset with its rollups: a folder or s3://bucket/prefix (not with --publish, --password-hash)",
    )
    parser.add_argument(
        "--port", type=non_negative_int, default=8321, metavar="N", help="port on 127.0.0.1 (default 8321)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--build",
        metavar="OUT",
        help="write the static site and the rollups into OUT (for S3 hosting) instead of serving",
    )
    action.add_argument(
        "--publish",
        metavar="S3_URL",
        help="put the site's files into the stack's DashboardSiteBucket (s3://bucket[/prefix]); "
        "the deployed distribution reads the rollups from the output bucket",
    )
    action.add_argument(
        "--password-hash",
        metavar="USER",
        help="print DashboardPasswordHash for USER (the password from standard input, or a prompt)",
    )
    parser.add_argument(
        "--realtime-url",
        metavar="URL",
        help="the collector's GET /realtime (e.g. https://c.example.com/realtime): shows the real-time "
        "tile when serving, --build or --publish; without it the tile is hidden",
    )
    config_argument(parser)


def run(args: argparse.Namespace, *, s3: Any = None, out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    from pipeline.app.dashboard import build_site, open_store, password_hash, publish_plan, publish_site, serve

    out = out or sys.stdout
    # A Namespace built by hand (the older tests, a caller of run) may lack the newer options.
    user, publish = getattr(args, "password_hash", None), getattr(args, "publish", None)
    realtime_url = getattr(args, "realtime_url", None)
    if user is not None:
        stdin = stdin or sys.stdin
        password = getpass.getpass("dashboard password: ") if stdin.isatty() else stdin.readline().rstrip("\r\n")
        out.write(password_hash(user, password) + "\n")
        return EXIT_OK
    if publish:
        from pipeline.app.sources import S3Url

        url = S3Url.parse(publish)
        if s3 is None:
            from pipeline.aws.clients import make_client
            from pipeline.config import load_config

            s3 = make_client("s3", load_config(args.config).aws)
        keys = publish_site(s3, url.bucket, publish_plan(url.prefix, realtime_url=realtime_url))
        out.write(f"dashboard: {len(keys)} site files published to s3://{url.bucket}/ ({', '.join(keys)})\n")
        return EXIT_OK
    if args.dest is None:
        raise InputError("give DEST (the dataset with its rollups), or --publish S3_URL, or --password-hash USER")
    store = open_store(args.dest, args.config, s3=s3)
    if args.build:
        written = build_site(store, Path(args.build), realtime_url=realtime_url)
        out.write(f"dashboard: {len(written)} files written to {args.build} (site and rollups)\n")
        return EXIT_OK
    server = serve(store, args.port, realtime_url=realtime_url)
    host, port = server.server_address[:2]
    out.write(f"dashboard of {store.url()} at http://{host!s}:{port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK
