"""``clickstream-etl backfill``: arguments, the run (see :mod:`pipeline.app.backfill`) and its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pipeline.app.arguments import config_argument, positive_int
from pipeline.app.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from pipeline.app.commands.replay import add_replay_options
from pipeline.errors import InputError
from pipeline.summary import RunSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help=(
            "log files, folders (searched recursively), globs or s3://bucket/prefix; several may be given "
            "(a shell's glob), local and S3 mixed"
        ),
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DEST",
        help="output folder, or s3://bucket/prefix (staged locally); required unless --mode replay",
    )
    parser.add_argument(
        "--mode",
        choices=("local", "replay"),
        default="local",
        help=(
            "local (default): process here into DEST; replay: feed the deployed pipeline from one s3:// SOURCE "
            "(needs --since and --until; see the replay options below)"
        ),
    )
    parser.add_argument(
        "--since",
        metavar="DATE[THH]",
        help="take log files named for this hour or later (2026-01-01 or 2026-01-01T05, UTC; inclusive)",
    )
    parser.add_argument(
        "--until",
        metavar="DATE[THH]",
        help="take log files named for hours before this one (2026-02-01 or 2026-02-01T00, UTC; exclusive)",
    )
    parser.add_argument(
        "--distribution",
        action="append",
        default=[],
        metavar="ID",
        help="take log files of this CloudFront distribution only (may be repeated)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and an estimated time; read and write nothing"
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="read every source again, even those the ledger (DEST/_backfill_ledger.jsonl) records as done",
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="parallel worker processes (default: the number of cores)",
    )
    config_argument(parser)
    parser.add_argument(
        "--non-tracker-policy",
        choices=("skip", "page_view"),
        help="what to do with requests that are not tracker hits (default from config: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--rollup",
        action="store_true",
        help="then roll up DEST for the dashboard (clickstream-etl rollup DEST: only the days whose events changed)",
    )
    replay_options = parser.add_argument_group("replay options (--mode replay)")
    add_replay_options(replay_options)


def _replay_mode(args: argparse.Namespace) -> int:
    """``backfill --mode replay``: the same plan as ``replay``, run by the deployed pipeline."""
    from pipeline.app.commands import replay as replay_command

    if args.output:
        raise InputError("--mode replay writes where the deployed pipeline writes: leave out --output")
    if len(args.source) != 1 or not args.source[0].startswith("s3://"):
        raise InputError("--mode replay takes one SOURCE, s3://bucket/prefix: the raw logs the pipeline can read")
    if not (args.since and args.until):
        raise InputError("--mode replay needs --since and --until (the request hours to replay)")
    if len(args.distribution) > 1:
        raise InputError("--mode replay takes at most one --distribution")
    replay_args = argparse.Namespace(**vars(args))
    replay_args.source = args.source[0]
    replay_args.distribution = args.distribution[0] if args.distribution else None
    return replay_command.run(replay_args)


def check_paths(sources: list[str], output: str) -> None:
    """Refuse, before anything runs, S3 URLs that could escape their prefix, and an S3 DEST overlapping a SOURCE.

    Raises InputError (exit 2).  A local DEST inside a local SOURCE is refused by
    :func:`pipeline.app.backfill.check_destination`.
    """
    from pipeline.app.sources import S3Url, is_s3

    urls = [S3Url.parse(source) for source in sources if is_s3(source)]
    if is_s3(output):
        target = S3Url.parse(output)
        for url in urls:
            if url.contains(target) or target.contains(url):
                raise InputError(
                    f"--output {output} overlaps SOURCE {url.format()}: the pipeline would read its own output; "
                    "choose a DEST outside the source prefixes"
                )


def run(args: argparse.Namespace) -> int:
    if args.mode == "replay":
        return _replay_mode(args)
    if not args.output:
        raise InputError("--output DEST is required: a folder or s3://bucket/prefix (or --mode replay)")
    return _run_here(args)


def _run_here(args: argparse.Namespace) -> int:
    from pipeline.app.backfill import BackfillInterrupted, plan_backfill, run_backfill
    from pipeline.app.progress import TerminalProgress
    from pipeline.app.sources import Selection, is_s3
    from pipeline.config import load_config

    overrides = {}
    if args.non_tracker_policy:
        overrides["transform.non_tracker_policy"] = args.non_tracker_policy
    config = load_config(args.config, overrides=overrides)
    check_paths(args.source, args.output)
    selection = Selection.of(args.since, args.until, args.distribution)
    client = None
    if is_s3(args.output) or any(is_s3(source) for source in args.source):
        from pipeline.aws.clients import make_client

        client = make_client("s3", config.aws)
    output = None
    if is_s3(args.output):
        from pipeline.app.backfill import S3Destination, work_folder
        from pipeline.app.sources import S3Url

        output = S3Destination(client, S3Url.parse(args.output))
        dest = work_folder(output.url)
    else:
        dest = Path(args.output)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--output {dest} exists and is not a folder")
    plan = plan_backfill(args.source, selection, client)
    if args.dry_run:
        return _dry_run(args, plan, dest, config, output)
    try:
        summary = run_backfill(
            plan.files,
            dest,
            config,
            workers=args.workers,
            progress=TerminalProgress(),
            source_roots=args.source,
            s3_client=client if args.workers == 1 else None,
            plan=plan,
            resume=not args.no_resume,
            output=output,
        )
    except BackfillInterrupted as stop:
        print(
            f"clickstream-etl: interrupted: no partition was half written; {stop.staged} of {stop.total} sources "
            f"are staged in {dest / '_staging'} and recorded in {dest / '_backfill_ledger.jsonl'}. Run the same "
            "command again to resume where it stopped.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
    else:
        print(render_summary(summary, output.display() if output is not None else dest))
    for error in summary.errors:
        print(f"clickstream-etl: could not read {error}", file=sys.stderr)
    for key in sorted(summary.ignored_keys):
        print(
            f"clickstream-etl: ignored {key}: not a CloudFront log name (<distribution>.YYYY-MM-DD-HH.<id>.gz)",
            file=sys.stderr,
        )
    for source in sorted(summary.not_logs):
        print(
            f"clickstream-etl: warning: {source} is not a CloudFront log as far as can be told (no #Fields header, "
            "and no [extract] default_fields): its lines are schema_mismatch bad rows",
            file=sys.stderr,
        )
    _roll_up(args, client, complete=not summary.failed_files)
    return EXIT_FAILED if summary.failed_files else EXIT_OK


def _roll_up(args: argparse.Namespace, client: Any, *, complete: bool) -> None:
    """``--rollup``: the dashboard's rollups of DEST (issue 16), after a backfill that read every source.

    Opt-in rather than by default: a backfill's DEST is often an intermediate dataset (loaded into
    Redshift, read by Athena) that no dashboard reads, and the rollup reads every changed day again.
    """
    if not (args.rollup and complete):
        return
    from load.rollup import roll_up
    from pipeline.app.commands.rollup import render_summary
    from pipeline.app.dashboard import open_store

    store = open_store(args.output, s3=client)
    print(render_summary(roll_up(store), store.url()), file=sys.stderr if args.json else sys.stdout)


def _dry_run(args: argparse.Namespace, plan: Any, dest: Path, config: Any, output: Any) -> int:
    import tempfile

    from pipeline.app.backfill import dry_run, measure_rate
    from pipeline.app.sources import LEDGER_FILE, Ledger

    if output is not None and not args.no_resume:  # the S3 ledger, read (GetObject) into a temporary copy
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / LEDGER_FILE
            if (dest / LEDGER_FILE).exists():
                copy.write_bytes((dest / LEDGER_FILE).read_bytes())
            output.fetch_ledger(copy)
            ledger = Ledger.read(copy)
    else:
        ledger = Ledger.read(dest / LEDGER_FILE) if not args.no_resume else Ledger(dest / LEDGER_FILE)
    rate = (ledger.last_rate, "the last run's, from the ledger") if ledger.last_rate else None
    if rate is None:
        rate = (measure_rate(config), "measured now on a generated sample (reading and transforming only)")
    planned = dry_run(plan, ledger, args.workers, rate)
    replay = _replay_cost(args, planned.todo, planned.todo_bytes)
    if args.json:
        print(json.dumps({**planned.to_json(), "replay_cost": replay}, indent=1))
        return EXIT_OK
    covered = f"{planned.first_hour} .. {planned.last_hour}" if planned.first_hour else "no CloudFront names"
    rows = [
        ("objects", f"{planned.objects:,}", f"{planned.bytes / 1048576:,.1f} MiB; {planned.s3_objects:,} on S3"),
        ("hours named", covered, "from the CloudFront file names (first .. last)"),
        ("done before", f"{planned.done:,}", f"{planned.done_bytes / 1048576:,.1f} MiB, the ledger says: skipped"),
        ("staged", f"{planned.staged:,}", "by an interrupted run: finalized, not read again"),
        ("to read", f"{planned.todo:,}", f"{planned.todo_bytes / 1048576:,.1f} MiB"),
        ("ignored", f"{len(planned.ignored):,}", "keys that are not CloudFront log names"),
        ("out of range", f"{planned.out_of_range:,}", "CloudFront names outside --since/--until/--distribution"),
        (
            "estimate",
            f"{planned.estimated_seconds:,.0f} s",
            f"{planned.workers} worker(s) at {planned.bytes_per_second / 1048576:,.2f} MiB/s each "
            f"({planned.rate_from})",
        ),
        (
            "replay cost",
            f"${replay['dollars']:,.2f}",
            f"--mode replay ({replay['engine']}): about {replay['events']:,.0f} events through the deployed "
            f"pipeline at list prices of {replay['prices_as_of']} (clickstream-etl cost)",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    print("\n".join(f"{label:<{width}}  {value:>{value_width}}  {note}".rstrip() for label, value, note in rows))
    for key in planned.ignored:
        print(f"ignored: {key}")
    print("dry run: nothing was read or written")
    return EXIT_OK


def _replay_cost(args: argparse.Namespace, objects: int, stored_bytes: int) -> dict[str, Any]:
    """What ``--mode replay`` of the objects still to read would cost on AWS (the cost model's per-event part)."""
    from pipeline.app.cost import load_cost_inputs, replay_cost
    from pipeline.app.replay_map import AUTO_MAP_THRESHOLD
    from pipeline.topology import REPLAY_ITEMS_PER_BATCH

    engine = args.engine if args.engine != "auto" else ("map" if objects > AUTO_MAP_THRESHOLD else "invoke")
    inputs = load_cost_inputs()
    cost = replay_cost(
        stored_bytes * args.compression_ratio,
        objects,
        inputs,
        batch_size=REPLAY_ITEMS_PER_BATCH,
        map_engine=engine == "map",
    )
    return {
        "engine": engine,
        "events": round(cost.events),
        "dollars": round(cost.total, 4),
        "pipeline_dollars": round(cost.pipeline, 4),
        "state_machine_dollars": round(cost.state_machine, 4),
        "prices_as_of": inputs.prices.as_of,
    }


NOTICES: Final = {
    "redacted_url_parameters": "events had secret-carrying URL parameters redacted ([transform.redact])",
    "email_shaped_user_id": (
        "events have an e-mail-shaped user_id: turn on [transform.pseudonymize] so that no address leaves"
    ),
}


def render_summary(summary: RunSummary, dest: Path | str) -> str:
    """The run's totals as a small table, with the breakdowns and notices beside them."""

    def by(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))

    root = str(dest).rstrip("/")
    events = f"{root}/events"
    rows = [
        ("files", f"{summary.files:,}", f"{summary.failed_files:,} could not be read" if summary.failed_files else ""),
        ("lines read", f"{summary.lines_read:,}", f"{summary.bytes_read / 1048576:,.1f} MiB decompressed"),
        ("good events", f"{summary.good:,}", ""),
        ("bad rows", f"{summary.bad:,}", by(summary.bad_by_kind)),
        ("skipped lines", f"{summary.skipped:,}", by(summary.skipped_by_reason)),
        (
            "rows in DEST",
            f"{summary.rows_written:,}",
            f"in the partitions this run wrote; {summary.duplicates_dropped:,} natural duplicates dropped",
        ),
        ("time", f"{summary.seconds:,.2f} s", f"{summary.lines_per_second:,.0f} lines/s"),
    ]
    if summary.s3_objects:
        rows.insert(1, ("S3 objects", f"{summary.s3_objects:,}", f"{summary.s3_bytes / 1048576:,.1f} MiB streamed"))
    if summary.skipped_files or summary.resumed_files:
        rows.insert(
            1,
            (
                "resumed",
                f"{summary.skipped_files:,}",
                f"sources done before, skipped (ledger); {summary.resumed_files:,} staged before, finalized now",
            ),
        )
    if summary.ignored_keys or summary.out_of_range:
        rows.insert(
            1,
            (
                "ignored keys",
                f"{len(summary.ignored_keys):,}",
                f"not CloudFront log names (named on stderr); {summary.out_of_range:,} names out of range",
            ),
        )
    if summary.not_logs:
        rows.insert(1, ("not logs", f"{len(summary.not_logs):,}", "files without a #Fields header (named on stderr)"))
    rows += [("notice", f"{count:,}", NOTICES.get(name, name)) for name, count in sorted(summary.notices.items())]
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [f"{label:<{label_width}}  {value:>{value_width}}  {note}".rstrip() for label, value, note in rows]
    bad = f", {root}/bad (bad rows)" if summary.bad else ""
    if summary.rows_written:
        where = f"{events} (Parquet){bad}"
    elif summary.skipped_files and not summary.files:
        # A rerun of a finished backfill: DEST still holds what the earlier runs wrote.
        where = f"{events} unchanged: every source was done before (--no-resume reads them again)"
    else:
        where = f"no events written{bad or ''}"
    lines.append(f"{'output':<{label_width}}  {where}")
    return "\n".join(lines)
