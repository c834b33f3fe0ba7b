"""Fallback across an org's backends: the candidate order, shared locations and key prefixes."""

from __future__ import annotations

import hashlib

import pytest

from tests.scenarios.conftest import (
    HttpResult,
    Service,
    assert_failed,
    assert_redirected_by,
    presigned_key_id,
    s3_key_ids,
)
from tests.support.calls import CallRecorder
from tests.support.world import BackendRef, SharedBucket, World, sha256_digest

DATA = b"artifact-2.0.0.tar.gz contents\n" * 100
CORRUPT = b"tampered, not the artifact\n" * 100
MODES = ("redirect", "url", "body")


def served_bytes(world: World, response: HttpResult, mode: str) -> bytes:
    """The bytes a client ends up with: the body, or what the presigned URL serves."""
    if mode == "body":
        return response.body
    url = response.headers["Location"] if mode == "redirect" else response.json["url"]
    fetched = world.fetch_presigned(url)
    assert fetched.status == 200
    return fetched.body


def mapped_and_default(world: World, mapped_bucket: str | None = None) -> tuple[str, BackendRef, BackendRef]:
    """A new org with a backend "mapped" (on ``mapped_bucket``, or a new bucket) and the org default
    "default" (on a new bucket)."""
    org = world.org()
    mapped = world.backend(org, "mapped", bucket=mapped_bucket)
    default = world.backend(org, "default", is_default=True)
    return org, mapped, default


def corrupt_mapped_good_default(world: World, corrupt: bytes, *, checksum: bool) -> tuple[str, str]:
    """A new org (``mapped_and_default``) whose mapped backend holds ``corrupt`` under DATA's digest, with
    an S3 checksum or not, and whose default holds DATA; the digest mapped to the corrupt copy. The org
    and the digest."""
    org, mapped, default = mapped_and_default(world)
    digest = world.put(default, DATA)
    world.put_corrupt(mapped, digest, corrupt, checksum=checksum)
    world.map(digest, org, mapped)
    return org, digest


def beside_unusable_secrets(world: World, *, never_created: bool = False) -> tuple[SharedBucket, BackendRef]:
    """A shared bucket holding DATA, its digest mapped to backends named after their secrets, oldest
    mapping first: ("missing": never created, when asked), "malformed": not JSON, "no-secret-key":
    without SecretAccessKey, "deleted-later": deleted after registration; and the org default there."""
    shared = world.shared_bucket(DATA)
    secrets = [("missing", "missing")] if never_created else []
    secrets += [("malformed", "malformed"), ("no-secret-key", "no_secret_key"), ("deleted-later", "valid")]
    mapped = [shared.backend(name, secret=secret) for name, secret in secrets]
    default = shared.backend("default", is_default=True)
    shared.map(*mapped)
    world.set_secret(mapped[-1], "missing")
    return shared, default


# ---------------------------------------------------------------------------------------------------
# behaviour 3: the mapped backend's secret


