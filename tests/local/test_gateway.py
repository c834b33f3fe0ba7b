"""The storage gateway in front of the tests' own storage server: presigned URLs served and refused
the way S3 serves and refuses them, signed requests passed through untouched."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cas_local.gateway import KeyDirectory, StorageGateway
from cas_local.presign import presign_signature, verify_presigned
from tests.local.conftest import http
from tests.support.moto_servers import AwsServers
from tests.support.world import BackendRef, World
from tests.test_infrastructure import presigned_get


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(aws_servers: AwsServers, clock: Clock) -> Iterator[StorageGateway]:
    keys = KeyDirectory(aws_servers.control_client("secretsmanager"))
    keys.add(aws_servers.admin_access_key_id, aws_servers.admin_secret_access_key)
    gw = StorageGateway(aws_servers.storage_url, keys, clock=clock).start()
    try:
        yield gw
    finally:
        gw.stop()


def s3_via(gateway: StorageGateway, backend: BackendRef) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=gateway.url,
        region_name="us-east-1",
        aws_access_key_id=backend.access_key_id,
        aws_secret_access_key=backend.secret_access_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
        ),
    )


def error_code(body: bytes) -> str:
    text = body.decode()
    return text[text.index("<Code>") + 6 : text.index("</Code>")]


def test_presigned_get_is_verified_then_served_with_the_same_key(
    gateway: StorageGateway, world: World
) -> None:
    backend = world.backend(world.org(), bucket=world.bucket(versioned=True))
    digest = world.put(backend, b"through the gateway", filename="r\u00e9.txt")
    version = world.head(backend, digest)["VersionId"]
    disposition = "attachment; filename=\"re.txt\"; filename*=UTF-8''r%C3%A9.txt"
    url = presigned_get(
        s3_via(gateway, backend), backend, digest, VersionId=version, ResponseContentDisposition=disposition
    )

    got = http(url)
    assert (got.status, got.body) == (200, b"through the gateway")
    assert got.headers["content-disposition"] == disposition
    assert got.headers["x-amz-version-id"] == version

    ranged = http(url, headers={"Range": "bytes=0-6"})
    assert (ranged.status, ranged.body) == (206, b"through")

    head = http(url, method="HEAD")  # signed for GET: S3 refuses it for HEAD
    assert head.status == 403


def test_tampered_expired_unknown_and_malformed_urls_are_refused(
    gateway: StorageGateway, world: World, clock: Clock
) -> None:
    backend = world.backend(world.org())
    digest = world.put(backend, b"guarded")
    s3 = s3_via(gateway, backend)
    url = presigned_get(s3, backend, digest)
    assert http(url).status == 200

    tampered = http(url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000"))
    assert (tampered.status, error_code(tampered.body)) == (403, "SignatureDoesNotMatch")
    other_key = http(
        url.replace(urllib.parse.quote(digest, safe=""), urllib.parse.quote(digest[:-1] + "0", safe=""))
    )
    assert (other_key.status, error_code(other_key.body)) == (403, "SignatureDoesNotMatch")

    clock.offset = dt.timedelta(seconds=61)
    expired = http(url)
    assert (expired.status, error_code(expired.body)) == (403, "AccessDenied")
    assert b"<Message>Request has expired</Message>" in expired.body
    clock.offset = dt.timedelta(0)

    stranger = boto3.session.Session().client(
        "s3",
        endpoint_url=gateway.url,
        region_name="us-east-1",
        aws_access_key_id="AKIANOBODYISSUEDTHIS",
        aws_secret_access_key="whatever",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    unknown = http(
        stranger.generate_presigned_url("get_object", Params={"Bucket": backend.bucket, "Key": digest})
    )
    assert (unknown.status, error_code(unknown.body)) == (403, "InvalidAccessKeyId")

    malformed = http(f"{gateway.url}/{backend.bucket}/{digest}?X-Amz-Signature=abc")
    assert (malformed.status, error_code(malformed.body)) == (400, "AuthorizationQueryParametersError")


def test_a_url_signed_by_a_deleted_key_is_refused_by_storage_itself(
    gateway: StorageGateway, world: World
) -> None:
    backend = world.backend(world.org())
    digest = world.put(backend, b"revoked")
    url = presigned_get(s3_via(gateway, backend), backend, digest)
    assert http(url).status == 200

    world.revoke(backend)

    refused = http(url)
    assert (refused.status, error_code(refused.body)) == (403, "InvalidAccessKeyId")


def test_a_key_stored_in_secrets_manager_later_is_found(gateway: StorageGateway, world: World) -> None:
    first = world.backend(world.org())
    digest = world.put(first, b"first")
    url = s3_via(gateway, first).generate_presigned_url(
        "get_object", Params={"Bucket": first.bucket, "Key": digest}
    )
    assert http(url).status == 200

    world.rotate_secret_in_place(first)  # new key, written into the same secret; the old one is deleted

    fresh = s3_via(gateway, first).generate_presigned_url(
        "get_object", Params={"Bucket": first.bucket, "Key": digest}
    )
    assert http(fresh).status == 200
    assert error_code(http(url).body) == "InvalidAccessKeyId"


def test_presigned_put_and_signed_requests_pass_through(gateway: StorageGateway, world: World) -> None:
    backend = world.backend(world.org(), actions=["s3:GetObject", "s3:PutObject", "s3:ListBucket"])
    s3 = s3_via(gateway, backend)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": backend.bucket, "Key": "up"}, ExpiresIn=60
    )
    # (moto, like any Flask app, swallows a form-encoded body: say what it is, as SDKs do)
    uploaded = http(
        put_url, method="PUT", data=b"uploaded", headers={"Content-Type": "application/octet-stream"}
    )
    assert uploaded.status == 200

    # An ordinary SDK call (Authorization header) goes to storage untouched, signature and all.
    assert s3.get_object(Bucket=backend.bucket, Key="up")["Body"].read() == b"uploaded"
    s3.put_object(Bucket=backend.bucket, Key="sdk", Body=b"x" * 70000, ChecksumAlgorithm="SHA256")
    assert s3.head_object(Bucket=backend.bucket, Key="sdk")["ContentLength"] == 70000
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=world.bucket(), Key="up")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    world.revoke(backend)
    with pytest.raises(ClientError) as revoked:
        s3.get_object(Bucket=backend.bucket, Key="up")
    assert revoked.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_verification_is_one_function_for_gateway_and_world(world: World) -> None:
    backend = world.backend(world.org())
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-1",
        aws_access_key_id=backend.access_key_id,
        aws_secret_access_key=backend.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "sha256:ab"}, ExpiresIn=30)
    check = verify_presigned(url, {backend.access_key_id: backend.secret_access_key}.get)
    assert check.ok
    assert (check.bucket, check.key, check.region) == ("b", "sha256:ab", "eu-west-1")
    assert check.expires_at - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=30)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert presign_signature(url, backend.secret_access_key) == query["X-Amz-Signature"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31)
    assert verify_presigned(
        url, {backend.access_key_id: backend.secret_access_key}.get, now=later
    ).error_code == ("AccessDenied")
    assert verify_presigned(url, {}.get).error_code == "InvalidAccessKeyId"
    assert world.fetch_presigned(url.replace("X-Amz-Expires=30", "X-Amz-Expires=31")).error_code == (
        "SignatureDoesNotMatch"
    )
