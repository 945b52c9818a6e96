"""The one place AWS clients are made.

Every stage and command gets its clients from :func:`make_client` and passes them in, so
tests inject moto-backed or fake clients and nothing creates a client at import time.
Retries, timeouts and the region come from :class:`~pipeline.config.AwsConfig`.  Endpoints
follow boto3's standard variables (``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``),
so any command runs against a moto server or another AWS-compatible endpoint;
``aws.endpoint_url`` in config overrides them.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import AwsConfig


def client_config(config: AwsConfig) -> Any:
    """The botocore ``Config`` for ``config``: retry mode and attempts, timeouts."""
    from botocore.config import Config

    return Config(
        region_name=config.region,
        # aws.max_attempts counts every attempt, the first included, as AWS_MAX_ATTEMPTS does;
        # botocore's "max_attempts" key would count retries only (one attempt more).
        retries={"mode": config.retry_mode, "total_max_attempts": max(config.max_attempts, 1)},
        connect_timeout=config.connect_timeout_ms / 1000,
        read_timeout=config.read_timeout_ms / 1000,
    )


def make_client(service: str, config: AwsConfig, session: Any = None) -> Any:
    """A boto3 client for ``service`` (``"s3"``, ``"kinesis"``, ...) configured from ``config``.

    boto3 is imported here, not at module import, so pure modules stay light.
    """
    import boto3

    session = session or boto3.session.Session()
    kwargs: dict[str, Any] = {"config": client_config(config), "region_name": config.region}
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
    return session.client(service, **kwargs)
