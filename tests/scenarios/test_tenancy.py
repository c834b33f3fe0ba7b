"""Tenancy: a caller sees only its orgs' artifacts, fallback never leaves the orgs that hold a mapping,
and every org-claim format of the spec names the caller's orgs."""

from __future__ import annotations

import uuid

import pytest

from tests.scenarios.conftest import HttpResult, Service, assert_failed, assert_redirected_by, s3_key_ids
from tests.support.calls import CallRecorder
from tests.support.world import BackendRef, World, sha256_digest

DATA = b"tenant-artifact-3.1.4.tar.gz contents\n" * 100
MODES = ("redirect", "url", "body")
OLD = "2025-01-01T00:00:00.000000Z"
NEW = "2025-06-01T00:00:00.000000Z"


def secret_ids_read(recorder: CallRecorder) -> set[str]:
    return {str(call.params.get("SecretId")) for call in recorder.of("secretsmanager")}


def never_touched(recorder: CallRecorder, *backends: BackendRef) -> None:
    """No S3 call was signed with these backends' keys and none of their secrets was read."""
    signing_keys = {call.access_key_id for call in recorder.storage_calls()}
    read = secret_ids_read(recorder)
    for backend in backends:
        assert backend.access_key_id not in signing_keys, f"{backend.name}'s key signed an S3 call"
        assert backend.secret_name not in read, f"{backend.name}'s secret was read"
        assert backend.secret_arn not in read, f"{backend.name}'s secret was read by ARN"


def assert_served_by(world: World, response: HttpResult, backend: BackendRef, *, fallback: bool) -> None:
    assert_redirected_by(response, backend, fallback=fallback)
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.status == 200
    assert fetched.body == DATA


# ---------------------------------------------------------------------------------------------------
# another org's artifact does not exist for the caller


@pytest.mark.parametrize("mode", MODES)
def test_digest_held_only_by_another_org_is_not_found_without_any_secret_or_storage_call(
    world: World, service: Service, call_recorder: CallRecorder, mode: str
) -> None:
    # Given org X holding a digest through its default backend
    org_x, org_y = world.org(), world.org()
    x_default = world.backend(org_x, "x-default", is_default=True)
    digest = world.put(x_default, DATA)
    world.map(digest, org_x, x_default)
    # and org Y's own default bucket holding those exact bytes, with no mapping in Y
    y_default = world.backend(org_y, "y-default", is_default=True)
    world.put(y_default, DATA)

    # When a caller of org Y asks for the digest
    response = service.get(digest, orgs=org_y, mode=mode)

    # Then it is not found, and no secret was read and no storage call made
    assert response.status == 404
    assert response.error_code == "not_found"
    assert response.attempts == []
    assert response.headers["Content-Type"] == "application/json"
    assert call_recorder.count("secretsmanager") == 0
    assert call_recorder.count("s3") == 0


def test_not_found_for_another_orgs_digest_is_identical_to_not_found_for_an_unknown_digest(
    world: World, service: Service
) -> None:
    # Given a digest held by org X (and its bytes also in org Y's default bucket), and a digest nobody has
    org_x, org_y = world.org(), world.org()
    x_default = world.backend(org_x, is_default=True)
    digest = world.put(x_default, DATA)
    world.map(digest, org_x, x_default)
    y_default = world.backend(org_y, is_default=True)
    world.put(y_default, DATA)
    unknown = sha256_digest(f"nobody uploaded this {uuid.uuid4()}".encode())

    # When a caller of org Y asks for each
    held_elsewhere = service.get(digest, orgs=org_y)
    held_by_nobody = service.get(unknown, orgs=org_y)

    # Then the two answers cannot be told apart: same status, headers and body bytes
    assert held_elsewhere.status == held_by_nobody.status == 404
    assert held_elsewhere.headers == held_by_nobody.headers
    assert held_elsewhere.body == held_by_nobody.body
    assert held_elsewhere.json == {
        "error": {"code": "not_found", "message": held_elsewhere.json["error"]["message"], "attempts": []}
    }


