"""The README's reliability section covers the whole reliability catalogue, and its tests exist.

The catalogue (bad input A01-A17, faults F01-F21, load L01-L08, security S01-S12) is the
project's list of what must hold; the README has one row per ID saying what holds and which
tests prove it (``path::test_name``), or why it does not apply yet ("not yet: ..." naming the
issue that brings it, or "not applicable: ...").  Each named test must exist and name the ID
in its name or docstring, so a renamed or deleted test breaks this one instead of the docs
silently lying.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = (
    [f"A{n:02d}" for n in range(1, 18)]
    + [f"F{n:02d}" for n in range(1, 22)]
    + [f"L{n:02d}" for n in range(1, 9)]
    + [f"S{n:02d}" for n in range(1, 13)]
)
ROW = re.compile(r"^\| (?P<id>[AFLS]\d{2}) \| (?P<case>[^|]+) \| (?P<holds>[^|]+) \| (?P<tests>[^|]+) \|$")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def catalogue_rows() -> dict[str, dict[str, str]]:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("\n## Reliability\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        match = ROW.match(line.strip())
        if match:
            assert match["id"] not in rows, f"{match['id']} is listed twice"
            rows[match["id"]] = match.groupdict()
    return rows


def functions_of(path: Path) -> dict[str, str]:
    """Test function name -> its name and docstring (what may mention catalogue IDs)."""
    tree = ast.parse(path.read_text("utf-8"))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found[node.name] = f"{node.name} {ast.get_docstring(node) or ''}"
    return found


def mentions(text: str, ident: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){ident}(?![0-9])", text, re.IGNORECASE) is not None


def test_every_catalogue_id_has_one_row() -> None:
    rows = catalogue_rows()
    assert sorted(rows) == sorted(CATALOGUE), f"missing: {sorted(set(CATALOGUE) - set(rows))}"


@pytest.mark.slow
def test_every_row_names_existing_tests_that_name_it_or_says_why_not() -> None:
    problems: list[str] = []
    for ident, row in catalogue_rows().items():
        refs = TEST_REF.findall(row["tests"])
        if not refs:
            if not re.match(r"\s*(not yet|not applicable): \S", row["tests"]):
                problems.append(f"{ident}: neither tests nor 'not yet: <why>' / 'not applicable: <why>'")
            continue
        for path, name in refs:
            functions = functions_of(ROOT / path) if (ROOT / path).exists() else {}
            if name not in functions:
                problems.append(f"{ident}: {path}::{name} does not exist")
            elif not mentions(functions[name], ident):
                problems.append(f"{ident}: {path}::{name} does not name {ident} in its name or docstring")
    assert not problems, "\n".join(problems)
