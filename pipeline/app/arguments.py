"""Argument types shared by the subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, the overlay every command accepts."""
    parser.add_argument("--config", metavar="FILE", help="a TOML overlay on the default configuration")
