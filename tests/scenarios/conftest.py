"""Scenario harness: the real handler, built from the world's settings, driven by events/ files.

Every AWS call the app makes goes over HTTP to the moto servers; the app's boto3 session is the
call recorder's, so tests can count Secrets Manager and S3 calls.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cas_download.app import App
from cas_download.config import Settings
from cas_download.handlers.download import LambdaHandler, instrumented_handler
from tests.conftest import stopped_at_teardown
from tests.support.azure import Azurite, new_account_key, start_azurite
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext, load_event
from tests.support.moto_servers import AwsServers
from tests.support.postgres import ChainloopRows, Postgres, chainloop_database, start_postgres
from tests.support.registry import Registry, start_registry
from tests.support.tables import create_tables, create_verifications_table
from tests.support.token_issuer import TokenIssuer
from tests.support.world import BackendRef, World


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    raw: dict[str, Any]

    @property
    def body(self) -> bytes:
        text = self.raw.get("body") or ""
        return base64.b64decode(text) if self.raw.get("isBase64Encoded") else text.encode()

    @property
    def json(self) -> Any:
        return json.loads(self.raw["body"])

    @property
    def error_code(self) -> str:
        return str(self.json["error"]["code"])

    @property
    def attempts(self) -> list[tuple[str, str]]:
        return [(a["backend"], a["reason"]) for a in self.json["error"]["attempts"]]


class Service:
    """The download service as a test sees it: configure (env overrides), then request."""

    def __init__(self, world: World, recorder: CallRecorder, context: FakeLambdaContext) -> None:
        self._world = world
        self._recorder = recorder
        self._context = context
        self._app: App | None = None
        self._handler: LambdaHandler | None = None

    def configure(self, **env: object) -> App:
        settings = Settings.from_env(self._world.settings_env(**env))
        self._app = App.create(settings, session=self._recorder.session)
        # what Lambda runs: handle() inside Powertools' logger and metrics wrappers, built once per App
        self._handler = instrumented_handler(self._app)
        return self._app

    @property
    def app(self) -> App:
        return self._app or self.configure()

    def invoke(self, event: Any, context: FakeLambdaContext) -> HttpResult:
        """``event`` as it is, through the container's wrapped handler."""
        if self._handler is None:
            self.configure()
        assert self._handler is not None
        raw = self._handler(event, context)
        return HttpResult(raw["statusCode"], raw["headers"], dict(raw))

    def request(self, event_name: str = "get_redirect", **event_fields: Any) -> HttpResult:
        return self.invoke(load_event(event_name, **event_fields), self._context)

    def get(self, digest: str, orgs: Any, mode: str | None = None, **fields: Any) -> HttpResult:
        name = {None: "get_redirect", "redirect": "get_redirect", "url": "get_url", "body": "get_body"}
        if mode in name:
            return self.request(name[mode], digest=digest, orgs=orgs, **fields)
        return self.request("get_redirect", digest=digest, orgs=orgs, mode=mode, **fields)


@pytest.fixture(scope="session")
def verifications_table(aws_servers: AwsServers) -> str:
    """The service's own Verifications table (template: VerificationsTable), on the control server."""
    return create_verifications_table(aws_servers, uuid.uuid4().hex[:12])


@pytest.fixture
def isolated_world(aws_servers: AwsServers) -> World:
    """A world with Backends and Mappings tables of its own: for code that scans every backend."""
    return World(aws_servers, create_tables(aws_servers, uuid.uuid4().hex[:12]))


@pytest.fixture
def service(world: World, call_recorder: CallRecorder, lambda_context: FakeLambdaContext) -> Service:
    return Service(world, call_recorder, lambda_context)


def presigned_key_id(url: str) -> str:
    credential = parse_qs(urlsplit(url).query)["X-Amz-Credential"][0]
    return credential.split("/", 1)[0]


def assert_redirected_by(response: HttpResult, backend: BackendRef, *, fallback: bool) -> None:
    """A 307 from ``backend`` (named in X-Cas-Backend), flagged a fallback or not, whose URL is signed
    with that backend's key."""
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == backend.name
    assert response.headers["X-Cas-Fallback"] == ("true" if fallback else "false")
    assert presigned_key_id(response.headers["Location"]) == backend.access_key_id


def s3_key_ids(recorder: CallRecorder) -> list[str | None]:
    """The access key ids that signed S3 calls, in call order, consecutive repeats collapsed."""
    ordered: list[str | None] = []
    for call in recorder.storage_calls():
        if not ordered or ordered[-1] != call.access_key_id:
            ordered.append(call.access_key_id)
    return ordered


def assert_failed(
    response: HttpResult, status: int, error_code: str, attempts: list[tuple[str, str]]
) -> None:
    """An error response: its status, error code and the attempts, in order."""
    assert response.status == status
    assert response.error_code == error_code
    assert response.attempts == attempts


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A self-hosted registry (filesystem storage): it serves blob bytes itself."""
    yield from stopped_at_teardown(start_registry(tmp_path_factory.mktemp("registry")))


@pytest.fixture(scope="session")
def hosted_registry(tmp_path_factory: pytest.TempPathFactory, aws_servers: AwsServers) -> Iterator[Registry]:
    """A hosted registry: its storage is S3 (moto's control server, no auth), so blob GETs redirect
    to presigned URLs."""
    bucket = f"registry-{uuid.uuid4().hex[:10]}"
    aws_servers.control_client("s3").create_bucket(Bucket=bucket)
    yield from stopped_at_teardown(
        start_registry(
            tmp_path_factory.mktemp("hosted-registry"), s3_endpoint=aws_servers.control_url, s3_bucket=bucket
        )
    )


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    issuer = TokenIssuer(tmp_path_factory.mktemp("token-issuer") / "issuer.pem")
    issuer.start()
    yield from stopped_at_teardown(issuer)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer) -> Iterator[Registry]:
    """A self-hosted registry with ``auth: token``: every bearer token's signature is verified."""
    yield from stopped_at_teardown(
        start_registry(
            tmp_path_factory.mktemp("token-registry"),
            token_realm=token_issuer.realm,
            token_cert=token_issuer.cert_path,
        )
    )


AZURE_ACCOUNT = "casacct"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite with one account (``AZURE_ACCOUNT``) and its one key (``azurite.accounts``)."""
    yield from stopped_at_teardown(
        start_azurite(tmp_path_factory.mktemp("azurite"), {AZURE_ACCOUNT: [new_account_key()]})
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL for the Chainloop sync's tests (one server; a database per test)."""
    yield from stopped_at_teardown(start_postgres())


@pytest.fixture
def chainloop(postgres: Postgres) -> Iterator[ChainloopRows]:
    """A database of its own with Chainloop's schema, and Chainloop's way of writing rows."""
    with contextlib.closing(chainloop_database(postgres)) as rows:
        yield rows
