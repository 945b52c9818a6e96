"""Firehose's Redshift destination: the COPY of the transformation Lambda's JSON lines into staging.

Firehose COPYs its intermediate objects into the stream staging table; the scheduled loader
(:mod:`load.redshift.stream_load`) then merges them into the events table.
"""

from __future__ import annotations

from typing import Any, Final

from load.redshift.identifiers import RedshiftTables, identifier
from pipeline.errors import ConfigError
from pipeline.schema import FIELDS

FIREHOSE_COPY_OPTIONS: Final = (
    # One JSON object per line, keys = column names (pipeline.schema.to_json_record).
    "FORMAT AS JSON 'auto' "
    # Timestamps are 'YYYY-MM-DD HH:MM:SS.mmm' strings; SS also reads the fractional part.
    "TIMEFORMAT 'YYYY-MM-DD HH:MI:SS' "
    # Firehose's intermediate S3 objects are gzipped (S3Configuration.CompressionFormat).
    "GZIP "
    # A staging table reloaded every few minutes: skip statistics and compression analysis.
    "STATUPDATE OFF COMPUPDATE OFF"
)
"""COPY options for the JSON lines of the Firehose transformation Lambda.

No TRUNCATECOLUMNS: staging strings are VARCHAR(65535), and the merge moves rows whose
values do not fit atomic.events to the rejects table instead of truncating them.
"""


def firehose_copy_command(tables: RedshiftTables) -> dict[str, str]:
    """Firehose's ``CopyCommand`` for the Redshift destination: staging table, columns, options."""
    return {
        "DataTableName": f"{tables.schema}.{tables.staging}",
        # every canonical column: the entities' JSON is staged for the entity tables
        "DataTableColumns": ",".join(identifier(f.name, "canonical field") for f in FIELDS),
        "CopyOptions": FIREHOSE_COPY_OPTIONS,
    }


def firehose_redshift_destination(
    tables: RedshiftTables,
    *,
    role_arn: str,
    cluster_jdbc_url: str,
    bucket_arn: str,
    s3_prefix: str,
    secret_arn: str = "",
    username: str = "",
    password: str = "",
    processing_lambda_arn: str = "",
    retry_seconds: int = 3600,
) -> dict[str, Any]:
    """A ``RedshiftDestinationConfiguration`` for ``firehose.create_delivery_stream``.

    Firehose writes gzipped intermediate objects under ``s3_prefix`` and COPYs them into
    the staging table with :func:`firehose_copy_command`; the transformation Lambda
    (``processing_lambda_arn``) turns canonical events into JSON lines.  Credentials come
    from Secrets Manager (``secret_arn``) or a username and password.
    """
    if not secret_arn and not (username and password):
        raise ConfigError("the Firehose Redshift destination needs secret_arn, or username and password")
    config: dict[str, Any] = {
        "RoleARN": role_arn,
        "ClusterJDBCURL": cluster_jdbc_url,
        "CopyCommand": firehose_copy_command(tables),
        "RetryOptions": {"DurationInSeconds": retry_seconds},
        "S3Configuration": {
            "RoleARN": role_arn,
            "BucketARN": bucket_arn,
            "Prefix": s3_prefix,
            "ErrorOutputPrefix": f"{s3_prefix}errors/",
            "CompressionFormat": "GZIP",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 300},
        },
        "S3BackupMode": "Disabled",
    }
    if secret_arn:
        config["SecretsManagerConfiguration"] = {"Enabled": True, "SecretARN": secret_arn, "RoleARN": role_arn}
    else:
        config["Username"] = username
        config["Password"] = password
    if processing_lambda_arn:
        config["ProcessingConfiguration"] = {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "Lambda",
                    "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": processing_lambda_arn}],
                }
            ],
        }
    return config
