"""Run the Redshift load plans on a real SQL engine (DuckDB) in tests, and the oracles they are checked against.

The statements are the exact text :mod:`load.redshift` builds for Redshift, transpiled by
sqlglot from the Redshift dialect to DuckDB's, with these engine adaptations (each a
storage or privilege detail, not a semantic one):

* column ``ENCODE`` clauses and ``DISTSTYLE``/``DISTKEY``/``SORTKEY`` are dropped (DuckDB
  has no slices or zone maps to tune);
* ``LOCK`` is skipped (DuckDB serializes writers itself; the tests run one merge at a time);
* ``OCTET_LENGTH(text)`` becomes ``STRLEN`` (DuckDB's byte length of a VARCHAR);
* ``COPY ... FORMAT AS PARQUET [SERIALIZETOJSON] MANIFEST`` is emulated: the manifest is read
  from S3 (moto), every entry's ``content_length`` is checked, a file must have exactly as
  many columns as the table (Redshift's rule for columnar COPY), and the files are inserted
  by position with ``read_parquet``, as Redshift maps Parquet columns by position; a nested
  column goes into a ``SUPER`` column as its JSON.  A failing COPY records a row in an
  emulated ``sys_load_error_detail`` and fails its transaction;
* Firehose's COPY of JSON lines is emulated by :meth:`DuckDBExecutor.copy_json_lines`
  (``FORMAT AS JSON 'auto'`` with the CopyCommand's column list);
* Redshift's text JSON functions get their documented semantics: ``IS_VALID_JSON`` is true
  for a JSON *object* only, ``IS_VALID_JSON_ARRAY`` for an array only;
  ``JSON_EXTRACT_PATH_TEXT(j, k1, ..., kn[, null_if_invalid])`` is ``json_extract_string``
  on the path ``$."k1"..."kn"`` (NULL when absent), ``JSON_EXTRACT_ARRAY_ELEMENT_TEXT`` is
  NULL out of range, and a ``null_if_invalid`` of true makes any of them (and
  ``JSON_ARRAY_LENGTH``) NULL instead of an error for malformed text (``TRY``); ``JSON_PARSE``
  is ``JSON`` and the ``SUPER`` type is DuckDB's ``JSON``.

DuckDB does not enforce VARCHAR widths, which is why the merge checks byte widths itself
(``OCTET_LENGTH``) instead of relying on the column types.

The oracles say in Python what the SQL must compute: :func:`synthetic_event_id`
(the id the merge gives a synthetic duplicate) and :data:`PARQUET_COLUMNS` (the columns of
the dataset's Parquet files, which the backfill staging table must list in order).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import sqlglot
from sqlglot import exp

from load.errors import StatementFailedError
from load.redshift.columns import staging_type
from load.redshift.executor import StatementResult
from load.redshift.identifiers import RedshiftTables, identifier
from load.redshift.merge import SYNTHETIC_ID_PREFIX
from load.redshift.statements import Statement, Transaction
from pipeline.schema import FIELDS

logging.getLogger("sqlglot").setLevel(logging.ERROR)

# --------------------------------------------------------------------------- oracles
SYNTHETIC_ID_NAMESPACE: Final = uuid.UUID(bytes=SYNTHETIC_ID_PREFIX.encode("ascii"))
"""UUID namespace whose 16 bytes are the ASCII text ``clickstream-etl:``, so SQL can hash it as text."""
PARQUET_COLUMNS: Final[tuple[str, ...]] = tuple(identifier(f.name, "canonical field") for f in FIELDS)
"""The columns of the dataset's Parquet files, in file order."""


def synthetic_event_id(event_id: str, fingerprint: str | None) -> str:
    """The id a synthetic duplicate is stored under: ``uuid5(NS, f"{event_id}/{fingerprint}")``.

    ``NS`` is :data:`SYNTHETIC_ID_NAMESPACE`; a missing fingerprint counts as ``""``.  The
    merge computes the same value in SQL (SHA1 of the namespace text and the name).
    """
    return str(uuid.uuid5(SYNTHETIC_ID_NAMESPACE, f"{event_id}/{fingerprint or ''}"))


# --------------------------------------------------------------------------- DuckDB
_COPY = re.compile(
    r"COPY (?P<table>(\"[a-z0-9_]+\"\.)?\"[a-z0-9_]+\")\nFROM 's3://(?P<bucket>[^/']+)/(?P<key>[^']+)'\n"
    r"IAM_ROLE \S+\nFORMAT AS PARQUET(?P<nested> SERIALIZETOJSON)?\nMANIFEST"
)
_DUCK_TYPES = {
    "VARCHAR(65535)": "VARCHAR",
    "TIMESTAMP": "TIMESTAMP",
    "INTEGER": "INTEGER",
    "DOUBLE PRECISION": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
}
SYS_LOAD_ERROR_DETAIL = """CREATE TABLE IF NOT EXISTS sys_load_error_detail (
    user_id INTEGER, query_id BIGINT, transaction_id BIGINT, session_id INTEGER, database_name VARCHAR,
    table_id INTEGER, start_time TIMESTAMP, file_name VARCHAR, line_number BIGINT, column_name VARCHAR,
    column_type VARCHAR, column_length VARCHAR, position INTEGER, error_code INTEGER, error_message VARCHAR
)"""


