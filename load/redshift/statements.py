"""SQL statements as values: a label, SQL text and Data API parameters; transactions.

Values travel as Data API ``Parameters`` (``:name`` placeholders), never inside SQL text.
The one exception is COPY, which takes no parameters (see :mod:`load.redshift.backfill_plan`).
The executors (:mod:`load.redshift.executor`) run these values; nothing here talks to AWS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement as a value: a label (its role in a plan), SQL text, parameters.

    ``parameters`` are ``(name, value)`` pairs for the ``:name`` placeholders in ``sql``;
    every value is a non-empty string, as the Data API takes them.
    """

    label: str
    sql: str
    parameters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, value in self.parameters:
            if f":{name}" not in self.sql:
                raise ValueError(f"statement {self.label}: parameter {name} is not used")
            if not isinstance(value, str) or not value:
                raise ValueError(f"statement {self.label}: parameter {name} must be a non-empty string")

    def data_api_parameters(self) -> list[dict[str, str]]:
        """The parameters in the Data API's shape."""
        return [{"name": name, "value": value} for name, value in self.parameters]


@dataclass(frozen=True, slots=True)
class Transaction:
    """Statements that commit together or not at all (one Data API batch)."""

    label: str
    statements: tuple[Statement, ...]


def render_script(statements: Iterable[Statement]) -> str:
    """Statements as one SQL script (for printing; parameters must be absent)."""
    parts = []
    for statement in statements:
        if statement.parameters:
            raise ValueError(f"statement {statement.label} has parameters and cannot be printed as a script")
        parts.append(statement.sql.rstrip() + ";")
    return "\n\n".join(parts) + "\n"
