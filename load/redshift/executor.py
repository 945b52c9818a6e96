"""Run the Redshift plans: the Executor protocol and the Data API executor.

:class:`DataApiExecutor` runs one :class:`~load.redshift.statements.Statement` with
``ExecuteStatement`` (values as ``Parameters``) or a
:class:`~load.redshift.statements.Transaction` with ``BatchExecuteStatement`` (one
transaction), then polls ``DescribeStatement`` a bounded number of times with an injected
``sleep``: a statement that is still running after ``max_polls`` polls is cancelled and
reported as a transient :class:`~load.errors.StatementTimeoutError` (every plan is
idempotent, so the caller may simply run it again).  Anything that satisfies
:class:`Executor` can run the same plans -- the tests run them on DuckDB.
:func:`merge_once` runs a merge transaction on any executor and reads its statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from load.errors import (
    DataApiError,
    DataApiRequestError,
    StatementConflictError,
    StatementFailedError,
    StatementTimeoutError,
)
from load.redshift.merge import MergeStats
from load.redshift.statements import Statement, Transaction
from pipeline.aws.errors import aws_exceptions, translate
from pipeline.config import RedshiftConfig
from pipeline.errors import ConfigError


@dataclass(frozen=True, slots=True)
class StatementResult:
    """What one statement returned: its rows (if any), rows affected, Redshift's query id."""

    label: str
    rows: tuple[tuple[Any, ...], ...] = ()
    affected: int | None = None
    query_id: int | None = None


class Executor(Protocol):
    """Runs statements and transactions; raises load.errors subclasses on failure."""

    def execute(self, statement: Statement) -> StatementResult: ...

    def execute_transaction(self, transaction: Transaction) -> tuple[StatementResult, ...]: ...


# --------------------------------------------------------------------------- Data API
@dataclass(frozen=True, slots=True)
class DataApiTarget:
    """Where the Data API runs SQL: a Serverless workgroup or a provisioned cluster."""

    database: str
    workgroup: str = ""
    cluster_identifier: str = ""
    db_user: str = ""
    secret_arn: str = ""

    @classmethod
    def from_config(cls, config: RedshiftConfig) -> DataApiTarget:
        """Raises ConfigError unless exactly one of workgroup and cluster_identifier is set
        (and, for a cluster, db_user or secret_arn)."""
        if bool(config.workgroup) == bool(config.cluster_identifier):
            raise ConfigError("redshift: set exactly one of workgroup and cluster_identifier")
        if config.cluster_identifier and not (config.db_user or config.secret_arn):
            raise ConfigError("redshift: a provisioned cluster needs db_user or secret_arn")
        if not config.database:
            raise ConfigError("redshift.database must not be empty")
        return cls(config.database, config.workgroup, config.cluster_identifier, config.db_user, config.secret_arn)

    def request_arguments(self) -> dict[str, str]:
        args = {"Database": self.database}
        if self.workgroup:
            args["WorkgroupName"] = self.workgroup
        else:
            args["ClusterIdentifier"] = self.cluster_identifier
        if self.secret_arn:
            args["SecretArn"] = self.secret_arn
        elif self.db_user and self.cluster_identifier:
            args["DbUser"] = self.db_user
        return args


_CONFLICT_MARKERS: Final = (
    "serializable isolation violation",
    "error: 1023",
    "deadlock",
    "lock timeout",
    "could not obtain lock",
)
_DONE: Final = "FINISHED"
_FAILED: Final = frozenset({"FAILED", "ABORTED"})


def _field_value(cell: dict[str, Any]) -> Any:
    if cell.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if key in cell:
            return cell[key]
    return None


@dataclass(frozen=True)
class Waiting:
    """A statement still running after a poll: what a command shows instead of silence."""

    label: str
    status: str
    poll: int
    max_polls: int
    seconds: float


WaitCallback = Callable[[Waiting], None]


