"""The README says what the commands do (audit item 19 of issue 9): its synopses list every option."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pipeline.app.cli import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")


def options_of(command: str) -> set[str]:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub = subparsers.choices[command]
    return {flag for action in sub._actions for flag in action.option_strings if flag.startswith("--")} - {"--help"}


@pytest.mark.parametrize("command", ["generate-logs", "backfill"])
def test_the_readme_synopsis_of_a_command_lists_each_of_its_options(command: str) -> None:
    match = re.search(rf"clickstream-etl {command} [A-Z_]+[^`\n]*(?:\n[^`\n]*)*?[`\n]{{1}}", README)
    assert match, f"no synopsis of {command} in the README"
    synopsis = README[match.start() : match.start() + 600].split("```")[0].split("` (")[0]
    listed = set(re.findall(r"--[a-z][a-z-]*", synopsis))
    assert options_of(command) <= listed, f"missing from the README: {sorted(options_of(command) - listed)}"
