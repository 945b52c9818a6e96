"""Backfill throughput, memory and growth beside baselines measured on the same files in the same run.

    python benchmarks/run.py                                   # both profiles at 10 and 30 MB (~11 min, 2 cores)
    python benchmarks/run.py --sizes 10,30,100,300 --repeat 2  # the full growth curve (about 1.5 hours on 2 cores)
    python benchmarks/run.py --profile high-cardinality --sizes 10 --json out.json

For each profile (``high-cardinality``, the headline, and ``classic``; ``generate-logs --profile``)
and each size (MB gzipped, spread over 24 hours) it generates the logs once, then runs, each as a
whole process timed from outside (interpreter start, imports and the Parquet write included):

1. the floor: gzip decompression and line splitting alone (one process);
2. the DuckDB baseline: DuckDB's CSV reader and SQL doing the same tracker-parameter
   extraction and percent-decoding, writing partitioned Parquet, on 1 thread and on 2;
3. ``clickstream-etl backfill`` with ``--workers 1`` and ``--workers 2``.

Every step runs ``--repeat`` times in interleaved rounds (the machine's speed drifts; the fastest
run of a step is its least disturbed one); memory is the largest of all runs.  Ratios: backfill
``--workers 1`` against DuckDB on 1 thread, ``--workers 2`` against DuckDB on 2 threads.  A growth
line per profile gives seconds per million lines at each size (linear growth is a flat line).

Before the first run it byte-compiles the installed packages (``compileall``), as ``pip install``
leaves them, so that no run pays for compiling sources (``PYTHONDONTWRITEBYTECODE`` would
otherwise make every interpreter compile them again); the report names the build it measured
(pure Python, or how many modules the optional compiled build has).

It also measures the cold-start import of the Extract and Transform handlers (median of 5 fresh
interpreters, and whether pyarrow got imported: it must not), and the Transform core's CPU time
per event on each profile (``time.process_time``, one core, best of 3: the same figure as a Lambda
at 1,769 MB, which has one vCPU; the cost model's ``transform_cpu_us``).

The table goes to stdout, and with ``--json FILE`` to a file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.formats.cloudfront import LEGACY_FIELDS  # noqa: E402

PROFILES = ("high-cardinality", "classic")
STEPS = ("gzip floor", "duckdb 1 thread", "duckdb 2 threads", "backfill --workers 1", "backfill --workers 2")
RATIO_BASE = {"backfill --workers 1": "duckdb 1 thread", "backfill --workers 2": "duckdb 2 threads"}
LAMBDA_TRANSFORM_MB = 1769
"""The Transform function's memory: Lambda gives one full vCPU at 1,769 MB, so CPU per event is the same."""

# Tracker parameters extracted by the DuckDB baseline: the same decoding work our transform does
# for these columns (undo CloudFront's %25, then percent-decode each value).
PARAMS = {
    "e": "event", "eid": "event_id", "aid": "app_id", "p": "platform", "tv": "v_tracker", "tna": "name_tracker",
    "url": "page_url", "page": "page_title", "refr": "page_referrer", "dtm": "dvce_created_tstamp",
    "stm": "dvce_sent_tstamp", "duid": "domain_userid", "sid": "domain_sessionid", "vid": "domain_sessionidx",
    "uid": "user_id", "res": "res", "vp": "vp", "ds": "ds", "cd": "br_colordepth", "cs": "doc_charset",
    "lang": "br_lang", "tz": "os_timezone", "cookie": "br_cookies", "se_ca": "se_category",
    "se_ac": "se_action", "se_la": "se_label", "se_pr": "se_property", "se_va": "se_value",
    "ue_px": "ue_px", "ue_pr": "ue_pr", "cx": "cx", "co": "co", "pp_mix": "pp_xoffset_min",
    "pp_max": "pp_xoffset_max", "pp_miy": "pp_yoffset_min", "pp_may": "pp_yoffset_max", "tr_id": "tr_orderid",
    "tr_tt": "tr_total", "ti_sk": "ti_sku", "ti_pr": "ti_price", "ti_qu": "ti_quantity",
}  # fmt: skip


