"""Backfill at another git revision beside this checkout, on the same files in the same run.

    python benchmarks/compare.py a127775                             # both profiles, 10 MB, 9 rounds (~3 min)
    python benchmarks/compare.py a127775 --overlay same-work.toml    # this checkout a second time, with an overlay
    python benchmarks/compare.py HEAD~3 --profiles classic --size-mb 30 --rounds 5 --json out.json
    python benchmarks/compare.py v1 v2 v3 --profiles classic      # several revisions beside the first (bisecting)

It answers "did this change cost throughput?", which ``benchmarks/run.py`` cannot: that one
compares with DuckDB, and this class of machine drifts by 15-30% between minutes, far more
than a change costs.  Here the revision ``REF`` is checked out into a temporary git worktree
and both trees run ``backfill`` as whole processes (interpreter start, imports and the Parquet
write included) on the same generated logs, once each per round, in an order that rotates
between rounds, after a warm-up round that is not counted (the first runs read cold files).
Runs of one round are seconds apart, so the ratio of a pair is far steadier than either time:
the report's ratio is the geometric mean of the per-round ratios of CPU seconds (user +
system), beside the fastest wall time of each variant and the spread of the ratios.  Both
trees run from their sources with the same interpreter and packages (this checkout's
environment), so only the code differs.

With ``--overlay FILE`` this checkout also runs with that configuration overlay (a variant of
its own), for a change that added work behind a setting: switch the setting off to compare the
same work.  For each variant the report also says whether it wrote the same rows and the same
bad rows as ``REF`` (ignoring ``etl_tstamp`` and the failure timestamps, which differ between
runs), or what differs: a feature added since ``REF`` shows up there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
sys.path.insert(0, str(BENCHMARKS))

from run import PROFILES, byte_compile, compile_packages, generate, run_process  # noqa: E402

_DATA_FOLDER = "config"
"""The folder ``pyproject.toml`` installs as the ``clickstream_etl_data`` package."""


@dataclass
class Variant:
    """One way of running ``backfill``: a source tree, its CLI module, and an optional overlay."""

    name: str
    tree: Path
    overlay: Path | None = None
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per profile, one result per round (seconds, cpu_seconds, peak_rss_mb)."""

    @property
    def cli_module(self) -> str:
        # The CLI moved from pipeline/cli.py to pipeline/app/cli.py with the layout of issue 8.
        return "pipeline.app.cli" if (self.tree / "pipeline" / "app" / "cli.py").exists() else "pipeline.cli"

    def command(self, logs: Path, dest: Path, workers: int) -> list[str]:
        command = [sys.executable, "-m", self.cli_module, "backfill", str(logs), "--output", str(dest)]
        command += ["--workers", str(workers)]
        if self.overlay is not None:
            command += ["--config", str(self.overlay)]
        return command


def python_path(tree: Path, shims: Path) -> str:
    """The import path that makes ``tree`` the package: its folder, then a shim folder whose links name
    the data package the way ``pyproject.toml`` maps it (``clickstream_etl_data`` is ``config/``)."""
    shim = shims / tree.name
    shim.mkdir(parents=True, exist_ok=True)
    if (tree / _DATA_FOLDER / "__init__.py").exists() and not (shim / "clickstream_etl_data").exists():
        (shim / "clickstream_etl_data").symlink_to(tree / _DATA_FOLDER, target_is_directory=True)
    return os.pathsep.join([str(tree), str(shim)])


def paired_ratio(values: list[float], baseline: list[float]) -> float:
    """The geometric mean of the per-round ratios ``values[i] / baseline[i]``."""
    if len(values) != len(baseline) or not values:
        raise ValueError("paired ratios need the same, non-zero number of runs on both sides")
    return math.exp(statistics.fmean(math.log(v / b) for v, b in zip(values, baseline, strict=True)))


def rotated(variants: list[Variant], round_index: int) -> list[Variant]:
    """The variants in the order they run in round ``round_index`` (each starts a round in turn)."""
    shift = round_index % len(variants)
    return variants[shift:] + variants[:shift]


def _without_failure_timestamp(row: dict[str, Any]) -> dict[str, Any]:
    failure = row.get("data", {}).get("failure")
    if isinstance(failure, dict):
        failure.pop("timestamp", None)  # when the run wrote the row: differs between any two runs
    return row


def bad_rows(dest: Path) -> list[str]:
    """The bad rows under ``dest/bad``, each as sorted JSON without its failure timestamp, sorted."""
    found = []
    for path in sorted((dest / "bad").rglob("*")):
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                found += [json.dumps(_without_failure_timestamp(json.loads(line)), sort_keys=True) for line in handle]
    return sorted(found)


