"""The README says what the commands do (audit item 19 of issue 9): its synopses list every option."""

from __future__ import annotations

import argparse
import json
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
    synopsis = README[match.start() : match.start() + 1200].split("```")[0].split("` (")[0]
    listed = set(re.findall(r"--[a-z][a-z-]*", synopsis))
    assert options_of(command) <= listed, f"missing from the README: {sorted(options_of(command) - listed)}"


def test_the_readme_duckdb_query_on_typed_entity_columns_runs_on_a_backfilled_sample(tmp_path: Path) -> None:
    # GIVEN a dataset backfilled from generated logs (page views and pings carry a web_page context)
    import duckdb
    import pyarrow.dataset as ds

    from pipeline.app.cli import main
    from pipeline.testing.generate import GenerateOptions, generate_logs

    generate_logs(tmp_path / "logs", GenerateOptions(files=1, lines_per_file=400, seed=7, hours=2))
    dest = tmp_path / "out"
    assert main(["backfill", str(tmp_path / "logs"), "--output", str(dest), "--workers", "1"]) == 0
    # WHEN the README's query runs on it
    section = README.split("### Typed entity columns in Parquet", 1)[1]
    query = section.split("```sql", 1)[1].split("```", 1)[0]
    assert "contexts_com_snowplowanalytics_snowplow_web_page_1" in query
    got = duckdb.execute(query.replace("'out/events/", f"'{dest}/events/")).fetchall()
    # THEN it gives what the JSON column says
    pings: dict[str, int] = {}
    for row in ds.dataset(dest / "events", format="parquet").to_table(columns=["event", "contexts"]).to_pylist():
        if row["contexts"] is None:
            continue
        pages = [e["data"]["id"] for e in json.loads(row["contexts"])["data"] if "/web_page/" in e["schema"]]
        pings[pages[0]] = pings.get(pages[0], 0) + (row["event"] == "page_ping")
    expected = sorted(pings.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert got == expected and got[0][1] > 0
