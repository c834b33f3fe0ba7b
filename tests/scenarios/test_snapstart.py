"""SnapStart (issue 31): initialization builds what both routes need and reads nothing; the hooks, run
as Lambda runs them (initialize, before_snapshot, after_restore), leave no connection, credential,
cached secret or cached record to a restored container.

The restore itself cannot run here (it is Lambda's); what is measured instead is the first request
after initialization in the same process (BENCHMARKS.md, cold start).
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import snapshot_restore_py

from cas_download.app import App
from cas_download.snapstart import prepare_snapshot
from tests.scenarios.conftest import Service, assert_redirected_by
from tests.support.calls import CallRecorder
from tests.support.world import World

DATA = b"sbom.spdx.json contents\n" * 200


@pytest.fixture
def hooks() -> Iterator[None]:
    """snapshot_restore_py's registries, emptied around the test (the runtime keeps one per process)."""
    registries = (snapshot_restore_py._before_snapshot_registry, snapshot_restore_py._after_restore_registry)
    saved = [list(registry) for registry in registries]
    for registry in registries:
        registry.clear()
    yield
    for registry, before in zip(registries, saved, strict=True):
        registry[:] = before


def run_registered(registry: list[Any]) -> None:
    """What Lambda's runtime does with a registry: each hook with its arguments, in order."""
    for func, args, kwargs in registry:
        func(*args, **kwargs)


def open_connections(client: Any) -> int:
    """Connection pools a botocore client holds open (urllib3's pool manager)."""
    return len(client._endpoint.http_session._manager.pools)


def botocore_clients(app: App) -> list[Any]:
    """Every AWS client the app holds: Secrets Manager, the tables' DynamoDB clients, the S3 clients."""
    tables = app.services.tables
    models = (tables.backend_model, tables.mapping_model, tables.verification_model)
    dynamodb = [m._get_connection().connection._client for m in models if m is not None]
    s3 = list(app.services.storage.s3_clients._clients.values())
    return [app.services.credentials._provider.client, *[c for c in dynamodb if c is not None], *s3]


def a_served_artifact(world: World, service: Service) -> tuple[str, Any, str]:
    org, backend, digest = world.artifact(DATA)
    return org, backend, digest


@pytest.mark.usefixtures("hooks")
def test_initialization_builds_the_clients_and_reads_no_secret_row_or_object(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a container Lambda initializes for a snapshot
    app = service.configure()

    # When it prepares the snapshot
    prepare_snapshot(app)

    # Then the DynamoDB clients exist, the /download route's modules are imported, the hooks are there
    assert all(
        m._get_connection().connection._client is not None
        for m in (app.services.tables.backend_model, app.services.tables.mapping_model)
    )
    assert "cas_download.handlers.links" in sys.modules
    assert "cas_download.link_tokens" in sys.modules
    assert len(snapshot_restore_py._before_snapshot_registry) == 1
    assert len(snapshot_restore_py._after_restore_registry) == 1
    # and nothing was read or sent: no secret, no row, no object, no open connection
    assert call_recorder.calls == []
    assert [open_connections(c) for c in botocore_clients(app)] == [0] * len(botocore_clients(app))


@pytest.mark.usefixtures("hooks")
def test_nothing_a_request_left_crosses_a_restore(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a container prepared for a snapshot that served a request before it (which a real
    # initialization never does: the worst case), so it holds a secret, rows, a record, connections
    org, backend, digest = a_served_artifact(world, service)
    app = service.configure()
    prepare_snapshot(app)
    assert_redirected_by(service.get(digest, orgs=org), backend, fallback=False)
    assert app.services.storage.s3_clients._clients
    assert sum(open_connections(c) for c in botocore_clients(app)) > 0
    random.seed(1234)
    drawn_before = random.random()

    # When Lambda snapshots it and restores a container from the snapshot
    run_registered(snapshot_restore_py._before_snapshot_registry)
    random.seed(1234)  # the snapshot holds the generator's state as it was
    run_registered(snapshot_restore_py._after_restore_registry)

    # Then no connection, no backend client (credentials), no cached secret or row is left
    assert app.services.storage.s3_clients._clients == {}
    assert [open_connections(c) for c in botocore_clients(app)] == [0] * len(botocore_clients(app))
    assert app.services.catalog._org_backends._entries == {}
    assert app.services.credentials._provider.store == {}
    assert app.services.verification_records._hashed_to._entries == {}
    # and the restored container draws other random numbers than the snapshot would
    assert random.random() != drawn_before

    # When the restored container serves the same artifact
    calls_before = len(call_recorder.calls)
    response = service.get(digest, orgs=org)

    # Then it reads the secret and the rows again, and serves
    assert_redirected_by(response, backend, fallback=False)
    again = call_recorder.calls[calls_before:]
    assert [c.operation for c in again if c.service == "secretsmanager"] == ["GetSecretValue"]
    assert any(c.service == "dynamodb" for c in again)


def test_the_handler_module_prepares_the_snapshot_only_when_lambda_initializes_for_one(world: World) -> None:
    # Given the function's environment, with and without Lambda's SnapStart initialization type
    script = (
        "import sys, snapshot_restore_py as s, cas_download.handlers.download as d;"
        "print(d._app is not None, len(s._before_snapshot_registry), len(s._after_restore_registry),"
        " 'cas_download.link_tokens' in sys.modules)"
    )

    def import_handler(**extra: str) -> str:
        env = {**world.settings_env(), **extra}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip()

    # Then the App, the hooks and the /download route's modules exist at import only under SnapStart
    assert import_handler(AWS_LAMBDA_INITIALIZATION_TYPE="snap-start") == "True 1 1 True"
    assert import_handler(AWS_LAMBDA_INITIALIZATION_TYPE="on-demand") == "False 0 0 False"
