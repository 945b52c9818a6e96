"""COPY load errors: the queries of ``sys_load_error_detail`` and its rows as values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from load.redshift.statements import Statement

LOAD_ERROR_LIMIT: Final = 100
_LOAD_ERROR_COLUMNS: Final = (
    '"query_id", "start_time", TRIM("file_name"), "line_number", TRIM("column_name"), '
    '"error_code", TRIM("error_message")'
)


@dataclass(frozen=True, slots=True)
class LoadErrorDetail:
    """One row of ``sys_load_error_detail``."""

    query_id: int | None
    start_time: str
    file_name: str
    line_number: int | None
    column_name: str
    error_code: int | None
    error_message: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LoadErrorDetail:
        qid, start, file_name, line, column, code, message = row

        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        return cls(
            opt_int(qid),
            str(start or ""),
            str(file_name or ""),
            opt_int(line),
            str(column or ""),
            opt_int(code),
            str(message or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "start_time": self.start_time,
            "file_name": self.file_name,
            "line_number": self.line_number,
            "column_name": self.column_name,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


def load_errors_of_query(query_id: int) -> Statement:
    """The load errors of one COPY (by its Redshift query id)."""
    return Statement(
        "load_errors",
        f'SELECT {_LOAD_ERROR_COLUMNS}\nFROM sys_load_error_detail\nWHERE "query_id" = CAST(:query_id AS BIGINT)\n'
        f'ORDER BY "line_number"\nLIMIT {LOAD_ERROR_LIMIT}',
        (("query_id", str(int(query_id))),),
    )


def load_errors_since(since: str, file_prefix: str) -> Statement:
    """Load errors of COPYs of files under ``file_prefix`` started at or after ``since`` (UTC)."""
    return Statement(
        "load_errors",
        f"SELECT {_LOAD_ERROR_COLUMNS}\nFROM sys_load_error_detail\n"
        'WHERE "start_time" >= CAST(:since AS TIMESTAMP) AND TRIM("file_name") LIKE :file_pattern\n'
        f'ORDER BY "start_time", "line_number"\nLIMIT {LOAD_ERROR_LIMIT}',
        (("since", since), ("file_pattern", file_prefix + "%")),
    )
