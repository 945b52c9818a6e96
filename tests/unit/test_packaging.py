"""A non-editable install (the Quickstart's `pip install .`) must ship every package."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_the_top_level_ones_is_shipped() -> None:
    from fnmatch import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "extract", "transform", "load", "config")
        for init in (ROOT / top).rglob("__init__.py")
    }
    missing = sorted(name for name in found if not any(fnmatch(name, pattern) for pattern in patterns))
    assert not missing, f"not shipped by `pip install .`: {missing}"
    assert "pipeline.app.local" in found