REDSHIFT_MACROS: Final = (
    "CREATE TYPE SUPER AS JSON",
    "CREATE MACRO is_valid_json(j) AS COALESCE(TRY(json_type(j)) = 'OBJECT', false)",
    "CREATE MACRO is_valid_json_array(j) AS COALESCE(TRY(json_type(j)) = 'ARRAY', false)",
)


def _null_if_invalid(args: list[exp.Expression]) -> tuple[list[exp.Expression], bool]:
    """The arguments without a trailing ``null_if_invalid`` boolean, and its value."""
    if args and isinstance(args[-1], exp.Boolean):
        return args[:-1], bool(args[-1].this)
    return args, False


def _maybe_try(call: exp.Expression, lenient: bool) -> exp.Expression:
    return exp.Anonymous(this="TRY", expressions=[call]) if lenient else call


def _json_path(keys: list[exp.Expression]) -> exp.Expression:
    if len(keys) == 1 and isinstance(keys[0], exp.JSONPath):  # sqlglot parses one key as a path
        keys = [exp.Literal.string(str(k.this)) for k in keys[0].expressions if isinstance(k, exp.JSONPathKey)]
    if not all(isinstance(k, exp.Literal) and k.is_string for k in keys):
        raise ValueError("JSON_EXTRACT_PATH_TEXT path elements must be string literals here")
    steps = "".join('."' + str(k.this).replace("\\", "\\\\").replace('"', '\\"') + '"' for k in keys)
    return exp.Literal.string("$" + steps)


def _adapt_json(node: exp.Expression) -> exp.Expression | None:
    """Redshift's text JSON functions as DuckDB calls (see the module docstring).  The
    arguments are adapted here: sqlglot does not visit the children of a replaced node."""
    if isinstance(node, exp.JSONExtractScalar):
        keys, lenient = _null_if_invalid([node.expression, *node.expressions])
        json_text = node.this.transform(_adapt)
        call = exp.Anonymous(this="json_extract_string", expressions=[json_text, _json_path(keys)])
        return _maybe_try(call, lenient)
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "JSON_EXTRACT_ARRAY_ELEMENT_TEXT":
        (json_text, index), lenient = _null_if_invalid([a.transform(_adapt) for a in node.expressions])
        position = exp.Cast(this=index, to=exp.DataType.build("VARCHAR"))
        path = exp.DPipe(
            this=exp.DPipe(this=exp.Literal.string("$["), expression=position),
            expression=exp.Literal.string("]"),
        )
        return _maybe_try(exp.Anonymous(this="json_extract_string", expressions=[json_text, path]), lenient)
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "JSON_ARRAY_LENGTH":
        args, lenient = _null_if_invalid([a.transform(_adapt) for a in node.expressions])
        return _maybe_try(exp.Anonymous(this="json_array_length", expressions=args), lenient)
    return None


def _adapt(node: exp.Expression) -> exp.Expression | None:
    json_call = _adapt_json(node)
    if json_call is not None:
        return json_call
    if isinstance(node, exp.ColumnConstraint) and isinstance(node.args.get("kind"), exp.EncodeColumnConstraint):
        return None
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "OCTET_LENGTH":
        return exp.Anonymous(this="STRLEN", expressions=node.expressions)
    return node


def to_duckdb(sql: str) -> str:
    """Redshift SQL text to DuckDB SQL text (see the module docstring for the adaptations)."""
    tree = sqlglot.parse_one(sql, read="redshift")
    return tree.transform(_adapt).sql("duckdb")


