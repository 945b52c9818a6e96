"""``clickstream-etl samples DIR``: copy the sample logs shipped with the package into a folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.app.cli import EXIT_OK
from pipeline.bundled import sample_logs
from pipeline.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dest",
        nargs="?",
        default="clickstream-samples",
        metavar="DIR",
        help="folder to copy them into (default: ./clickstream-samples)",
    )


def run(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} exists and is not a folder")
    files = sorted(sample_logs().glob("*.gz"))
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(file, dest / file.name)
    except OSError as exc:
        raise InputError(f"cannot write the samples into {dest}: {exc.strerror or exc}") from exc
    print(f"{len(files)} sample CloudFront log files in {dest}; try: clickstream-etl backfill {dest} --output out")
    return EXIT_OK
