"""``cas-admin`` with an OCI registry and an Azure container: add a backend with its login or key,
put an artifact in Chainloop's layout, ask where it is, rotate; the API serves what cas-admin wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from cas_admin.cli import main as admin_main
from tests.scenarios.conftest import Service
from tests.support.azure import new_account_key, put_blob, start_azurite
from tests.support.moto_servers import AwsServers
from tests.support.registry import Registry
from tests.support.world import World

DATA = b"pushed by cas-admin\n" * 200


def admin(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    tables = ["--backends-table", world.tables.backends, "--mappings-table", world.tables.mappings]
    code = admin_main([*tables, *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out, out.err


def test_add_put_where_and_rotate_with_a_registry(
    world: World, service: Service, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org, a registry login, and a file
    org = world.org()
    user = registry.new_user()
    location = registry.location()
    artifact = tmp_path / "notes.txt"
    artifact.write_bytes(DATA)
    # "--password=..." in one word: a generated password may start with "-"
    login = ["--username", user.name, f"--password={user.password}"]

    # When cas-admin registers the registry as the org's backend and puts the file through it
    code, out, err = admin(world, capsys, "backend", "add", "reg", "--org", org, "--provider", "OCI",
                           "--location", location, *login, "--json")  # fmt: skip
    assert code == 0, err
    row = json.loads(out)
    assert (row["provider"], row["is_default"], row["validation_status"]) == ("OCI", True, "OK")
    code, out, err = admin(world, capsys, "artifact", "put", str(artifact), "--org", org, "--json")
    assert code == 0, err
    digest = json.loads(out)["digest"]

    # Then the API serves the bytes through it with the file's name, and where says so
    served = service.get(digest, orgs=org, mode="body")
    assert served.status == 200
    assert served.body == DATA
    assert served.headers["X-Cas-Backend"] == "reg"
    assert 'filename="notes.txt"' in served.headers["Content-Disposition"]
    code, out, _ = admin(world, capsys, "artifact", "where", digest, "--json")
    assert code == 0
    assert json.loads(out)["serves"]["name"] == "reg"

    # When the registry password changes and cas-admin rotates to the new login
    registry.set_password(user, "rotated-" + user.password)
    code, out, err = admin(world, capsys, "backend", "rotate", "reg", "--org", org, "--new-name", "reg-2",
                           "--username", user.name, f"--password={user.password}", "--json")  # fmt: skip
    assert code == 0, err

    # Then the API serves the artifact mapped to the old backend through the new one
    service.configure()
    rotated = service.get(digest, orgs=org, mode="body")
    assert rotated.status == 200
    assert rotated.body == DATA
    assert rotated.headers["X-Cas-Backend"] == "reg-2"
    assert rotated.headers["X-Cas-Fallback"] == "true"


def backend_rows_of(aws_servers: AwsServers, world: World, org: str) -> list[dict[str, Any]]:
    """Every row of the backends table that belongs to ``org`` (read straight from the table)."""
    pages = (
        aws_servers.cached_client("control", "dynamodb")
        .get_paginator("scan")
        .paginate(TableName=world.tables.backends, ConsistentRead=True)
    )
    return [item for page in pages for item in page["Items"] if item.get("org_id", {}).get("S") == org]


def secret_names_with(aws_servers: AwsServers, fragment: str) -> list[str]:
    """The names of every secret in Secrets Manager that contain ``fragment``."""
    pages = aws_servers.cached_client("control", "secretsmanager").get_paginator("list_secrets").paginate()
    return [secret["Name"] for page in pages for secret in page["SecretList"] if fragment in secret["Name"]]


def test_a_registry_login_that_cannot_pull_is_refused_and_nothing_written(
    world: World, registry: Registry, aws_servers: AwsServers, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org and a registry login with the wrong password
    org = world.org()
    user = registry.new_user()
    location = registry.location()

    # When cas-admin is asked to add it as the org's backend
    code, out, err = admin(world, capsys, "backend", "add", "reg", "--org", org, "--provider", "OCI",
                           "--location", location, "--username", user.name,
                           "--password=not-" + user.password)  # fmt: skip

    # Then it is refused, saying why and that nothing was written
    assert code != 0
    assert out == ""
    assert f"the credentials cannot read {location}: credentials_invalid; nothing was written" in err
    # and nothing was: no backend row of the org, no secret for it
    assert backend_rows_of(aws_servers, world, org) == []
    assert secret_names_with(aws_servers, org) == []
    code, _, err = admin(world, capsys, "backend", "list", "--org", org)
    assert code != 0  # the org has no backend


def test_add_put_where_and_rotate_with_an_azure_container(
    world: World, service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an Azurite account with two keys and a container, an org, and a file
    first, second = new_account_key(), new_account_key()
    server = start_azurite(tmp_path / "azurite", {"adminacct": [first, second]})
    try:
        put_blob(server, "adminacct", first, "artifacts", "README", b"the control plane's container")
        org = world.org()
        location = server.location("adminacct", "artifacts")
        artifact = tmp_path / "notes.txt"
        artifact.write_bytes(DATA)

        # When cas-admin registers the container with the first key and puts the file through it
        code, out, err = admin(world, capsys, "backend", "add", "blob", "--org", org, "--provider", "AzureBlob",
                               "--location", location, f"--account-key={first}", "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["validation_status"] == "OK"
        code, out, err = admin(world, capsys, "artifact", "put", str(artifact), "--org", org, "--json")
        assert code == 0, err
        digest = json.loads(out)["digest"]

        # Then the API serves it with the file's name, and where names the backend
        served = service.get(digest, orgs=org, mode="body")
        assert (served.status, served.body) == (200, DATA)
        assert 'filename="notes.txt"' in served.headers["Content-Disposition"]
        # and the blob is what Chainloop's Describe accepts (pkg/blobmanager/azureblob/backend.go)
        blob = BlobServiceClient(
            server.account_url("adminacct"), credential=AzureNamedKeyCredential("adminacct", first)
        ).get_blob_client("artifacts", digest)
        assert blob.get_blob_properties().metadata == {"Author": "chainloop.dev", "Filename": "notes.txt"}
        code, out, _ = admin(world, capsys, "artifact", "where", digest, "--json")
        assert json.loads(out)["serves"]["name"] == "blob"

        # When cas-admin rotates to the second key and the first is revoked
        code, out, err = admin(world, capsys, "backend", "rotate", "blob", "--org", org, "--new-name", "blob-2",
                               f"--account-key={second}", "--json")  # fmt: skip
        assert code == 0, err
        server.restart({"adminacct": [second]})

        # Then the artifact mapped to the old backend is served through the new one
        service.configure()
        rotated = service.get(digest, orgs=org, mode="body")
        assert (rotated.status, rotated.body) == (200, DATA)
        assert rotated.headers["X-Cas-Backend"] == "blob-2"
        assert rotated.headers["X-Cas-Fallback"] == "true"
    finally:
        server.stop()
