"""The "Testing your transforms" guide, followed literally in a fresh project (issue 13, item 4).

GIVEN the code blocks of ``docs/testing-your-transforms.md``, each introduced by a marker comment:
      ``<!-- file: PATH -->`` (a file of the user's project), ``<!-- run: NAME -->`` (shell commands
      run in the project, in order), ``<!-- fails: PATH -->`` (a test file meant to fail),
      ``<!-- prints: NAME -->`` (what the run or failing file NAME prints) or
      ``<!-- skip: why -->`` (not run, and why)
WHEN the files are written into a folder outside this repository and the commands run there,
     with the plugin found through the installed package's entry point as in a user's project
THEN every command succeeds, prints what the guide says it prints, the guide's tests all pass,
     the failing example fails with the messages shown, and the reference names every public
     name of the kit and the step API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import pipeline.testing
import pipeline.testing.plugin
import transform.steps

ROOT = Path(__file__).resolve().parents[2]
GUIDE_PATH = ROOT / "docs" / "testing-your-transforms.md"
GUIDE = GUIDE_PATH.read_text("utf-8")
MARKERS = ("file", "run", "fails", "prints", "skip")
BLOCK = re.compile(r"<!-- (\w+): (.+?) -->\n```[\w-]*\n(.*?)^```$", re.DOTALL | re.MULTILINE)
CONTINUES = "[...]"  # a line of a "prints" block ending so is matched as a prefix
# A guide that took a minute would be a guide nobody runs; this only stops a hung subprocess.
SUBPROCESS_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    marker: str
    target: str
    text: str


def guide_blocks() -> list[Block]:
    return [Block(m.group(1), m.group(2).strip(), m.group(3)) for m in BLOCK.finditer(GUIDE)]


def blocks(marker: str) -> list[Block]:
    return [block for block in guide_blocks() if block.marker == marker]


def printed(name: str) -> str:
    [block] = [b for b in blocks("prints") if b.target == name]
    return block.text


def assert_printed(expected: str, output: str) -> None:
    """Each line of ``expected`` is a line of ``output`` (whitespace at the ends aside), in that order."""
    lines = [line.strip() for line in output.splitlines()]
    position = 0
    for wanted in (line.strip() for line in expected.splitlines()):
        if not wanted:
            continue
        prefix = wanted.removesuffix(CONTINUES).rstrip() if wanted.endswith(CONTINUES) else None
        for index in range(position, len(lines)):
            if lines[index] == wanted or (prefix is not None and lines[index].startswith(prefix)):
                position = index + 1
                break
        else:
            raise AssertionError(f"the guide shows {wanted!r}, not printed (in this order) in:\n{output[-6000:]}")


def user_environment() -> dict[str, str]:
    """This interpreter's venv first on PATH (``python``, ``clickstream-etl``); nothing of this test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CLICKSTREAM_", "COV_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_in(project: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=project,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


@dataclass(frozen=True)
class FollowedGuide:
    project: Path
    outputs: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> FollowedGuide:
    """The guide followed in an empty folder (outside the repository): its files written, its commands run."""
    project = tmp_path_factory.mktemp("guide_project")
    assert not project.resolve().is_relative_to(ROOT)
    for block in blocks("file"):
        path = project / block.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text, "utf-8")
    outputs = {block.target: run_in(project, ["bash", "-eu", "-c", block.text]) for block in blocks("run")}
    return FollowedGuide(project, outputs)


def test_every_code_block_of_the_guide_is_executed_or_says_why_not() -> None:
    fences = [line for line in GUIDE.splitlines() if line.startswith("```")]
    found = guide_blocks()
    assert len(fences) == 2 * len(found), "a code block of the guide has no marker comment"
    assert {block.marker for block in found} <= set(MARKERS)
    assert [b.target for b in blocks("file")] == list(dict.fromkeys(b.target for b in blocks("file")))
    # The three kinds of test the issue asks the guide to show, and the step they test.
    files = {block.target: block.text for block in blocks("file")}
    assert "mysteps:" in files["pipeline.toml"] and "DropEvent" in files["mysteps.py"]
    assert "run_transform(" in files["tests/test_mysteps.py"]
    assert "kinesis_event(" in files["tests/test_handler.py"] and "handle(" in files["tests/test_handler.py"]
    assert "(chain" in files["tests/test_chain.py"]
    assert {b.target for b in blocks("prints")} <= {b.target for b in blocks("run") + blocks("fails")}


def test_the_reference_names_every_public_name_of_the_kit_and_the_step_api() -> None:
    reference = GUIDE.split("## 9. Reference", 1)[1]
    listed = set(re.findall(r"^\| `(@?[\w.]+)", reference, re.MULTILINE))
    fixtures = set(re.findall(r"``(clickstream_\w+|chain)``", pipeline.testing.plugin.__doc__ or ""))
    assert fixtures >= {"clickstream_config", "clickstream_aws", "clickstream_sample_logs", "chain"}
    public = {*pipeline.testing.__all__, *transform.steps.__all__, *fixtures, "@pytest.mark.clickstream_config"}
    assert public - listed == set(), "public names missing from the guide's reference"


@pytest.mark.slow
def test_the_guides_commands_succeed_and_print_what_it_shows(followed: FollowedGuide) -> None:
    for name, result in followed.outputs.items():
        assert result.returncode == 0, f"{name}: {result.stdout[-4000:]}{result.stderr[-2000:]}"
    for block in blocks("prints"):
        if block.target in followed.outputs:
            assert_printed(block.text, followed.outputs[block.target].stdout)
    # The backfill wrote the bad row the guide describes, under its kind.
    [bad_file] = (followed.project / "out" / "bad" / "enrichment_failure").iterdir()
    assert "step 'campaign_from_cmp' failed: ValueError" in bad_file.read_text("utf-8")


def test_the_guides_tests_all_pass_in_the_project(followed: FollowedGuide) -> None:
    expected = sum(
        len(re.findall(r"^def test_", block.text, re.MULTILINE))
        for block in blocks("file")
        if block.target.startswith("tests/")
    )
    assert expected >= 9
    [result] = [r for name, r in followed.outputs.items() if name == "pytest"]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"=+ {expected} passed in [\d.]+s =+", summary), result.stdout[-4000:]


def test_the_failing_example_prints_what_the_guide_shows(followed: FollowedGuide) -> None:
    [block] = blocks("fails")
    path = followed.project / block.target
    path.write_text(block.text, "utf-8")
    try:
        result = run_in(followed.project, [sys.executable, "-m", "pytest", block.target])
    finally:
        path.unlink()
    failing = len(re.findall(r"^def test_", block.text, re.MULTILINE))
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(rf"=+ {failing} failed in", result.stdout), result.stdout[-2000:]
    assert_printed(printed(block.target), result.stdout)