def _b64url_json(column: str) -> str:
    """DuckDB: base64url (padding optional) to text, NULL when absent or not valid JSON."""
    padded = f"translate({column}, '-_', '+/') || repeat('=', (4 - length({column}) % 4) % 4)"
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE try(decode(from_base64({padded}))) END"


def duckdb_sql(files_glob: str, out_dir: str, threads: int) -> str:
    """DuckDB doing the same extraction as well as we could write it.

    The query string is split once into a map (twice as fast as one regexp per parameter);
    values are percent-decoded and typed like ours (timestamps, integers, decimals, sizes,
    booleans), ue_px/cx are base64url-decoded to JSON and the event is named from the
    self-describing schema; the page URL is split and utm_* extracted; the result is written
    as zstd Parquet partitioned by date and hour.  It does no user-agent, referer or IP
    enrichment, no validation and no deduplication, which our backfill does.
    """
    columns = ",\n    ".join(
        f"url_decode(replace(m['{name}'], '+', ' ')) AS {column}" for name, column in PARAMS.items()
    )
    names = ", ".join(f"'{name.replace('(', '_').replace(')', '').replace('-', '_')}'" for name in LEGACY_FIELDS)
    ints = ("domain_sessionidx", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max", "ti_quantity")
    doubles = ("se_value", "tr_total", "ti_price")
    typed = ",\n    ".join(
        [f"TRY_CAST({c} AS INTEGER) AS {c}" for c in ints]
        + [f"TRY_CAST({c} AS DOUBLE) AS {c}" for c in doubles]
        + [
            f"make_timestamp(TRY_CAST({c} AS BIGINT) * 1000) AS {c}"
            for c in ("dvce_created_tstamp", "dvce_sent_tstamp")
        ]
        + [
            f"TRY_CAST(split_part({size}, 'x', 1) AS INTEGER) AS {w}, "
            f"TRY_CAST(split_part({size}, 'x', 2) AS INTEGER) AS {h}"
            for size, w, h in (
                ("res", "dvce_screenwidth", "dvce_screenheight"),
                ("vp", "br_viewwidth", "br_viewheight"),
                ("ds", "doc_width", "doc_height"),
            )
        ]
        + [
            "br_cookies = '1' AS br_cookies",
            f"coalesce({_b64url_json('ue_px')}, ue_pr) AS unstruct_event",
            f"coalesce({_b64url_json('cx')}, co) AS contexts",
        ]
    )
    replaced = ", ".join(
        (
            *ints,
            *doubles,
            "dvce_created_tstamp",
            "dvce_sent_tstamp",
            "res",
            "vp",
            "ds",
            "br_cookies",
            "ue_px",
            "ue_pr",
            "cx",
            "co",
        )
    )
    return f"""
SET threads = {threads};
SET preserve_insertion_order = false;
COPY (
  WITH raw AS (
    SELECT * FROM read_csv('{files_glob}', delim = '\t', header = false, skip = 2, quote = '', escape = '',
      all_varchar = true, ignore_errors = true, compression = 'gzip', names = [{names}])
  ),
  hits AS (
    SELECT *, try_strptime(date || ' ' || time, '%Y-%m-%d %H:%M:%S') AS collector_tstamp,
      map_from_entries(list_distinct(list_transform(string_split(replace(cs_uri_query, '%25', '%'), '&'),
        lambda x: struct_pack(k := split_part(x, '=', 1), v := split_part(x, '=', 2))))) AS m
    FROM raw WHERE cs_uri_stem IN ('/i', '/ice.png') AND cs_method = 'GET'
  ),
  decoded AS (
    SELECT collector_tstamp, url_decode(cs_User_Agent) AS useragent, c_ip, x_edge_request_id,
    {columns}
    FROM hits
  ),
  typed AS (
    SELECT * EXCLUDE ({replaced}),
    {typed}
    FROM decoded
  )
  SELECT *,
    CASE WHEN json_valid(contexts) THEN contexts END AS contexts_checked,
    regexp_extract(json_extract_string(unstruct_event, '$.data.schema'), '^iglu:([^/]+)/', 1) AS event_vendor,
    regexp_extract(json_extract_string(unstruct_event, '$.data.schema'), '^iglu:[^/]+/([^/]+)/', 1) AS event_name,
    regexp_extract(page_url, '^([a-z]+)://', 1) AS page_urlscheme,
    regexp_extract(page_url, '^[a-z]+://([^/:?#]+)', 1) AS page_urlhost,
    regexp_extract(page_url, '^[a-z]+://[^/?#]*([^?#]*)', 1) AS page_urlpath,
    regexp_extract(page_url, '\\?([^#]*)', 1) AS page_urlquery,
    regexp_extract(page_referrer, '^[a-z]+://([^/:?#]+)', 1) AS refr_urlhost,
    url_decode(regexp_extract(page_url, '[?&]utm_source=([^&#]*)', 1)) AS mkt_source,
    url_decode(regexp_extract(page_url, '[?&]utm_medium=([^&#]*)', 1)) AS mkt_medium,
    url_decode(regexp_extract(page_url, '[?&]utm_campaign=([^&#]*)', 1)) AS mkt_campaign,
    strftime(collector_tstamp, '%Y-%m-%d') AS event_date, hour(collector_tstamp) AS event_hour
  FROM typed
) TO '{out_dir}' (FORMAT parquet, PARTITION_BY (event_date, event_hour), COMPRESSION zstd, OVERWRITE_OR_IGNORE);
"""


# The CLI runs inside this probe, so RUSAGE_SELF is the main process and RUSAGE_CHILDREN the
# largest of its pool workers (each is joined before the CLI returns).  The wall time is taken
# by the harness around the whole process.
_CLI_PROBE = (
    "import contextlib, json, os, resource, sys\n"
    "from pipeline.app.cli import main\n"
    "with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):\n"
    "    rc = main(sys.argv[1:])\n"
    "parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'rc': rc, 'parent_rss_mb': parent, 'worker_rss_mb': workers}))\n"
)
_FLOOR = (
    "import gzip, sys\n"
    "n = 0\n"
    "for p in sys.argv[1:]:\n"
    "    with gzip.open(p, 'rb') as h:\n"
    "        for line in h: n += 1\n"
)
_DUCKDB = "import duckdb, sys\nduckdb.connect().execute(sys.argv[1])\n"
_IMPORT_PROBE = (
    "import json, sys, time\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "print(json.dumps({{'seconds': time.perf_counter() - start, 'pyarrow': 'pyarrow' in sys.modules}}))\n"
)


@dataclass(frozen=True)
class Input:
    profile: str
    size_mb: float
    folder: Path
    files: int
    gz_bytes: int
    raw_bytes: int
    lines: int


@dataclass(frozen=True)
class Step:
    input: Input
    name: str
    command: list[str]
    dest: Path | None


def run_process(command: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict[str, Any]:
    """Run one step as a whole process: wall seconds from outside, CPU seconds and peak RSS of its tree."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"benchmark step failed ({process.returncode}): {' '.join(command)[:300]}\n{stderr}")
    # ru_maxrss of a waited child is the largest of it and its own waited-for children (Linux: KiB).
    result: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
    if stdout.strip().startswith("{") or "\n{" in stdout:
        probe = json.loads(stdout.strip().splitlines()[-1])
        if probe.get("rc", 0) != 0:
            raise SystemExit(f"benchmark step failed ({probe['rc']}): {' '.join(command)[:300]}\n{stderr}")
        result.update({key: value for key, value in probe.items() if key != "rc"})
    return result


def count_lines(files: list[Path]) -> tuple[int, int]:
    lines = 0
    raw = 0
    for path in files:
        with gzip.open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                lines += chunk.count(b"\n")
                raw += len(chunk)
    return lines, raw


def generate(profile: str, size_mb: float, folder: Path) -> Input:
    """Write ~``size_mb`` MB gzipped of the profile's logs over 24 hours (files of 1,000 lines, like CloudFront's)."""
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pipeline.app.cli", "generate-logs", str(folder), "--size-mb", str(size_mb)]
        + ["--hours", "24", "--profile", profile],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    files = sorted(folder.rglob("*.gz"))
    lines, raw_bytes = count_lines(files)
    made = Input(profile, size_mb, folder, len(files), sum(p.stat().st_size for p in files), raw_bytes, lines)
    print(
        f"input {profile} {size_mb:g} MB: {made.files} files, {made.gz_bytes / 1e6:.1f} MB gzipped, "
        f"{raw_bytes / 1e6:.1f} MB raw, {lines:,} lines ({raw_bytes / max(lines, 1):,.0f} bytes a line)",
        flush=True,
    )
    return made


def steps_for(made: Input, work: Path, skip_duckdb: bool) -> list[Step]:
    tag = f"{made.profile}-{made.size_mb:g}"
    steps = [
        Step(made, "gzip floor", [sys.executable, "-c", _FLOOR, *map(str, sorted(made.folder.glob("*.gz")))], None)
    ]
    if not skip_duckdb:
        for threads in (1, 2):
            dest = work / f"duckdb-{threads}-{tag}"
            sql = duckdb_sql(str(made.folder / "*.gz"), str(dest), threads)
            name = f"duckdb {threads} thread{'s' if threads > 1 else ''}"
            steps.append(Step(made, name, [sys.executable, "-c", _DUCKDB, sql], dest))
    for workers in (1, 2):
        dest = work / f"backfill-{workers}-{tag}"
        command = [sys.executable, "-c", _CLI_PROBE, "backfill", str(made.folder), "--output", str(dest)]
        steps.append(Step(made, f"backfill --workers {workers}", [*command, "--workers", str(workers)], dest))
    return steps


def byte_compile() -> str:
    """Write the bytecode of this project's packages (as ``pip install`` does); return the build measured."""
    probe = (
        "import json, pipeline, pipeline.compiled as c; print(json.dumps([pipeline.__file__, c.build_description()]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    init, build = json.loads(out.stdout)
    compile_packages(Path(init).resolve().parents[1])
    return str(build)


def compile_packages(root: Path) -> None:
    """Write the bytecode of the project's packages found under ``root`` (an install or a checkout)."""
    import compileall

    for package in ("pipeline", "extract", "transform", "load"):
        if (root / package).is_dir():
            compileall.compile_dir(str(root / package), quiet=1)


def duckdb_rows(dest: Path) -> int:
    import duckdb

    row = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{dest}/**/*.parquet')").fetchone()
    return int(row[0]) if row else 0


def cold_start(module: str, runs: int = 5) -> dict[str, Any]:
    """Median import time of ``module`` in ``runs`` fresh interpreters, and whether pyarrow came along."""
    seen = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        seen.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "median_seconds": statistics.median(run["seconds"] for run in seen),
        "pyarrow_imported": any(run["pyarrow"] for run in seen),
    }


def transform_cpu_us(profile: str, lines: int = 20000, repeat: int = 3) -> dict[str, Any]:
    """CPU microseconds per event of the Transform core on ``lines`` lines of the profile.

    Stream-1 records are packed the way ``pipeline.app.cost_measure`` packs them (Extract's
    record target), then :func:`transform.stage.transform_raw_record` is timed over all of them,
    best of ``repeat``: the work one Transform invocation does between its AWS calls.
    """
    import io

    from pipeline.badrows import SourceRef
    from pipeline.config import load_config
    from pipeline.formats import get_format, read_limits
    from pipeline.formats.base import LogLine, ReadStats
    from pipeline.records import RawBatch, encode_raw
    from pipeline.testing.generate import GenerateOptions, generate_logs
    from transform.canonicalize import Canonicalizer
    from transform.stage import transform_raw_record

    config = load_config(environ={})
    target = config.stream.record_target_bytes
    with tempfile.TemporaryDirectory() as tmp:
        options = GenerateOptions(files=1, lines_per_file=lines, profile=profile)
        [path] = generate_logs(Path(tmp), options)
        gz = path.read_bytes()
    source = SourceRef(f"s3://bucket/{path.name}", etag="etag")
    records: list[bytes] = []
    numbers: list[int] = []
    texts: list[str] = []
    size = 0
    fields = ""
    for item in get_format().read(io.BytesIO(gz), source, read_limits(config.extract), ReadStats()):
        if type(item) is LogLine:
            if texts and size + len(item.text) + 10 > target:
                records.append(
                    encode_raw(RawBatch("bucket", path.name, "etag", 0, fields, tuple(numbers), tuple(texts)))
                )
                numbers, texts, size = [], [], 0
            if item.layout is not None:
                fields = " ".join(item.layout.names)
            numbers.append(item.line_no)
            texts.append(item.text)
            size += len(item.text) + 10
    if texts:
        records.append(encode_raw(RawBatch("bucket", path.name, "etag", 0, fields, tuple(numbers), tuple(texts))))
    best = float("inf")
    events = 0
    for _ in range(repeat):
        canonicalizer = Canonicalizer(config.transform)
        start = time.process_time()
        outs = [
            transform_raw_record(record, canonicalizer, target, origin=f"shard:{index}", arrival_ms=0)
            for index, record in enumerate(records)
        ]
        best = min(best, time.process_time() - start)
        events = sum(len(out.events) for out in outs)
    return {"lines": lines, "events": events, "cpu_seconds": best, "cpu_us_per_event": best * 1e6 / max(events, 1)}


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=(*PROFILES, "both"), default="both", help="log profile (default both)")
    parser.add_argument(
        "--sizes",
        default="10,30",
        help="gzipped MB per input, comma-separated (default 10,30; full curve 10,30,100,300)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the fastest run counts (default 3)")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--skip-duckdb", action="store_true", help="do not run the DuckDB baseline")
    args = parser.parse_args()
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    sizes = [float(size) for size in args.sizes.split(",") if size.strip()]

    build = byte_compile()
    print(f"measuring clickstream-etl {build}", flush=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="clickstream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = [generate(p, s, work / f"logs-{p}-{s:g}") for p in profiles for s in sizes]
    steps = [step for made in inputs for step in steps_for(made, work, args.skip_duckdb)]
    results: dict[tuple[str, float, str], dict[str, Any]] = {}
    for round_number in range(max(args.repeat, 1)):
        print(f"round {round_number + 1} of {max(args.repeat, 1)}", flush=True)
        for step in steps:
            if step.dest is not None:
                shutil.rmtree(step.dest, ignore_errors=True)  # every run starts from an empty destination
            run = run_process(step.command)
            key = (step.input.profile, step.input.size_mb, step.name)
            best = results.get(key)
            if best is not None:
                for field in ("peak_rss_mb", "parent_rss_mb", "worker_rss_mb"):
                    if field in run:
                        run[field] = best[field] = max(run[field], best[field])
            if best is None or run["seconds"] < best["seconds"]:
                results[key] = run
    for step in steps:
        r = results[(step.input.profile, step.input.size_mb, step.name)]
        if step.name.startswith("backfill"):
            assert step.dest is not None
            r["events"] = json.loads((step.dest / "_summary.json").read_text())["rows_written"]
        elif step.name.startswith("duckdb"):
            assert step.dest is not None
            r["events"] = duckdb_rows(step.dest)
        r["lines_per_second"] = step.input.lines / r["seconds"]
        r["mb_per_second_raw"] = step.input.raw_bytes / 1e6 / r["seconds"]
    for (profile, size, name), r in results.items():
        base = results.get((profile, size, RATIO_BASE.get(name, "duckdb 1 thread")))
        r["ratio"] = base["seconds"] / r["seconds"] if base else None
        r["ratio_against"] = RATIO_BASE.get(name, "duckdb 1 thread")

    print("\ncold start of the handlers' imports (median of 5 fresh interpreters) ...", flush=True)
    imports = {module: cold_start(module) for module in ("extract.handler", "transform.handler")}
    print("transform core CPU per event ...", flush=True)
    transform = {profile: transform_cpu_us(profile) for profile in profiles}
    report = print_report(inputs, results, imports, transform, build)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_report(
    inputs: list[Input],
    results: dict[tuple[str, float, str], dict[str, Any]],
    imports: dict[str, dict[str, Any]],
    transform: dict[str, dict[str, Any]],
    build: str = "",
) -> dict[str, Any]:
    """Print the tables and return the same figures as JSON-able data."""
    cores = os.cpu_count() or 1
    print(f"\nclickstream-etl build measured: {build or 'unknown'}")
    for made in inputs:
        print(
            f"\n== {made.profile}, {made.size_mb:g} MB gzipped: {made.lines:,} lines, "
            f"{made.raw_bytes / 1e6:,.1f} MB raw, {made.files} files, {cores} cores =="
        )
        print(
            f"{'step':22} {'seconds':>8} {'lines/s':>10} {'MB/s':>7} {'peak RSS':>9} {'main/worker':>12} {'ratio':>18}"
        )
        for name in STEPS:
            r = results.get((made.profile, made.size_mb, name))
            if r is None:
                continue
            split = f"{r['parent_rss_mb']:.0f}/{r['worker_rss_mb']:.0f}MB" if "parent_rss_mb" in r else "-"
            against = "vs duckdb-2" if r["ratio_against"] == "duckdb 2 threads" else "vs duckdb-1"
            ratio = f"{_fmt_ratio(r['ratio'])} {against}"
            print(
                f"{name:22} {r['seconds']:8.2f} {r['lines_per_second']:10,.0f} {r['mb_per_second_raw']:7.1f} "
                f"{r['peak_rss_mb']:7.0f}MB {split:>12} {ratio if name != 'gzip floor' else '-':>18}"
            )
        counts = {n: results[(made.profile, made.size_mb, n)].get("events") for n in STEPS}
        shown = ", ".join(f"{n} {c:,}" for n, c in counts.items() if c is not None)
        print(f"rows written: {shown}")
    print("\ngrowth: seconds per million input lines at each size (flat = linear)")
    profiles = list(dict.fromkeys(made.profile for made in inputs))
    growth: dict[str, dict[str, dict[str, float]]] = {}
    for profile in profiles:
        for name in ("backfill --workers 1", "backfill --workers 2", "duckdb 1 thread"):
            line = {
                f"{made.size_mb:g}": results[(profile, made.size_mb, name)]["seconds"] / made.lines * 1e6
                for made in inputs
                if made.profile == profile and (profile, made.size_mb, name) in results
            }
            if line:
                growth.setdefault(profile, {})[name] = line
                points = "  ".join(f"{size} MB: {value:6.1f}" for size, value in line.items())
                print(f"  {profile:17} {name:22} {points}")
        single = [
            results[(profile, made.size_mb, "backfill --workers 1")]["parent_rss_mb"]
            for made in inputs
            if made.profile == profile
        ]
        print(
            f"  {profile:17} backfill --workers 1 peak RSS (main process) at each size: {[round(x) for x in single]} MB"
        )
    print("\ncold-start import of the handlers (median of 5 fresh interpreters; target < 0.35 s, no pyarrow)")
    for module, figure in imports.items():
        print(f"  {module:18} {figure['median_seconds']:.3f} s   pyarrow imported: {figure['pyarrow_imported']}")
    print(f"\ntransform core CPU per event (one core = Lambda at {LAMBDA_TRANSFORM_MB:,} MB, 1 vCPU)")
    for profile, figure in transform.items():
        print(
            f"  {profile:17} {figure['cpu_us_per_event']:7.1f} µs/event  "
            f"({figure['events']:,} events from {figure['lines']:,} lines in {figure['cpu_seconds']:.2f} s CPU)"
        )
    return {
        "build": build,
        "cores": cores,
        "inputs": [{**made.__dict__, "folder": str(made.folder)} for made in inputs],
        "results": [
            {"profile": profile, "size_mb": size, "step": name, **r} for (profile, size, name), r in results.items()
        ],
        "growth_seconds_per_million_lines": growth,
        "cold_start_imports": imports,
        "transform_cpu": {
            profile: {**figure, "lambda_memory_mb": LAMBDA_TRANSFORM_MB} for profile, figure in transform.items()
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
