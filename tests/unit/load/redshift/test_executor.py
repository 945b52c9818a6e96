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


# ------------------------------------------- feedback while waiting, and what to do (audit item 18)
def test_each_poll_of_a_running_statement_is_reported_to_the_wait_callback(client: Any) -> None:
    from load.redshift.executor import Waiting

    clock, seen = FakeClock(), []
    target = DataApiTarget(database="dev", workgroup="clickstream")
    executor = DataApiExecutor(
        client, target, poll_interval_s=5, max_polls=10, sleep=clock.sleep, clock=clock.clock, on_wait=seen.append
    )
    with Stubber(client) as stub:
        stub.add_response("execute_statement", {"Id": STATEMENT_ID})
        for status in ("SUBMITTED", "STARTED"):
            stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": status})
        stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "FINISHED", "HasResultSet": False})
        executor.execute(Statement("copy", "SELECT 1"))
    assert seen == [Waiting("copy", "SUBMITTED", 1, 10, 0.0), Waiting("copy", "STARTED", 2, 10, 5.0)]


def test_the_wait_reporter_speaks_every_ten_seconds_of_a_statement() -> None:
    import io

    from load.redshift.executor import Waiting
    from pipeline.app.commands.redshift import WaitReporter

    out = io.StringIO()
    report = WaitReporter(out)
    for poll, seconds in enumerate((0.0, 5.0, 10.0, 15.0, 21.0, 30.0), start=1):
        report(Waiting("copy", "STARTED", poll, 100, seconds))
    assert out.getvalue().splitlines() == [
        "redshift load: copy still started after 10 s (poll 3 of at most 100)",
        "redshift load: copy still started after 21 s (poll 5 of at most 100)",
    ]


def test_missing_credentials_say_how_to_supply_them_and_not_to_retry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.app.cli import main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__WORKGROUP", "clickstream")
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__COPY_ROLE_ARN", "arn:aws:iam::123456789012:role/copy")
    assert main(["redshift", "load", "s3://bucket/events/"]) == 2
    err = capsys.readouterr().err
    assert "no AWS credentials were found" in err and "AWS_PROFILE" in err
    assert "may succeed" not in err and "(retry)" not in err
    # The Data API says the same (a terminal error: retrying cannot help until they are set).
    fresh = boto3.session.Session().client("redshift-data", region_name="us-east-1")  # no cached credentials
    executor = make_executor(fresh, FakeClock())
    with pytest.raises(DataApiRequestError, match="no AWS credentials were found") as caught:
        executor.execute(Statement("probe", "SELECT 1"))
    assert not caught.value.retryable


def test_an_invalid_parameter_is_named_as_a_configuration_problem() -> None:
    from botocore.exceptions import ParamValidationError

    from pipeline.aws.errors import translate

    refused = ParamValidationError(report="Invalid length for parameter WorkgroupName, value: 0")
    error = translate(refused, "Data API ExecuteStatement", transient=DataApiError, terminal=DataApiRequestError)
    assert isinstance(error, DataApiRequestError)
    assert "a parameter is invalid (check the configuration)" in str(error) and "WorkgroupName" in str(error)
    assert "(retry)" not in str(error)
