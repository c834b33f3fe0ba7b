"""AzureBlob backends (spec: Providers, ``AzureBlob``) against Azurite: Chainloop's layout, a
read-only SAS for one blob as the URL, proof by hashing, rotation by key change, fallback across
providers (S3 and a real OCI registry)."""

from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cas_download.data.storage import azure
from cas_download.data.storage.port import SecretFields
from cas_download.domain import AttemptFailed, AttemptReason
from tests.scenarios.conftest import AZURE_ACCOUNT, Service, assert_failed
from tests.support.azure import Azurite, new_account_key, put_blob, start_azurite
from tests.support.entra_standin import EntraStandIn
from tests.support.hygiene import register as register_secret
from tests.support.provider_scenarios import assert_served_by, oci_artifact
from tests.support.registry import Registry
from tests.support.world import BackendRef, World, sha256_digest

DATA = b"an artifact kept in Azure Blob Storage\n" * 300


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return bytes(answer.read())


def sas_of(url: str) -> dict[str, str]:
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    register_secret(query.get("sig"), "sas_signature")  # the scan fails any later log that shows it
    return query


def azure_world(
    world: World,
    azurite: Azurite,
    data: bytes = DATA,
    name: str = "blob",
    *,
    org: str | None = None,
    key_prefix: str = "",
    mapped: bool = True,
    **backend: object,
) -> tuple[str, BackendRef, str]:
    """An AzureBlob backend (``name``, the account's key) of ``org`` (a new one unless given) whose new
    container holds ``data`` as a blob ("release.tgz"), mapped there unless ``mapped`` is False (an
    org's default that merely holds a copy): the org, the backend, the digest."""
    org = org or world.org()
    container = f"cas-{uuid.uuid4().hex[:10]}"
    key = azurite.accounts[AZURE_ACCOUNT][0]
    digest = sha256_digest(data)
    put_blob(azurite, AZURE_ACCOUNT, key, container, f"{key_prefix}{digest}", data, filename="release.tgz")
    ref = world.azure_backend(
        org,
        name,
        azurite.location(AZURE_ACCOUNT, container),
        {"AccountKey": key},
        key_prefix=key_prefix,
        **backend,
    )
    if mapped:
        world.map(digest, org, ref)
    return org, ref, digest


def assert_sas_serves(url: str, data: bytes) -> None:
    """``url`` is a SAS (its signature registered for the log scan) that hands out exactly ``data``."""
    sas_of(url)
    assert fetch(url) == data


def test_a_redirect_is_a_read_only_sas_for_that_one_blob_within_the_ttl(
    world: World, service: Service, azurite: Azurite
) -> None:
    # Given an artifact in a container, mapped to an AzureBlob backend with a shared key
    org, _ref, digest = azure_world(world, azurite, is_default=True)
    service.configure(PRESIGN_TTL_SECONDS=120)
    before = datetime.now(UTC).replace(microsecond=0)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the Location is a SAS of that blob: read only, one blob, expiring within the TTL, with the
    # filename as the Content-Disposition; and it serves the digest's bytes
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "blob"
    location = response.headers["Location"]
    assert unquote(urlsplit(location).path).endswith(f"/{digest}")
    sas = sas_of(location)
    assert (sas["sp"], sas["sr"]) == ("r", "b")
    expiry = datetime.fromisoformat(sas["se"].replace("Z", "+00:00"))
    assert before < expiry <= before + timedelta(seconds=121)
    assert "release.tgz" in sas["rscd"]
    assert fetch(location) == DATA


def test_body_mode_with_a_key_prefix_serves_the_hashed_bytes(
    world: World, service: Service, azurite: Azurite
) -> None:
    org, _ref, digest = azure_world(world, azurite, key_prefix="cas/", is_default=True)

    response = service.get(digest, orgs=org, mode="body")

    assert response.status == 200
    assert response.body == DATA
    assert 'filename="release.tgz"' in response.headers["Content-Disposition"]


def test_a_corrupt_blob_is_never_served_and_the_good_copy_elsewhere_is(
    world: World, service: Service, azurite: Azurite
) -> None:
    # Given the blob overwritten with other bytes, and the org's S3 default holding the right ones
    org, ref, digest = azure_world(world, azurite)
    container = ref.location.rsplit("/", 1)[1]
    put_blob(azurite, AZURE_ACCOUNT, azurite.accounts[AZURE_ACCOUNT][0], container, digest, b"tampered")
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, DATA)

    redirect = service.get(digest, orgs=org)
    body = service.get(digest, orgs=org, mode="body")

    # Then the S3 copy serves, in both modes
    assert redirect.status == 307
    assert redirect.headers["X-Cas-Backend"] == "s3-default"
    assert body.body == DATA