def _plain(value: Any) -> Any:
    """Values as the Data API returns them: timestamps as text."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


class DuckDBExecutor:
    """An :class:`load.redshift.executor.Executor` on an in-memory DuckDB database."""

    def __init__(self, s3: Any = None) -> None:
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        self.connection.execute(SYS_LOAD_ERROR_DETAIL)
        for macro in REDSHIFT_MACROS:
            self.connection.execute(macro)
        self.s3 = s3
        self.executed: list[Statement] = []
        self._query_ids = itertools.count(1000)
        self._files = Path(tempfile.mkdtemp(prefix="duckdb-copy-"))
        # The COPY staging folder goes with the executor (or at exit), so tests leave no folders behind.
        self.close = weakref.finalize(self, shutil.rmtree, self._files, ignore_errors=True)
        self._copy_source = ""

    # ------------------------------------------------------------------ Executor
    def execute(self, statement: Statement) -> StatementResult:
        try:
            return self._run(statement)
        except duckdb.Error as exc:
            raise StatementFailedError(f"statement {statement.label} failed: {exc}", label=statement.label) from exc

    def execute_transaction(self, transaction: Transaction) -> tuple[StatementResult, ...]:
        self.connection.execute("BEGIN TRANSACTION")
        results = []
        for statement in transaction.statements:
            try:
                results.append(self._run(statement))
            except (duckdb.Error, _CopyFailed) as exc:
                self.connection.execute("ROLLBACK")
                query_id = self._record_load_error(statement, exc) if statement.label == "copy" else None
                raise StatementFailedError(
                    f"statement {statement.label} failed: {exc}", label=statement.label, query_id=query_id
                ) from exc
        self.connection.execute("COMMIT")
        return tuple(results)

    # ------------------------------------------------------------------ helpers for tests
    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run DuckDB SQL directly (assertions)."""
        return [tuple(row) for row in self.connection.execute(sql, list(parameters)).fetchall()]

    def copy_json_lines(self, tables: RedshiftTables, copy_command: dict[str, str], lines: Sequence[str]) -> None:
        """Emulate Firehose's COPY of JSON lines into the staging table named by ``copy_command``."""
        assert copy_command["DataTableName"] == f"{tables.schema}.{tables.staging}"
        assert "FORMAT AS JSON 'auto'" in copy_command["CopyOptions"]
        columns = copy_command["DataTableColumns"].split(",")
        by_name = {f.name: f for f in FIELDS}
        types = {name: _DUCK_TYPES[staging_type(by_name[name])] for name in columns}
        path = self._files / f"firehose-{next(self._query_ids)}.json"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        column_list = ", ".join(f'"{c}"' for c in columns)
        self.connection.execute(
            f"INSERT INTO {tables.qualified(tables.staging)} ({column_list}) "
            f"SELECT {column_list} FROM read_json(?, format = 'newline_delimited', columns = {json.dumps(types)})",
            [str(path)],
        )

    # ------------------------------------------------------------------ internals
    def _run(self, statement: Statement) -> StatementResult:
        self.executed.append(statement)
        sql = statement.sql
        if sql.startswith("LOCK "):
            return StatementResult(statement.label)
        if sql.startswith("COPY "):
            return self._copy(statement)
        tree = sqlglot.parse_one(sql, read="redshift")
        cursor = self.connection.execute(to_duckdb(sql), dict(statement.parameters))
        if isinstance(tree, exp.Select):
            rows = tuple(tuple(_plain(v) for v in row) for row in cursor.fetchall())
            return StatementResult(statement.label, rows, len(rows))
        if isinstance(tree, exp.Insert | exp.Delete | exp.Update):
            row = cursor.fetchone()
            return StatementResult(statement.label, (), int(row[0]) if row else 0)
        return StatementResult(statement.label)

    def _copy(self, statement: Statement) -> StatementResult:
        match = _COPY.fullmatch(statement.sql)
        if match is None:
            raise _CopyFailed(f"unsupported COPY: {statement.sql}")
        manifest = json.loads(self.s3.get_object(Bucket=match["bucket"], Key=match["key"])["Body"].read())
        self._copy_source = manifest["entries"][0]["url"] if manifest["entries"] else ""
        paths = []
        for number, entry in enumerate(manifest["entries"]):
            bucket, _, key = entry["url"][5:].partition("/")
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if len(body) != entry["meta"]["content_length"]:
                raise _CopyFailed(f"{entry['url']}: content_length {entry['meta']['content_length']} != {len(body)}")
            path = self._files / f"copy-{next(self._query_ids)}-{number}.parquet"
            path.write_bytes(body)
            paths.append(str(path))
        if not paths:
            return StatementResult(statement.label, (), 0)
        target = self.connection.execute(f"DESCRIBE {match['table']}").fetchall()
        loaded = 0
        for path in paths:
            source = self.connection.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
            if len(source) != len(target):
                raise _CopyFailed(f"{path}: the file has {len(source)} columns, the table {len(target)}")
            selected = ", ".join(
                f'to_json("{column[0]}")' if match["nested"] and str(wanted[1]).upper() == "JSON" else f'"{column[0]}"'
                for column, wanted in zip(source, target, strict=True)
            )
            cursor = self.connection.execute(
                f"INSERT INTO {match['table']} SELECT {selected} FROM read_parquet(?)", [path]
            )
            row = cursor.fetchone()
            loaded += int(row[0]) if row else 0
        return StatementResult(statement.label, (), loaded)

    def _record_load_error(self, statement: Statement, error: BaseException) -> int:
        query_id = next(self._query_ids)
        self.connection.execute(
            "INSERT INTO sys_load_error_detail (query_id, start_time, file_name, line_number, column_name, "
            "error_code, error_message) VALUES (?, now(), ?, 1, '', 15001, ?)",
            [query_id, self._copy_source, str(error)[:512]],
        )
        return query_id


class _CopyFailed(Exception):
    """The emulated COPY rejected its input."""
