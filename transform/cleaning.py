"""String columns made safe the way Snowplow's Enrich makes them: tabs, control characters, empties.

Snowplow cleans every string it copies into the atomic event (``ConversionUtils.fixTabsNewlines``,
reached through ``toTsvSafe`` / ``makeTsvSafe``): a tab becomes four spaces, every other
control character (``\\p{Cntrl}`` in Java: U+0000..U+001F and U+007F) is removed, and a
string left empty becomes null.  The same applies here to every column the canonical schema
types ``string`` (``pipeline/canonical_event.tsv``); the JSON columns (``contexts``,
``unstruct_event``, ``derived_contexts``) keep their JSON text as sent.

The check is ``str.isprintable()``, one C loop that is true for almost every value (it is
false for every control character, so nothing slips through), and only a value that fails it
pays for the translation.
"""

from __future__ import annotations

from typing import Any, Final

from pipeline.schema import FIELDS

TSV_SAFE: Final[dict[int, str | None]] = {**dict.fromkeys((*range(0x20), 0x7F)), 0x09: "    "}
"""``str.translate`` table: a tab to four spaces, every other C0 control character and DEL removed."""

STRING_COLUMNS: Final = frozenset(f.name for f in FIELDS if f.type == "string")
"""The columns cleaned: those typed ``string`` (not the JSON columns)."""


def clean_text(value: str) -> str:
    """``value`` with tabs as four spaces and other control characters removed (may be ``""``)."""
    return value if value.isprintable() else value.translate(TSV_SAFE)


def clean_columns(columns: dict[str, Any]) -> dict[str, Any]:
    """Clean the string columns of ``columns`` in place and drop those left empty; return it.

    Columns that are not string columns of the canonical schema are left alone.
    """
    for name, value in list(columns.items()):
        if type(value) is str and name in STRING_COLUMNS and (not value or not value.isprintable()):
            value = value.translate(TSV_SAFE)
            if value:
                columns[name] = value
            else:
                del columns[name]
    return columns
