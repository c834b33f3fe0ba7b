"""Rotation in place, as Chainloop does it for every provider: the backend keeps its secret's name, the
control plane writes the new credentials into it (``PutSecretValue``) and the old ones stop working at
the storage. The service, which cached the old value, must read the secret once more and go on serving
through the same backend: no fallback, no second backend involved.

Every object here is written by ``cas_admin.chainloop_layout``, as Chainloop's CAS writes it."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from cas_admin.chainloop_layout import azure as chainloop_azure
from tests.scenarios.conftest import Service
from tests.support.azure import new_account_key, start_azurite
from tests.support.calls import CallRecorder
from tests.support.provider_scenarios import assert_served_by, oci_artifact
from tests.support.registry import Registry
from tests.support.world import World, sha256_digest

DATA = b"rotated in place, served through the same backend\n" * 200


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return bytes(answer.read())


def test_s3_keys_rotated_in_the_same_secret_serve_through_the_same_backend(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an S3 backend whose Chainloop object the service served, its key now cached
    org, backend, digest = world.artifact(DATA, "s3", filename="release.tgz")
    assert service.get(digest, orgs=org).status == 307

    # When Chainloop writes a new key into the same secret and the old key is deleted in IAM
    world.rotate_secret_in_place(backend)
    call_recorder.clear()
    response = service.get(digest, orgs=org)

    # Then the same backend serves, through the new key, after one more read of the secret
    assert_served_by(response, 307, "s3", fallback=False)
    assert backend.access_key_id in response.headers["Location"]
    assert call_recorder.count("secretsmanager", "GetSecretValue") == 1


def test_a_registry_password_rotated_in_the_same_secret_serves_through_the_same_backend(
    world: World, service: Service, registry: Registry, call_recorder: CallRecorder
) -> None:
    # Given an OCI backend whose Chainloop image the service served, its password now cached
    org, backend, user, digest = oci_artifact(world, registry, DATA, is_default=True)
    assert service.get(digest, orgs=org, mode="body").body == DATA

    # When the password changes at the registry and Chainloop writes it into the same secret
    new_password = "rotated-" + user.password
    registry.set_password(user, new_password)
    world.set_secret(backend, {"Username": user.name, "Password": new_password, "Repo": backend.location})
    call_recorder.clear()
    response = service.get(digest, orgs=org, mode="body")

    # Then the same backend serves the bytes, after one more read of the secret
    assert_served_by(response, 200, "registry", fallback=False)
    assert response.body == DATA
    assert call_recorder.count("secretsmanager", "GetSecretValue") == 1


def test_an_azure_account_key_rotated_in_the_same_secret_serves_through_the_same_backend(
    world: World, service: Service, tmp_path: Path, call_recorder: CallRecorder
) -> None:
    # Given an Azure backend whose Chainloop blob the service served, its account key now cached
    old_key, new_key = new_account_key(), new_account_key()
    server = start_azurite(tmp_path / "azurite", {"inplace": [old_key]})
    try:
        blobs = BlobServiceClient(
            server.account_url("inplace"), credential=AzureNamedKeyCredential("inplace", old_key)
        ).get_container_client("cas")
        blobs.create_container()
        digest = sha256_digest(DATA)
        chainloop_azure.put_blob(blobs, digest, DATA, "release.tgz")
        org = world.org()
        backend = world.azure_backend(
            org, "blob", server.location("inplace", "cas"), {"AccountKey": old_key}, is_default=True
        )
        world.map(digest, org, backend)
        assert service.get(digest, orgs=org).status == 307

        # When the account's key is regenerated and Chainloop writes it into the same secret
        server.restart({"inplace": [new_key]})
        world.set_secret(backend, {"AccountKey": new_key})
        call_recorder.clear()
        response = service.get(digest, orgs=org)

        # Then the same backend serves, with a SAS signed by the new key that works
        assert_served_by(response, 307, "blob", fallback=False)
        assert fetch(response.headers["Location"]) == DATA
        assert call_recorder.count("secretsmanager", "GetSecretValue") == 1
    finally:
        server.stop()
