#!/usr/bin/env python3
"""Refresh the Iglu Central schemas shipped in ``config/iglu/schemas`` from a checkout.

Usage::

    git clone https://github.com/snowplow/iglu-central /tmp/iglu-central
    python scripts/update_iglu.py /tmp/iglu-central [--check]

Copies every schema of the vendors in :data:`VENDORS` (the ones Snowplow's trackers send by
default: web page, client session, browser, geolocation, mobile and media contexts, link
clicks, forms, site search, errors, e-commerce, performance timing...), exactly as upstream
has them, and rewrites ``config/iglu/MANIFEST.json``: the upstream commit, and the sha256 of
each file, which tests/unit/test_iglu.py checks against the shipped copies.  ``--check``
compares without writing (exit status 1 on a difference).  Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET = REPO_ROOT / "config" / "iglu"
VENDORS = (
    "com.snowplowanalytics.snowplow",
    "com.snowplowanalytics.snowplow.media",
    "com.snowplowanalytics.snowplow.ecommerce",
    "com.snowplowanalytics.mobile",
    "com.snowplowanalytics.iglu",
    "com.snowplowanalytics.self-desc",
    "com.google.analytics",
    "org.w3",
)


def collect(checkout: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for vendor in VENDORS:
        root = checkout / "schemas" / vendor
        if not root.is_dir():
            raise SystemExit(f"error: {root} is not a folder; is {checkout} an iglu-central checkout?")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            files[path.relative_to(checkout).as_posix()] = path.read_bytes()
    return files


def manifest(checkout: Path, files: dict[str, bytes]) -> dict[str, object]:
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "source": "https://github.com/snowplow/iglu-central",
        "commit": commit or "unknown",
        "licence": "Apache-2.0",
        "vendors": list(VENDORS),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a local clone of snowplow/iglu-central")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    files = collect(args.checkout)
    wanted = manifest(args.checkout, files)
    text = json.dumps(wanted, indent=1, sort_keys=True) + "\n"
    current = TARGET / "MANIFEST.json"
    if args.check:
        same = current.exists() and json.loads(current.read_text())["files"] == wanted["files"]
        print("up to date" if same else "differs from upstream", file=sys.stderr)
        return 0 if same else 1
    shutil.rmtree(TARGET / "schemas", ignore_errors=True)
    for name, data in files.items():
        path = TARGET / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    current.write_text(text, encoding="utf-8")
    print(f"{len(files)} schemas from {wanted['commit']} in {TARGET / 'schemas'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
