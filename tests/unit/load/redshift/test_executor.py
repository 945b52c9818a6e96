"""The Data API executor against botocore's Stubber: requests, polling bound, results, errors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from load.errors import (
    DataApiError,
    DataApiRequestError,
    StatementConflictError,
    StatementFailedError,
    StatementTimeoutError,
)
from load.redshift.executor import DataApiExecutor, DataApiTarget
from load.redshift.statements import Statement, Transaction
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError

STATEMENT_ID = "11111111-2222-3333-4444-555555555555"


class FakeClock:
    __test__ = False

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def client() -> Any:
    return boto3.client("redshift-data", region_name="us-east-1")


def make_executor(client: Any, clock: FakeClock, max_polls: int = 5) -> DataApiExecutor:
    target = DataApiTarget(database="dev", workgroup="clickstream")
    return DataApiExecutor(
        client, target, poll_interval_s=0.25, max_polls=max_polls, sleep=clock.sleep, clock=clock.clock
    )


def test_execute_sends_values_as_parameters_polls_and_parses_rows(client: Any) -> None:
    clock = FakeClock()
    statement = Statement(
        "ledger_lookup", "SELECT a, b FROM t WHERE p LIKE :root_pattern", (("root_pattern", "s3://x%"),)
    )
    with Stubber(client) as stub:
        stub.add_response(
            "execute_statement",
            {"Id": STATEMENT_ID},
            {
                "Sql": statement.sql,
                "StatementName": "ledger_lookup",
                "Database": "dev",
                "WorkgroupName": "clickstream",
                "Parameters": [{"name": "root_pattern", "value": "s3://x%"}],
            },
        )
        stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "STARTED"}, {"Id": STATEMENT_ID})
        stub.add_response(
            "describe_statement",
            {"Id": STATEMENT_ID, "Status": "FINISHED", "HasResultSet": True, "ResultRows": 3, "RedshiftQueryId": 77},
            {"Id": STATEMENT_ID},
        )
        stub.add_response(
            "get_statement_result",
            {
                "Records": [[{"stringValue": "a"}, {"longValue": 1}], [{"isNull": True}, {"booleanValue": True}]],
                "NextToken": "page2",
            },
            {"Id": STATEMENT_ID},
        )
        stub.add_response(
            "get_statement_result",
            {"Records": [[{"doubleValue": 1.5}, {"stringValue": "z"}]]},
            {"Id": STATEMENT_ID, "NextToken": "page2"},
        )
        result = make_executor(client, clock).execute(statement)
        stub.assert_no_pending_responses()
    assert result.rows == (("a", 1), (None, True), (1.5, "z"))
    assert (result.affected, result.query_id, result.label) == (3, 77, "ledger_lookup")
    assert clock.sleeps == [0.25]  # no sleep before the first poll


def test_polling_is_bounded_and_the_statement_cancelled(client: Any) -> None:
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("execute_statement", {"Id": STATEMENT_ID})
        for _ in range(3):
            stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "STARTED"}, {"Id": STATEMENT_ID})
        stub.add_response("cancel_statement", {"Status": True}, {"Id": STATEMENT_ID})
        with pytest.raises(StatementTimeoutError, match="did not finish after 3 polls") as caught:
            make_executor(client, clock, max_polls=3).execute(Statement("staged_count", "SELECT 1"))
        stub.assert_no_pending_responses()
    assert caught.value.retryable is True
    assert clock.sleeps == [0.25, 0.25]


def test_transaction_runs_as_one_batch_and_reads_sub_statement_results(client: Any) -> None:
    clock = FakeClock()
    transaction = Transaction(
        "merge",
        (Statement("lock", "LOCK t"), Statement("stats", "SELECT 1"), Statement("insert", "INSERT INTO t SELECT 1")),
    )
    with Stubber(client) as stub:
        stub.add_response(
            "batch_execute_statement",
            {"Id": STATEMENT_ID},
            {
                "Sqls": ["LOCK t", "SELECT 1", "INSERT INTO t SELECT 1"],
                "StatementName": "merge",
                "Database": "dev",
                "WorkgroupName": "clickstream",
            },
        )
        subs = [
            {"Id": f"{STATEMENT_ID}:1", "Status": "FINISHED", "HasResultSet": False, "ResultRows": 0},
            {"Id": f"{STATEMENT_ID}:2", "Status": "FINISHED", "HasResultSet": True, "ResultRows": 1},
            {"Id": f"{STATEMENT_ID}:3", "Status": "FINISHED", "HasResultSet": False, "ResultRows": 4},
        ]
        stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "FINISHED", "SubStatements": subs})
        stub.add_response("get_statement_result", {"Records": [[{"longValue": 9}]]}, {"Id": f"{STATEMENT_ID}:2"})
        results = make_executor(client, clock).execute_transaction(transaction)
        stub.assert_no_pending_responses()
    assert [(r.label, r.rows, r.affected) for r in results] == [
        ("lock", (), 0),
        ("stats", ((9,),), 1),
        ("insert", (), 4),
    ]


def _failed_batch(client: Any, error: str) -> Exception:
    clock = FakeClock()
    transaction = Transaction("backfill", (Statement("lock", "LOCK t"), Statement("copy", "COPY t FROM 's3://b/m'")))
    with Stubber(client) as stub:
        stub.add_response("batch_execute_statement", {"Id": STATEMENT_ID})
        subs = [
            {"Id": f"{STATEMENT_ID}:1", "Status": "FINISHED"},
            {"Id": f"{STATEMENT_ID}:2", "Status": "FAILED", "Error": error, "RedshiftQueryId": 4242},
        ]
        stub.add_response(
            "describe_statement", {"Id": STATEMENT_ID, "Status": "FAILED", "Error": error, "SubStatements": subs}
        )
        with pytest.raises((StatementFailedError, StatementConflictError)) as caught:
            make_executor(client, clock).execute_transaction(transaction)
    return caught.value


def test_a_failed_sub_statement_is_named_with_its_query_id(client: Any) -> None:
    error = _failed_batch(client, "Load into table 'events_backfill_staging' failed. Check 'sys_load_error_detail'")
    assert isinstance(error, StatementFailedError) and not error.retryable
    assert (error.label, error.query_id) == ("copy", 4242)


def test_a_serialization_conflict_is_transient(client: Any) -> None:
    error = _failed_batch(client, "ERROR: 1023 DETAIL: Serializable isolation violation on table - 1234")
    assert isinstance(error, StatementConflictError) and error.retryable


def test_batched_statements_cannot_take_parameters(client: Any) -> None:
    with pytest.raises(ValueError, match="parameters"):
        make_executor(client, FakeClock()).execute_transaction(
            Transaction("x", (Statement("a", "SELECT :v", (("v", "1"),)),))
        )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ThrottlingException", DataApiError),
        ("ValidationException", DataApiRequestError),
        ("AccessDeniedException", DataApiRequestError),
        ("ActiveStatementsExceededException", DataApiError),
    ],
)
def test_data_api_errors_say_whether_to_retry(client: Any, code: str, expected: type[Exception]) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("execute_statement", service_error_code=code, http_status_code=400)
        with pytest.raises(expected) as caught:
            make_executor(client, FakeClock()).execute(Statement("s", "SELECT 1"))
    assert caught.value.retryable is (expected is DataApiError)  # type: ignore[attr-defined]


def test_target_from_config(config: PipelineConfig) -> None:
    redshift = config.redshift
    with pytest.raises(ConfigError, match="exactly one"):
        DataApiTarget.from_config(redshift)
    with pytest.raises(ConfigError, match="exactly one"):
        DataApiTarget.from_config(replace(redshift, workgroup="w", cluster_identifier="c"))
    with pytest.raises(ConfigError, match="db_user or secret_arn"):
        DataApiTarget.from_config(replace(redshift, cluster_identifier="c"))
    cluster = DataApiTarget.from_config(replace(redshift, cluster_identifier="c", db_user="loader"))
    assert cluster.request_arguments() == {"Database": "dev", "ClusterIdentifier": "c", "DbUser": "loader"}
    serverless = DataApiTarget.from_config(replace(redshift, workgroup="wg", secret_arn="arn:s"))
    assert serverless.request_arguments() == {"Database": "dev", "WorkgroupName": "wg", "SecretArn": "arn:s"}
