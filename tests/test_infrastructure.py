"""The test infrastructure itself: real revocation, real policies, a real timeout, real events."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from benchmarks import report as bench_report
from benchmarks.env import Machine
from benchmarks.providers import ProviderResults
from benchmarks.run import AZURE_TARGETS, OCI_TARGETS, Results, not_measured, providers_not_run
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from cas_download.filenames import decode_filename
from tests.support.calls import CallRecorder
from tests.support.ci import missing_server_fails
from tests.support.events import EVENT_NAMES, EXAMPLE_DATA, EXAMPLE_DIGEST, EXAMPLE_ORG, load_event
from tests.support.moto_servers import AwsServers, BlackHole
from tests.support.world import BackendRef, Tables, World, b64_sha256, sha256_digest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)


def s3_as(backend: BackendRef, **config: Any) -> S3Client:
    """An S3 client with the backend's own key, through AWS_ENDPOINT_URL_S3 (no explicit endpoint)."""
    return boto3.session.Session().client(
        "s3",
        aws_access_key_id=backend.access_key_id,
        aws_secret_access_key=backend.secret_access_key,
        config=NO_RETRY.merge(Config(**config)) if config else NO_RETRY,
    )


def presigned_get(s3: S3Client, backend: BackendRef, digest: str, **params: str) -> str:
    """A URL for a GET of ``digest`` in the backend's bucket, signed by ``s3`` for 60 s; ``params``
    add to the request (``VersionId``, ``ResponseContentDisposition``...)."""
    return s3.generate_presigned_url(
        "get_object", Params={"Bucket": backend.bucket, "Key": digest, **params}, ExpiresIn=60
    )


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_backend_key_reads_its_bucket_and_nothing_else(world: World) -> None:
    org = world.org()
    backend = world.backend(org)
    other = world.backend(org)
    digest = world.put(backend, b"payload", checksum=True)
    world.put(other, b"payload")
    s3 = s3_as(backend)

    got = s3.get_object(Bucket=backend.bucket, Key=digest, ChecksumMode="ENABLED")
    assert got["Body"].read() == b"payload"
    assert got["ChecksumSHA256"] == b64_sha256(b"payload")

    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=other.bucket, Key=digest)
    assert error_code(denied) == "AccessDenied"


def test_revoked_key_is_refused_by_storage(world: World) -> None:
    backend = world.backend(world.org())
    digest = world.put(backend, b"revoke me")
    s3 = s3_as(backend)
    s3.head_object(Bucket=backend.bucket, Key=digest)

    world.revoke(backend)

    with pytest.raises(ClientError) as get:
        s3.get_object(Bucket=backend.bucket, Key=digest)
    assert error_code(get) == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=backend.bucket, Key=digest)
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # HEAD: no body, no code


def test_rotate_secret_in_place(world: World) -> None:
    backend = world.backend(world.org())
    digest = world.put(backend, b"rotate")
    old_key = backend.access_key_id
    old_client = s3_as(backend)

    world.rotate_secret_in_place(backend)

    assert backend.access_key_id != old_key
    with pytest.raises(ClientError) as exc:
        old_client.get_object(Bucket=backend.bucket, Key=digest)
    assert error_code(exc) == "InvalidAccessKeyId"
    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=backend.secret_name)["SecretString"]
    )
    assert secret == {"AccessKeyID": backend.access_key_id, "SecretAccessKey": backend.secret_access_key}
    assert s3_as(backend).get_object(Bucket=backend.bucket, Key=digest)["Body"].read() == b"rotate"


