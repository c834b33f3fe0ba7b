"""The verifier against the other providers (spec: "Verifying ahead of requests"): a real CNCF
distribution registry whose blobs live in S3, Azurite, and scripted faults in front of each. The
same port, proofs and records as a request, whatever the provider."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from cas_admin.chainloop_layout.oci import push_artifact
from tests.scenarios.conftest import AZURE_ACCOUNT
from tests.scenarios.test_verifier import emitted, log_lines
from tests.support.azure import Azurite, put_blob
from tests.support.azure_faults import AzureFault, AzureFaultProxy
from tests.support.events import FakeLambdaContext
from tests.support.hostile_registry import HostileRegistry
from tests.support.registry import Registry
from tests.support.stream_events import mapping_image, stream_event
from tests.support.verifier_stack import Stack, hold_record_writes_until_both_hashed
from tests.support.world import BackendRef, World, sha256_digest

Mapped = tuple[str, BackendRef, str]  # org, backend, digest


def unique_data() -> bytes:
    # a registry stores a blob once for every repository: each test pushes bytes of its own
    return b"an artifact proven ahead of requests\n" * 300 + uuid.uuid4().bytes


def registry_object(world: World, registry: Registry, data: bytes) -> Mapped:
    org = world.org()
    user = registry.new_user()
    location = registry.location()
    backend = world.oci_backend(org, "registry", location, user, is_default=True)
    digest = push_artifact(location, data, "release.tgz", user.name, user.password).digest  # type: ignore[arg-type]
    world.map(digest, org, backend)
    return org, backend, digest


def azure_object(world: World, azurite: Azurite, data: bytes) -> Mapped:
    """A blob of a new container, mapped to the org's default AzureBlob backend."""
    org = world.org()
    container = f"cas-{uuid.uuid4().hex[:10]}"
    key = azurite.accounts[AZURE_ACCOUNT][0]
    digest = sha256_digest(data)
    put_blob(azurite, AZURE_ACCOUNT, key, container, digest, data, filename="release.tgz")
    location = azurite.location(AZURE_ACCOUNT, container)
    backend = world.azure_backend(org, "blob", location, {"AccountKey": key}, is_default=True)
    world.map(digest, org, backend)
    return org, backend, digest


@pytest.fixture
def stack(world: World, verifications_table: str, lambda_context: FakeLambdaContext) -> Stack:
    return Stack(world, verifications_table, lambda_context)


@pytest.fixture(params=["registry", "azure"])
def provider_object(request: pytest.FixtureRequest, world: World) -> Callable[[bytes], Mapped]:
    """Stores bytes as Chainloop would in a hosted registry (blobs in S3) or in Azurite, mapped."""
    if request.param == "registry":
        registry: Registry = request.getfixturevalue("hosted_registry")
        return lambda data: registry_object(world, registry, data)
    azurite: Azurite = request.getfixturevalue("azurite")
    return lambda data: azure_object(world, azurite, data)


def request_proof(caplog: pytest.LogCaptureFixture) -> list[Any]:
    """The verification method of each download request logged."""
    return [line["verification"] for line in log_lines(caplog, "download request")]


def test_a_mapping_proven_ahead_is_served_by_its_record_on_the_first_request(
    stack: Stack, provider_object: Callable[[bytes], Mapped], caplog: pytest.LogCaptureFixture
) -> None:
    # Given an object its provider cannot prove, and its new mapping on the stream
    data = unique_data()
    org, backend, digest = provider_object(data)

    # When the verifier runs, then the first request comes
    assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}
    response = stack.get(digest, org)

    # Then the verifier hashed it, and the request was proven by the record without hashing
    assert [line["outcome"] for line in log_lines(caplog, "mapping verified")] == ["proven"]
    assert response.status == 307
    assert request_proof(caplog) == ["verification_record"]


def test_the_same_mapping_twice_is_hashed_once(
    stack: Stack, provider_object: Callable[[bytes], Mapped], caplog: pytest.LogCaptureFixture
) -> None:
    # Given an object and its mapping, seen twice by the verifier
    org, backend, digest = provider_object(unique_data())
    image = mapping_image(digest, org, backend.id)

    # When the verifier runs on both batches
    stack.verify(stream_event(image))
    stack.verify(stream_event(image))

    # Then the second time it was already proven (a describe, no read)
    assert [line["outcome"] for line in log_lines(caplog, "mapping verified")] == ["proven", "already_proven"]


