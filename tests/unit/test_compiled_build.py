"""The optional compiled build (setup.py, pipeline/compiled.py): one module list, honest reporting.

CI runs the unit suite twice: on the sources, and again after compiling the modules in place
with ``CLICKSTREAM_ETL_EXPECT_COMPILED=1`` (.ci/run), so the output oracle and every other unit
test hold on both builds.  The test below then insists the compiled modules are really in use.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from pipeline.app.packaging import _copy_source
from pipeline.compiled import COMPILED_MODULES, build_description, compiled_modules

ROOT = Path(__file__).resolve().parents[2]


def _setup_modules() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED_MODULES" for target in node.targets
        ):
            paths = ast.literal_eval(node.value)
            return tuple(path.removesuffix(".py").replace("/", ".") for path in paths)
    raise AssertionError("setup.py has no COMPILED_MODULES")


def test_setup_compiles_the_modules_the_package_reports() -> None:
    assert _setup_modules() == COMPILED_MODULES
    for name in COMPILED_MODULES:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


def test_the_build_in_use_is_the_one_expected() -> None:
    expected = COMPILED_MODULES if os.environ.get("CLICKSTREAM_ETL_EXPECT_COMPILED") == "1" else ()
    assert compiled_modules() == expected
    description = build_description()
    assert description == ("pure Python" if not expected else f"compiled ({len(expected)} of {len(expected)} modules)")


def test_version_names_the_build() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", "--version"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == f"clickstream-etl 0.1.0 ({build_description()})"


def test_lambda_artifacts_never_take_compiled_extensions_from_the_checkout(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    (source / "transform").mkdir(parents=True)
    (source / "transform" / "tracker.py").write_text("X = 1\n")
    (source / "transform" / "tracker.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (source / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    dest = tmp_path / "copy"
    dest.mkdir()
    _copy_source(source, dest, ("pyproject.toml", "transform"))
    assert sorted(p.name for p in (dest / "transform").iterdir()) == ["tracker.py"]