def test_env_routes_clients_and_rows_follow_the_spec(world: World, tables: Tables) -> None:
    org = world.org()
    backend = world.backend(org, is_default=True, status="OK", key_prefix="cas/")
    world.backend(org, secret="missing", status="Invalid", deleted=True, provider="GCS")
    digest = world.put(backend, b"row")
    world.map(digest, org, backend)

    ddb = boto3.client("dynamodb")  # no endpoint given: AWS_ENDPOINT_URL
    rows = ddb.query(
        TableName=tables.backends,
        IndexName="org_id-index",
        KeyConditionExpression="org_id = :o",
        ExpressionAttributeValues={":o": {"S": org}},
    )["Items"]
    assert len(rows) == 2
    row = next(r for r in rows if r["id"]["S"] == backend.id)
    assert row["is_default"] == {"BOOL": True}
    assert row["validation_status"] == {"S": "OK"}
    assert row["location"] == {"S": backend.bucket}
    assert "deleted_at" not in row
    broken = next(r for r in rows if r["id"]["S"] != backend.id)
    assert broken["provider"] == {"S": "GCS"}
    assert "deleted_at" in broken

    mapping = ddb.get_item(
        TableName=tables.mappings, Key={"digest": {"S": digest}, "org_backend": {"S": f"{org}#{backend.id}"}}
    )["Item"]
    assert mapping["backend_id"] == {"S": backend.id}
    assert mapping["org_id"] == {"S": org}

    sm = boto3.client("secretsmanager")
    assert json.loads(sm.get_secret_value(SecretId=backend.secret_name)["SecretString"])["AccessKeyID"] == (
        backend.access_key_id
    )
    # key_prefix applies to the object key
    assert s3_as(backend).head_object(Bucket=backend.bucket, Key=f"cas/{digest}")["ContentLength"] == 3


def test_secret_variants(world: World) -> None:
    sm = boto3.client("secretsmanager")
    org = world.org()

    def value(b: BackendRef) -> str:
        return str(sm.get_secret_value(SecretId=b.secret_name)["SecretString"])

    assert "SecretAccessKey" not in value(world.backend(org, secret="no_secret_key"))
    with pytest.raises(json.JSONDecodeError):
        json.loads(value(world.backend(org, secret="malformed")))
    custom = world.backend(
        org, secret={"accessKeyId": "{access_key_id}", "secret_access_key": "{secret_access_key}"}
    )
    assert json.loads(value(custom)) == {
        "accessKeyId": custom.access_key_id,
        "secret_access_key": custom.secret_access_key,
    }
    by_arn = world.backend(org, secret_by_arn=True)
    assert by_arn.secret_name.startswith("arn:aws:secretsmanager:")
    assert json.loads(value(by_arn))["AccessKeyID"] == by_arn.access_key_id
    missing = world.backend(org, secret="missing")
    with pytest.raises(ClientError) as exc:
        sm.get_secret_value(SecretId=missing.secret_name)
    assert error_code(exc) == "ResourceNotFoundException"


def test_checksums_versions_and_corruption(world: World) -> None:
    backend = world.backend(world.org(), bucket=world.bucket(versioned=True))
    digest = world.put(
        backend, b"versioned", filename="résumé.pdf", content_type="application/pdf", checksum=True
    )
    head = world.head(backend, digest)
    assert head["ChecksumSHA256"] == b64_sha256(b"versioned")
    assert head["VersionId"]
    assert head["Metadata"]["filename"].isascii()
    assert decode_filename(head["Metadata"]["filename"]) == "résumé.pdf"
    assert head["ContentType"] == "application/pdf"

    # Chainloop's layout: no SHA-256, only the SDK's default CRC32, and its author mark
    chainloop = world.head(backend, world.put(backend, b"as Chainloop writes it"))
    assert "ChecksumSHA256" not in chainloop
    assert chainloop["ChecksumCRC32"]
    assert chainloop["Metadata"]["author"] == "chainloop.dev"

    world.put_corrupt(backend, digest, b"evil", checksum=True)
    assert world.head(backend, digest)["ChecksumSHA256"] == b64_sha256(b"evil")


