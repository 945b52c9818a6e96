"""A non-editable install (the Quickstart's `pip install .`) must ship every package."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_the_top_level_ones_is_listed_for_setuptools() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "extract", "transform", "load", "config")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"not shipped by `pip install .`: {sorted(found - listed)}"
