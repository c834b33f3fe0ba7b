"""The scheduled validator: read-only probes, conditional status writes, concurrency."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from cas_download.app import App
from cas_download.config import Settings
from cas_download.data.tables import StatusGuard, build_tables
from cas_download.handlers.validator import instrumented_handler
from tests.scenarios.conftest import AZURE_ACCOUNT
from tests.support.azure import Azurite, new_account_key, put_blob
from tests.support.azure_faults import AzureFaultProxy
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext
from tests.support.faults import ClientSettingsRecorder
from tests.support.moto_servers import AwsServers
from tests.support.registry import Registry, RegistryUser
from tests.support.token_issuer import TokenIssuer
from tests.support.world import BackendRef, World

STUCK_BUCKET = "stuck-bucket"


def run_validator(app: App) -> dict[str, Any]:
    """One scheduled run, as Lambda invokes it (an EventBridge event, Powertools' wrappers)."""
    return instrumented_handler(app)({"id": "scheduled-run"}, FakeLambdaContext(timeout_ms=60_000))


def validator(world: World, session: boto3.session.Session | None = None, **env: object) -> App:
    return App.create(Settings.from_env(world.settings_env(**env)), session=session)


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes (a registry's storage: what a write would change)."""
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def status_of(aws_servers: AwsServers, world: World, backend: BackendRef) -> dict[str, Any]:
    item = aws_servers.cached_client("control", "dynamodb").get_item(
        TableName=world.tables.backends, Key={"id": {"S": backend.id}}, ConsistentRead=True
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


def test_a_revoked_backend_is_marked_invalid_and_a_repaired_one_ok(
    isolated_world: World, aws_servers: AwsServers
) -> None:
    # Given a revoked default backend, and a backend recorded Invalid whose keys work again
    world = isolated_world
    org = world.org()
    revoked = world.backend(org, "revoked", is_default=True)
    world.revoke(revoked)
    repaired = world.backend(org, "repaired", status="Invalid", validation_error="old failure")

    # When the validator runs
    summary = run_validator(validator(world))

    # Then the revoked one is Invalid with a reason, the repaired one OK, and both changes are reported
    assert status_of(aws_servers, world, revoked)["validation_status"] == "Invalid"
    assert status_of(aws_servers, world, revoked)["validation_error"].startswith("credentials_invalid")
    assert status_of(aws_servers, world, repaired)["validation_status"] == "OK"
    assert "validation_error" not in status_of(aws_servers, world, repaired)
    assert summary["invalidated"] == [revoked.id]
    assert summary["recovered"] == [repaired.id]


def test_a_run_flushes_its_counts_once_as_embedded_metrics(
    isolated_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one revoked backend and one healthy backend
    world = isolated_world
    org = world.org()
    revoked = world.backend(org, "revoked", is_default=True)
    world.revoke(revoked)
    world.backend(org, "healthy")
    app = validator(world)
    capsys.readouterr()

    # When the validator runs
    run_validator(app)

    # Then one EMF document carries the run's counts, in the service's namespace
    documents = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"BackendsValidated"' in line
    ]
    assert len(documents) == 1
    (document,) = documents
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == app.settings.metrics_namespace
    counts = {
        name: document[name] for name in ("BackendsValidated", "BackendInvalidated", "ValidationErrors")
    }
    assert counts == {"BackendsValidated": [2.0], "BackendInvalidated": [1.0], "ValidationErrors": [0.0]}


def test_read_only_keys_are_valid(isolated_world: World, aws_servers: AwsServers) -> None:
    # Given keys that may only read (list + get), and keys that may only get objects
    world = isolated_world
    org = world.org()
    reader = world.backend(org, "reader")
    getter = world.backend(org, "getter", actions=["s3:GetObject"])

    # When the validator runs
    run_validator(validator(world))

    # Then both are OK: the probe never writes
    assert status_of(aws_servers, world, reader)["validation_status"] == "OK"
    assert status_of(aws_servers, world, getter)["validation_status"] == "OK"


def test_a_missing_secret_or_bucket_is_invalid_and_deleted_backends_are_left_alone(
    isolated_world: World, aws_servers: AwsServers
) -> None:
    # Given a backend without its secret, one naming a bucket that does not exist, and a deleted one
    world = isolated_world
    org = world.org()
    no_secret = world.backend(org, "no-secret", secret="missing")
    no_bucket = world.backend(org, "no-bucket", location="bucket-that-does-not-exist-x1")
    deleted = world.backend(org, "deleted", deleted=True)

    # When the validator runs
    summary = run_validator(validator(world))

    # Then each failure is recorded with its reason and the deleted backend is not validated
    assert status_of(aws_servers, world, no_secret)["validation_error"].startswith("secret_unavailable")
    assert status_of(aws_servers, world, no_bucket)["validation_status"] == "Invalid"
    assert "validated_at" not in status_of(aws_servers, world, deleted)
    assert summary["validated"] == 2


def test_one_hanging_backend_does_not_stop_the_others(
    isolated_world: World, aws_servers: AwsServers, call_recorder: CallRecorder
) -> None:
    # Given a backend whose endpoint accepts connections and never answers, and a healthy one
    world = isolated_world
    org = world.org()
    stuck = world.backend(org, "stuck", location=world.black_hole_location(STUCK_BUCKET))
    healthy = world.backend(org, "healthy", is_default=True)
    client_settings = ClientSettingsRecorder(call_recorder)

    # When the validator runs with tight storage timeouts
    app = validator(world, call_recorder.session, S3_CONNECT_TIMEOUT_SECONDS=0.5, S3_READ_TIMEOUT_SECONDS=0.5)
    summary = run_validator(app)

    # Then the healthy one is validated OK and the stuck one is Invalid (timeout), every backend finished
    assert status_of(aws_servers, world, healthy)["validation_status"] == "OK"
    assert status_of(aws_servers, world, stuck)["validation_error"].startswith("timeout")
    assert summary["not_finished"] == []
    # and the stuck probe cost one call of the configured 0.5 s timeouts, not retried
    stuck_calls = client_settings.of("s3", STUCK_BUCKET)
    assert len(stuck_calls) == 1, stuck_calls
    assert {(c.connect_timeout, c.read_timeout, c.max_attempts) for c in stuck_calls} == {(0.5, 0.5, 1)}


def test_concurrent_status_writes_never_let_an_older_validation_win(
    isolated_world: World, aws_servers: AwsServers
) -> None:
    # Given one backend and many writers racing with different validation times
    world = isolated_world
    backend = world.backend(world.org())
    tables = build_tables(Settings.from_env(world.settings_env()))
    stamps = [f"2026-11-24T10:00:{second:02d}.000000Z" for second in range(20)]
    results: dict[str, bool] = {}

    def write(stamp: str) -> None:
        status = "OK" if stamp.endswith("19.000000Z") else "Invalid"
        results[stamp] = tables.record_status(backend.id, status, None, stamp, StatusGuard.NOT_NEWER)

    # When they all write at once, in reverse order of time
    threads = [threading.Thread(target=write, args=(stamp,)) for stamp in reversed(stamps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the newest validation is what the table holds, and older writes were refused, not applied
    row = status_of(aws_servers, world, backend)
    assert row["validated_at"] == stamps[-1]
    assert row["validation_status"] == "OK"
    assert results[stamps[-1]] is True
    assert tables.record_status(backend.id, "Invalid", "late", stamps[0], StatusGuard.NOT_NEWER) is False
    assert status_of(aws_servers, world, backend)["validation_status"] == "OK"


def test_an_oci_backend_is_probed_by_authenticating_for_pull(
    isolated_world: World, aws_servers: AwsServers, registry: Registry
) -> None:
    # Given a registry backend with a working login, and one whose password was changed since
    world = isolated_world
    org = world.org()
    good_user, stale_user = registry.new_user(), registry.new_user()
    good = world.oci_backend(org, "registry-ok", registry.location(), good_user, status="Invalid")
    stale = world.oci_backend(org, "registry-stale", registry.location(), stale_user, is_default=True)
    registry.set_password(stale_user, "changed-" + stale_user.password)

    stored_before = files_under(registry.root)

    # When the validator runs
    summary = run_validator(validator(world))

    # Then the working one is OK again and the stale one Invalid, with the reason
    assert status_of(aws_servers, world, good)["validation_status"] == "OK"
    assert status_of(aws_servers, world, stale)["validation_status"] == "Invalid"
    assert status_of(aws_servers, world, stale)["validation_error"].startswith("credentials_invalid")
    assert summary["invalidated"] == [stale.id]
    assert summary["recovered"] == [good.id]
    # and the registry's storage is exactly as it was: the probes wrote nothing
    assert files_under(registry.root) == stored_before


def test_an_oci_probe_asks_for_the_pull_scope_only(
    isolated_world: World, aws_servers: AwsServers, token_registry: Registry, token_issuer: TokenIssuer
) -> None:
    # Given a registry backend on a registry that hands out scoped bearer tokens
    world = isolated_world
    org = world.org()
    user = RegistryUser(f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    token_issuer.add_user(user.name, user.password)
    location = token_registry.location()
    backend = world.oci_backend(org, "registry-token", location, user, is_default=True)
    issued_before = len(token_issuer.issued)
    stored_before = files_under(token_registry.root)

    # When the validator runs
    run_validator(validator(world))

    # Then the backend is OK, proven with a token for pull on its repository and nothing more
    assert status_of(aws_servers, world, backend)["validation_status"] == "OK"
    repository = location.split("/", 1)[1]
    assert token_issuer.issued[issued_before:] == [f"repository:{repository}:pull"]
    # and the registry's storage is exactly as it was
    assert files_under(token_registry.root) == stored_before


def test_an_azure_backend_is_probed_read_only_with_its_key(
    isolated_world: World, aws_servers: AwsServers, azurite: Azurite, request: pytest.FixtureRequest
) -> None:
    # Given an AzureBlob backend whose key works (recorded Invalid), and one whose key the account lacks,
    # both reached through an endpoint that records every request
    world = isolated_world
    org = world.org()
    key = azurite.accounts[AZURE_ACCOUNT][0]
    put_blob(azurite, AZURE_ACCOUNT, key, "validated", "sha256:" + "0" * 64, b"x")
    recorder = AzureFaultProxy(azurite.endpoint)
    request.addfinalizer(recorder.stop)
    location = recorder.location(AZURE_ACCOUNT, "validated")
    good = world.azure_backend(org, "azure-ok", location, {"AccountKey": key}, status="Invalid")
    stale = world.azure_backend(
        org, "azure-stale", location, {"AccountKey": new_account_key()}, is_default=True
    )

    # When the validator runs
    summary = run_validator(validator(world))

    # Then the working one is OK again and the stale one Invalid, with the reason
    assert status_of(aws_servers, world, good)["validation_status"] == "OK"
    assert status_of(aws_servers, world, stale)["validation_error"].startswith("credentials_invalid")
    assert summary["invalidated"] == [stale.id]
    assert summary["recovered"] == [good.id]
    # and both probes only read: the endpoint saw reads (GET, HEAD) and nothing that writes
    methods = [line.split(" ", 1)[0] for line in recorder.requests]
    assert methods, "the probes never reached the storage account"
    assert set(methods) <= {"GET", "HEAD"}, recorder.requests
