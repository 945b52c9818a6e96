"""One classifier decides retry, back off or give up for every AWS adapter."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from pipeline.aws.errors import AwsFault, classify, error_code


def _client_error(code: str, status: int = 400, message: str = "no") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("code", "status", "fault"),
    [
        ("ProvisionedThroughputExceededException", 400, AwsFault.THROTTLED),
        ("ThrottlingException", 400, AwsFault.THROTTLED),
        ("SlowDown", 503, AwsFault.THROTTLED),
        ("KMSThrottlingException", 400, AwsFault.THROTTLED),
        ("ActiveStatementsExceededException", 400, AwsFault.THROTTLED),
        ("Whatever", 429, AwsFault.THROTTLED),
        ("InternalFailure", 500, AwsFault.TRANSIENT),
        ("ServiceUnavailableException", 503, AwsFault.TRANSIENT),
        ("InternalServerException", 400, AwsFault.TRANSIENT),
        ("SomethingNew", 502, AwsFault.TRANSIENT),
        ("AccessDeniedException", 400, AwsFault.TERMINAL),
        ("ResourceNotFoundException", 400, AwsFault.TERMINAL),
        ("ValidationException", 400, AwsFault.TERMINAL),
        ("NoSuchBucket", 404, AwsFault.TERMINAL),
    ],
)
def test_client_errors_by_code_and_status(code: str, status: int, fault: AwsFault) -> None:
    failure = classify(_client_error(code, status))
    assert failure.fault is fault
    assert failure.code == code
    assert failure.retryable is (fault is not AwsFault.TERMINAL)


def test_connection_failures_are_transient_and_missing_credentials_terminal() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1")).fault is AwsFault.TRANSIENT
    assert classify(ReadTimeoutError(endpoint_url="http://x")).fault is AwsFault.TRANSIENT
    failure = classify(NoCredentialsError())
    assert failure.fault is AwsFault.TERMINAL
    assert failure.code == "NoCredentialsError"


def test_error_code_and_message() -> None:
    exc = _client_error("ConditionalCheckFailedException", message="The conditional request failed")
    assert error_code(exc) == "ConditionalCheckFailedException"
    assert error_code(ValueError("x")) == ""
    assert str(classify(exc)) == "ConditionalCheckFailedException: The conditional request failed"
