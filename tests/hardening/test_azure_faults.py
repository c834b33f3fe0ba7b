"""Azure faults: the mapped AzureBlob backend reaches Azurite through a fault endpoint
(tests/support/azure_faults.py) that forwards to the real emulator until told to misbehave; the
token faults use a Microsoft Entra ID stand-in (or its absence). Each fault gets one answer: with the
org's S3 default holding the bytes, that default serves them (``X-Cas-Fallback: true``); alone, the
spec's error with the fault's one reason. Bytes that fail the proof never reach a response.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.figures import fault_covered
from tests.scenarios.conftest import AZURE_ACCOUNT, Service
from tests.support.azure import Azurite, put_blob
from tests.support.azure_faults import AzureFault, AzureFaultProxy
from tests.support.entra_standin import EntraStandIn
from tests.support.world import World, sha256_digest

DATA = b"artifact behind a misbehaving storage account\n" * 300  # 14 KB
DIGEST = sha256_digest(DATA)
TIMEOUT = 0.5
FAST = {"S3_CONNECT_TIMEOUT_SECONDS": TIMEOUT, "S3_READ_TIMEOUT_SECONDS": TIMEOUT}

# fault -> the attempt reason the spec gives it (all bite in body mode: properties, then the download)
AZURE_FAULTS: dict[AzureFault, str] = {
    AzureFault.PROPERTIES_500: "unreachable",
    AzureFault.PROPERTIES_503: "unreachable",
    AzureFault.RESET: "unreachable",
    AzureFault.STALL_BEFORE_HEADERS: "timeout",
    AzureFault.BODY_STALL: "timeout",
    AzureFault.BODY_SHORT: "unreachable",
    AzureFault.BODY_RESET: "unreachable",
    AzureFault.OTHER_BYTES: "digest_mismatch",
    # our clock, not the key (Azure's Date says so): refused, never a reason to mark the backend Invalid
    AzureFault.CLOCK_SKEW: "access_denied",
    AzureFault.AUTHORIZATION_FAILURE: "access_denied",
    AzureFault.PERMISSION_MISMATCH: "access_denied",
    AzureFault.ENORMOUS_HEADERS: "unreachable",
}
# faults of the token request (a service principal): no storage request is ever made
TOKEN_FAULTS = {"token_down": "unreachable", "token_refused": "credentials_invalid"}


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[AzureFaultProxy]:
    server = AzureFaultProxy(azurite.endpoint, stall_seconds=TIMEOUT * 4)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EntraStandIn]:
    server = EntraStandIn(tmp_path / "entra").start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    try:
        yield server
    finally:
        server.stop()


def mapped_to_faulty(world: World, azurite: Azurite, proxy: AzureFaultProxy, fault: AzureFault) -> str:
    container = f"faults-{uuid.uuid4().hex[:10]}"
    key = azurite.accounts[AZURE_ACCOUNT][0]
    put_blob(azurite, AZURE_ACCOUNT, key, container, DIGEST, DATA, filename="artifact.bin")
    org = world.org()
    backend = world.azure_backend(
        org, "faulty", proxy.location(AZURE_ACCOUNT, container), {"AccountKey": key}
    )
    world.map(DIGEST, org, backend)
    proxy.fault = fault
    return org


def mapped_to_principal(world: World, token_fault: str, service: Service, entra: EntraStandIn) -> str:
    if token_fault == "token_down":
        with socket.socket() as probe:  # a port nobody listens on: the authority is down
            probe.bind(("127.0.0.1", 0))
            authority = f"https://127.0.0.1:{probe.getsockname()[1]}"
    else:
        authority = entra.authority  # knows no client secret: every token request is invalid_client
    service.configure(AZURE_AUTHORITY_HOST=authority, **FAST)
    org = world.org()
    secret = {"TenantID": "tenant-f", "ClientID": "client-f", "ClientSecret": f"s-{uuid.uuid4().hex}"}
    backend = world.azure_backend(org, "faulty", f"https://127.0.0.1:9/{AZURE_ACCOUNT}/cas", secret)
    world.map(DIGEST, org, backend)
    return org


@pytest.mark.parametrize("fault", sorted(AZURE_FAULTS))
def test_an_azure_fault_is_its_one_reason_when_no_other_copy_exists(
    world: World, service: Service, azurite: Azurite, proxy: AzureFaultProxy, fault: AzureFault
) -> None:
    # Given the artifact mapped only to a backend whose storage misbehaves this way
    org = mapped_to_faulty(world, azurite, proxy, fault)
    service.configure(**FAST)

    # When the caller asks for the body
    response = service.get(DIGEST, orgs=org, mode="body")

    # Then the spec's error names the fault's one reason, and no bytes are in the answer
    assert response.status == 502, response.raw
    assert response.attempts == [("faulty", AZURE_FAULTS[fault])]
    assert response.raw.get("isBase64Encoded", False) is False
    fault_covered(f"azure:{fault}")


@pytest.mark.parametrize("fault", sorted(AZURE_FAULTS))
def test_an_azure_fault_falls_back_to_the_orgs_s3_default_with_the_bytes(
    world: World, service: Service, azurite: Azurite, proxy: AzureFaultProxy, fault: AzureFault
) -> None:
    # Given the same fault, and the org's S3 default holding the same bytes
    org = mapped_to_faulty(world, azurite, proxy, fault)
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, DATA)
    service.configure(**FAST)

    # When the caller asks for the body
    response = service.get(DIGEST, orgs=org, mode="body")

    # Then the default serves the right bytes, as a fallback
    assert response.status == 200, response.raw
    assert response.body == DATA
    assert (response.headers["X-Cas-Backend"], response.headers["X-Cas-Fallback"]) == ("s3-default", "true")


@pytest.mark.parametrize("token_fault", sorted(TOKEN_FAULTS))
def test_a_token_fault_is_its_one_reason_when_no_other_copy_exists(
    world: World, service: Service, entra: EntraStandIn, token_fault: str
) -> None:
    org = mapped_to_principal(world, token_fault, service, entra)
    response = service.get(DIGEST, orgs=org, mode="body")
    assert response.status == 502, response.raw
    assert response.attempts == [("faulty", TOKEN_FAULTS[token_fault])]
    fault_covered(f"azure:{token_fault}")


@pytest.mark.parametrize("token_fault", sorted(TOKEN_FAULTS))
def test_a_token_fault_falls_back_to_the_orgs_s3_default(
    world: World, service: Service, entra: EntraStandIn, token_fault: str
) -> None:
    org = mapped_to_principal(world, token_fault, service, entra)
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, DATA)
    response = service.get(DIGEST, orgs=org, mode="body")
    assert response.status == 200, response.raw
    assert response.body == DATA
    assert (response.headers["X-Cas-Backend"], response.headers["X-Cas-Fallback"]) == ("s3-default", "true")


def test_an_honest_run_through_the_fault_endpoint_serves_the_bytes(
    world: World, service: Service, azurite: Azurite, proxy: AzureFaultProxy
) -> None:
    # The control: without a fault, the endpoint is Azurite, and the service can use it
    org = mapped_to_faulty(world, azurite, proxy, AzureFault.NONE)
    response = service.get(DIGEST, orgs=org, mode="body")
    assert response.status == 200
    assert response.body == DATA
    assert any(request.startswith(f"GET /{AZURE_ACCOUNT}/") for request in proxy.requests)


def test_a_clock_skewed_answer_leaves_the_backend_ok(
    world: World, service: Service, azurite: Azurite, proxy: AzureFaultProxy
) -> None:
    # Given a backend whose storage refuses us for our clock
    org = mapped_to_faulty(world, azurite, proxy, AzureFault.CLOCK_SKEW)
    service.configure(**FAST)

    # When the caller asks for it
    response = service.get(DIGEST, orgs=org, mode="body")

    # Then the skewed answer reached the service and was read as refused access (our clock), not as
    # rejected credentials nor as an absence
    assert any(request.startswith(f"GET /{AZURE_ACCOUNT}/") for request in proxy.requests), proxy.requests
    assert response.status == 502
    assert response.error_code == "backends_unavailable"
    assert response.attempts == [("faulty", "access_denied")]
    # and the backend is not marked Invalid (its key is fine)
    rows = world.dynamodb.scan(
        TableName=world.tables.backends,
        FilterExpression="org_id = :org",
        ExpressionAttributeValues={":org": {"S": org}},
    )["Items"]
    assert [row.get("validation_status", {}).get("S", "OK") for row in rows] == ["OK"]
