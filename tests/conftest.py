"""Session infrastructure: moto servers over HTTP, AWS env for the process, the two tables.

Fixtures:
    aws_servers  (session)  AwsServers: control (DynamoDB, Secrets Manager), storage (S3, IAM, auth on),
                            black hole; admin key for storage; stopped at session end.
    aws_env      (session, autouse)  Tables: sets AWS_* env for the whole process and creates the
                            Backends and Mappings tables (unique names); no test can reach real AWS.
    tables       (session)  Tables(backends=..., mappings=...).
    world        (function) World: scenario builder (tests/support/world.py).
    app_env      (function) the world's settings_env() applied to os.environ (monkeypatch).
    call_recorder (function) CallRecorder on a fresh boto3 Session.
    black_hole   (session)  BlackHole (``.url``, ``.bucket_url(bucket)``).
    lambda_context (function) FakeLambdaContext.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import pytest

from cas_local.stack import is_foreign_aws_variable
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext
from tests.support.hygiene import REGISTRY as SECRETS
from tests.support.moto_servers import (
    AwsServers,
    BlackHole,
    start_aws_servers,
)
from tests.support.tables import create_tables
from tests.support.world import Tables, World


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--verifier-load-objects",
        default="1000",
        help="objects one org asks the verifier for in the load scenario (test_verifier_capacity)",
    )


class Stoppable(Protocol):
    def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=Stoppable)


def stopped_at_teardown(server: ServerT) -> Iterator[ServerT]:
    """The body of a fixture that started ``server``: yields it, and stops it at teardown, whatever
    the tests did (``yield from stopped_at_teardown(start_...())``)."""
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsServers]:
    yield from stopped_at_teardown(start_aws_servers(tmp_path_factory.mktemp("moto")))


@pytest.fixture(scope="session", autouse=True)
def aws_env(aws_servers: AwsServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tables]:
    """Point every AWS client of this process at the servers, then create the tables."""
    empty = tmp_path_factory.mktemp("aws-config") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if is_foreign_aws_variable(name):
                mp.delenv(name)
        env = aws_servers.client_env(empty, metrics_namespace="CasDownloadTest")
        for name, value in env.items():
            mp.setenv(name, value)
        yield create_tables(aws_servers, uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def tables(aws_env: Tables) -> Tables:
    return aws_env


@pytest.fixture
def world(aws_servers: AwsServers, tables: Tables) -> World:
    return World(aws_servers, tables)


@pytest.fixture
def app_env(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``world.settings_env()`` applied to the process env for this test; returned for overriding."""
    env = world.settings_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def call_recorder() -> CallRecorder:
    return CallRecorder()


@pytest.fixture(scope="session")
def black_hole(aws_servers: AwsServers) -> BlackHole:
    return aws_servers.black_hole


@pytest.fixture
def lambda_context() -> Any:
    return FakeLambdaContext()


# ---------------------------------------------------------------------------------------------------
# Secret hygiene, test-wide (tests/support/hygiene.py): every phase of every test has its captured
# stdout, stderr and log records scanned for the secrets the World registered (access key ids, secret
# keys, session tokens, URL signatures) and for presigned-URL signatures and tokens of any origin. A hit
# fails that test, with the value redacted from the report.


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    SECRETS.enforce(report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(SECRETS.summary())