@pytest.mark.parametrize("near_miss", ["upper_case", "prefix", "suffixed"])
def test_org_ids_match_exactly(
    world: World, service: Service, call_recorder: CallRecorder, near_miss: str
) -> None:
    # Given a digest held by org X
    org_x = world.org()
    x_default = world.backend(org_x, is_default=True)
    digest = world.put(x_default, DATA)
    world.map(digest, org_x, x_default)

    # When the caller's org id is only close to X's (other case, a prefix of it, or X plus a suffix)
    caller = {"upper_case": org_x.upper(), "prefix": org_x[:-1], "suffixed": f"{org_x}-2"}[near_miss]
    response = service.get(digest, orgs=caller)

    # Then it is not found, with no storage call
    assert response.status == 404
    assert response.error_code == "not_found"
    assert call_recorder.count("s3") == 0


# ---------------------------------------------------------------------------------------------------
# fallback never leaves the orgs that hold a mapping


def _revoked_in_x_healthy_in_y(world: World) -> tuple[str, str, str, BackendRef, list[BackendRef]]:
    """Org X maps the digest to a revoked backend and has no default or fallback; org Y has a
    healthy default and fallback on the same bucket, holding the bytes."""
    org_x, org_y = world.org(), world.org()
    bucket = world.bucket()
    x_mapped = world.backend(org_x, "x-mapped", bucket=bucket)
    y_default = world.backend(org_y, "y-default", bucket=bucket, is_default=True)
    y_fallback = world.backend(org_y, "y-fallback", bucket=bucket, is_fallback=True)
    digest = world.put(x_mapped, DATA)
    world.map(digest, org_x, x_mapped)
    world.revoke(x_mapped)
    return digest, org_x, org_y, x_mapped, [y_default, y_fallback]


def assert_only_x_mapped_was_tried(
    response: HttpResult, recorder: CallRecorder, x_mapped: BackendRef, y_backends: list[BackendRef]
) -> None:
    """The request failed with X's mapped backend as the only attempt; Y's keys and secrets never used."""
    assert_failed(response, 502, "backends_unavailable", [("x-mapped", "credentials_invalid")])
    assert set(s3_key_ids(recorder)) == {x_mapped.access_key_id}
    assert secret_ids_read(recorder) == {x_mapped.secret_name}
    never_touched(recorder, *y_backends)


