"""The one decision on a failed AWS call: retry soon, retry later (throttled), or give up.

Every adapter asks :func:`classify` instead of keeping its own list of codes, so a code is
judged the same way by the Kinesis writer, the ledger, the sinks and the Redshift executor.
The lists follow botocore's standard retry mode (``botocore.retries.standard``) plus the
service-specific codes our adapters meet (KMS throttling under SSE, the Redshift Data API's
statement and session quotas).  A code we do not know is terminal: retrying an unknown
refusal (permissions, validation, a missing resource) would only delay the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class AwsFault(Enum):
    THROTTLED = "throttled"
    """The service asked us to slow down: retry with backoff."""
    TRANSIENT = "transient"
    """A timeout, a connection failure or a 5xx: retrying the same call may succeed."""
    TERMINAL = "terminal"
    """Refused for a reason retries will not fix (permissions, validation, missing resource, no credentials)."""

    @property
    def retryable(self) -> bool:
        return self is not AwsFault.TERMINAL


THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
        "KMSThrottlingException",
        "ActiveStatementsExceededException",
        "ActiveSessionsExceededException",
    }
)
TRANSIENT_CODES: Final = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalFailure",
        "InternalFailureException",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceFailure",
    }
)
_TERMINAL_CLIENT_ERRORS: Final = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "NoRegionError", "ParamValidationError", "UnknownServiceError"}
)


@dataclass(frozen=True)
class AwsFailure:
    """What went wrong in one call, and whether to retry."""

    fault: AwsFault
    code: str
    """The service's error code (``"ThrottlingException"``), else the botocore exception's name."""
    message: str

    @property
    def retryable(self) -> bool:
        return self.fault.retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def error_code(exc: BaseException) -> str:
    """The service error code of a ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or "")
    return ""


def classify(exc: BaseException) -> AwsFailure:
    """Classify an exception raised by a boto3 call (a ``ClientError`` or a ``BotoCoreError``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", "") or "")
        message = str(error.get("Message", "") or "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLING_CODES or status == 429:
            return AwsFailure(AwsFault.THROTTLED, code or str(status), message)
        if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return AwsFailure(AwsFault.TRANSIENT, code or str(status), message)
        return AwsFailure(AwsFault.TERMINAL, code or type(exc).__name__, message)
    name = type(exc).__name__
    if name in _TERMINAL_CLIENT_ERRORS:
        return AwsFailure(AwsFault.TERMINAL, name, str(exc))
    # Connection errors, read and connect timeouts, truncated responses.
    return AwsFailure(AwsFault.TRANSIENT, name, str(exc))


def translate(exc: BaseException, what: str, *, transient: type[Exception], terminal: type[Exception]) -> Exception:
    """The package error for a failed AWS call: ``transient`` when retrying can help (the
    message says "(retry)"), else ``terminal``.  ``what`` names the call ("S3 ListObjectsV2")."""
    failure = classify(exc)
    if failure.retryable:
        return transient(f"{what} failed: {failure} (retry)")
    if failure.code == "ParamValidationError":
        return terminal(f"{what} was not sent: a parameter is invalid (check the configuration): {failure.message}")
    hint = _HINTS.get(failure.code)
    if hint:
        return terminal(f"{what} failed: {hint}")
    return terminal(f"{what} failed: {failure}")


# What to do about the failures that are about the caller's set-up, not about AWS.
_HINTS: Final = {
    "NoCredentialsError": (
        "no AWS credentials were found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or run where a role provides them"
    ),
    "PartialCredentialsError": "the AWS credentials are incomplete (an access key without its secret?)",
    "NoRegionError": "no AWS region is set; set aws.region in the configuration or AWS_DEFAULT_REGION",
    "ExpiredTokenException": "the AWS session token has expired; refresh the credentials",
    "ExpiredToken": "the AWS session token has expired; refresh the credentials",
    "InvalidClientTokenId": "the AWS access key is not valid; check the credentials",
    "UnrecognizedClientException": "the AWS access key is not valid; check the credentials",
}


def aws_exceptions() -> tuple[type[Exception], ...]:
    """The exceptions a boto3 call raises for a failed call (botocore imported when first asked)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)
