"""Backend health: status repair on the download path, in-container memory of failed
backends, verification records."""

from __future__ import annotations

from typing import Any

import pytest

from cas_download.data.tables import Tables
from tests.scenarios.conftest import Service
from tests.support.calls import CallRecorder
from tests.support.moto_servers import AwsServers
from tests.support.world import Artifact, BackendRef, World

DATA = b"artifact bytes for health checks\n" * 64


def backend_row(aws_servers: AwsServers, world: World, backend: BackendRef) -> dict[str, Any]:
    item = aws_servers.cached_client("control", "dynamodb").get_item(
        TableName=world.tables.backends, Key={"id": {"S": backend.id}}, ConsistentRead=True
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


@pytest.fixture
def status_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every status write the app makes (backend id, status), observed at the data-access seam."""
    writes: list[tuple[str, str]] = []
    original = Tables.record_status

    def recording(self: Tables, backend_id: str, status: str, *args: Any, **kwargs: Any) -> bool:
        writes.append((backend_id, status))
        return original(self, backend_id, status, *args, **kwargs)

    monkeypatch.setattr(Tables, "record_status", recording)
    return writes


def rotation_story(world: World) -> tuple[str, BackendRef, BackendRef, str]:
    org = world.org()
    bucket = world.bucket()
    old = world.backend(org, "old", bucket=bucket, created_at="2025-01-01T00:00:00Z")
    new = world.backend(org, "new", bucket=bucket, is_default=True)
    # S3-checksummed, so that a serving backend costs one HEAD and the calls counted are the failed ones
    digest = world.put(old, DATA, checksum=True)
    world.map(digest, org, old)
    world.revoke(old)
    return org, old, new, digest


def test_rejected_credentials_mark_an_ok_backend_invalid_once_per_container(
    world: World, service: Service, aws_servers: AwsServers, status_writes: list[tuple[str, str]]
) -> None:
    # Given the rotation story, and a container that does not defer failed backends
    org, old, _new, digest = rotation_story(world)
    service.configure(FAILURE_MEMORY_SECONDS=0)

    # When three requests each try the revoked backend first
    for _ in range(3):
        assert service.get(digest, orgs=org).status == 307

    # Then the old backend is recorded Invalid, with one write, not one per request
    assert status_writes == [(old.id, "Invalid")]
    row = backend_row(aws_servers, world, old)
    assert row["validation_status"] == "Invalid"
    assert row["validation_error"]
    assert row["validated_at"].endswith("Z")


def test_success_through_a_backend_recorded_invalid_marks_it_ok(
    world: World, service: Service, aws_servers: AwsServers
) -> None:
    # Given a healthy backend whose recorded status is stale (Invalid)
    org = world.org()
    backend = world.backend(org, is_default=True, status="Invalid")
    digest = world.put(backend, DATA)
    world.map(digest, org, backend)

    # When it serves a request
    response = service.get(digest, orgs=org)

    # Then its status is repaired
    assert response.status == 307
    row = backend_row(aws_servers, world, backend)
    assert row["validation_status"] == "OK"
    assert "validation_error" not in row


def test_a_backend_that_just_failed_costs_no_round_trip_in_steady_state(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the rotation story, served once (the container learns that the old keys are rejected)
    org, _old, new, digest = rotation_story(world)
    assert service.get(digest, orgs=org).headers["X-Cas-Backend"] == new.name
    first_request_storage_calls = call_recorder.count("s3")

    # When the same digest is asked for again
    call_recorder.clear()
    response = service.get(digest, orgs=org)

    # Then the new default serves with a single S3 call and no secret read: the old backend is not tried
    assert response.status == 307
    assert response.headers["X-Cas-Fallback"] == "true"
    assert call_recorder.count("s3") == 1
    assert call_recorder.count("s3", "HeadObject") == 1
    assert call_recorder.count("secretsmanager") == 0
    assert first_request_storage_calls >= 3  # HEAD + classifying GET on the old backend, HEAD on the new


def test_without_the_memory_every_request_pays_for_the_revoked_backend(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the rotation story in a container with the failure memory disabled
    org, _old, _new, digest = rotation_story(world)
    service.configure(FAILURE_MEMORY_SECONDS=0)
    service.get(digest, orgs=org)

    # When the digest is asked for again
    call_recorder.clear()
    assert service.get(digest, orgs=org).status == 307

    # Then the revoked backend is tried again (the wasted calls the memory removes)
    assert call_recorder.count("s3") >= 3


def test_a_remembered_backend_is_still_tried_last_when_nothing_else_serves(
    world: World, service: Service
) -> None:
    # Given a mapped backend whose secret cannot be read (remembered by the container, its recorded
    # status untouched), and the org's default and fallback, which do not hold the object
    org = world.org()
    mapped = world.backend(org, "mapped", secret="missing")
    world.backend(org, "default", is_default=True)
    world.backend(org, "fallback", is_fallback=True)
    digest = world.put(world.bucket(), DATA)  # the bytes exist, in none of the org's buckets
    world.map(digest, org, mapped)
    first = service.get(digest, orgs=org)
    assert first.status == 502
    assert first.attempts == [
        ("mapped", "secret_unavailable"),
        ("default", "not_found"),
        ("fallback", "not_found"),
    ]

    # When it is asked for again
    response = service.get(digest, orgs=org)

    # Then the others are tried first, and the remembered one last (deferred, never skipped), and the
    # answer names every attempt
    assert response.status == 502
    assert response.error_code == "backends_unavailable"
    assert response.attempts == [
        ("default", "not_found"),
        ("fallback", "not_found"),
        ("mapped", "secret_unavailable"),
    ]


def proven_by_hashing(world: World, service: Service, verifications_table: str) -> Artifact:
    """An org's artifact stored without a SHA-256 checksum (as Chainloop writes it), served once with
    the verification records enabled: its bytes hashed, its record written."""
    artifact = world.artifact(DATA)
    service.configure(VERIFICATIONS_TABLE=verifications_table)
    assert service.get(artifact.digest, orgs=artifact.org).status == 307
    return artifact


class TestVerificationRecords:
    def test_a_full_hash_is_recorded_once_and_proves_the_object_afterwards(
        self, world: World, service: Service, call_recorder: CallRecorder, verifications_table: str
    ) -> None:
        # Given an object stored without a SHA-256 checksum, requested once with the verification
        # records enabled
        org, _backend, digest = proven_by_hashing(world, service, verifications_table)
        hashed_calls = call_recorder.count("s3", "GetObject")

        # When it is requested again by another container
        service.configure(VERIFICATIONS_TABLE=verifications_table)
        call_recorder.clear()
        second = service.get(digest, orgs=org)

        # Then the first request hashed the object and the second is proven by the record alone
        assert hashed_calls == 1
        assert second.status == 307
        assert call_recorder.count("dynamodb", "GetItem") == 1
        assert call_recorder.count("s3", "HeadObject") == 1
        assert call_recorder.count("s3", "GetObject") == 0
        assert world.fetch_presigned(second.headers["Location"]).body == DATA

    def test_a_container_remembers_the_proofs_it_wrote_and_reads_no_record_for_them(
        self, world: World, service: Service, call_recorder: CallRecorder, verifications_table: str
    ) -> None:
        # Given an object without a SHA-256 checksum, proven once by hashing (the record written)
        org, _backend, digest = proven_by_hashing(world, service, verifications_table)
        call_recorder.clear()

        # When the same container serves it again
        again = service.get(digest, orgs=org)

        # Then the proof comes from the container's memory: no record read, no GET, one HEAD
        assert again.status == 307
        assert call_recorder.count("dynamodb", "GetItem") == 0
        assert call_recorder.count("s3", "GetObject") == 0
        assert call_recorder.count("s3", "HeadObject") == 1

    def test_a_record_no_longer_applies_once_the_object_changed(
        self, world: World, service: Service, verifications_table: str
    ) -> None:
        # Given a recorded proof for an object
        org, backend, digest = proven_by_hashing(world, service, verifications_table)

        # When the object is overwritten with other bytes (new ETag and size)
        world.put_corrupt(backend, digest, b"tampered", checksum=False)
        response = service.get(digest, orgs=org)

        # Then the record is ignored, the bytes are hashed again and refused
        assert response.status == 502
        assert response.error_code == "integrity_failure"
        assert response.attempts == [(backend.name, "digest_mismatch")]


def test_a_right_key_id_with_a_wrong_secret_key_is_credentials_invalid_until_the_secret_is_fixed(
    world: World, service: Service, aws_servers: AwsServers, status_writes: list[tuple[str, str]]
) -> None:
    # Given a backend whose secret holds its real key id with a wrong secret key (S3 answers
    # SignatureDoesNotMatch), and a container that does not defer failed backends
    org, backend, digest = world.artifact(DATA)
    world.set_secret(backend, {"AccessKeyID": "{access_key_id}", "SecretAccessKey": "wrong" * 8})
    service.configure(FAILURE_MEMORY_SECONDS=0)

    # When it is asked for
    refused = service.get(digest, orgs=org)

    # Then the attempt is credentials_invalid and the backend is marked Invalid
    assert refused.status == 502
    assert refused.attempts == [(backend.name, "credentials_invalid")]
    assert backend_row(aws_servers, world, backend)["validation_status"] == "Invalid"

    # When the control plane writes the right secret key into the same secret, and a new container
    # (whose secret cache is empty) asks
    world.set_secret(backend, "valid")
    service.configure(FAILURE_MEMORY_SECONDS=0)
    served = service.get(digest, orgs=org)

    # Then it serves through that backend and repairs the status
    assert served.status == 307
    assert served.headers["X-Cas-Backend"] == backend.name
    assert backend_row(aws_servers, world, backend)["validation_status"] == "OK"
    assert status_writes == [(backend.id, "Invalid"), (backend.id, "OK")]