def test_unusable_mapped_secrets_fall_back_to_the_org_default(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given one digest mapped to three backends of one org whose secrets are: not JSON, without
    # SecretAccessKey, deleted after registration; and the org default on the same bucket
    shared, default = beside_unusable_secrets(world)

    # When the caller asks for it
    response = service.get(shared.digest, orgs=shared.org)

    # Then the org's default serves it, flagged as a fallback, with a URL signed by the default's key,
    # and no storage call was made without credentials
    assert_redirected_by(response, default, fallback=True)
    assert s3_key_ids(call_recorder) == [default.access_key_id]


def test_each_unusable_mapped_secret_is_reported_as_secret_unavailable(
    world: World, service: Service
) -> None:
    # Given one digest mapped to four backends of one org (oldest mapping first) whose secrets are:
    # never created, not JSON, without SecretAccessKey, deleted after registration; and the org
    # default revoked
    shared, default = beside_unusable_secrets(world, never_created=True)
    world.revoke(default)

    # When the caller asks for it
    response = service.get(shared.digest, orgs=shared.org)

    # Then nothing serves, and each mapped backend's attempt says its secret was unavailable
    assert_failed(
        response,
        502,
        "backends_unavailable",
        [
            ("missing", "secret_unavailable"),
            ("malformed", "secret_unavailable"),
            ("no-secret-key", "secret_unavailable"),
            ("deleted-later", "secret_unavailable"),
            ("default", "credentials_invalid"),
        ],
    )


@pytest.mark.parametrize(
    "secret",
    [
        {"accessKeyId": "{access_key_id}", "secretAccessKey": "{secret_access_key}"},
        {"access_key_id": "{access_key_id}", "secret_access_key": "{secret_access_key}"},
    ],
    ids=["camelCase", "snake_case"],
)
def test_secret_key_names_match_case_insensitively(
    world: World, service: Service, secret: dict[str, str]
) -> None:
    # Given the only backend of an org, whose secret spells its keys in another case
    org = world.org()
    backend = world.backend(org, "only", is_default=True, secret=secret)
    digest = world.put(backend, DATA)
    world.map(digest, org, backend)

    # When the caller asks for the artifact
    response = service.get(digest, orgs=org)

    # Then that backend serves it with its own key, not as a fallback
    assert_redirected_by(response, backend, fallback=False)


# ---------------------------------------------------------------------------------------------------
# behaviour 4: the object is absent from a healthy mapped backend


@pytest.mark.parametrize("mode", ["redirect", "body"])
def test_object_absent_from_the_healthy_mapped_backend_is_served_by_the_default(
    world: World, service: Service, mode: str
) -> None:
    # Given a healthy mapped backend whose bucket lacks the object, and the org default (another
    # bucket) holding it
    org, mapped, default = mapped_and_default(world)
    digest = world.put(default, DATA)
    world.map(digest, org, mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org, mode=mode)

    # Then the default serves the right bytes, flagged as a fallback
    assert response.status == (307 if mode == "redirect" else 200)
    assert response.headers["X-Cas-Backend"] == "default"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert response.headers["ETag"] == f'"{digest}"'
    assert served_bytes(world, response, mode) == DATA
    if mode == "redirect":
        assert presigned_key_id(response.headers["Location"]) == default.access_key_id
    # and the failed attempt stays in the log: the success response does not carry it
    assert "attempts" not in (response.raw.get("body") or "")


# ---------------------------------------------------------------------------------------------------
# behaviour 5: a corrupted copy


@pytest.mark.parametrize("checksum", [True, False], ids=["with-checksum", "without-checksum"])
@pytest.mark.parametrize("mode", MODES)
def test_corrupt_mapped_copy_is_never_served_the_default_good_copy_is(
    world: World, service: Service, mode: str, checksum: bool
) -> None:
    # Given the mapped backend's copy corrupted (bytes that do not hash to the digest) and a good copy
    # in the org default's bucket
    org, digest = corrupt_mapped_good_default(world, CORRUPT, checksum=checksum)

    # When the caller asks for it
    response = service.get(digest, orgs=org, mode=mode)

    # Then the default serves, and what the client gets hashes to the digest
    assert response.status == (307 if mode == "redirect" else 200)
    assert response.headers["X-Cas-Backend"] == "default"
    assert response.headers["X-Cas-Fallback"] == "true"
    got = served_bytes(world, response, mode)
    assert got == DATA
    assert "sha256:" + hashlib.sha256(got).hexdigest() == digest


def test_oversized_corrupt_mapped_copy_does_not_block_body_mode_from_the_good_copy(
    world: World, service: Service
) -> None:
    # Given a body limit of 4 KiB, the mapped copy corrupted with 16 KB of wrong bytes, and a good
    # 3.1 KB copy in the org default's bucket
    service.configure(MAX_BODY_BYTES=4096)
    org, digest = corrupt_mapped_good_default(world, CORRUPT * 6, checksum=False)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the artifact (under the limit) is served from the good copy: the corrupt copy's size says
    # nothing about the digest's
    assert len(DATA) < 4096 < len(CORRUPT * 6)
    assert response.status == 200
    assert response.headers["X-Cas-Backend"] == "default"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert response.body == DATA


@pytest.mark.parametrize(
    ("mode", "checksum"),
    [("redirect", True), ("url", False), ("body", True)],
    ids=["redirect-with-checksum", "url-without-checksum", "body-with-checksum"],
)
def test_corrupt_copy_with_no_good_copy_anywhere_is_an_integrity_failure(
    world: World, service: Service, mode: str, checksum: bool
) -> None:
    # Given the mapped backend's copy corrupted and the org default (another bucket) without a copy
    org, mapped, _ = mapped_and_default(world)
    digest = sha256_digest(DATA)
    world.put_corrupt(mapped, digest, CORRUPT, checksum=checksum)
    world.map(digest, org, mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org, mode=mode)

    # Then it is an integrity failure: no URL, no corrupt bytes, the mismatch in the attempts
    assert_failed(
        response, 502, "integrity_failure", [("mapped", "digest_mismatch"), ("default", "not_found")]
    )
    assert "Location" not in response.headers
    assert response.raw.get("isBase64Encoded") is not True
    assert CORRUPT[:32] not in response.body
    assert "X-Amz-Signature" not in response.raw["body"]


# ---------------------------------------------------------------------------------------------------
# behaviours 6 and 7: default, then fallback, then nothing


def test_with_mapped_and_default_revoked_the_org_fallback_serves(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the mapped backend and the org default revoked (three buckets), and the org's fallback
    # backend holding a copy
    org, mapped, default = mapped_and_default(world)
    fallback = world.backend(org, "fallback", is_fallback=True)
    digest = world.put(mapped, DATA)
    world.put(fallback, DATA)
    world.map(digest, org, mapped)
    world.revoke(mapped)
    world.revoke(default)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then the fallback backend serves it, after the mapped backend and then the default were tried
    assert_redirected_by(response, fallback, fallback=True)
    assert s3_key_ids(call_recorder) == [
        mapped.access_key_id,
        default.access_key_id,
        fallback.access_key_id,
    ]


@pytest.mark.parametrize(
    ("fallback_on_mapped_bucket", "order"),
    [(False, ["mapped", "default", "fallback"]), (True, ["mapped", "fallback", "default"])],
    ids=["three-buckets", "fallback-on-the-mapped-bucket"],
)
def test_everything_revoked_is_backends_unavailable_with_every_attempt_in_order(
    world: World, service: Service, fallback_on_mapped_bucket: bool, order: list[str]
) -> None:
    # Given the mapped backend, the org default and the org fallback all revoked, each with a copy,
    # each in its own bucket, or the fallback in the mapped backend's bucket (the default in another)
    shared = world.bucket() if fallback_on_mapped_bucket else None
    org, mapped, default = mapped_and_default(world, mapped_bucket=shared)
    fallback = world.backend(org, "fallback", bucket=shared, is_fallback=True)
    digest = world.put(mapped, DATA)
    world.put(default, DATA)
    world.put(fallback, DATA)
    world.map(digest, org, mapped)
    for backend in (mapped, default, fallback):
        world.revoke(backend)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then nothing serves and the attempts list mapped, default, fallback, in that order; or, with the
    # fallback on the mapped location, the same-location fallback before the default
    assert_failed(response, 502, "backends_unavailable", [(name, "credentials_invalid") for name in order])
    assert "Location" not in response.headers


def test_everything_absent_is_content_missing_with_every_attempt_not_found(
    world: World, service: Service
) -> None:
    # Given a mapping, and the object in none of the org's healthy backends
    org, mapped, _ = mapped_and_default(world)
    world.backend(org, "fallback", is_fallback=True)
    digest = sha256_digest(DATA)
    world.map(digest, org, mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then it is content_missing, every backend having answered absent
    assert_failed(
        response,
        404,
        "content_missing",
        [
            ("mapped", "not_found"),
            ("default", "not_found"),
            ("fallback", "not_found"),
        ],
    )


# ---------------------------------------------------------------------------------------------------
# behaviour 10: Invalid, deleted, missing and unsupported backends


def test_ok_mapped_backend_serves_before_an_older_invalid_one(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given one digest mapped twice in one org: first to a backend marked Invalid, later to an OK one
    shared = world.shared_bucket(DATA)
    invalid = shared.backend("invalid", status="Invalid", validation_error="stale")
    ok = shared.backend("ok", status="OK")
    shared.map(invalid, ok)

    # When the caller asks for it
    response = service.get(shared.digest, orgs=shared.org)

    # Then the OK backend serves, as the first candidate, and the Invalid one is never called
    assert_redirected_by(response, ok, fallback=False)
    assert invalid.access_key_id not in s3_key_ids(call_recorder)


def test_invalid_mapped_backend_is_still_tried_when_the_ok_one_fails(world: World, service: Service) -> None:
    # Given the digest mapped to an Invalid backend (older) and to an OK backend (revoked)
    shared = world.shared_bucket(DATA)
    invalid = shared.backend("invalid", status="Invalid")
    ok = shared.backend("ok")
    shared.map(invalid, ok)
    world.revoke(ok)

    # When the caller asks for it
    response = service.get(shared.digest, orgs=shared.org)

    # Then the Invalid backend (its status was stale) serves, as a fallback from the OK one
    assert_redirected_by(response, invalid, fallback=True)


def test_invalid_mapped_backend_comes_after_every_ok_candidate_the_org_default_included(
    world: World, service: Service
) -> None:
    # Given the digest mapped to an Invalid backend (older) and an OK backend, and an org default,
    # all revoked
    shared = world.shared_bucket(DATA)
    invalid = shared.backend("invalid", status="Invalid")
    ok = shared.backend("ok", status="OK")
    default = shared.backend("default", is_default=True)
    shared.map(invalid, ok)
    for backend in (invalid, ok, default):
        world.revoke(backend)

    # When the caller asks for it
    response = service.get(shared.digest, orgs=shared.org)

    # Then the attempts are: the OK mapped backend, the org's OK default, then the Invalid mapped one
    assert_failed(
        response,
        502,
        "backends_unavailable",
        [
            ("ok", "credentials_invalid"),
            ("default", "credentials_invalid"),
            ("invalid", "credentials_invalid"),
        ],
    )


@pytest.mark.parametrize("gone", ["deleted", "row_missing"])
def test_deleted_or_missing_mapped_backend_is_never_tried_but_the_org_default_serves(
    world: World, service: Service, call_recorder: CallRecorder, gone: str
) -> None:
    # Given an artifact mapped to a backend that is soft-deleted (or whose row is gone), with working
    # keys, and the org default on the same bucket
    org, mapped, default, digest = world.side_by_side(DATA, "mapped", deleted=gone == "deleted")
    if gone == "row_missing":
        world.delete_backend_row(mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then the default serves (a fallback), and nothing was read or signed through the mapped backend
    assert_redirected_by(response, default, fallback=True)
    assert s3_key_ids(call_recorder) == [default.access_key_id]
    secret_ids = [c.params.get("SecretId") for c in call_recorder.of("secretsmanager")]
    assert mapped.secret_name not in secret_ids


def test_deleted_mapped_backend_never_appears_in_the_attempts(world: World, service: Service) -> None:
    # Given an artifact mapped to a deleted backend (working keys), and the org default revoked
    org, _mapped, default, digest = world.side_by_side(DATA, "mapped", deleted=True)
    world.revoke(default)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then only the default was tried
    assert_failed(response, 502, "backends_unavailable", [("default", "credentials_invalid")])


def test_unsupported_provider_is_skipped_and_the_org_default_serves(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact mapped to a backend whose provider is not AWS-S3, and the org default (same
    # bucket)
    org, _gcs, default, digest = world.side_by_side(DATA, "gcs", provider="GCS")

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then the default serves it, and no storage call went through the unsupported backend
    assert_redirected_by(response, default, fallback=True)
    assert s3_key_ids(call_recorder) == [default.access_key_id]


def test_unsupported_provider_is_listed_as_unsupported_provider(world: World, service: Service) -> None:
    # Given an artifact mapped to a backend whose provider is not AWS-S3, and the org default revoked
    org, _gcs, default, digest = world.side_by_side(DATA, "gcs", provider="GCS")
    world.revoke(default)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then nothing serves, and the attempts name the skipped backend with its reason, first
    assert_failed(
        response,
        502,
        "backends_unavailable",
        [("gcs", "unsupported_provider"), ("default", "credentials_invalid")],
    )


# ---------------------------------------------------------------------------------------------------
# locations and key prefixes


def test_s3_compatible_location_serves_through_its_own_endpoint(world: World, service: Service) -> None:
    # Given a backend whose location names the endpoint explicitly (http://127.0.0.1:port/bucket)
    org = world.org()
    bucket = world.bucket()
    backend = world.backend(org, "minio", bucket=bucket, location=world.storage_location(bucket))
    digest = world.put(backend, DATA)
    world.map(digest, org, backend)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then it redirects to a path-style URL on that endpoint, signed with the backend's key, serving
    # the bytes
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "minio"
    assert response.headers["X-Cas-Fallback"] == "false"
    location = response.headers["Location"]
    assert location.startswith(f"{world.storage_location(bucket)}/sha256")
    assert presigned_key_id(location) == backend.access_key_id
    assert world.fetch_presigned(location).body == DATA


def test_key_prefix_backend_serves_from_the_prefixed_key(world: World, service: Service) -> None:
    # Given a backend with a key prefix, the object stored under "{prefix}sha256:<hex>", and bytes
    # that are not the artifact under the bare key
    org = world.org()
    backend = world.backend(org, "prefixed", key_prefix="tenants/acme/cas/")
    digest = world.put(backend, DATA)
    world.put_corrupt(backend.bucket, digest, CORRUPT)
    world.map(digest, org, backend)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then the URL names the prefixed key, and that object is what it serves
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "prefixed"
    assert response.headers["X-Cas-Fallback"] == "false"
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.key == f"tenants/acme/cas/{digest}"
    assert fetched.body == DATA


def test_candidate_sharing_the_failed_mapped_location_is_tried_before_the_default(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the mapped backend revoked in bucket A, the org default healthy in bucket B (with a copy),
    # and the org fallback healthy in bucket A
    shared = world.bucket()
    org, mapped, default = mapped_and_default(world, mapped_bucket=shared)
    fallback = world.backend(org, "fallback", bucket=shared, is_fallback=True)
    digest = world.put(mapped, DATA)
    world.put(default, DATA)
    world.map(digest, org, mapped)
    world.revoke(mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then the fallback on the same bucket serves, and the default is never called
    assert_redirected_by(response, fallback, fallback=True)
    assert s3_key_ids(call_recorder) == [mapped.access_key_id, fallback.access_key_id]
    assert default.access_key_id not in s3_key_ids(call_recorder)


# (with every candidate revoked, the attempts put the same-location fallback before the default: see
# test_everything_revoked_is_backends_unavailable_with_every_attempt_in_order,
# case "fallback-on-the-mapped-bucket")