def test_multipart_checksum_is_composite(world: World) -> None:
    data = b"a" * (5 * 1024 * 1024) + b"tail"
    backend = world.backend(world.org())
    digest = world.put(backend, data, checksum=True, multipart=True)
    got = s3_as(backend).get_object(Bucket=backend.bucket, Key=digest, ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"].endswith("-2")
    assert got["ChecksumType"] == "COMPOSITE"
    assert got["Body"].read() == data
    assert sha256_digest(data) == digest


def test_presigned_urls_are_checked_like_s3(world: World) -> None:
    backend = world.backend(world.org(), bucket=world.bucket(versioned=True))
    digest = world.put(backend, b"signed")
    version = world.head(backend, digest)["VersionId"]
    world.put_corrupt(backend, digest, b"newer, wrong")
    s3 = s3_as(backend, signature_version="s3v4")
    disposition = "attachment; filename=\"r.pdf\"; filename*=UTF-8''r%C3%A9.pdf"
    url = presigned_get(s3, backend, digest, VersionId=version, ResponseContentDisposition=disposition)

    ok = world.fetch_presigned(url)
    assert (ok.status, ok.body, ok.version_id) == (200, b"signed", version)
    assert ok.headers["content-disposition"] == disposition
    assert ok.access_key_id == backend.access_key_id

    tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=61")
    assert world.fetch_presigned(tampered).error_code == "SignatureDoesNotMatch"
    assert world.fetch_presigned(url, now=ok.expires_at.replace(year=2100)).error_code == "AccessDenied"

    world.revoke(backend)
    assert world.fetch_presigned(url).error_code == "InvalidAccessKeyId"


def test_black_hole_times_out_a_client(black_hole: BlackHole, world: World) -> None:
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=black_hole.url,
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="x",
        config=Config(
            connect_timeout=1, read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}
        ),
    )
    accepted_before = black_hole.accepted  # the black hole is the session's: other tests use it too
    # the cut-off is the configured read timeout (pytest-timeout, not a clock here, catches a hang)
    with pytest.raises(ReadTimeoutError) as timed_out:
        s3.get_object(Bucket="stuck-bucket", Key=EXAMPLE_DIGEST)
    assert s3.meta.config.read_timeout == 0.5
    assert "Read timeout" in str(timed_out.value)
    assert black_hole.accepted - accepted_before == 1
    assert world.black_hole_location("b") == f"{black_hole.url}/b"


def test_call_recorder_counts_by_service_and_operation(world: World) -> None:
    backend = world.backend(world.org())
    digest = world.put(backend, b"count me")
    recorder = CallRecorder()
    s3 = recorder.session.client(
        "s3", aws_access_key_id=backend.access_key_id, aws_secret_access_key=backend.secret_access_key
    )
    sm = recorder.session.client("secretsmanager")
    sm.get_secret_value(SecretId=backend.secret_name)
    s3.head_object(Bucket=backend.bucket, Key=digest)
    s3.get_object(Bucket=backend.bucket, Key=digest)["Body"].read()

    assert recorder.count("s3") == 2
    assert recorder.count("s3", "GetObject") == 1
    assert recorder.count("secretsmanager", "GetSecretValue") == 1
    assert recorder.of("s3", "HeadObject")[0].params == {"Bucket": backend.bucket, "Key": digest}
    assert recorder.of("s3")[0].access_key_id == backend.access_key_id


def test_events_load_and_rewrite_consistently() -> None:
    assert sha256_digest(EXAMPLE_DATA) == EXAMPLE_DIGEST
    for name in EVENT_NAMES:
        event = load_event(name)
        assert event["version"] == "2.0"
        assert event["rawPath"] == event["requestContext"]["http"]["path"]
        assert event["pathParameters"]["digest"] in event["rawPath"]
        assert event["routeKey"] == event["requestContext"]["routeKey"]
        assert event["routeKey"].startswith(event["requestContext"]["http"]["method"] + " ")
    assert (
        load_event("get_redirect")["requestContext"]["authorizer"]["jwt"]["claims"]["org_id"] == EXAMPLE_ORG
    )
    assert "authorizer" not in load_event("get_unauthenticated")["requestContext"]
    assert load_event("get_if_none_match")["headers"]["if-none-match"] == f'"{EXAMPLE_DIGEST}"'

    other = "sha256:" + "AB" * 32
    ev = load_event("get_url", digest=other, orgs=["a", "b"], method="HEAD", headers={"X-Test": "1"})
    assert ev["rawPath"] == ev["requestContext"]["http"]["path"] == f"/v1/artifacts/{other}"
    assert ev["pathParameters"] == {"digest": other}
    assert ev["requestContext"]["authorizer"]["jwt"]["claims"]["org_id"] == "a,b"
    assert ev["routeKey"] == ev["requestContext"]["routeKey"] == "HEAD /v1/artifacts/{digest}"
    assert ev["requestContext"]["http"]["method"] == "HEAD"
    assert ev["headers"]["x-test"] == "1"
    assert ev["rawQueryString"] == "mode=url"

    body = load_event("get_redirect", mode="body")
    assert (body["rawQueryString"], body["queryStringParameters"]) == ("mode=body", {"mode": "body"})
    bare = load_event("get_url", query={})
    assert bare["rawQueryString"] == ""
    assert "queryStringParameters" not in bare
    odd = load_event("get_redirect", query={"mode": "a b&c"})
    assert urllib.parse.parse_qs(odd["rawQueryString"]) == {"mode": ["a b&c"]}

    lam = load_event("get_lambda_authorizer", orgs="[x y]", claim="orgs")
    assert lam["requestContext"]["authorizer"]["lambda"]["orgs"] == "[x y]"
    assert "org_id" not in lam["requestContext"]["authorizer"]["lambda"]
    no_claim = load_event("get_redirect", orgs=[])
    assert "org_id" not in no_claim["requestContext"]["authorizer"]["jwt"]["claims"]
    with pytest.raises(ValueError):
        load_event("get_unauthenticated", orgs="x")


def test_servers_are_separate(aws_servers: AwsServers) -> None:
    """Auth is on for storage only: unknown keys are fine on control, refused on storage."""
    boto3.client("secretsmanager", aws_access_key_id="anything", aws_secret_access_key="x").list_secrets()
    bogus = boto3.client(
        "s3", aws_access_key_id="AKIABOGUSBOGUSBOGUS1", aws_secret_access_key="x", config=NO_RETRY
    )
    with pytest.raises(ClientError) as exc:
        bogus.list_buckets()
    assert error_code(exc) == "InvalidAccessKeyId"
    assert aws_servers.storage.process.poll() is None


@pytest.mark.parametrize("spelling", ["true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", " true "])
def test_a_truthy_ci_makes_a_missing_server_fail(spelling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given CI set in any of the spellings CI systems use
    monkeypatch.setenv("CI", spelling)
    # Then a missing server must fail the run, never skip it
    assert missing_server_fails()


@pytest.mark.parametrize("spelling", ["", "false", "0", "no", "off", "anything"])
def test_an_unset_or_falsy_ci_lets_a_missing_server_skip(
    spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given CI unset, empty or falsy (a developer's machine)
    monkeypatch.setenv("CI", spelling)
    # Then a missing server skips its tests
    assert not missing_server_fails()


def test_without_ci_a_missing_server_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not missing_server_fails()


def test_bench_lists_the_targets_it_could_not_run_and_why() -> None:
    # Given a `make bench` run without Azurite and without the registry, and a measurement that raised
    results = Results(machine=Machine.describe(), args=argparse.Namespace())
    skipped = ProviderResults(
        requests=1,
        azure_skipped="Azurite is not installed (make azurite)",
        oci_skipped="docker-registry is not installed (make registry)",
    )
    results.not_measured += providers_not_run(skipped)
    not_measured(results, "where body mode's memory goes at 1 MiB", KeyError("encode_body"))

    # When its targets table is written
    targets = bench_report._summary(results)

    # Then every Azure and OCI target is a row saying it did not run and why, and so is the failed
    # measurement, named by its exception
    for what in AZURE_TARGETS:
        assert f"| {what} | not run |  | **NOT RUN**: Azurite is not installed (make azurite) |" in targets
    for what in OCI_TARGETS:
        assert (
            f"| {what} | not run |  | **NOT RUN**: docker-registry is not installed (make registry) |"
            in targets
        )
    assert (
        "| where body mode's memory goes at 1 MiB | not run |  | **NOT RUN**: KeyError: 'encode_body' |"
        in targets
    )
