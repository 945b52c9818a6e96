"""``clickstream-etl dashboard DEST``: serve the dashboard on 127.0.0.1, or ``--build OUT`` the static site.

Serves the site shipped in the package and, from DEST (a folder or ``s3://bucket/prefix``), the
rollups only (:mod:`pipeline.app.dashboard`); run ``clickstream-etl rollup DEST`` first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from pipeline.app.arguments import config_argument, non_negative_int
from pipeline.app.cli import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", metavar="DEST", help="the dataset with its rollups: a folder or s3://bucket/prefix")
    parser.add_argument(
        "--port", type=non_negative_int, default=8321, metavar="N", help="port on 127.0.0.1 (default 8321)"
    )
    parser.add_argument(
        "--build",
        metavar="OUT",
        help="write the static site and the rollups into OUT (for S3 hosting) instead of serving",
    )
    config_argument(parser)


def run(args: argparse.Namespace, *, s3: Any = None, out: TextIO | None = None) -> int:
    from pipeline.app.dashboard import build_site, open_store, serve

    out = out or sys.stdout
    store = open_store(args.dest, args.config, s3=s3)
    if args.build:
        written = build_site(store, Path(args.build))
        out.write(f"dashboard: {len(written)} files written to {args.build} (site and rollups)\n")
        return EXIT_OK
    server = serve(store, args.port)
    host, port = server.server_address[:2]
    out.write(f"dashboard of {store.url()} at http://{host!s}:{port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK
