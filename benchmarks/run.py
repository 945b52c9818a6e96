"""Backfill throughput and memory beside baselines measured on the same files in the same run.

    python benchmarks/run.py --size-mb 20

1. generates ~SIZE MB (gzipped) of CloudFront logs with ``clickstream-etl generate-logs``,
   spread over 24 hours, and the same volume again in a single hour (one big partition:
   the worst case for finalize's memory; ``--skip-one-hour`` leaves it out);
2. the floor: gzip decompression and line splitting alone (one process);
3. the DuckDB baseline: DuckDB's CSV reader and SQL doing the same tracker-parameter
   extraction and percent-decoding, writing partitioned Parquet, on 1 thread and on 2;
4. ``clickstream-etl backfill`` with ``--workers 1`` and ``--workers 2`` on each input.

Each step runs in its own process; wall time and peak RSS are reported, with ratios
against the DuckDB one-thread baseline.  For backfill the peak RSS is also split into the
main process and the largest worker (``--workers 1`` does everything in the main process);
the acceptance bound is on ``--workers 1``.  Results go to stdout as a table and to
``--json FILE``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.formats.cloudfront import LEGACY_FIELDS  # noqa: E402

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


_PROBE = (
    "import resource, subprocess, sys, time, json\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'rc': rc, 'seconds': wall, 'peak_rss_mb': rss / 1024}))\n"
)
# The CLI runs inside the probe, so RUSAGE_SELF is the main process and RUSAGE_CHILDREN the
# largest of its pool workers (each is joined before the CLI returns).
_CLI_PROBE = (
    "import contextlib, json, os, resource, sys, time\n"
    "t = time.perf_counter()\n"
    "from pipeline.app.cli import main\n"
    "with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):\n"
    "    rc = main(sys.argv[1:])\n"
    "wall = time.perf_counter() - t\n"
    "parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'rc': rc, 'seconds': wall, 'peak_rss_mb': max(parent, workers),\n"
    "                  'parent_rss_mb': parent, 'worker_rss_mb': workers}))\n"
)


def measure(command: list[str], *, cli: bool = False) -> dict[str, Any]:
    """Run a step in a child process; wall seconds and peak RSS (``cli``: ``clickstream-etl`` arguments)."""
    argv = [sys.executable, "-c", _CLI_PROBE, *command] if cli else [sys.executable, "-c", _PROBE, *command]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"benchmark step failed ({result['rc']}): {' '.join(command)}\n{out.stderr}")
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


def generate(cli: list[str], folder: Path, size_mb: float, hours: int) -> tuple[list[Path], dict[str, int]]:
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(
        [*cli, "generate-logs", str(folder), "--size-mb", str(size_mb), "--hours", str(hours)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    files = sorted(folder.rglob("*.gz"))
    compressed = sum(p.stat().st_size for p in files)
    lines, raw_bytes = count_lines(files)
    print(
        f"input {folder.name}: {len(files)} files over {hours} hour(s), {compressed / 1e6:.1f} MB gzipped, "
        f"{raw_bytes / 1e6:.1f} MB raw, {lines:,} lines"
    )
    return files, {"files": len(files), "gz_bytes": compressed, "raw_bytes": raw_bytes, "lines": lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=20.0, help="gzipped log volume to generate (default 20)")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--skip-duckdb", action="store_true", help="do not run the DuckDB baseline")
    parser.add_argument(
        "--skip-one-hour", action="store_true", help="do not run backfill on the same volume in a single hour"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per step, interleaved; the fastest counts (default 3)"
    )
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="clickstream-bench-"))
    logs = work / "logs"
    cli = [sys.executable, "-m", "pipeline.app.cli"]
    files, inputs = generate(cli, logs, args.size_mb, 24)
    lines, raw_bytes = inputs["lines"], inputs["raw_bytes"]
    sources = {"": (logs, inputs)}
    if not args.skip_one_hour:
        one_hour = work / "logs-one-hour"
        sources[", one hour"] = (one_hour, generate(cli, one_hour, args.size_mb, 1)[1])

    floor_script = (
        "import gzip, sys\n"
        "n = 0\n"
        "for p in sys.argv[1:]:\n"
        "    with gzip.open(p, 'rb') as h:\n"
        "        for line in h: n += 1\n"
    )
    steps: dict[str, list[str]] = {"gzip floor (1 process)": [sys.executable, "-c", floor_script, *map(str, files)]}
    outputs: dict[str, tuple[Path, ...]] = {}
    if not args.skip_duckdb:
        for threads in (1, 2):
            sql = duckdb_sql(str(logs / "*.gz"), str(work / f"duckdb-{threads}"), threads)
            script = "import duckdb, sys\nduckdb.connect().execute(sys.argv[1])\n"
            name = f"duckdb SQL ({threads} thread{'s' if threads > 1 else ''})"
            steps[name] = [sys.executable, "-c", script, sql]
            outputs[name] = (work / f"duckdb-{threads}",)
    backfills: dict[str, tuple[Path, dict[str, int]]] = {}
    for suffix, (folder, info) in sources.items():
        for workers in (1, 2):
            name = f"clickstream-etl backfill --workers {workers}{suffix}"
            dest = work / f"backfill-{workers}{'-one-hour' if suffix else ''}"
            steps[name] = ["backfill", str(folder), "--output", str(dest), "--workers", str(workers)]
            backfills[name] = (dest, info)
    # Steps run interleaved, several times: the machine's speed drifts, and the fastest run
    # of each step is the least disturbed one.  Memory is the largest of all runs.
    results: dict[str, dict[str, Any]] = {}
    for _ in range(max(args.repeat, 1)):
        for name, command in steps.items():
            for folder in outputs.get(name, ()):
                shutil.rmtree(folder, ignore_errors=True)  # every run starts from an empty destination
            if name in backfills:
                shutil.rmtree(backfills[name][0], ignore_errors=True)
            run = measure(command, cli=name in backfills)
            best = results.get(name)
            if best is not None:
                for key in ("peak_rss_mb", "parent_rss_mb", "worker_rss_mb"):
                    if key in run:
                        run[key] = best[key] = max(run[key], best[key])
            if best is None or run["seconds"] < best["seconds"]:
                results[name] = run
    for name, (dest, info) in backfills.items():
        summary = json.loads((dest / "_summary.json").read_text())
        results[name]["events"] = summary["rows_written"]
        results[name]["lines"] = info["lines"]

    baseline = results.get("duckdb SQL (1 thread)")
    cores = os.cpu_count() or 1
    print(
        f"\n{'step':48} {'seconds':>8} {'lines/s':>10} {'MB/s':>7} {'peak RSS':>9} {'main/worker':>12} "
        f"{'vs duckdb-1':>11}"
    )
    for name, r in results.items():
        step_lines = r.get("lines", lines)
        step_raw = backfills[name][1]["raw_bytes"] if name in backfills else raw_bytes
        r["lines_per_second"] = step_lines / r["seconds"]
        r["mb_per_second_raw"] = step_raw / 1e6 / r["seconds"]
        r["ratio_vs_duckdb_1_thread"] = (baseline["seconds"] / r["seconds"]) if baseline else None
        ratio = f"{r['ratio_vs_duckdb_1_thread']:.2f}x" if baseline else "-"
        split = f"{r['parent_rss_mb']:.0f}/{r['worker_rss_mb']:.0f}MB" if "parent_rss_mb" in r else "-"
        print(
            f"{name:48} {r['seconds']:8.2f} {r['lines_per_second']:10,.0f} {r['mb_per_second_raw']:7.1f} "
            f"{r['peak_rss_mb']:7.0f}MB {split:>12} {ratio:>11}"
        )
    single = [r["peak_rss_mb"] for name, r in results.items() if name in backfills and "--workers 1" in name]
    print(f"\nbackfill --workers 1 peak RSS: {max(single):.0f} MB (acceptance: under 300 MB whatever the input size)")
    report = {
        "input": inputs,
        "inputs": {f"logs{suffix.replace(', ', '-').replace(' ', '-')}": info for suffix, (_, info) in sources.items()},
        "cores": cores,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
