"""The ``clickstream-etl`` command line: one table of subcommands, one map of exit codes.

Exit codes (every subcommand):

* ``0`` success (bad rows are data, not failures);
* ``1`` the command ran but did not complete its work: some sources could not be read, a
  load failed, the local chain did not reconcile, or AWS failed us (the message says whether
  running it again can help);
* ``2`` the input cannot be used as given: bad arguments, configuration, SOURCE or DEST;
* ``130`` interrupted.

A subcommand returns ``0`` or ``1`` itself; errors it raises are mapped by :func:`exit_code`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from pipeline import __version__
from pipeline.errors import InputError, PipelineError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, its help and the module that parses and runs it."""

    name: str
    help: str
    description: str
    module: str
    """Imported only when the command runs or its help is built, so start-up stays light."""

    def load(self) -> CommandModule:
        module: CommandModule = importlib.import_module(self.module)
        return module


COMMANDS: Final[tuple[Command, ...]] = (
    Command(
        "backfill",
        "process historical log files into a Parquet dataset and bad rows",
        "Process CloudFront log files (gzipped or plain) into DEST/events/ (Hive-partitioned Parquet) and "
        "DEST/bad/ (bad rows as JSON lines). Rerunning into the same DEST gives the same dataset.",
        "pipeline.app.commands.backfill",
    ),
    Command(
        "reconcile",
        "re-drive the raw log objects of a date range the ledger lacks, and Firehose's processing failures",
        "List the raw log objects named for hours from --since (inclusive) to --until (exclusive), re-drive "
        "those without a COMPLETE ledger entry to Extract (asynchronous invocations), and put Firehose's "
        "processing-failed records back on stream 2, each error object once. --dry-run lists only. "
        "Exit code 1 when objects are FAILED in the ledger.",
        "pipeline.app.commands.reconcile",
    ),
    Command(
        "replay",
        "feed the deployed pipeline a date range of raw logs, rate-limited to the streams' shard limits",
        "Invoke Extract asynchronously for each raw log object of --since .. --until (one object per "
        "invocation), paced by a token bucket on stream 1's records/s and bytes/s, then wait for the "
        "ledger to mark them COMPLETE. Exit code 1 when objects are still pending after --wait.",
        "pipeline.app.commands.replay",
    ),
    Command(
        "generate-logs",
        "write realistic, deterministic CloudFront sample logs",
        "Write realistic CloudFront access logs (deterministic for a given seed).",
        "pipeline.app.commands.generate",
    ),
    Command(
        "samples",
        "copy the sample CloudFront logs shipped with the package into a folder",
        "Copy the three small sample CloudFront log files shipped with the package into DIR.",
        "pipeline.app.commands.samples",
    ),
    Command(
        "redshift",
        "Redshift load path: print the DDL or Firehose's COPY command, load the Parquet dataset",
        "Print the Redshift DDL or Firehose's CopyCommand, or load the Parquet dataset from S3.",
        "pipeline.app.commands.redshift",
    ),
    Command(
        "compact",
        "rewrite the closed hour partitions of the S3 dataset without natural duplicates",
        "Compact s3://BUCKET/PREFIX/event_date=YYYY-MM-DD/event_hour=HH/: each closed hour partition with more "
        "than one object (or an object that is not a compaction output) is rewritten as "
        "compacted-<hash>-NNNNN.parquet holding each natural event once, then exactly the objects it listed "
        "are deleted. Safe to interrupt and to run twice at once. Exit code 1 when a partition was left alone "
        "(an object that is not the canonical Parquet layout, or too little scratch space).",
        "pipeline.app.commands.compact",
    ),
    Command(
        "rollup",
        "write the dashboard's daily rollups (small Parquet files) beside the events of DEST",
        "Roll up DEST/events/ into DEST/rollups/<table>/date=D/part-<digest>.parquet (site totals with a "
        "HyperLogLog sketch of visitors, hourly series, pages, sources, technology) and DEST/rollups/manifest.json. "
        "Only days whose input objects changed are rolled up again; rerunning writes the same bytes.",
        "pipeline.app.commands.rollup",
    ),
    Command(
        "dashboard",
        "serve the static dashboard over DEST's rollups on 127.0.0.1, --build OUT or --publish s3:// the site",
        "Serve the dashboard shipped in the package and DEST's rollups (never its events or bad rows) on "
        "127.0.0.1:--port; with --build OUT, write the static site and the rollups it reads into OUT; with "
        "--publish s3://BUCKET[/prefix], put the site into the stack's dashboard bucket; --password-hash USER "
        "prints the DashboardPasswordHash parameter for a password read from stdin.",
        "pipeline.app.commands.dashboard",
    ),
    Command(
        "run-local",
        "run the whole serverless chain on this machine, on emulated AWS (moto)",
        "Create the configured buckets, streams and ledger on moto, upload SOURCE and drive Extract, Transform, "
        "the Parquet sink and an emulated Firehose as AWS would; then print a reconciliation of every stage. "
        "Exit code 1 when the stages do not reconcile.",
        "pipeline.app.commands.run_local",
    ),
    Command(
        "redrive-discarded",
        "put the Kinesis batches the event source mappings discarded back on their streams",
        "Read the transform and sink on-failure queues (or --queue), read each discarded batch back from its "
        "stream by its sequence range, put its records back (same data and partition keys) and delete the "
        "message once they are durable. --dry-run reads only. Exit code 1 when a range is no longer on its "
        "stream in full (past retention): re-process the log objects of its arrival window.",
        "pipeline.app.commands.redrive_discarded",
    ),
    Command(
        "loadtest",
        "synthetic traffic at N events/s through the local chain (or a deployed stream 1): latency, loss, duplicates",
        "Put synthetic tracker events at --rate events/s for --duration s on stream 1 of the emulated chain "
        "(default) or of a deployed pipeline (--stream), read the sink back and report throughput, latency "
        "percentiles from ingestion to sink, and every event lost or duplicated. Exit code 1 on any loss, "
        "duplicate or bad row.",
        "pipeline.app.commands.loadtest",
    ),
    Command(
        "package",
        "build the Lambda artifacts (folders sam deploy takes) without Docker",
        "Build the Lambda artifacts and the pyarrow layer under OUTPUT with pip, for Lambda's Linux.",
        "pipeline.app.commands.package",
    ),
    Command(
        "deploy",
        "validate the parameters, print what will be created and what it costs, then run sam deploy",
        "Validate --parameter values against template.yaml, print the resources and the modeled monthly "
        "cost, then run sam deploy.",
        "pipeline.app.commands.deploy",
    ),
    Command(
        "destroy",
        "empty the buckets the stack created, delete the stack and wait",
        "Empty the buckets the stack created (every version and delete marker), then delete the stack.",
        "pipeline.app.commands.destroy",
    ),
    Command(
        "cost",
        "the modeled monthly AWS cost at N events/s, itemized, for both deployment modes",
        "Model the monthly AWS cost (us-east-1 list prices in config/prices.toml) at N events/s.",
        "pipeline.app.commands.cost",
    ),
)


