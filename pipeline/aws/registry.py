"""S3 access for Iglu registries kept in a bucket (``transform.iglu.registries = ["s3://..."]``).

:mod:`pipeline.iglu` takes a ``fetch(bucket, key)`` callable so that it never needs boto3;
this module makes one from an S3 client: an absent schema is ``None``, a retryable failure
``RegistryUnavailableError``, anything else (access denied, a missing bucket) an error
saying that the registry is misconfigured.
"""

from __future__ import annotations

from typing import Any

from pipeline.aws.errors import aws_exceptions, classify
from pipeline.errors import ConfigError, TerminalError
from pipeline.iglu import RegistryUnavailableError, S3Fetch

_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})


class RegistryAccessError(ConfigError, TerminalError):
    """An S3 schema registry cannot be read as configured (permissions, bucket)."""


def s3_schema_fetch(s3: Any) -> S3Fetch:
    def fetch(bucket: str, key: str) -> bytes | None:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data
        except aws_exceptions() as exc:
            failure = classify(exc)
            if failure.code in _ABSENT:
                return None
            if failure.retryable:
                raise RegistryUnavailableError(f"s3://{bucket}/{key}: {failure}") from exc
            raise RegistryAccessError(f"cannot read the schema registry s3://{bucket}/{key}: {failure}") from exc

    return fetch