def test_fallback_never_uses_another_orgs_backends(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given org X's mapped backend revoked, X with no default, and org Y's healthy default and
    # fallback on the same bucket holding the bytes
    digest, org_x, _org_y, x_mapped, y_backends = _revoked_in_x_healthy_in_y(world)

    # When a caller of org X only asks for the digest
    response = service.get(digest, orgs=org_x)

    # Then it fails with X's mapped backend as the only attempt, and Y's keys and secrets never used
    assert_only_x_mapped_was_tried(response, call_recorder, x_mapped, y_backends)


def test_fallback_never_uses_a_caller_org_that_holds_no_mapping(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the same world: X's mapped backend revoked, Y's healthy backends hold the bytes unmapped
    digest, org_x, org_y, x_mapped, y_backends = _revoked_in_x_healthy_in_y(world)

    # When a caller who belongs to BOTH X and Y asks for the digest (mapped only in X)
    response = service.get(digest, orgs=f"{org_y},{org_x}")

    # Then Y's backends are still not candidates: the request fails, Y's keys never signed anything
    assert_only_x_mapped_was_tried(response, call_recorder, x_mapped, y_backends)


# ---------------------------------------------------------------------------------------------------
# the org claim, in every format the spec accepts

CLAIM_FORMATS = {
    "comma": "{0},{1},{2}",
    "space": "{0} {1} {2}",
    "comma_and_space": "{0}, {1}, {2}",
    "bracketed_array": "[{0} {1} {2}]",
}


def _held_by_one_of_three(world: World) -> tuple[str, list[str], BackendRef]:
    """Three orgs; only the middle one holds the digest."""
    orgs = [world.org(), world.org(), world.org()]
    holder = world.backend(orgs[1], "holder-default", is_default=True)
    digest = world.put(holder, DATA)
    world.map(digest, orgs[1], holder)
    return digest, orgs, holder


# where the orgs arrive: the JWT authorizer's org_id claim, or a Lambda authorizer's context
ORG_SOURCES = {"jwt_claim": "get_redirect", "lambda_authorizer_context": "get_lambda_authorizer"}


@pytest.mark.parametrize("claim_format", CLAIM_FORMATS.values(), ids=CLAIM_FORMATS.keys())
@pytest.mark.parametrize("event_name", ORG_SOURCES.values(), ids=ORG_SOURCES.keys())
def test_org_claim_naming_several_orgs_is_served_when_one_of_them_holds_the_digest(
    world: World, service: Service, event_name: str, claim_format: str
) -> None:
    # Given a caller in three orgs, of which only the middle one holds the digest
    digest, orgs, holder = _held_by_one_of_three(world)

    # When the JWT authorizer's org_id claim, or a Lambda authorizer's context, names the three orgs
    # in this format
    response = service.request(event_name, digest=digest, orgs=claim_format.format(*orgs))

    # Then the holding org's backend serves it
    assert_served_by(world, response, holder, fallback=False)


@pytest.mark.parametrize("event_name", ["get_redirect", "get_lambda_authorizer"])
def test_custom_org_claim_name_is_read_from_org_claim(
    world: World, service: Service, event_name: str
) -> None:
    # Given ORG_CLAIM naming a custom claim, and a caller in three orgs (only one holds the digest)
    digest, orgs, holder = _held_by_one_of_three(world)
    service.configure(ORG_CLAIM="custom:tenants")

    # When the orgs arrive under that claim (JWT claims or Lambda authorizer context)
    response = service.request(event_name, digest=digest, orgs=",".join(orgs), claim="custom:tenants")

    # Then the caller is served
    assert_served_by(world, response, holder, fallback=False)


def test_with_a_custom_org_claim_the_default_claim_name_is_ignored(world: World, service: Service) -> None:
    # Given ORG_CLAIM naming a custom claim, and a digest held by org X
    digest, orgs, _holder = _held_by_one_of_three(world)
    service.configure(ORG_CLAIM="custom:tenants")

    # When the caller's token carries the org only under the default name org_id
    response = service.request("get_redirect", digest=digest, orgs=orgs[1])

    # Then the caller has no org: 401 unauthenticated
    assert response.status == 401
    assert response.error_code == "unauthenticated"
    assert response.attempts == []


# ---------------------------------------------------------------------------------------------------
# a digest mapped in two orgs, caller in both


def put_and_map_old_in_x_new_in_y(world: World, x_backend: BackendRef, y_backend: BackendRef) -> str:
    """``DATA`` stored in both backends' buckets and mapped in their orgs, X's mapping the older; the
    digest."""
    digest = world.put(x_backend, DATA)
    world.put(y_backend, DATA)
    world.map(digest, x_backend.org, x_backend, OLD)
    world.map(digest, y_backend.org, y_backend, NEW)
    return digest


def test_digest_mapped_in_two_orgs_is_served_to_a_caller_in_both(world: World, service: Service) -> None:
    # Given a digest mapped in org X and in org Y, each through its own default backend and bucket
    org_x, org_y = world.org(), world.org()
    x_default = world.backend(org_x, "x-default", is_default=True)
    y_default = world.backend(org_y, "y-default", is_default=True)
    digest = put_and_map_old_in_x_new_in_y(world, x_default, y_default)

    # When a caller in both orgs asks for it
    response = service.get(digest, orgs=[org_x, org_y])

    # Then it is served, not as a fallback, through the older mapping's backend
    assert_served_by(world, response, x_default, fallback=False)


@pytest.mark.parametrize("claim_order", ["x_first", "y_first"])
def test_first_mapped_candidate_is_the_oldest_mapping_whatever_the_claim_order(
    world: World, service: Service, claim_order: str
) -> None:
    # Given a digest mapped in X (older mapping) and in Y (newer), neither to its org's default
    org_x, org_y = world.org(), world.org()
    x_mapped = world.backend(org_x, "x-mapped")
    y_mapped = world.backend(org_y, "y-mapped")
    digest = world.put(x_mapped, DATA)
    world.put(y_mapped, DATA)
    world.map(digest, org_y, y_mapped, NEW)
    world.map(digest, org_x, x_mapped, OLD)

    # When a caller in both asks, naming the orgs in either order
    orgs = [org_x, org_y] if claim_order == "x_first" else [org_y, org_x]
    response = service.get(digest, orgs=orgs)

    # Then the oldest mapping's backend serves, and that is not a fallback
    assert_served_by(world, response, x_mapped, fallback=False)


def test_first_mapped_candidate_is_an_orgs_default_before_an_older_mapping(
    world: World, service: Service
) -> None:
    # Given a digest mapped in X (older mapping, X's non-default) and in Y (newer mapping, Y's default)
    org_x, org_y = world.org(), world.org()
    x_mapped = world.backend(org_x, "x-mapped")
    world.backend(org_x, "x-default", is_default=True)
    y_default = world.backend(org_y, "y-default", is_default=True)
    digest = put_and_map_old_in_x_new_in_y(world, x_mapped, y_default)

    # When a caller in both asks
    response = service.get(digest, orgs=[org_x, org_y])

    # Then the mapped default is the first candidate and serves, not as a fallback
    assert_served_by(world, response, y_default, fallback=False)


def test_first_mapped_candidate_is_an_ok_backend_before_an_older_invalid_one(
    world: World, service: Service
) -> None:
    # Given a digest mapped in X (older mapping, X's default, marked Invalid) and in Y (newer, OK)
    org_x, org_y = world.org(), world.org()
    x_mapped = world.backend(org_x, "x-invalid-default", is_default=True, status="Invalid")
    y_mapped = world.backend(org_y, "y-mapped", status="OK")
    digest = put_and_map_old_in_x_new_in_y(world, x_mapped, y_mapped)

    # When a caller in both asks
    response = service.get(digest, orgs=[org_x, org_y])

    # Then Y's OK mapped backend is the first candidate and serves, not as a fallback
    assert_served_by(world, response, y_mapped, fallback=False)


def test_second_orgs_mapped_backend_serves_before_any_default_when_the_first_is_revoked(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a digest mapped in X (older mapping, now revoked) and in Y (newer mapping, healthy),
    # and both orgs with a healthy default holding the bytes (X's on the revoked backend's bucket)
    org_x, org_y = world.org(), world.org()
    x_bucket, y_bucket = world.bucket(), world.bucket()
    x_mapped = world.backend(org_x, "x-mapped", bucket=x_bucket)
    x_default = world.backend(org_x, "x-default", bucket=x_bucket, is_default=True)
    y_mapped = world.backend(org_y, "y-mapped", bucket=y_bucket)
    y_default = world.backend(org_y, "y-default", bucket=y_bucket, is_default=True)
    digest = world.put(x_bucket, DATA)
    world.put(y_bucket, DATA)
    world.map(digest, org_x, x_mapped, OLD)
    world.map(digest, org_y, y_mapped, NEW)
    world.revoke(x_mapped)

    # When a caller in both asks
    response = service.get(digest, orgs=[org_x, org_y])

    # Then Y's mapped backend serves (mapped candidates before defaults), flagged as a fallback
    assert_served_by(world, response, y_mapped, fallback=True)
    assert s3_key_ids(call_recorder) == [x_mapped.access_key_id, y_mapped.access_key_id]
    never_touched(call_recorder, x_default, y_default)


def test_mapping_that_names_another_orgs_backend_never_uses_that_backend(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a mapping of org X whose backend id is a backend of org Y (bad control-plane data), and
    # X's own default holding the bytes
    org_x, org_y = world.org(), world.org()
    bucket = world.bucket()
    y_backend = world.backend(org_y, "y-default", bucket=bucket, is_default=True)
    x_default = world.backend(org_x, "x-default", bucket=bucket, is_default=True)
    digest = world.put(bucket, DATA)
    world.map(digest, org_x, y_backend)

    # When a caller of org X only asks for the digest
    response = service.get(digest, orgs=org_x)

    # Then X's default serves it, and Y's backend was never tried
    assert_served_by(world, response, x_default, fallback=True)
    never_touched(call_recorder, y_backend)
