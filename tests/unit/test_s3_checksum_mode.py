"""ChecksumMode on the HEAD, as Chainloop sends it (``pkg/blobmanager/s3/backend.go``,
``checksumVerificationEnabled``): asked everywhere but at Cloudflare R2, which does not support it.

The HEAD is caught before it is sent (botocore's ``before-send``): these tests send no traffic."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from cas_download.data.secrets import secret_fields
from cas_download.data.storage.s3 import S3ClientPool, S3Store
from cas_download.domain import Backend

DIGEST = "sha256:" + "ab" * 32


class _EmptyBody:
    """The raw body of a HEAD answer: nothing to stream."""

    def stream(self) -> list[bytes]:
        return []


def head_sent_to(location: str) -> dict[str, str]:
    """The headers of the HEAD the store sends for ``location``, answered 200 without a network."""
    backend = Backend("b-1", "org-1", "r2", "AWS-S3", location, "cas/org-1/r2")
    secret = secret_fields({"AccessKeyID": "AKIDCHECKSUMMODE01", "SecretAccessKey": "s"})
    store = S3Store.open_backend(backend, secret, S3ClientPool(boto3.session.Session(), 1.0, 1.0), None)
    sent: dict[str, str] = {}

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.update(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )
        headers = {"Content-Length": "3", "ETag": '"e"', "x-amz-meta-filename": "a.txt"}
        return AWSResponse(request.url, 200, headers, _EmptyBody())

    store.client.meta.events.register("before-send.s3.HeadObject", answer)
    store.describe(DIGEST)
    return sent


@pytest.mark.parametrize(
    "location",
    [
        "https://0123456789abcdef.r2.cloudflarestorage.com/cas",
        "https://0123456789abcdef.eu.r2.cloudflarestorage.com/cas",
    ],
)
def test_a_head_to_cloudflare_r2_asks_for_no_checksum(location: str) -> None:
    # Given a backend on a Cloudflare R2 endpoint
    # When the service describes an object there
    headers = head_sent_to(location)

    # Then the HEAD carries no checksum mode, which R2 does not support
    assert "x-amz-checksum-mode" not in headers


@pytest.mark.parametrize(
    "location",
    ["cas-bucket", "https://minio.example:9000/cas", "https://r2.cloudflarestorage.com.example/cas"],
)
def test_a_head_anywhere_else_asks_for_the_checksum(location: str) -> None:
    # Given a backend on AWS or another S3-compatible endpoint (a look-alike of R2's domain included)
    # When the service describes an object there
    headers = head_sent_to(location)

    # Then the HEAD asks for the stored checksum, the provider's own proof
    assert headers["x-amz-checksum-mode"] == "ENABLED"
