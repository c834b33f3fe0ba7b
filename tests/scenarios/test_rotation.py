"""The rotation story and the healthy path."""

from __future__ import annotations

from tests.scenarios.conftest import Service, assert_redirected_by, presigned_key_id
from tests.support.world import World

DATA = b"release-1.2.3.tar.gz contents\n" * 100


def test_healthy_mapped_backend_redirects_to_a_sigv4_url_signed_with_its_own_key(
    world: World, service: Service
) -> None:
    # Given an artifact mapped to a healthy backend
    org, backend, digest = world.artifact(DATA, filename="release.tgz")

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then it is redirected to a SigV4 URL signed with that backend's key, and that URL serves the bytes
    assert_redirected_by(response, backend, fallback=False)
    location = response.headers["Location"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in location
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["Cache-Control"] == "private, no-store"
    fetched = world.fetch_presigned(location)
    assert fetched.status == 200
    assert fetched.body == DATA


def test_rotated_away_backend_falls_back_to_the_new_default_on_the_same_bucket(
    world: World, service: Service
) -> None:
    # Given backend A (old keys) and backend B (same bucket, new keys, the org's default)
    # and A's access key deleted: S3 itself now answers InvalidAccessKeyId
    org, _old, new, digest = world.rotated(DATA)

    # When the caller asks for the artifact mapped to A
    response = service.get(digest, orgs=org)

    # Then B serves it, flagged as a fallback, with a URL signed by B's key
    assert_redirected_by(response, new, fallback=True)
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.body == DATA


def test_rotation_in_place_rereads_the_secret_once_before_giving_the_backend_up(
    world: World, service: Service, call_recorder
) -> None:
    # Given a backend whose credentials the service has cached
    org, backend, digest = world.artifact(DATA)
    assert service.get(digest, orgs=org).status == 307

    # When the control plane writes new keys into the same secret and deletes the old key
    world.rotate_secret_in_place(backend)
    call_recorder.clear()
    response = service.get(digest, orgs=org)

    # Then the same backend serves, through the new key, after reading the secret once more
    assert response.status == 307
    assert response.headers["X-Cas-Fallback"] == "false"
    assert presigned_key_id(response.headers["Location"]) == backend.access_key_id
    assert call_recorder.count("secretsmanager", "GetSecretValue") == 1


def test_a_warm_container_that_cached_the_orgs_rows_serves_through_the_new_default_after_a_rotation(
    world: World, service: Service
) -> None:
    # Given a warm container that served the artifact through the org's default A (rows cached for 30 s)
    org = world.org()
    bucket = world.bucket()
    old = world.backend(org, "old", bucket=bucket, is_default=True, created_at="2025-01-01T00:00:00Z")
    digest = world.put(old, DATA)
    world.map(digest, org, old)
    assert service.get(digest, orgs=org).status == 307

    # When the control plane rotates (B on the same bucket, the new default; A's key deleted) and, within
    # the cache's 30 s, the caller asks again
    new = world.backend(org, "new", bucket=bucket, is_default=True)
    world.update_backend(old, is_default=False)
    world.revoke(old)
    response = service.get(digest, orgs=org)

    # Then the cached rows' candidates fail, the org's rows are read again, and B serves as a fallback
    assert_redirected_by(response, new, fallback=True)
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
