"""The dashboard's bundle shipped in the package (pipeline/app/dashboard_site/) is what a fresh
``npm run build`` of web/dashboard/ writes: the build is deterministic, so a stale commit fails here.
Needs node and web/dashboard/node_modules (``npm ci``; .ci/run does it before the tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.app.dashboard import SITE_FILES, site_folder

ROOT = Path(__file__).resolve().parents[2]
FRONT = ROOT / "web" / "dashboard"


def test_the_shipped_bundle_equals_a_fresh_build(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (FRONT / "node_modules" / "hyparquet").is_dir():
        pytest.skip("node or web/dashboard/node_modules missing: run npm ci in web/dashboard (CI does)")
    environment = {**os.environ, "DASHBOARD_OUT": str(tmp_path)}
    subprocess.run([node, "build.mjs"], cwd=FRONT, env=environment, check=True, timeout=120)
    shipped = site_folder()
    for name in SITE_FILES:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), f"{name}: run npm run build"


def test_the_front_end_dependencies_are_pinned() -> None:
    package = json.loads((FRONT / "package.json").read_text())
    lock = json.loads((FRONT / "package-lock.json").read_text())
    for version in {**package["dependencies"], **package["devDependencies"]}.values():
        assert version[0].isdigit(), f"{version}: pin exact versions"
    assert "hyparquet" in package["dependencies"] and "duckdb" not in json.dumps(package)
    assert lock["packages"]["node_modules/hyparquet"]["version"] == package["dependencies"]["hyparquet"]
    assert (site_folder() / "app.js").stat().st_size < 200_000  # a small reader, not a database engine
