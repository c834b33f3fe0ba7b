"""The API's contract, openapi.yaml, against the events the tests send and the running service.

schemathesis generates requests from the document (valid and invalid digests, modes, If-None-Match
values) and sends them to ``cas-local run`` on loopback, as the demo org; every answer must be in the
document: status, content type, headers and body. A mismatch is a bug in the code or in the document.

A Chainloop download link (``/download/{digest}``) carries its credential in ``t``: the token hook
(``before_call``) puts a fresh token there, minted as Chainloop's control plane mints it with the
stack's private key for the demo's link backend, so that the route's success answers are checked too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import unsupported_method

from cas_admin.chainloop_link import mint_token
from tests.local.conftest import RunningStack
from tests.support.hygiene import register as register_secret

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
EVENTS = sorted((ROOT / "events").glob("*.json"))
LINK_PATH = "/download/{digest}"


@dataclass
class LinkTokens:
    """What the token hook mints with: set by the ``link_tokens`` fixture for the test using it."""

    mint: Callable[[], str] | None = None


LINK_TOKENS = LinkTokens()


def demo_backend(local_stack: RunningStack, name: str) -> dict[str, str]:
    """The demo org's backend row named ``name``, as stored."""
    table = local_stack.endpoints.function_env["BACKENDS_TABLE"]
    items = local_stack.client("dynamodb").scan(TableName=table)["Items"]
    rows = [{k: v["S"] for k, v in item.items() if "S" in v} for item in items]
    return next(r for r in rows if (r["org_id"], r["name"]) == (local_stack.demo["org"], name))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The token hook: a /download request carries a token minted just now (a link lives 30 s)."""
    if LINK_TOKENS.mint is not None and case.operation.path == LINK_PATH:
        case.query = {**(case.query or {}), "t": LINK_TOKENS.mint()}


@pytest.fixture
def link_tokens(local_stack: RunningStack) -> Iterator[LinkTokens]:
    """Tokens for the demo org's default backend (its secret and provider, from the Backends table),
    signed with the stack's private key; each registered with the secret scan. The default, not the
    revoked primary-2024 of the demo's link: a digest no backend holds is then 404 not_found, where the
    revoked backend would make it 502 backends_unavailable (it cannot be asked: spec, error codes)."""
    backend = demo_backend(local_stack, local_stack.demo["new_backend"])
    assert local_stack.endpoints.chainloop_cas_private_key_path
    private_key = Path(local_stack.endpoints.chainloop_cas_private_key_path).read_bytes()

    def mint() -> str:
        token = mint_token(
            private_key,
            backend=backend["provider"],
            secret_id=backend["secret_name"],
            org_id=local_stack.demo["org"],
        )
        register_secret(token, "chainloop_cas_token")
        return token

    LINK_TOKENS.mint = mint
    try:
        yield LINK_TOKENS
    finally:
        LINK_TOKENS.mint = None


@cache
def document() -> dict[str, Any]:
    """openapi.yaml as plain data, read once (callers must not modify it)."""
    from cfnlint.decode.decode import decode  # noqa: PLC0415 - any YAML reader; cfn-lint's is the repo's

    loaded, problems = decode(str(ROOT / "openapi.yaml"))
    assert not problems
    return json.loads(json.dumps(loaded))


@pytest.mark.parametrize("path", [e for e in EVENTS if e.name != "env.json"], ids=lambda p: p.stem)
def test_every_event_is_a_request_the_document_describes(path: Path) -> None:
    # Given an event of events/ (the files sam local invoke and the tests send)
    event = json.loads(path.read_text())
    method, _, route = event["routeKey"].partition(" ")
    operations = document()["paths"]
    # Then its route and method are the document's
    assert route in operations
    assert method.lower() in operations[route]
    # and its mode is one the document names, unless the event is the invalid-mode case
    modes = next(p for p in operations[route]["parameters"] if p["$ref"].endswith("/Mode"))
    assert modes
    mode = (event.get("queryStringParameters") or {}).get("mode")
    allowed = document()["components"]["parameters"]["Mode"]["schema"]["enum"]
    assert mode is None or mode in allowed or path.stem == "get_invalid_mode"


def test_the_document_names_every_error_code_of_the_service() -> None:
    from cas_download import errors  # noqa: PLC0415

    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.CasError) and getattr(cls, "code", None)
    }
    documented = set(
        document()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    )
    assert codes <= documented, codes - documented


@SCHEMA.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_answer_of_the_running_service_is_in_the_document(
    case: Any, local_stack: RunningStack, link_tokens: LinkTokens
) -> None:
    case.call_and_validate(
        base_url=local_stack.api_url,
        headers={"Authorization": "Bearer local:org-example"},
        timeout=30,
        # API Gateway's HTTP API answers a method that has no route 404 {"message":"Not Found"}, not 405;
        # the local front end does the same (test_run: test_authentication_and_routes_like_api_gateway)
        excluded_checks=[unsupported_method],
    )


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_token_hook_makes_download_requests_succeed(
    method: str, local_stack: RunningStack, link_tokens: LinkTokens
) -> None:
    # Given /download cases without a token, as schemathesis may make them: the demo's link digest,
    # and a digest no backend holds
    operation = SCHEMA[LINK_PATH][method]
    hello = operation.Case(path_parameters={"digest": local_stack.demo["link"]["digest"]})
    unknown = operation.Case(path_parameters={"digest": "sha256:" + "0" * 64})
    assert "t" not in (hello.query or {})

    # When schemathesis sends them
    served = hello.call(base_url=local_stack.api_url, timeout=30)
    missing = unknown.call(base_url=local_stack.api_url, timeout=30)

    # Then the hook gave each a valid token: the route's success answer (307 through the token's
    # backend), and for the unknown digest not_found rather than a 401; both in the document
    assert hello.query["t"].startswith("eyJ")
    assert served.status_code == 307
    assert served.headers["x-cas-backend"] == [local_stack.demo["new_backend"]]
    assert missing.status_code == 404
    for case, response in ((hello, served), (unknown, missing)):
        case.validate_response(response, excluded_checks=[unsupported_method])