def test_a_verifier_run_while_a_request_hashes_the_object_leaves_one_true_record(
    world: World,
    stack: Stack,
    provider_object: Callable[[bytes], Mapped],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an object not proven yet, and the order driven: neither the request nor the verifier may
    # write its record before both have hashed the bytes
    data = unique_data()
    org, backend, digest = provider_object(data)
    stack.configure_download()
    stack.configure_verifier()
    hold_record_writes_until_both_hashed(monkeypatch)

    # When a request and the verifier prove it at the same time
    answers = stack.request_and_verify_at_once(digest, org, backend.id)

    # Then both succeed, and the object has one record, naming the digest and the object's size
    assert sorted(answers, key=str) == sorted([307, {"batchItemFailures": []}], key=str)
    [record] = stack.records_naming(digest)
    assert record["digest"] == {"S": digest}
    assert record["size"] == {"N": str(len(data))}


# ---------------------------------------------------------------------------------------------------
# faults: a scripted registry; other bytes under a name in Azurite


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry(b"bytes behind a scripted registry\n" * 400).start()
    try:
        yield server
    finally:
        server.stop()


def hostile_object(world: World, hostile: HostileRegistry) -> Mapped:
    org = world.org()
    backend = world.oci_backend(org, "hostile", hostile.location(), None, is_default=True)
    world.map(hostile.digest, org, backend)
    return org, backend, hostile.digest


def test_a_registry_storage_fault_mid_hash_is_retried_and_never_recorded(
    world: World, stack: Stack, hostile: HostileRegistry
) -> None:
    # Given a mapping whose registry storage (with ETags: records can be written) closes the
    # connection half way through the blob
    hostile.storage_etag = True
    org, backend, digest = hostile_object(world, hostile)
    hostile.fault = "body_short"

    # When the verifier runs on its (only) record
    with pytest.raises(BatchProcessingError):
        stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # Then the stream retries it, and nothing was recorded, neither a proof nor a failed one
    assert stack.records_naming(digest) == []
    # and once the storage is healthy, it is proven: one record, naming the digest itself
    hostile.fault = "none"
    assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}
    [record] = stack.records_naming(digest)
    assert record["digest"] == {"S": digest}


def test_an_azure_fault_mid_hash_is_retried_and_never_recorded(
    world: World, stack: Stack, azurite: Azurite
) -> None:
    # Given a mapping whose storage account closes the connection half way through the blob (a fault
    # endpoint in front of Azurite, the blob written as Chainloop writes it)
    proxy = AzureFaultProxy(azurite.endpoint, stall_seconds=1.0)
    try:
        container = f"cas-{uuid.uuid4().hex[:10]}"
        key = azurite.accounts[AZURE_ACCOUNT][0]
        data = unique_data()
        digest = sha256_digest(data)
        put_blob(azurite, AZURE_ACCOUNT, key, container, digest, data, filename="release.tgz")
        org = world.org()
        location = proxy.location(AZURE_ACCOUNT, container)
        backend = world.azure_backend(org, "faulty", location, {"AccountKey": key}, is_default=True)
        world.map(digest, org, backend)
        proxy.fault = AzureFault.BODY_SHORT

        # When the verifier runs on its (only) record
        with pytest.raises(BatchProcessingError):
            stack.verify(stream_event(mapping_image(digest, org, backend.id)))

        # Then the fault reached the download, the stream retries the record, and nothing was
        # recorded, neither a proof nor a failed one
        assert any(r.startswith("GET ") for r in proxy.requests)
        assert stack.records_naming(digest) == []
        # and once the account is healthy, it is proven: one record, naming the digest itself
        proxy.fault = AzureFault.NONE
        assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}
        [record] = stack.records_naming(digest)
        assert record["digest"] == {"S": digest}
    finally:
        proxy.stop()


@pytest.mark.parametrize("where", ["registry", "azure"])
def test_bytes_that_fail_the_proof_are_an_integrity_failure_and_never_proven(
    world: World,
    stack: Stack,
    hostile: HostileRegistry,
    azurite: Azurite,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    # Given a mapping whose storage holds other bytes: a registry's storage answering other bytes of
    # the same length, a blob written under another digest's name
    if where == "registry":
        org, backend, digest = hostile_object(world, hostile)
        hostile.fault = "storage_other_bytes"
    else:
        org, backend, _ = azure_object(world, azurite, unique_data())
        digest = sha256_digest(b"the bytes the mapping names")
        world.map(digest, org, backend)
        container = backend.location.rsplit("/", 1)[1]
        key = azurite.accounts[AZURE_ACCOUNT][0]
        put_blob(azurite, AZURE_ACCOUNT, key, container, digest, b"other bytes under that name")
    capsys.readouterr()

    # When the verifier runs on its record
    response = stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # Then it is done with it (no retry changes the bytes), counted and logged as an integrity failure
    assert response == {"batchItemFailures": []}
    assert emitted(capsys.readouterr().out, "IntegrityFailures") == 1
    assert len(log_lines(caplog, "integrity failure: stored bytes do not hash to the digest")) == 1
    assert log_lines(caplog, "mapping verified") == []
