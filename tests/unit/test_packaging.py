"""What `pip install clickstream-etl` ships, and what works from any folder once installed.

Audit items 16 and 17 of issue 9: the default configuration and data live in a uniquely
named data package (no top-level ``config`` to shadow a user's ``config.py``), the sample
logs ship as package data, and the AWS emulator is the ``local`` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from pipeline.bundled import DATA_PACKAGE, data_text, sample_logs

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "extract", "transform", "load")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert "config" not in listed and DATA_PACKAGE in listed
    assert PYPROJECT["tool"]["setuptools"]["package-dir"][DATA_PACKAGE] == "config"


def test_the_emulator_is_an_extra_not_a_dependency() -> None:
    project = PYPROJECT["project"]
    assert not [dep for dep in project["dependencies"] if dep.startswith(("moto", "flask", "docker"))]
    assert any(dep.startswith("moto[server") for dep in project["optional-dependencies"]["local"])


def test_given_another_working_folder_when_reading_bundled_files_then_they_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.py").write_text("raise SystemExit('a user module named config was imported')\n")
    assert "[transform]" in data_text("default.toml")
    samples = sorted(path.name for path in sample_logs().glob("*.gz"))
    assert samples == sorted(path.name for path in (ROOT / "samples" / "cloudfront").glob("*.gz"))
    assert len(samples) == 3


def test_given_a_users_config_module_when_the_cli_starts_then_it_is_not_imported(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("raise SystemExit('a user module named config was imported')\n")
    done = subprocess.run(
        [sys.executable, "-c", "from pipeline.app.cli import main; main(['redshift', 'ddl'])"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE" in done.stdout


def test_given_no_emulator_when_run_local_starts_then_it_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.app.cli import main

    monkeypatch.setitem(sys.modules, "moto", None)  # what Python reports for a package not installed
    assert main(["run-local"]) == 2
    assert "pip install 'clickstream-etl[local]'" in capsys.readouterr().err


def test_samples_command_copies_the_shipped_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.app.cli import main

    assert main(["samples", str(tmp_path / "logs")]) == 0
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(p.name for p in sample_logs().glob("*.gz"))


@pytest.mark.slow
def test_the_wheel_holds_the_data_package_and_no_top_level_config(tmp_path: Path) -> None:
    # From a copy: a build/ folder left in the checkout by an older build would leak into the wheel.
    source = tmp_path / "source"
    skipped = shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__", "node_modules")
    shutil.copytree(ROOT, source, ignore=skipped)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    # A data folder with an importable name that is not listed makes setuptools warn, at every
    # install from source, that the package "would be ignored".
    assert "is absent from the `packages` configuration" not in built.stderr
    (wheel,) = tmp_path.glob("clickstream_etl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name and ".dist-info" not in name}
    assert tops == {"pipeline", "extract", "transform", "load", DATA_PACKAGE}
    for data in (
        "default.toml",
        "referers.json",
        "samples/cloudfront/E3LEGACY23FLDS.2024-11-15-11.c87ea15c.gz",
        "iglu/MANIFEST.json",
        "iglu/LICENSE",
        "iglu/schemas/com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
    ):
        assert f"{DATA_PACKAGE}/{data}" in names
    assert "pipeline/canonical_event.tsv" in names