def test_a_corrupt_blob_alone_is_an_integrity_failure(
    world: World, service: Service, azurite: Azurite
) -> None:
    org, ref, digest = azure_world(world, azurite, is_default=True)
    container = ref.location.rsplit("/", 1)[1]
    put_blob(azurite, AZURE_ACCOUNT, azurite.accounts[AZURE_ACCOUNT][0], container, digest, b"tampered")

    response = service.get(digest, orgs=org)

    assert_failed(response, 502, "integrity_failure", [("blob", "digest_mismatch")])


def test_a_missing_blob_is_content_missing(world: World, service: Service, azurite: Azurite) -> None:
    org, ref, _digest = azure_world(world, azurite, is_default=True)
    other = sha256_digest(b"never uploaded")
    world.map(other, org, ref)

    response = service.get(other, orgs=org)

    assert_failed(response, 404, "content_missing", [("blob", "not_found")])


def test_rotation_by_key_change_falls_back_to_the_new_backend_on_the_same_container(
    world: World, service: Service, tmp_path: Path
) -> None:
    # Given an account with two keys, the artifact mapped to a backend using the first and the org's
    # new default using the second, on the same container
    old_key, new_key = new_account_key(), new_account_key()
    server = start_azurite(tmp_path / "azurite", {"rotacct": [old_key, new_key]})
    try:
        org = world.org()
        digest = sha256_digest(DATA)
        put_blob(server, "rotacct", old_key, "cas", digest, DATA, filename="release.tgz")
        location = server.location("rotacct", "cas")
        old = world.azure_backend(org, "old", location, {"AccountKey": old_key})
        world.azure_backend(org, "new", location, {"AccountKey": new_key}, is_default=True)
        world.map(digest, org, old)

        # When the first key is revoked (the account restarted with the second only)
        server.restart({"rotacct": [new_key]})
        response = service.get(digest, orgs=org)

        # Then the new backend serves, as a fallback, with a SAS that works
        assert_served_by(response, 307, "new", fallback=True)
        assert_sas_serves(response.headers["Location"], DATA)
    finally:
        server.stop()


def test_a_revoked_key_alone_is_credentials_invalid(world: World, service: Service, azurite: Azurite) -> None:
    # Given a backend whose secret holds a key the account does not have
    org, ref, digest = azure_world(world, azurite, is_default=True)
    world.set_secret(ref, {"AccountKey": new_account_key()})

    response = service.get(digest, orgs=org)

    assert_failed(response, 502, "backends_unavailable", [("blob", "credentials_invalid")])


def test_fallback_from_a_revoked_azure_mapping_to_an_s3_default_and_back(
    world: World, service: Service, azurite: Azurite
) -> None:
    # Given an Azure mapping whose key was replaced, and the org's S3 default with the same bytes
    org, ref, digest = azure_world(world, azurite)
    world.set_secret(ref, {"AccountKey": new_account_key()})
    s3 = world.backend(org, "s3-default", is_default=True)
    world.put(s3, DATA)
    assert service.get(digest, orgs=org).headers["X-Cas-Backend"] == "s3-default"

    # And the reverse: a revoked S3 mapping, served by an Azure default
    org2 = world.org()
    s3_old = world.backend(org2, "s3-old")
    digest2 = world.put(s3_old, DATA + b"2")
    world.map(digest2, org2, s3_old)
    world.revoke(s3_old)
    azure_world(world, azurite, DATA + b"2", "blob-default", org=org2, mapped=False, is_default=True)

    response = service.get(digest2, orgs=org2, mode="body")

    assert_served_by(response, 200, "blob-default", fallback=True)
    assert response.body == DATA + b"2"


def test_a_service_principal_whose_client_secret_is_refused_is_credentials_invalid(
    world: World, service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an authority (AZURE_AUTHORITY_HOST) that refuses a deleted client secret, and a backend
    # whose service principal holds that secret (Azurite takes tokens only over HTTPS: the storage
    # endpoint is never reached, the token request is refused first)
    entra = EntraStandIn(tmp_path / "entra").start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(entra.ca_file))
        service.configure(AZURE_AUTHORITY_HOST=entra.authority)
        org = world.org()
        deleted = f"deleted-{uuid.uuid4().hex}"
        secret = {"TenantID": "tenant-x", "ClientID": "client-x", "ClientSecret": deleted}
        ref = world.azure_backend(org, "sp", "https://127.0.0.1:9/casacct/cas", secret, is_default=True)
        digest = sha256_digest(DATA)
        world.map(digest, org, ref)

        # When the caller asks for it
        response = service.get(digest, orgs=org, mode="body")

        # Then the refused token request makes the attempt credentials_invalid
        assert_failed(response, 502, "backends_unavailable", [("sp", "credentials_invalid")])
        assert any(r.startswith("POST /tenant-x/") for r in entra.requests)
    finally:
        entra.stop()


