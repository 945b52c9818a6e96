"""The house's floors: the foundation never imports the stages, and nothing imports in a circle.

GIVEN every module of the packages
WHEN their imports (module level and inside functions) are read, and each foundation module is imported alone
THEN no module under ``pipeline/`` outside ``pipeline.app`` reaches extract, transform or load,
     ``transform`` never imports boto3, and the import graph has no cycle.

The testing kit (``pipeline.testing``) is foundation too, except its runners (:data:`KIT_RUNNERS`),
which run the stages and the roof's local chain and so may import both.  Nothing outside the kit
imports a runner; the foundation and the stages never import the kit at all (the roof may use
its event factories, fake context and generator).  ``import pipeline.testing`` names the runners
only lazily, which the run-time test below checks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "extract", "transform", "load")
STAGES = ("extract", "transform", "load")
ROOF = "pipeline.app"
KIT = "pipeline.testing"
KIT_RUNNERS = ("pipeline.testing.stages", "pipeline.testing.chain", "pipeline.testing.esm", "pipeline.testing.plugin")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports, anywhere in its body (resolved to known modules)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for candidate in candidates:
            # the longest known module that the imported name lives in
            parts = candidate.split(".")
            for end in range(len(parts), 0, -1):
                module = ".".join(parts[:end])
                if module in MODULES and module != name:
                    targets.add(module)
                    break
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_foundation(name: str) -> bool:
    in_pipeline = name == "pipeline" or name.startswith("pipeline.")
    return in_pipeline and not (name == ROOF or name.startswith(ROOF + ".")) and name not in KIT_RUNNERS


def _in_kit(name: str) -> bool:
    return name == KIT or name.startswith(KIT + ".")


def test_the_foundation_never_imports_a_stage() -> None:
    offenders = {
        name: sorted(t for t in targets if t.split(".")[0] in STAGES)
        for name, targets in GRAPH.items()
        if _is_foundation(name)
    }
    offenders = {name: targets for name, targets in offenders.items() if targets}
    assert not offenders, f"foundation modules importing stages: {offenders}"


def test_the_foundation_never_imports_the_roof() -> None:
    offenders = {
        name: sorted(t for t in targets if t == ROOF or t.startswith(ROOF + "."))
        for name, targets in GRAPH.items()
        if _is_foundation(name)
    }
    assert not {n: t for n, t in offenders.items() if t}


def test_nothing_outside_the_kit_imports_its_runners_and_only_the_roof_imports_the_kit() -> None:
    runners = {name: sorted(t for t in targets if t in KIT_RUNNERS) for name, targets in GRAPH.items()}
    assert not {n: t for n, t in runners.items() if t and not _in_kit(n)}, "modules importing the kit's runners"
    kit_users = {
        name: sorted(t for t in targets if _in_kit(t))
        for name, targets in GRAPH.items()
        if not _in_kit(name) and not (name == ROOF or name.startswith(ROOF + "."))
    }
    assert not {n: t for n, t in kit_users.items() if t}, "foundation or stage modules importing the testing kit"


def test_transform_never_imports_boto3() -> None:
    for name, path in MODULES.items():
        if name.split(".")[0] != "transform":
            continue
        tree = ast.parse(path.read_text("utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
            n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        }
        assert not {m for m in imported if m.split(".")[0] in ("boto3", "botocore")}, name


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if not state.get(target):
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if not state.get(name):
            visit(name)


def test_importing_any_foundation_module_loads_no_stage() -> None:
    """The same, at run time: each foundation module imported alone in a fresh interpreter."""
    foundation = sorted(name for name in MODULES if _is_foundation(name))
    code = (
        "import importlib, sys\n"
        f"for name in {foundation!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {STAGES!r} or m.startswith('{ROOF}'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
