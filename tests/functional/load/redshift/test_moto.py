"""The Redshift Data API and Firehose calls against moto.

moto's redshift-data records statements but never runs them (they stay STARTED forever),
so these tests check what is sent -- SQL text, Parameters, target -- and that polling is
bounded; the SQL itself runs on DuckDB in test_redshift_engine.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.redshiftdata.models import redshiftdata_backends

from load.errors import StatementTimeoutError
from load.redshift.executor import DataApiExecutor, DataApiTarget
from load.redshift.firehose_destination import firehose_copy_command, firehose_redshift_destination
from load.redshift.identifiers import RedshiftTables
from load.redshift.statements import Statement
from pipeline.app.cli import main
from tests.conftest import make_config

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__WORKGROUP", '"clickstream-wg"')
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__MAX_POLLS", "3")
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__POLL_INTERVAL_MS", "0")
    with mock_aws():
        yield


def recorded() -> list[Any]:
    """The statements moto's redshift-data received, in order."""
    return list(redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION].statements.values())


def test_the_executor_sends_values_as_parameters_and_gives_up_after_the_poll_limit(aws: None) -> None:
    # GIVEN a client created after the mock started, and an injected sleep
    client = boto3.client("redshift-data", region_name=REGION)
    sleeps: list[float] = []
    executor = DataApiExecutor(
        client,
        DataApiTarget("dev", cluster_identifier="clickstream", db_user="loader"),
        poll_interval_s=0.5,
        max_polls=4,
        sleep=sleeps.append,
    )
    hostile = "s3://b/'; DROP TABLE atomic.events; --"
    statement = Statement(
        "ledger_lookup", 'SELECT "prefix" FROM "atomic"."load_ledger" WHERE "prefix" LIKE :p', (("p", hostile),)
    )
    # WHEN it runs a statement that never finishes
    with pytest.raises(StatementTimeoutError, match="after 4 polls"):
        executor.execute(statement)
    # THEN it slept between polls only, and the statement went out with its value as a parameter
    assert sleeps == [0.5, 0.5, 0.5]
    [sent] = recorded()
    assert sent.query_string == statement.sql and "DROP TABLE" not in sent.query_string
    assert sent.query_parameters == [{"name": "p", "value": hostile}]
    assert (sent.cluster_identifier, sent.database, sent.db_user) == ("clickstream", "dev", "loader")
    # AND the abandoned statement was cancelled
    assert sent.status == "ABORTED"


@dataclass
class FakeLambdaContext:
    __test__ = False
    function_name: str = "clickstream-redshift-loader"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:clickstream-redshift-loader"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/clickstream-redshift-loader"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_loader_lambda_asks_the_data_api_and_fails_transiently_when_it_does_not_answer(aws: None) -> None:
    from load.redshift_handler import handler

    # WHEN the scheduled loader runs against a Data API that never finishes a statement
    with pytest.raises(StatementTimeoutError) as caught:
        handler({"source": "aws.events"}, FakeLambdaContext())  # type: ignore[arg-type]
    # THEN the error is retryable (the next schedule runs the idempotent merge again)
    assert caught.value.retryable
    # AND the first thing it asked was the columns of the configured schema (to bring older tables up to date)
    [sent] = recorded()
    assert sent.query_string.startswith('SELECT "table_name", "column_name"')
    assert 'FROM "information_schema"."columns"' in sent.query_string
    assert sent.database == "dev" and sent.status == "ABORTED"


def test_redshift_load_command_exits_1_with_retry_advice_when_redshift_does_not_answer(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="clickstream-moto-data")
    s3.put_object(
        Bucket="clickstream-moto-data", Key="events/event_date=2024-11-15/event_hour=09/part-00000.parquet", Body=b"x"
    )
    code = main(["redshift", "load", "s3://clickstream-moto-data/events/"])
    assert code == 1
    assert "running it again may succeed" in capsys.readouterr().err
    [sent] = recorded()
    assert sent.query_parameters == [{"name": "root_pattern", "value": "s3://clickstream-moto-data/events/%"}]
    assert "clickstream-moto-data" not in sent.query_string
    # nothing was written: no manifest before the ledger has been read
    assert s3.list_objects_v2(Bucket="clickstream-moto-data", Prefix="redshift/")["KeyCount"] == 0


def test_malicious_identifiers_from_config_stop_every_command_before_any_call(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLICKSTREAM_ETL__REDSHIFT__SCHEMA", '"atomic; DROP TABLE atomic.events"')
    assert main(["redshift", "ddl"]) == 2
    assert main(["redshift", "load", "s3://clickstream-moto-data/events/"]) == 2
    assert "redshift.schema" in capsys.readouterr().err
    assert recorded() == []


def test_redshift_ddl_prints_the_schema_derived_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redshift", "ddl"]) == 0
    out = capsys.readouterr().out
    assert out.count("CREATE TABLE IF NOT EXISTS") == 8 and '"atomic"."events" (' in out
    assert out.rstrip().endswith(";")


def test_firehose_redshift_destination_is_accepted_and_keeps_the_copy_command(aws: None) -> None:
    tables = RedshiftTables.from_config(make_config().redshift)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="clickstream-firehose-test")
    firehose = boto3.client("firehose", region_name=REGION)
    destination = firehose_redshift_destination(
        tables,
        role_arn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/clickstream-firehose",
        cluster_jdbc_url="jdbc:redshift://clickstream.example.us-east-1.redshift.amazonaws.com:5439/dev",
        bucket_arn="arn:aws:s3:::clickstream-firehose-test",
        s3_prefix="firehose/",
        username="firehose_loader",
        password="not-a-real-password",
        processing_lambda_arn=f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:clickstream-to-json",
    )
    firehose.create_delivery_stream(
        DeliveryStreamName="clickstream-redshift",
        DeliveryStreamType="DirectPut",
        RedshiftDestinationConfiguration=destination,
    )
    described = firehose.describe_delivery_stream(DeliveryStreamName="clickstream-redshift")
    redshift = described["DeliveryStreamDescription"]["Destinations"][0]["RedshiftDestinationDescription"]
    assert redshift["CopyCommand"] == firehose_copy_command(tables)
    assert redshift["S3DestinationDescription"]["CompressionFormat"] == "GZIP"
