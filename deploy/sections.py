"""The parts of template.yaml derived from the code.

Two sections of the template are long lists the code already declares: the Glue table's columns
(from :data:`pipeline.schema.FIELDS`, the canonical event) and Firehose's COPY command (from
:func:`load.redshift.firehose_destination.firehose_copy_command`).  They sit between
``# BEGIN generated: <name>`` and ``# END generated: <name>`` comment lines and are written by::

    python -m deploy.sections --write     # rewrite them in template.yaml
    python -m deploy.sections --check     # exit 1 if template.yaml is out of date (tests do this)

Everything else in the template is written by hand and checked against the code by
tests/unit/test_template.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from deploy.cfn import TEMPLATE
from pipeline.schema import FIELDS, Field

_GLUE_TYPES: Final[Mapping[str, str]] = {
    "string": "string",
    "contexts": "string",
    "unstruct": "string",
    "int": "int",
    "double": "double",
    "bool": "boolean",
    "tstamp": "timestamp",
}
"""Glue (Hive) type of each canonical field type, as the Parquet files store it (load/parquet.py):
strings and the JSON columns as UTF-8 strings, timestamps as UTC milliseconds."""


def glue_type(field: Field) -> str:
    """The Glue column type of a canonical field (money columns are DECIMAL, as in Parquet and Redshift)."""
    decimal = field.decimal
    return f"decimal({decimal[0]},{decimal[1]})" if decimal is not None else _GLUE_TYPES[field.type]


def glue_columns() -> list[dict[str, str]]:
    """The Glue table's columns: every canonical field, in the files' order."""
    return [{"Name": f.name, "Type": glue_type(f)} for f in FIELDS]


def firehose_copy_command() -> dict[str, str]:
    """Firehose's CopyCommand for the default configuration's Redshift tables."""
    from load.redshift.firehose_destination import firehose_copy_command as copy_command
    from load.redshift.identifiers import RedshiftTables
    from pipeline.config import load_config

    return copy_command(RedshiftTables.from_config(load_config(environ={}).redshift))


def _flow(mapping: Mapping[str, str]) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in mapping.items()) + "}"


def _glue_lines() -> list[str]:
    return [f"- {_flow(column)}" for column in glue_columns()]


def _copy_lines() -> list[str]:
    return [f"{key}: {json.dumps(value)}" for key, value in firehose_copy_command().items()]


SECTIONS: Final[Mapping[str, Callable[[], list[str]]]] = {
    "glue-columns": _glue_lines,
    "copy-command": _copy_lines,
}

_BLOCK: Final = re.compile(
    r"^(?P<indent>[ ]*)# BEGIN generated: (?P<name>[a-z-]+)[^\n]*\n(?P<body>.*?)^[ ]*# END generated: (?P=name)[^\n]*$",
    re.MULTILINE | re.DOTALL,
)


def render(text: str) -> str:
    """``text`` with every generated section written anew (raises KeyError for an unknown section)."""

    def block(match: re.Match[str]) -> str:
        indent, name = match.group("indent"), match.group("name")
        lines = SECTIONS[name]()
        body = "".join(f"{indent}{line}\n" for line in lines)
        return (
            f"{indent}# BEGIN generated: {name} (python -m deploy.sections --write)\n"
            f"{body}{indent}# END generated: {name}"
        )

    return _BLOCK.sub(block, text)


def section_names(text: str) -> list[str]:
    """The generated sections present in ``text``, in order."""
    return [match.group("name") for match in _BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.sections", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the generated sections of template.yaml")
    action.add_argument("--check", action="store_true", help="exit 1 when template.yaml is out of date")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)
    text = args.template.read_text("utf-8")
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.template}: generated sections are out of date; run python -m deploy.sections --write")
            return 1
        print(f"{args.template}: generated sections {', '.join(section_names(text))} are up to date")
        return 0
    if fresh != text:
        args.template.write_text(fresh, "utf-8")
        print(f"{args.template}: rewrote {', '.join(section_names(text))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
