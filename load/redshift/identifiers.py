"""Safe SQL identifiers and the validated names of the load path's tables.

Schema, table and column names are validated identifiers (``^[a-z_][a-z0-9_]{0,126}$``)
and always double-quoted; a name that fails is an :class:`~load.errors.InvalidIdentifierError`
(terminal: fix the configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from load.errors import InvalidIdentifierError
from pipeline.config import RedshiftConfig
from pipeline.errors import ConfigError

_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,126}")


def identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe Redshift identifier, else raise.

    Raises :class:`~load.errors.InvalidIdentifierError` (terminal: fix the configuration).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a valid identifier: use 1-127 lowercase letters, digits and "
            "underscores, starting with a letter or an underscore"
        )
    return name


def quote(name: str) -> str:
    """A validated identifier, double-quoted (so reserved words are safe too)."""
    return f'"{identifier(name)}"'


@dataclass(frozen=True, slots=True)
class RedshiftTables:
    """The validated names of every table the load path uses."""

    schema: str
    events: str
    staging: str
    backfill_staging: str
    rejects: str
    ledger: str

    @classmethod
    def from_config(cls, config: RedshiftConfig) -> RedshiftTables:
        """Validate the names in ``config.redshift``; raises InvalidIdentifierError naming the key."""
        names = {
            "schema": config.schema,
            "events": config.table,
            "staging": config.staging_table,
            "backfill_staging": config.backfill_staging_table,
            "rejects": config.rejects_table,
            "ledger": config.ledger_table,
        }
        keys = {
            "events": "table",
            "staging": "staging_table",
            "backfill_staging": "backfill_staging_table",
            "rejects": "rejects_table",
            "ledger": "ledger_table",
            "schema": "schema",
        }
        for attr, value in names.items():
            identifier(value, f"redshift.{keys[attr]}")
        tables = [v for k, v in names.items() if k != "schema"]
        if len(set(tables)) != len(tables):
            raise ConfigError(
                "redshift: table, staging_table, backfill_staging_table, rejects_table and "
                "ledger_table must be five different names"
            )
        return cls(**names)

    def qualified(self, table: str) -> str:
        """``"schema"."table"`` for one of this schema's tables."""
        return f"{quote(self.schema)}.{quote(table)}"

    @property
    def events_q(self) -> str:
        return self.qualified(self.events)

    @property
    def rejects_q(self) -> str:
        return self.qualified(self.rejects)

    @property
    def ledger_q(self) -> str:
        return self.qualified(self.ledger)