class DataApiExecutor:
    """Runs statements through the Redshift Data API with bounded polling.

    ``client`` is a ``redshift-data`` client from :func:`pipeline.aws.clients.make_client`;
    ``sleep`` and ``clock`` are injectable so tests never wait.
    """

    def __init__(
        self,
        client: Any,
        target: DataApiTarget,
        *,
        poll_interval_s: float,
        max_polls: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: WaitCallback | None = None,
    ) -> None:
        if max_polls < 1:
            raise ConfigError("redshift.max_polls must be at least 1")
        self._client = client
        self._target = target
        self._interval = poll_interval_s
        self._max_polls = max_polls
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait

    @classmethod
    def from_config(
        cls,
        client: Any,
        config: RedshiftConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: WaitCallback | None = None,
    ) -> DataApiExecutor:
        return cls(
            client,
            DataApiTarget.from_config(config),
            poll_interval_s=config.poll_interval_ms / 1000,
            max_polls=config.max_polls,
            sleep=sleep,
            clock=clock,
            on_wait=on_wait,
        )

    # ----------------------------------------------------------------- API
    def execute(self, statement: Statement) -> StatementResult:
        """Run one statement (values as Data API Parameters) and return its result."""
        kwargs: dict[str, Any] = {"Sql": statement.sql, "StatementName": statement.label[:500]}
        if statement.parameters:
            kwargs["Parameters"] = statement.data_api_parameters()
        response = self._call(
            "ExecuteStatement", self._client.execute_statement, **kwargs, **self._target.request_arguments()
        )
        description = self._wait(response["Id"], statement.label, (statement,))
        rows = self._rows(description["Id"]) if description.get("HasResultSet") else ()
        return StatementResult(
            statement.label, rows, _count(description.get("ResultRows")), description.get("RedshiftQueryId")
        )

    def execute_transaction(self, transaction: Transaction) -> tuple[StatementResult, ...]:
        """Run a transaction as one ``BatchExecuteStatement`` (committed or rolled back whole)."""
        if any(s.parameters for s in transaction.statements):
            raise ValueError(f"transaction {transaction.label}: batched statements cannot take parameters")
        response = self._call(
            "BatchExecuteStatement",
            self._client.batch_execute_statement,
            Sqls=[s.sql for s in transaction.statements],
            StatementName=transaction.label[:500],
            **self._target.request_arguments(),
        )
        description = self._wait(response["Id"], transaction.label, transaction.statements)
        subs = description.get("SubStatements") or []
        results = []
        for statement, sub in zip(transaction.statements, subs, strict=False):
            rows = self._rows(sub["Id"]) if sub.get("HasResultSet") else ()
            results.append(
                StatementResult(statement.label, rows, _count(sub.get("ResultRows")), sub.get("RedshiftQueryId"))
            )
        if len(results) != len(transaction.statements):
            raise StatementFailedError(
                f"transaction {transaction.label}: the Data API described {len(subs)} of "
                f"{len(transaction.statements)} statements",
                label=transaction.label,
            )
        return tuple(results)

    # ----------------------------------------------------------------- internals
    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except aws_exceptions() as exc:
            what = f"Redshift Data API {operation}"
            raise translate(exc, what, transient=DataApiError, terminal=DataApiRequestError) from exc

    def _wait(self, statement_id: str, label: str, statements: Sequence[Statement]) -> dict[str, Any]:
        started = self._clock()
        for poll in range(self._max_polls):
            if poll:
                self._sleep(self._interval)
            description: dict[str, Any] = self._call(
                "DescribeStatement", self._client.describe_statement, Id=statement_id
            )
            status = description.get("Status")
            if status == _DONE:
                return description
            if status in _FAILED:
                raise self._failure(description, label, statements)
            if self._on_wait is not None:
                self._on_wait(Waiting(label, str(status), poll + 1, self._max_polls, self._clock() - started))
        self._cancel(statement_id)
        raise StatementTimeoutError(
            f"statement {label} ({statement_id}) did not finish after {self._max_polls} polls "
            f"({self._clock() - started:.1f}s); it was cancelled -- the plan is idempotent, run it again"
        )

    def _cancel(self, statement_id: str) -> None:
        try:
            self._client.cancel_statement(Id=statement_id)
        except aws_exceptions():
            # It may have finished or failed between the last poll and now; the timeout
            # error raised by the caller says what to do either way.
            return

    @staticmethod
    def _failure(description: dict[str, Any], label: str, statements: Sequence[Statement]) -> Exception:
        error = str(description.get("Error") or description.get("Status"))
        failed_label, query_id = label, description.get("RedshiftQueryId")
        for index, sub in enumerate(description.get("SubStatements") or []):
            if sub.get("Status") in _FAILED and index < len(statements):
                failed_label = statements[index].label
                query_id = sub.get("RedshiftQueryId")
                error = str(sub.get("Error") or error)
                break
        message = f"statement {failed_label} failed: {error}"
        if any(marker in error.lower() for marker in _CONFLICT_MARKERS):
            return StatementConflictError(message + " (a concurrent transaction; run it again)")
        return StatementFailedError(message, label=failed_label, query_id=query_id if query_id else None)

    def _rows(self, statement_id: str) -> tuple[tuple[Any, ...], ...]:
        rows: list[tuple[Any, ...]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Id": statement_id}
            if token:
                kwargs["NextToken"] = token
            page = self._call("GetStatementResult", self._client.get_statement_result, **kwargs)
            rows.extend(tuple(_field_value(cell) for cell in record) for record in page.get("Records", []))
            token = page.get("NextToken")
            if not token:
                return tuple(rows)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 0 else None


# --------------------------------------------------------------------------- the merge, run
def merge_once(executor: Executor, transaction: Transaction) -> MergeStats:
    """Run a merge transaction and read its statistics (rows inserted from the INSERT)."""
    results = executor.execute_transaction(transaction)
    by_label = {r.label: r for r in results}
    stats_rows = by_label["stats"].rows
    if len(stats_rows) != 1:
        raise StatementFailedError(f"merge statistics returned {len(stats_rows)} rows, expected 1", label="stats")
    stats = MergeStats.from_row(stats_rows[0])
    inserted = by_label["insert"].affected
    if inserted is not None and inserted != stats.inserted:
        # Both are computed under the same lock; a difference means the plan is wrong.
        raise StatementFailedError(
            f"the merge inserted {inserted} rows but counted {stats.inserted} new events", label="insert"
        )
    return stats