def test_a_service_principal_on_a_plain_http_endpoint_is_refused_not_a_crash(
    world: World, service: Service, azurite: Azurite
) -> None:
    # Given a service principal on Azurite's plain HTTP endpoint (tokens need HTTPS)
    org, ref, digest = azure_world(world, azurite, is_default=True)
    world.set_secret(ref, {"TenantID": "t", "ClientID": "c", "ClientSecret": f"s-{uuid.uuid4().hex}"})

    response = service.get(digest, orgs=org)

    # Then the attempt fails with a reason, and the answer is the spec's error
    assert_failed(response, 502, "backends_unavailable", [("blob", "unreachable")])


# ---------------------------------------------------------------------------------------------------
# the rules, one table each


@pytest.mark.parametrize(
    ("location", "account_url", "container"),
    [
        ("acct/cas", "https://acct.blob.core.windows.net", "cas"),
        ("blob.core.usgovcloudapi.net/acct/cas", "https://acct.blob.core.usgovcloudapi.net", "cas"),
        ("http://127.0.0.1:10000/devstoreaccount1/cas-1", "http://127.0.0.1:10000/devstoreaccount1", "cas-1"),
        ("https://storage.example:8443/acct/cas", "https://storage.example:8443/acct", "cas"),
    ],
)
def test_a_location_names_the_account_endpoint_and_the_container(
    location: str, account_url: str, container: str
) -> None:
    parsed = azure.parse_location(location)
    assert (parsed.account_url, parsed.container) == (account_url, container)


@pytest.mark.parametrize("location", ["acct", "acct/", "acct/Cas", "a/b/c/d", "ftp://h/a/c", "acct/ca"])
def test_a_bad_location_is_refused(location: str) -> None:
    with pytest.raises(AttemptFailed):
        azure.parse_location(location)


def test_a_service_principal_comes_first_and_half_of_one_is_secret_unavailable() -> None:
    both = azure.credentials_from_secret(
        SecretFields({"tenantId": "t", "CLIENTID": "c", "client_secret": "s", "AccountKey": "k"})
    )
    assert both.is_service_principal
    assert azure.credentials_from_secret(SecretFields({"accountkey": "k"})).account_key == "k"
    with pytest.raises(AttemptFailed) as refused:
        azure.credentials_from_secret(SecretFields({"TenantID": "t", "ClientID": "c"}))
    assert refused.value.reason is AttemptReason.SECRET_UNAVAILABLE
    assert "s" not in repr(both).replace("AzureCredentials", "").replace("redacted", "")


def test_fallback_between_azure_and_an_oci_registry_both_ways(
    world: World, service: Service, azurite: Azurite, registry: Registry
) -> None:
    # Given an artifact mapped to a registry backend whose password was changed, and the org's Azure
    # default holding the same bytes
    org, _oci, user, digest = oci_artifact(world, registry, DATA)
    registry.set_password(user, "changed-" + user.password)
    azure_world(world, azurite, DATA, "blob-default", org=org, mapped=False, is_default=True)

    # When the caller asks for a redirect, Then the Azure default serves a SAS (OCI -> Azure)
    to_azure = service.get(digest, orgs=org)
    assert_served_by(to_azure, 307, "blob-default", fallback=True)
    assert_sas_serves(to_azure.headers["Location"], DATA)

    # Given the reverse: an artifact mapped to an Azure backend whose key was replaced, and the org's
    # registry default holding it
    data2 = DATA + uuid.uuid4().bytes
    org2, azure_ref, digest2 = azure_world(world, azurite, data2, "blob-old")
    world.set_secret(azure_ref, {"AccountKey": new_account_key()})
    oci_artifact(world, registry, data2, "registry-default", org=org2, mapped=False, is_default=True)

    # When the caller asks for the body, Then the registry serves it (Azure -> OCI)
    to_oci = service.get(digest2, orgs=org2, mode="body")
    assert_served_by(to_oci, 200, "registry-default", fallback=True)
    assert to_oci.body == data2