class _VersionAction(argparse.Action):
    """``--version``: the version and whether the compiled build is installed (looked up only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from pipeline.compiled import build_description

        print(f"{parser.prog} {__version__} ({build_description()})")
        parser.exit()


_COMMAND_NAMES: Final = frozenset(command.name for command in COMMANDS)


def build_parser(command_name: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command_name``, only that subcommand's module is imported and
    given its arguments (the others are listed, for the top-level help)."""
    parser = argparse.ArgumentParser(
        prog="clickstream-etl",
        description="CloudFront clickstream logs to Snowplow-compatible canonical events.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and the build, then exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description)
        if command_name is None or command.name == command_name:
            command.load().add_arguments(sub)
        sub.set_defaults(command_module=command.module)
    return parser


def exit_code(exc: PipelineError) -> int:
    """The exit code of an error a subcommand raised (see the module docstring)."""
    return EXIT_USAGE if isinstance(exc, InputError) else EXIT_FAILED


def error_message(exc: PipelineError) -> str:
    """The one-line message for ``exc``: input errors say what to fix, others whether a rerun can help."""
    if isinstance(exc, InputError):
        return f"clickstream-etl: error: {exc}"
    advice = "running it again may succeed" if exc.retryable else "fix the cause, then run it again"
    return f"clickstream-etl: error: {exc} ({advice})"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # The subcommand is the first word: only its module is imported (start-up is part of every run).
    named = next((word for word in arguments[:1] if word in _COMMAND_NAMES), None)
    parser = build_parser(named)
    args = parser.parse_args(arguments)
    module: CommandModule = importlib.import_module(args.command_module)
    try:
        return module.run(args)
    except PipelineError as exc:
        print(error_message(exc), file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("clickstream-etl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into `head`: the reader left, the work is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
