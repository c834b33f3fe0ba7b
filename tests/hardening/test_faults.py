"""Fault matrix: storage, secrets and table faults, each with its status and reasons.

Storage faults come from a fault-injecting endpoint of the tests' own (tests/support/faults.py): the
mapped backend's ``location`` is ``http://127.0.0.1:<port>/<bucket>`` on it, while the org default is a
healthy backend on the moto storage server. Secrets Manager and DynamoDB faults come from the same
endpoint standing in front of the control moto server: it breaks one secret or one operation and
forwards everything else. The app is pointed at it through botocore's service-specific endpoint
variables, read when the app creates its clients: ``AWS_ENDPOINT_URL_DYNAMODB`` and
``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (named from the service id "Secrets Manager"; a variable spelt
``..._SECRETSMANAGER`` is ignored).

The app's S3 client makes one attempt per call (no SDK retries: the next backend is the retry), so a
5xx or a broken connection is that backend's ``unreachable``, a read that stops is its ``timeout``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.hardening.conftest import ClientSettingsRecorder, RecordList, served_bytes
from tests.hardening.figures import fault_covered
from tests.scenarios.conftest import Service, presigned_key_id
from tests.support.calls import CallRecorder
from tests.support.faults import DYNAMODB_THROTTLING_CODES, FaultServer, S3Fault, SecretFault, closed_port_url
from tests.support.world import BackendRef, World, sha256_digest

DATA = b"release-4.2.0.tar.gz contents\n" * 400  # 12 KB: several reads, so "mid-body" is mid-body
DIGEST = sha256_digest(DATA)
READ_TIMEOUT = 0.5
FAST_S3 = {"S3_CONNECT_TIMEOUT_SECONDS": READ_TIMEOUT, "S3_READ_TIMEOUT_SECONDS": READ_TIMEOUT}
UNRESOLVABLE = "unresolvable_endpoint"
SECRETS_ENDPOINT_VAR = "AWS_ENDPOINT_URL_SECRETS_MANAGER"
DYNAMODB_ENDPOINT_VAR = "AWS_ENDPOINT_URL_DYNAMODB"

# fault -> the attempt reason the spec gives it
S3_FAULT_REASONS = {
    S3Fault.ERROR_500: "unreachable",
    S3Fault.ERROR_503: "unreachable",
    S3Fault.RESET: "unreachable",
    S3Fault.STALL_MID_BODY: "timeout",
    S3Fault.SHORT_BODY: "unreachable",
    S3Fault.RESET_MID_BODY: "unreachable",
    UNRESOLVABLE: "unreachable",
}
MODES = ("redirect", "body")
HTTP_METHOD = {"HeadObject": "HEAD", "GetObject": "GET"}
# Where each fault bites: the HEAD of redirect mode, or the GET that reads the body.
FAULT_MODE = {
    S3Fault.ERROR_500: "redirect",
    S3Fault.ERROR_503: "redirect",
    S3Fault.RESET: "redirect",
    S3Fault.STALL_MID_BODY: "body",
    S3Fault.SHORT_BODY: "body",
    S3Fault.RESET_MID_BODY: "body",
    UNRESOLVABLE: "redirect",
}


def faulty_backend(
    world: World, faults: FaultServer, org: str, fault: str, name: str, **kw: Any
) -> BackendRef:
    """A backend of ``org`` (a real key and secret) whose storage endpoint answers DIGEST's object with
    ``fault``, or does not resolve at all."""
    bucket = f"faulty-{uuid.uuid4().hex[:12]}"
    if fault == UNRESOLVABLE:
        location = f"http://nonexistent.invalid/{bucket}"
    else:
        location = faults.s3(bucket, S3Fault(fault), {DIGEST: DATA})
    return world.backend(org, name, bucket=bucket, location=location, **kw)


# ---------------------------------------------------------------------------------------------------
# the fault endpoint itself


def test_healthy_fault_endpoint_serves_a_verified_redirect(
    world: World, service: Service, faults: FaultServer
) -> None:
    # Given the only backend of an org on the fault endpoint, configured to answer properly
    org = world.org()
    bucket = f"healthy-{uuid.uuid4().hex[:12]}"
    location = faults.healthy_s3(bucket, {DIGEST: DATA})
    backend = world.backend(org, "endpoint", bucket=bucket, location=location, is_default=True)
    world.map(DIGEST, org, backend)

    # When the caller asks for the artifact
    service.configure(**FAST_S3)
    response = service.get(DIGEST, orgs=org)

    # Then it is redirected to that endpoint, proven by the checksum the endpoint returned: the
    # harness works, so the failures below are the faults' doing
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "endpoint"
    assert urlsplit(response.headers["Location"]).netloc == urlsplit(faults.url).netloc
    assert presigned_key_id(response.headers["Location"]) == backend.access_key_id
    assert [s.operation for s in faults.seen_for_bucket(bucket)] == ["HEAD"]


# ---------------------------------------------------------------------------------------------------
# S3: errors, resets, stalls, short bodies, an endpoint that does not resolve


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(S3_FAULT_REASONS))
def test_storage_fault_is_never_served_and_the_org_default_serves(
    world: World,
    service: Service,
    faults: FaultServer,
    app_log: RecordList,
    client_settings: ClientSettingsRecorder,
    fault: str,
    mode: str,
) -> None:
    # Given an artifact mapped to a backend whose storage fails with the fault, and the org's default
    # (another bucket, healthy) holding the right bytes
    org = world.org()
    mapped = faulty_backend(world, faults, org, fault, "mapped")
    default = world.backend(org, "default", is_default=True)
    digest = world.put(default, DATA)
    world.map(digest, org, mapped)

    # When the caller asks for it
    service.configure(**FAST_S3)
    response = service.get(digest, orgs=org, mode=mode)

    # Then the default serves the right bytes as a fallback; the mapped backend's attempt carries the
    # spec's reason for the fault, and the fault cost at most one call of the configured timeouts
    assert response.status == (307 if mode == "redirect" else 200)
    assert response.headers["X-Cas-Backend"] == "default"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert served_bytes(world, response, mode) == DATA
    if mode == "redirect":
        assert presigned_key_id(response.headers["Location"]) == default.access_key_id
    assert app_log.last_attempts() == [("mapped", S3_FAULT_REASONS[fault])]
    # each call to the faulty storage: the configured timeouts, one attempt, each operation once
    mapped_calls = client_settings.of("s3", mapped.bucket)
    operations = [c.operation for c in mapped_calls]
    assert mapped_calls, "the mapped backend's storage was never called"
    assert len(set(operations)) == len(operations), operations
    assert {(c.connect_timeout, c.read_timeout, c.max_attempts) for c in mapped_calls} == {
        (READ_TIMEOUT, READ_TIMEOUT, 1)
    }
    if fault != UNRESOLVABLE:
        # and the endpoint got exactly those requests: the fault was not retried
        seen = [s.operation for s in faults.seen_for_bucket(mapped.bucket)]
        assert seen == [HTTP_METHOD[operation] for operation in operations], (seen, operations)
    fault_covered(f"s3:{fault}")


@pytest.mark.parametrize(("fault", "mode"), list(FAULT_MODE.items()))
def test_storage_fault_with_no_other_copy_is_502_naming_the_reason(
    world: World, service: Service, faults: FaultServer, fault: str, mode: str
) -> None:
    # Given an artifact whose only backend (the org default) fails with the fault
    org = world.org()
    only = faulty_backend(world, faults, org, fault, "only", is_default=True)
    world.map(DIGEST, org, only)

    # When the caller asks for it
    service.configure(**FAST_S3)
    response = service.get(DIGEST, orgs=org, mode=mode)

    # Then nothing is served: 502 backends_unavailable, naming the backend and the reason, and each
    # storage operation was tried once (no hidden SDK retry of a failing backend)
    assert response.status == 502
    assert response.error_code == "backends_unavailable"
    assert response.attempts == [("only", S3_FAULT_REASONS[fault])]
    assert response.headers["Content-Type"] == "application/json"
    operations = [s.operation for s in faults.seen_for_bucket(only.bucket)]
    assert len(operations) == len(set(operations)), operations


def test_clock_skew_is_refused_access_not_revoked_credentials(
    world: World, service: Service, faults: FaultServer
) -> None:
    # Given an artifact whose only backend answers RequestTimeTooSkewed (403: our clock, not its keys)
    org = world.org()
    only = faulty_backend(world, faults, org, S3Fault.CLOCK_SKEW, "skewed", is_default=True)
    world.map(DIGEST, org, only)

    # When the caller asks for it
    service.configure(**FAST_S3)
    response = service.get(DIGEST, orgs=org)

    # Then it is 502 with the backend refused (access_denied): neither "absent" (that would be a 404)
    # nor "credentials_invalid" (that would mark a healthy backend Invalid because a clock drifted)
    assert response.status == 502
    assert response.error_code == "backends_unavailable"
    assert response.attempts == [("skewed", "access_denied")]
    row = world.dynamodb.get_item(TableName=world.tables.backends, Key={"id": {"S": only.id}})["Item"]
    assert row.get("validation_status", {}).get("S", "OK") == "OK"
    fault_covered("s3:clock_skew")


def test_clock_skew_on_the_mapped_backend_falls_back_to_the_default(
    world: World, service: Service, faults: FaultServer, app_log: RecordList
) -> None:
    # Given an artifact mapped to a backend answering RequestTimeTooSkewed, and a healthy default
    org = world.org()
    mapped = faulty_backend(world, faults, org, S3Fault.CLOCK_SKEW, "skewed")
    default = world.backend(org, "default", is_default=True)
    digest = world.put(default, DATA)
    world.map(digest, org, mapped)

    # When the caller asks for it
    service.configure(**FAST_S3)
    response = service.get(digest, orgs=org)

    # Then the default serves it, and the skewed backend is recorded as refusing access
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "default"
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert app_log.last_attempts() == [("skewed", "access_denied")]


# ---------------------------------------------------------------------------------------------------
# Secrets Manager: throttled, connection reset, slow; the whole endpoint unreachable


@pytest.mark.parametrize("fault", list(SecretFault))
@pytest.mark.usefixtures("quick_backoff")
def test_secret_fault_makes_that_backend_secret_unavailable_and_the_default_serves(
    world: World,
    service: Service,
    faults: FaultServer,
    app_log: RecordList,
    call_recorder: CallRecorder,
    client_settings: ClientSettingsRecorder,
    monkeypatch: pytest.MonkeyPatch,
    fault: SecretFault,
) -> None:
    # Given an artifact mapped to a backend whose secret cannot be read (throttled, reset, or slower
    # than the Secrets Manager client's timeouts), and the org default readable and holding it
    org = world.org()
    bucket = world.bucket()
    mapped = world.backend(org, "mapped", bucket=bucket)
    default = world.backend(org, "default", bucket=bucket, is_default=True)
    digest = world.put(mapped, DATA)
    world.map(digest, org, mapped)
    monkeypatch.setenv(SECRETS_ENDPOINT_VAR, faults.url)
    faults.secret_fault(mapped.secret_name, fault)

    # When the caller asks for it
    service.configure()
    response = service.get(digest, orgs=org)

    # Then the default serves it; the mapped backend is secret_unavailable, its storage never touched
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "default"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert presigned_key_id(response.headers["Location"]) == default.access_key_id
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert app_log.last_attempts() == [("mapped", "secret_unavailable")]
    assert faults.count("secretsmanager", "GetSecretValue", faulted=True) >= 1
    assert mapped.access_key_id not in {c.access_key_id for c in call_recorder.storage_calls()}
    # each read of the broken secret is one request of the Secrets Manager client's tight timeouts
    # (1 s connect, 2 s read, no SDK retries), and no more than two reads (the read and its refresh)
    secret_reads = client_settings.of("secretsmanager", mapped.secret_name)
    assert 1 <= len(secret_reads) <= 2, secret_reads
    assert {(c.connect_timeout, c.read_timeout, c.max_attempts) for c in secret_reads} == {(1.0, 2.0, 1)}
    assert faults.count("secretsmanager", "GetSecretValue", faulted=True) == len(secret_reads)
    fault_covered(f"secretsmanager:{fault}")


@pytest.mark.usefixtures("quick_backoff")
def test_secrets_manager_unreachable_makes_every_backend_secret_unavailable(
    world: World,
    service: Service,
    call_recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an artifact mapped to a backend with a default, and Secrets Manager refusing connections
    org = world.org()
    bucket = world.bucket()
    mapped = world.backend(org, "mapped", bucket=bucket)
    world.backend(org, "default", bucket=bucket, is_default=True)
    digest = world.put(mapped, DATA)
    world.map(digest, org, mapped)
    monkeypatch.setenv(SECRETS_ENDPOINT_VAR, closed_port_url())

    # When the caller asks for it
    service.configure()
    response = service.get(digest, orgs=org)

    # Then fallback went on through the default and both are secret_unavailable: 502, no storage call
    assert response.status == 502
    assert response.error_code == "backends_unavailable"
    assert response.attempts == [("mapped", "secret_unavailable"), ("default", "secret_unavailable")]
    assert call_recorder.count("s3") == 0
    fault_covered("secretsmanager:unreachable")


# ---------------------------------------------------------------------------------------------------
# DynamoDB: throttled (retried, then 503 with Retry-After)


@pytest.fixture
def dynamodb_faults(faults: FaultServer, monkeypatch: pytest.MonkeyPatch, quick_backoff: None) -> FaultServer:
    """The fault endpoint as the app's DynamoDB, nothing armed yet; the app's retries back off in
    milliseconds (how often it retries is what the tests count)."""
    monkeypatch.setenv(DYNAMODB_ENDPOINT_VAR, faults.url)
    return faults


def test_throttled_mappings_table_is_retried_then_503_with_retry_after(
    world: World, service: Service, call_recorder: CallRecorder, dynamodb_faults: FaultServer
) -> None:
    # Given a mapped artifact, and DynamoDB throttling every request (both throttling codes in turn)
    org, _backend, digest = world.artifact(DATA, "only")
    dynamodb_faults.throttle_dynamodb(times=None, codes=DYNAMODB_THROTTLING_CODES)

    # When the caller asks for it
    service.configure()
    response = service.get(digest, orgs=org)

    # Then the mappings query was retried (1 + 3 retries, both codes seen) before giving up with 503
    # service_unavailable and Retry-After, and no secret or storage call was made; beside it, the new
    # container's read of the caller's org's rows was retried as often
    assert response.status == 503
    assert response.error_code == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert response.attempts == []
    assert dynamodb_faults.count("dynamodb", "Query", faulted=True) == 2 * 4
    assert dynamodb_faults.count("dynamodb", faulted=False) == 0
    assert call_recorder.count("secretsmanager") == 0
    assert call_recorder.count("s3") == 0
    for code in DYNAMODB_THROTTLING_CODES:
        fault_covered(f"dynamodb:{code}")


def test_throttled_backends_table_is_503_with_retry_after(
    world: World, service: Service, dynamodb_faults: FaultServer
) -> None:
    # Given a mapped artifact, and DynamoDB throttling every read of the Backends table
    org, _backend, digest = world.artifact(DATA, "only")
    dynamodb_faults.throttle_dynamodb(times=None, operations={"Query:org_id-index"})

    # When the caller asks for it
    service.configure()
    response = service.get(digest, orgs=org)

    # Then the mapping was read, the backend rows could not be (after retries): 503 with Retry-After
    assert response.status == 503
    assert response.error_code == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert dynamodb_faults.count("dynamodb", "Query", faulted=False) == 1  # the mappings
    assert dynamodb_faults.count("dynamodb", "Query", faulted=True) == 4  # the org's backends, retried


def test_briefly_throttled_table_is_retried_and_the_request_served(
    world: World, service: Service, dynamodb_faults: FaultServer
) -> None:
    # Given a mapped artifact, and DynamoDB throttling only the next two requests
    org, _backend, digest = world.artifact(DATA, "only")
    dynamodb_faults.throttle_dynamodb(times=2, codes=["ProvisionedThroughputExceededException"])

    # When the caller asks for it
    service.configure()
    response = service.get(digest, orgs=org)

    # Then the retries absorbed the throttling and the artifact is served by its backend
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "only"
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert dynamodb_faults.count("dynamodb", "Query", faulted=True) == 2
    # the mappings, then the org's backends (one query gives the mapped row and the org's default)
    assert dynamodb_faults.count("dynamodb", "Query", faulted=False) == 2
