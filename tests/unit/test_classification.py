"""Failure classification of S3 answers into the spec's attempt reasons, one row per answer."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from cas_download.data.storage.s3 import classify
from cas_download.domain import AttemptReason


def client_error(code: str, status: int) -> ClientError:
    code = "".join(list(code))  # a fresh string, as botocore parses it: codes compare by value, not identity
    error = {"Code": code, "Message": "m"} if code else {}
    return ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("InvalidAccessKeyId", 403, AttemptReason.CREDENTIALS_INVALID),
        ("SignatureDoesNotMatch", 403, AttemptReason.CREDENTIALS_INVALID),
        ("ExpiredToken", 400, AttemptReason.CREDENTIALS_INVALID),
        ("InvalidToken", 400, AttemptReason.CREDENTIALS_INVALID),
        ("TokenRefreshRequired", 400, AttemptReason.CREDENTIALS_INVALID),
        ("AccessDenied", 403, AttemptReason.ACCESS_DENIED),
        ("AllAccessDisabled", 403, AttemptReason.ACCESS_DENIED),
        ("AccountProblem", 403, AttemptReason.ACCESS_DENIED),
        ("NoSuchKey", 404, AttemptReason.NOT_FOUND),
        ("NoSuchBucket", 404, AttemptReason.NOT_FOUND),
        ("NoSuchVersion", 404, AttemptReason.NOT_FOUND),
        ("PreconditionFailed", 412, AttemptReason.UNVERIFIABLE),
        ("InternalError", 500, AttemptReason.UNREACHABLE),
        ("SlowDown", 503, AttemptReason.UNREACHABLE),
        ("ServiceUnavailable", 503, AttemptReason.UNREACHABLE),
        # HEAD errors have no body: a bare status (botocore names the code after it)
        ("403", 403, AttemptReason.ACCESS_DENIED),
        ("404", 404, AttemptReason.NOT_FOUND),
        ("", 403, AttemptReason.ACCESS_DENIED),
        ("", 404, AttemptReason.NOT_FOUND),
        ("", 500, AttemptReason.UNREACHABLE),
    ],
)
def test_an_s3_error_answer_has_one_reason(code: str, status: int, reason: AttemptReason) -> None:
    assert classify(client_error(code, status)) is reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ReadTimeoutError(endpoint_url="http://s3"), AttemptReason.TIMEOUT),
        (ConnectTimeoutError(endpoint_url="http://s3"), AttemptReason.TIMEOUT),
        (EndpointConnectionError(endpoint_url="http://s3"), AttemptReason.UNREACHABLE),
    ],
    ids=["read-timeout", "connect-timeout", "connection-refused"],
)
def test_a_transport_failure_has_one_reason(error: Exception, reason: AttemptReason) -> None:
    assert classify(error) is reason


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("AccessDenied", AttemptReason.ACCESS_DENIED),
        ("NoSuchKey", AttemptReason.NOT_FOUND),
        ("", AttemptReason.UNREACHABLE),
    ],
)
def test_an_answer_without_its_http_status_is_read_by_its_code_alone(
    code: str, reason: AttemptReason
) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "m"} if code else {}}, "GetObject")  # type: ignore[typeddict-item]
    assert classify(error) is reason
