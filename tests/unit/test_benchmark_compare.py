"""benchmarks/compare.py: the pieces that decide its figures and its verdict on the outputs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_compare", ROOT / "benchmarks" / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compare = _load()


def test_the_ratio_is_the_geometric_mean_of_the_paired_ratios() -> None:
    # Round 2 ran on a machine twice as slow for both: the pairs agree on 1.1 and 0.9.
    assert compare.paired_ratio([1.1, 1.8], [1.0, 2.0]) == pytest.approx(math.sqrt(1.1 * 0.9))
    assert compare.paired_ratio([2.0, 4.0], [2.0, 4.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same"):
        compare.paired_ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        compare.paired_ratio([], [])


def test_each_variant_opens_a_round_in_turn() -> None:
    variants = ["ref", "head", "overlay"]
    orders = [compare.rotated(variants, index) for index in range(-1, 3)]
    assert orders[1:] == [["ref", "head", "overlay"], ["head", "overlay", "ref"], ["overlay", "ref", "head"]]
    assert orders[0] == ["overlay", "ref", "head"]  # the warm-up round (-1) rotates too
    assert sorted(variant[0] for variant in orders[1:]) == sorted(variants)


def test_a_tree_runs_with_its_own_data_package(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "config").mkdir(parents=True)
    (tree / "config" / "__init__.py").write_text("")
    (tree / "config" / "default.toml").write_text("# this tree's defaults\n")
    path = compare.python_path(tree, tmp_path / "shims")
    first, shim = path.split(":")
    assert first == str(tree)
    assert (Path(shim) / "clickstream_etl_data" / "default.toml").read_text() == "# this tree's defaults\n"
    assert compare.python_path(tree, tmp_path / "shims") == path  # again: the link is kept


def test_an_older_tree_without_the_data_package_gets_no_link(tmp_path: Path) -> None:
    tree = tmp_path / "old"
    (tree / "pipeline").mkdir(parents=True)
    (tree / "pipeline" / "cli.py").write_text("")
    shim = Path(compare.python_path(tree, tmp_path / "shims").split(":")[1])
    assert not (shim / "clickstream_etl_data").exists()
    assert compare.Variant("old", tree).cli_module == "pipeline.cli"
    assert compare.Variant("new", ROOT).cli_module == "pipeline.app.cli"


def _bad_row(folder: Path, name: str, rows: list[dict[str, object]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))


def _output(dest: Path, events: list[dict[str, object]], bad: list[dict[str, object]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dest / "events" / "event_date=2024-11-15"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(events), folder / "part-00000.parquet")
    _bad_row(dest / "bad" / "field_count", "a.jsonl", bad)


def test_outputs_are_identical_but_for_etl_tstamp_and_failure_timestamps(tmp_path: Path) -> None:
    event = {"event_id": "e1", "event_fingerprint": "f1", "app_id": "shop"}
    bad = {"data": {"failure": {"kind": "field_count", "messages": ["m"], "timestamp": "T1"}, "payload": {"raw": "x"}}}
    _output(tmp_path / "a", [{**event, "etl_tstamp": 1}], [bad])
    later = json.loads(json.dumps(bad))
    later["data"]["failure"]["timestamp"] = "T2"
    _output(tmp_path / "b", [{**event, "etl_tstamp": 2}], [later])
    assert compare.same_output(tmp_path / "b", tmp_path / "a") == "identical"


def test_what_differs_is_named(tmp_path: Path) -> None:
    base = {"event_id": "e1", "event_fingerprint": "f1", "app_id": "shop"}
    bad = {"data": {"failure": {"kind": "field_count", "messages": ["m"]}, "payload": {"raw": "x"}}}
    _output(tmp_path / "ref", [base], [bad])
    _output(tmp_path / "values", [{**base, "app_id": "blog"}], [bad])
    _output(tmp_path / "columns", [{**base, "typed": 1}], [])
    assert compare.same_output(tmp_path / "values", tmp_path / "ref") == "values differ in app_id"
    verdict = compare.same_output(tmp_path / "columns", tmp_path / "ref")
    assert "columns in one only: typed" in verdict and "bad rows differ (0 against 1)" in verdict


def test_only_the_failure_timestamp_is_ignored_in_bad_rows(tmp_path: Path) -> None:
    def row(when: str, payload_time: str) -> dict[str, object]:
        failure = {"kind": "field_invalid", "messages": ["m"], "timestamp": when}
        return {"data": {"failure": failure, "payload": {"raw": "x", "timestamp": payload_time}}}

    _bad_row(tmp_path / "a" / "bad" / "field_invalid", "a.jsonl", [row("T1", "P")])
    _bad_row(tmp_path / "b" / "bad" / "field_invalid", "a.jsonl", [row("T2", "P")])
    _bad_row(tmp_path / "c" / "bad" / "field_invalid", "a.jsonl", [row("T1", "other")])
    assert compare.bad_rows(tmp_path / "a") == compare.bad_rows(tmp_path / "b")
    assert compare.bad_rows(tmp_path / "a") != compare.bad_rows(tmp_path / "c")


def test_runs_that_wrote_no_event_compare_as_identical(tmp_path: Path) -> None:
    bad = {"data": {"failure": {"kind": "field_count", "messages": ["m"]}, "payload": {"raw": "x"}}}
    for name in ("a", "b"):
        _bad_row(tmp_path / name / "bad" / "field_count", "a.jsonl", [bad])
    assert compare.same_output(tmp_path / "b", tmp_path / "a") == "identical"
