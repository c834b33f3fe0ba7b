"""Chainloop's UI fetching download links from its own origin (spec "Chainloop download links",
*Browsers*): CORS headers and preflight for ``CHAINLOOP_ALLOWED_ORIGINS``, the verified body instead of
a redirect for a listed origin's GET within the body limit, and nothing changed for anyone else.

The same answers in a real browser: tests/local/test_browser.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scenarios.conftest import HttpResult, Service, assert_redirected_by
from tests.support.calls import CallRecorder
from tests.support.chainloop_links import control_plane_keys, link_event
from tests.support.events import FakeLambdaContext, load_event
from tests.support.world import BackendRef, World

SBOM = b'{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}\n' * 40
UI = "https://chainloop.example.com"
OTHER = "https://evil.example.net"
KEY, _ = control_plane_keys()


@pytest.fixture
def links(service: Service) -> Service:
    service.configure(
        CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem, CHAINLOOP_ALLOWED_ORIGINS=f"{UI}, https://b.example"
    )
    return service


def token_for(backend: BackendRef) -> str:
    return KEY.mint(backend=backend.provider, secret_id=backend.secret_name, org_id=backend.org)


def stored_sbom(world: World, data: bytes = SBOM) -> tuple[BackendRef, str]:
    org = world.org()
    backend = world.backend(org, is_default=True)
    return backend, world.put(backend, data, filename="sbom.cdx.json")


def fetch(service: Service, digest: str, token: str | None, origin: str | None, **kw: Any) -> HttpResult:
    headers = {"Origin": origin} if origin else {}
    return service.invoke(link_event(digest, token, headers=headers, **kw), FakeLambdaContext())


def test_a_listed_origins_preflight_allows_a_bearer_token(
    world: World, links: Service, call_recorder: CallRecorder
) -> None:
    # Given the preflight Chainloop's UI sends before a fetch with Authorization: Bearer
    event = load_event("preflight_download")
    event["headers"]["origin"] = UI
    call_recorder.clear()

    # When it arrives
    answer = links.invoke(event, FakeLambdaContext())

    # Then 204, allowing GET and the Authorization header for that origin, and nothing else is read
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == UI
    assert "GET" in answer.headers["Access-Control-Allow-Methods"].split(", ")
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"].split(", ")
    assert answer.headers["Vary"] == "Origin"
    assert call_recorder.calls == []


def test_another_origins_preflight_gets_no_cors_header(links: Service) -> None:
    event = load_event("preflight_download")
    event["headers"]["origin"] = OTHER
    answer = links.invoke(event, FakeLambdaContext())
    assert answer.status == 204
    assert not [name for name in answer.headers if name.startswith("Access-Control-")]


def test_a_listed_origins_get_receives_the_verified_body_with_readable_headers(
    world: World, links: Service
) -> None:
    # Given an SBOM behind a link
    backend, digest = stored_sbom(world)

    # When the UI fetches the link from its origin
    answer = fetch(links, digest, token_for(backend), UI)

    # Then the verified bytes themselves (no redirect: storage needs no CORS rule), readable by the UI
    assert answer.status == 200
    assert answer.body == SBOM
    assert answer.headers["Access-Control-Allow-Origin"] == UI
    exposed = answer.headers["Access-Control-Expose-Headers"].split(", ")
    assert {"ETag", "Content-Disposition", "X-Cas-Backend", "X-Cas-Fallback"} <= set(exposed)
    assert answer.headers["Content-Disposition"] == 'attachment; filename="sbom.cdx.json"'


def test_a_listed_origins_get_over_the_body_limit_is_redirected_as_before(
    world: World, links: Service
) -> None:
    # Given a link to an object over MAX_BODY_BYTES
    links.configure(
        CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem, CHAINLOOP_ALLOWED_ORIGINS=UI, MAX_BODY_BYTES=1024
    )
    backend, digest = stored_sbom(world)

    # When the UI fetches it
    answer = fetch(links, digest, token_for(backend), UI)

    # Then the usual verified redirect, with the CORS headers (the storage's own CORS rule applies next)
    assert_redirected_by(answer, backend, fallback=False)
    assert answer.headers["Access-Control-Allow-Origin"] == UI


@pytest.mark.parametrize("origin", [OTHER, None], ids=["another origin", "no origin (a click, curl)"])
def test_anyone_else_gets_the_redirect_as_before_and_no_cors_header(
    world: World, links: Service, origin: str | None
) -> None:
    backend, digest = stored_sbom(world)
    answer = fetch(links, digest, token_for(backend), origin)
    assert_redirected_by(answer, backend, fallback=False)
    assert not [name for name in answer.headers if name.startswith("Access-Control-")]
    assert ("Vary" in answer.headers) == (origin is not None)


def test_an_error_answered_to_a_listed_origin_is_readable_by_it(world: World, links: Service) -> None:
    _, digest = stored_sbom(world)
    answer = fetch(links, digest, None, UI)
    assert (answer.status, answer.error_code) == (401, "unauthenticated")
    assert answer.headers["Access-Control-Allow-Origin"] == UI


def test_without_allowed_origins_nothing_changes(world: World, service: Service) -> None:
    service.configure(CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem)
    backend, digest = stored_sbom(world)
    answer = fetch(service, digest, token_for(backend), UI)
    assert_redirected_by(answer, backend, fallback=False)
    assert "Vary" not in answer.headers
    assert not [name for name in answer.headers if name.startswith("Access-Control-")]


def test_a_star_allows_any_origin_as_chainloops_cas_does(world: World, service: Service) -> None:
    service.configure(CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem, CHAINLOOP_ALLOWED_ORIGINS="*")
    backend, digest = stored_sbom(world)
    answer = fetch(service, digest, token_for(backend), OTHER)
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_the_v1_route_has_no_preflight(links: Service) -> None:
    event = load_event("get_redirect")
    event["routeKey"] = event["requestContext"]["routeKey"] = "OPTIONS /v1/artifacts/{digest}"
    event["requestContext"]["http"]["method"] = "OPTIONS"
    answer = links.invoke(event, FakeLambdaContext())
    assert (answer.status, answer.error_code) == (405, "method_not_allowed")
