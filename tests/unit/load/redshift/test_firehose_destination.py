"""Firehose's Redshift destination: the CopyCommand matches the transformation Lambda's output."""

from __future__ import annotations

import pytest

from load.redshift.firehose_destination import (
    FIREHOSE_COPY_OPTIONS,
    firehose_copy_command,
    firehose_redshift_destination,
)
from load.redshift.identifiers import RedshiftTables
from pipeline.errors import ConfigError
from pipeline.schema import to_json_record


def test_firehose_copy_command_matches_the_transformation_lambda_output(tables: RedshiftTables) -> None:
    command = firehose_copy_command(tables)
    record = to_json_record({"event_id": "x", "collector_tstamp": 1_731_661_200_123})
    assert command["DataTableName"] == "atomic.events_staging"
    assert command["DataTableColumns"].split(",") == list(record)
    assert record["collector_tstamp"] == "2024-11-15 09:00:00.123"
    assert "FORMAT AS JSON 'auto'" in command["CopyOptions"]
    assert "TIMEFORMAT 'YYYY-MM-DD HH:MI:SS'" in command["CopyOptions"]
    assert "GZIP" in command["CopyOptions"] and "MANIFEST" not in command["CopyOptions"]
    assert command["CopyOptions"] == FIREHOSE_COPY_OPTIONS


def test_firehose_destination_needs_credentials(tables: RedshiftTables) -> None:
    kwargs = {
        "role_arn": "arn:aws:iam::123456789012:role/f",
        "cluster_jdbc_url": "jdbc:redshift://h:5439/dev",
        "bucket_arn": "arn:aws:s3:::b",
        "s3_prefix": "firehose/",
    }
    with pytest.raises(ConfigError):
        firehose_redshift_destination(tables, **kwargs)
    config = firehose_redshift_destination(
        tables,
        secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:x",
        processing_lambda_arn="arn:aws:lambda:us-east-1:1:function:t",
        **kwargs,
    )
    assert config["S3Configuration"]["CompressionFormat"] == "GZIP"
    assert config["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"].endswith(":t")
    assert "Password" not in config
