"""Registry faults: a scripted, misbehaving registry (tests/support/hostile_registry.py) is the mapped
OCI backend. Each fault gets one answer: with the org's S3 default holding the bytes, that default
serves them (``X-Cas-Fallback: true``); alone, the spec's error with the fault's one reason.

The registry is treated as untrusted input: its answers are bounded in size and time, its redirects
are followed only to http(s) and never to link-local addresses (no connection is even attempted),
and bytes that fail the proof never reach a response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from tests.hardening.figures import fault_covered
from tests.scenarios.conftest import Service
from tests.scenarios.test_deadline import download_log_line, service_log  # noqa: F401 - a fixture
from tests.support.hostile_registry import HostileRegistry
from tests.support.provider_scenarios import assert_presigned_url_serves, assert_served_by
from tests.support.world import World

DATA = b"artifact behind a hostile registry\n" * 400  # 14 KB
TIMEOUT = 1.0  # per call: tight enough for the stalls, loose enough for a busy machine
FAST = {"S3_CONNECT_TIMEOUT_SECONDS": TIMEOUT, "S3_READ_TIMEOUT_SECONDS": TIMEOUT}

# fault -> (the mode in which it bites, the attempt reason the spec gives it)
OCI_FAULTS: dict[str, tuple[str, str]] = {
    "manifest_500": ("body", "unreachable"),
    "manifest_503": ("body", "unreachable"),
    "reset": ("body", "unreachable"),
    "enormous_headers": ("body", "unreachable"),
    "huge_manifest": ("body", "unreachable"),
    "token_down": ("body", "unreachable"),
    "token_garbage": ("body", "unreachable"),
    "token_slow": ("body", "timeout"),
    "token_refused": ("body", "credentials_invalid"),
    "challenge_malformed": ("body", "unreachable"),
    "challenge_other_scheme": ("body", "unreachable"),
    "body_stall": ("body", "timeout"),
    "body_short": ("body", "unreachable"),
    "redirect_loop": ("body", "unreachable"),
    "storage_403": ("body", "access_denied"),
    "storage_other_bytes": ("body", "digest_mismatch"),
    "location_file": ("body", "unreachable"),
    "location_link_local": ("body", "unreachable"),
    "location_link_local_v6": ("redirect", "unreachable"),
}


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry(DATA, stall_seconds=TIMEOUT * 4).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hosts_connected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host the registry client opened a connection to."""
    hosts: list[str] = []
    original = urllib3.PoolManager.connection_from_host

    def recording(self: Any, host: str | None, *args: Any, **kwargs: Any) -> Any:
        hosts.append(str(host))
        return original(self, host, *args, **kwargs)

    monkeypatch.setattr(urllib3.PoolManager, "connection_from_host", recording)
    return hosts


def mapped_to_hostile(world: World, hostile: HostileRegistry, fault: str) -> str:
    hostile.fault = fault
    org = world.org()
    backend = world.oci_backend(
        org, "hostile", hostile.location(), None, secret={"Username": "u", "Password": "p"}
    )
    world.map(hostile.digest, org, backend)
    return org


@pytest.mark.parametrize("fault", sorted(OCI_FAULTS))
def test_a_registry_fault_is_its_one_reason_when_no_other_copy_exists(
    world: World, service: Service, hostile: HostileRegistry, hosts_connected: list[str], fault: str
) -> None:
    # Given the artifact mapped only to a registry that misbehaves this way
    mode, reason = OCI_FAULTS[fault]
    org = mapped_to_hostile(world, hostile, fault)
    service.configure(**FAST)

    # When the caller asks for it
    response = service.get(hostile.digest, orgs=org, mode=mode)

    # Then the spec's error names the fault's reason, and no bytes are in the answer
    assert response.status == 502, response.raw
    assert response.attempts == [("hostile", reason)]
    assert "isBase64Encoded" not in response.raw or response.raw["isBase64Encoded"] is False
    # and a link-local target is never connected to
    assert not [h for h in hosts_connected if h.startswith(("169.254.", "fd00:ec2", "[fd00:ec2"))]
    fault_covered(f"oci:{fault}")


@pytest.mark.parametrize("fault", sorted(OCI_FAULTS))
def test_a_registry_fault_falls_back_to_the_orgs_s3_default_with_the_bytes(
    world: World,
    service: Service,
    hostile: HostileRegistry,
    fault: str,
    service_log: pytest.CaptureFixture[str],  # noqa: F811 - the fixture imported above
) -> None:
    # Given the same fault, and the org's S3 default holding the same bytes
    mode, reason = OCI_FAULTS[fault]
    org = mapped_to_hostile(world, hostile, fault)
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, DATA)
    service.configure(**FAST)
    service_log.readouterr()

    # When the caller asks for it
    response = service.get(hostile.digest, orgs=org, mode=mode)

    # Then the registry's attempt failed with the fault's one reason, and the default serves the right
    # bytes, as a fallback (in redirect mode: the bytes its URL serves)
    attempts = download_log_line(service_log.readouterr().out)["attempts"]
    assert [(a["backend_name"], a["reason"]) for a in attempts] == [("hostile", reason)]
    assert_served_by(response, 307 if mode == "redirect" else 200, "s3-default", fallback=True)
    if mode == "body":
        assert response.body == DATA
    else:
        assert_presigned_url_serves(world, response.headers["Location"], DATA)


def test_an_honest_run_of_the_scripted_registry_serves_the_bytes(
    world: World, service: Service, hostile: HostileRegistry
) -> None:
    # The control: without a fault, the script is a registry the service can use (Bearer flow included)
    org = mapped_to_hostile(world, hostile, "none")
    response = service.get(hostile.digest, orgs=org, mode="body")
    assert response.status == 200
    assert response.body == DATA
    assert "/token" in hostile.requests