def same_output(dest: Path, reference: Path) -> str:
    """'identical', or what differs between two backfill outputs (rows, columns, bad rows)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    def events(root: Path) -> Any:
        if not (root / "events").is_dir():  # a run that wrote no event
            return pa.table({"event_id": pa.array([], pa.string())})
        table = ds.dataset(root / "events", format="parquet", partitioning="hive").to_table()
        return table.drop_columns([c for c in ("etl_tstamp",) if c in table.column_names])

    mine, theirs = events(dest), events(reference)
    problems = []
    if mine.num_rows != theirs.num_rows:
        problems.append(f"{mine.num_rows:,} rows against {theirs.num_rows:,}")
    extra = sorted(set(mine.column_names) ^ set(theirs.column_names))
    if extra:
        problems.append(f"columns in one only: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    if not problems:
        order = [(key, "ascending") for key in ("event_id", "event_fingerprint") if key in mine.column_names]
        mine, theirs = mine.sort_by(order), theirs.select(mine.column_names).sort_by(order)
        differing = [name for name in mine.column_names if not mine.column(name).equals(theirs.column(name))]
        if differing:
            problems.append(f"values differ in {', '.join(differing[:8])}")
    mine_bad, theirs_bad = bad_rows(dest), bad_rows(reference)
    if mine_bad != theirs_bad:
        problems.append(f"bad rows differ ({len(mine_bad):,} against {len(theirs_bad):,})")
    return "; ".join(problems) or "identical"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "refs",
        nargs="+",
        metavar="REF",
        help="git revisions (commits, tags, branches): the first is the baseline, the others run beside it",
    )
    parser.add_argument("--overlay", type=Path, help="also run this checkout with this configuration overlay")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="generate-logs profiles (comma-separated)")
    parser.add_argument("--size-mb", type=float, default=10.0, help="MB gzipped of logs per profile (default 10)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="backfill --workers (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    if args.overlay is not None and not args.overlay.is_file():
        parser.error(f"--overlay {args.overlay}: no such file")
    commits = []
    for ref in args.refs:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if found.returncode != 0:
            parser.error(f"{ref}: not a revision of this repository")
        commits.append(found.stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="clickstream-compare-"))
    trees: list[Path] = []
    try:
        for index, commit in enumerate(commits):
            tree = work / f"tree-{index}"
            subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), commit], cwd=ROOT, check=True)
            trees.append(tree)
        named = zip(args.refs, commits, trees, strict=True)
        variants = [Variant(f"{ref} ({commit[:9]})", tree) for ref, commit, tree in named]
        variants.append(Variant("this checkout", ROOT))
        if args.overlay is not None:
            variants.append(Variant(f"this checkout + {args.overlay.name}", ROOT, args.overlay.resolve()))
        return _compare(args, profiles, variants, work)
    finally:
        for tree in trees:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)


def _compare(args: argparse.Namespace, profiles: list[str], variants: list[Variant], work: Path) -> int:
    print(f"this checkout ({ROOT}) against {variants[0].name}; build measured: {byte_compile()}", flush=True)
    for tree in dict.fromkeys(variant.tree for variant in variants):
        compile_packages(tree)
    shims = work / "shims"
    made = {profile: generate(profile, args.size_mb, work / f"logs-{profile}") for profile in profiles}
    for profile in profiles:
        for variant in variants:
            variant.runs[profile] = []
        for round_index in range(-args.warmup, args.rounds):  # negative: warm-up rounds, not counted
            for position, variant in enumerate(rotated(variants, round_index)):
                dest = work / f"out-{profile}-{variants.index(variant)}"
                shutil.rmtree(dest, ignore_errors=True)
                env = dict(os.environ, PYTHONPATH=python_path(variant.tree, shims))
                # From the work folder: ``python -m`` puts the current folder first on the import path.
                result = run_process(variant.command(made[profile].folder, dest, args.workers), env=env, cwd=work)
                step = f"{profile} round {round_index + 1} #{position + 1} {variant.name}"
                print(f"  {step}: {result['seconds']:.2f} s", flush=True)
                if round_index >= 0:
                    variant.runs[profile].append(result)
    # Compared only once every run is done: a process forked from this one counts this one's memory
    # in its peak RSS until it execs, and reading the datasets here makes this process large.
    report: dict[str, Any] = {"baseline": variants[0].name, "workers": args.workers, "profiles": {}}
    for profile in profiles:
        reference = work / f"out-{profile}-0"
        outputs = {v.name: same_output(work / f"out-{profile}-{i}", reference) for i, v in enumerate(variants) if i}
        report["profiles"][profile] = _profile_report(made[profile].lines, variants, profile, outputs)
    _print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _profile_report(lines: int, variants: list[Variant], profile: str, outputs: dict[str, str]) -> dict[str, Any]:
    base_cpu = [run["cpu_seconds"] for run in variants[0].runs[profile]]
    base_wall = [run["seconds"] for run in variants[0].runs[profile]]
    rows = []
    for variant in variants:
        cpu = [run["cpu_seconds"] for run in variant.runs[profile]]
        wall = [run["seconds"] for run in variant.runs[profile]]
        ratios = [c / b for c, b in zip(cpu, base_cpu, strict=True)]
        rows.append(
            {
                "variant": variant.name,
                "best_seconds": min(wall),
                "lines_per_second": lines / min(wall),
                "median_cpu_seconds": statistics.median(cpu),
                "cpu_ratio": paired_ratio(cpu, base_cpu),
                "cpu_ratio_range": [min(ratios), max(ratios)],
                "wall_ratio": paired_ratio(wall, base_wall),
                "peak_rss_mb": max(run["peak_rss_mb"] for run in variant.runs[profile]),
                "output": outputs.get(variant.name, "reference"),
            }
        )
    return {"lines": lines, "variants": rows}


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"\nbackfill --workers {report['workers']} against {report['baseline']}; "
        "ratios: geometric mean of the per-round ratios (below 1 is faster)"
    )
    for profile, found in report["profiles"].items():
        print(f"\n{profile}: {found['lines']:,} lines")
        print("| variant | best wall s | lines/s | median CPU s | CPU ratio (range) | wall ratio | peak RSS | output |")
        print("|---|---|---|---|---|---|---|---|")
        for row in found["variants"]:
            low, high = row["cpu_ratio_range"]
            print(
                f"| {row['variant']} | {row['best_seconds']:.2f} | {row['lines_per_second']:,.0f} | "
                f"{row['median_cpu_seconds']:.2f} | {row['cpu_ratio']:.3f} ({low:.2f}-{high:.2f}) | "
                f"{row['wall_ratio']:.3f} | {row['peak_rss_mb']:.0f} MB | {row['output']} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
