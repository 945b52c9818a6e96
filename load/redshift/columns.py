"""The column layout of the Redshift tables, derived from the canonical schema.

The events table has the 128 columns of Snowplow's ``atomic.events``
(:data:`pipeline.schema.ATOMIC_FIELDS`) with their types and byte widths, then
``load_tstamp``; staging tables hold the same values in wider types, so that a row that does
not fit reaches the merge instead of failing a whole COPY.
"""

from __future__ import annotations

import re
from typing import Final

from load.redshift.identifiers import identifier
from pipeline.schema import ATOMIC_FIELDS, Field

WIDE_VARCHAR: Final = 65535
"""Redshift's widest VARCHAR: staging string columns, so an over-width value reaches the merge."""
DECIMAL_LIMIT: Final = "1.0E16"
"""DECIMAL(18,2) holds magnitudes below 10^16."""
_VARCHAR = re.compile(r"^(var)?char\((\d+)\)$")
_DECIMAL = re.compile(r"^dec(?:imal)?\((\d+),(\d+)\)$")


def column_type(f: Field) -> str:
    """The events-table type of an atomic field, from the Redshift type in the schema table."""
    text = f.redshift_type.replace(" ", "").lower()
    if match := _VARCHAR.match(text):
        return f"{'VARCHAR' if match.group(1) else 'CHAR'}({match.group(2)})"
    if match := _DECIMAL.match(text):
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    simple = {
        "timestamp": "TIMESTAMP",
        "int": "INTEGER",
        "integer": "INTEGER",
        "boolean": "BOOLEAN",
        "doubleprecision": "DOUBLE PRECISION",
    }
    if text in simple:
        return simple[text]
    raise ValueError(f"field {f.name}: no Redshift type for {f.redshift_type!r}")  # pragma: no cover


def staging_type(f: Field, *, parquet: bool = False) -> str:
    """The staging type of a field: strings wide, numbers as COPY reads them from JSON, or from
    Parquet when ``parquet`` (where money columns are already DECIMAL, and COPY from Parquet
    needs the file's type)."""
    if parquet and f.decimal is not None:
        return f"DECIMAL({f.decimal[0]},{f.decimal[1]})"
    return {
        "string": f"VARCHAR({WIDE_VARCHAR})",
        "contexts": f"VARCHAR({WIDE_VARCHAR})",
        "unstruct": f"VARCHAR({WIDE_VARCHAR})",
        "tstamp": "TIMESTAMP",
        "int": "INTEGER",
        "double": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
    }[f.type]


ATOMIC_COLUMNS: Final[tuple[str, ...]] = tuple(identifier(f.name, "canonical field") for f in ATOMIC_FIELDS)
"""The events table's canonical columns, in schema order (``load_tstamp`` follows them)."""
LOAD_TSTAMP: Final = "load_tstamp"
SORT_KEY: Final = "collector_tstamp"
DIST_KEY: Final = "event_id"
NOT_NULL_COLUMNS: Final = frozenset({"event_id", "collector_tstamp"})
"""The events table's NOT NULL columns (a staged row missing one is rejected)."""
