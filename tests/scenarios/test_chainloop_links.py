"""Chainloop download links (spec "Chainloop download links"): ``GET|HEAD /download/{digest}?t=<token>``
with tokens minted as Chainloop's control plane mints them, served with the same fallback and proof."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.scenarios.conftest import HttpResult, Service, assert_failed, assert_redirected_by
from tests.scenarios.test_deadline import download_log_line, service_log  # noqa: F401 - a fixture
from tests.scenarios.test_oci import DATA as OCI_DATA
from tests.support.calls import CallRecorder
from tests.support.chainloop_links import control_plane_keys, link_event
from tests.support.events import FakeLambdaContext
from tests.support.provider_scenarios import oci_artifact
from tests.support.registry import Registry
from tests.support.world import BackendRef, World

DATA = b"chainloop artifact bytes\n" * 64
KEY, NEXT_KEY = control_plane_keys()


@pytest.fixture
def links(service: Service) -> Service:
    service.configure(CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem + NEXT_KEY.public_pem)
    return service


def token_for(backend: BackendRef, org: str | None = None, **fields: Any) -> str:
    """The token GetDownloadURL mints for ``backend`` (its provider and secret), in ``org`` (default its own)."""
    return KEY.mint(
        backend=backend.provider, secret_id=backend.secret_name, org_id=org or backend.org, **fields
    )


def follow(
    service: Service, context: FakeLambdaContext, digest: str, token: str | None, **kw: Any
) -> HttpResult:
    return service.invoke(link_event(digest, token, **kw), context)


def assert_unauthenticated(response: HttpResult, message: str) -> None:
    """A 401 whose message is exactly ``message`` (never the token)."""
    assert (response.status, response.error_code) == (401, "unauthenticated")
    assert response.json["error"]["message"] == message


def assert_answered_with_the_registrys_body(response: HttpResult, *, fallback: bool) -> None:
    """A 200 carrying the verified bytes (``OCI_DATA``) of the registry backend (``oci_artifact``'s
    "registry"), flagged a fallback or not."""
    assert response.status == 200
    assert response.body == OCI_DATA
    assert response.headers["X-Cas-Backend"] == "registry"
    assert response.headers["X-Cas-Fallback"] == ("true" if fallback else "false")


def test_a_link_redirects_to_its_backends_verified_url_without_any_mapping(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    # Given an artifact in the org's backend, and no mapping yet (the sync lags the upload)
    _org, backend, digest = world.artifact(DATA, filename="sbom.json", mapped=False)
    # When the link Chainloop hands out for it is followed
    response = follow(links, lambda_context, digest, token_for(backend))
    # Then it redirects to that backend's presigned URL, as an attachment, and the URL serves the bytes
    assert_redirected_by(response, backend, fallback=False)
    assert response.headers["Content-Disposition"] == 'attachment; filename="sbom.json"'
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_a_link_to_a_rotated_backend_falls_back_to_the_orgs_default(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    # Given the token's backend, whose keys were revoked, and the org's new default on the same bucket
    _org, old, new, digest = world.rotated(DATA)
    # When a link minted for the old backend is followed
    response = follow(links, lambda_context, digest, token_for(old))
    # Then the new default serves it, a fallback, after the old one was tried
    assert_redirected_by(response, new, fallback=True)
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_the_tokens_backend_comes_before_the_orgs_default(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    # Given two healthy backends holding the bytes, the token naming the one that is not the default
    org = world.org()
    bucket = world.bucket()
    default = world.backend(org, "default", bucket=bucket, is_default=True)
    other = world.backend(org, "other", bucket=bucket)
    digest = world.put(bucket, DATA)
    world.map(digest, org, default)
    # When the link is followed, Then the token's backend serves, and that is no fallback
    assert_redirected_by(follow(links, lambda_context, digest, token_for(other)), other, fallback=False)


def test_head_answers_like_get(world: World, links: Service, lambda_context: FakeLambdaContext) -> None:
    _org, backend, digest = world.artifact(DATA, filename="a.txt", mapped=False)
    get = follow(links, lambda_context, digest, token_for(backend))
    head = follow(links, lambda_context, digest, token_for(backend), method="HEAD")
    assert head.status == get.status == 307
    assert {k: v for k, v in head.headers.items() if k != "Location"} == {
        k: v for k, v in get.headers.items() if k != "Location"
    }
    assert head.body == b""


@pytest.mark.parametrize(
    ("asked", "disposition"),
    [
        # CR, LF, quotes and a path: no CR/LF is left, the quotes are escaped, the UTF-8 name is kept apart
        (
            '../evil"\r\nSet-Cookie: x=1; "résumé".txt',
            'attachment; filename="evil\\"Set-Cookie: x=1; \\"resume\\".txt"; '
            "filename*=UTF-8''evil%22Set-Cookie%3A%20x%3D1%3B%20%22r%C3%A9sum%C3%A9%22.txt",
        ),
        # two-dot leaders and fullwidth solidi around ".bashrc": only the last component is left
        ("\u2025\uff0f\u2025\uff0f.bashrc", 'attachment; filename=".bashrc"'),
    ],
    ids=["header-breaking", "look-alike-path"],
)
def test_the_filename_query_overrides_the_stored_name_as_one_safe_name_in_the_header_and_the_url(
    world: World, links: Service, lambda_context: FakeLambdaContext, asked: str, disposition: str
) -> None:
    # Given an artifact stored as "stored.txt"
    _org, backend, digest = world.artifact(DATA, filename="stored.txt", mapped=False)
    # When the link asks for a hostile name
    response = follow(links, lambda_context, digest, token_for(backend), query={"filename": asked})
    # Then the answer and the presigned URL name one file safely, with no CR/LF and no path
    assert "\r" not in response.headers["Content-Disposition"]
    assert "\n" not in response.headers["Content-Disposition"]
    assert response.headers["Content-Disposition"] == disposition
    signed = parse_qs(urlsplit(response.headers["Location"]).query)["response-content-disposition"][0]
    assert signed == disposition
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_a_token_in_the_authorization_header_is_accepted(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    _org, backend, digest = world.artifact(DATA, mapped=False)
    response = follow(
        links, lambda_context, digest, None, headers={"Authorization": f"Bearer {token_for(backend)}"}
    )
    assert_redirected_by(response, backend, fallback=False)


def test_no_token_is_401_naming_the_rule(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    _org, _backend, digest = world.artifact(DATA, mapped=False)
    response = follow(links, lambda_context, digest, None)
    assert response.status == 401
    assert response.error_code == "unauthenticated"
    assert response.json["error"]["message"].startswith("no token")


def test_an_expired_token_is_401_and_its_message_never_echoes_the_token(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    _org, backend, digest = world.artifact(DATA, mapped=False)
    token = token_for(backend, now=1_700_000_000)
    response = follow(links, lambda_context, digest, token)
    assert_unauthenticated(response, "the token has expired")
    assert token.split(".")[2] not in response.raw["body"]


def test_without_configured_keys_the_route_is_404(
    world: World, service: Service, lambda_context: FakeLambdaContext
) -> None:
    _org, backend, digest = world.artifact(DATA, mapped=False)
    service.configure()
    response = follow(service, lambda_context, digest, token_for(backend))
    assert (response.status, response.error_code) == (404, "not_found")


def test_an_older_token_without_org_id_is_served_in_the_org_holding_its_secret(
    world: World, links: Service, lambda_context: FakeLambdaContext, call_recorder: CallRecorder
) -> None:
    # Given an org's artifact, and other orgs' backends in the same table
    org = world.org()
    backend = world.backend(org, is_default=True)
    for _ in range(3):
        world.backend(world.org(), is_default=True)
    digest = world.put(backend, DATA)

    # When a token of an older Chainloop release (no org-id) is followed
    response = follow(
        links, lambda_context, digest, KEY.mint(backend="AWS-S3", secret_id=backend.secret_name, org_id=None)
    )

    # Then the org holding its secret serves it, found by one Query of the secret_name index: no Scan
    # reads every org's rows (the download role may not Scan)
    assert_redirected_by(response, backend, fallback=False)
    dynamodb = [c for c in call_recorder.calls if c.service == "dynamodb"]
    assert not [c for c in dynamodb if c.operation == "Scan"]
    by_secret = [c for c in dynamodb if c.params.get("IndexName") == "secret_name-index"]
    assert [c.operation for c in by_secret] == ["Query"]


def test_an_older_token_whose_secret_no_live_backend_holds_is_401(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    token = KEY.mint(backend="AWS-S3", secret_id="chainloop/nobody/nothing", org_id=None)
    response = follow(links, lambda_context, "sha256:" + "0" * 64, token)
    assert_unauthenticated(response, "the token names no org-id, and no backend hold its secret-id")


def test_an_older_token_whose_secret_backends_of_two_orgs_hold_is_401(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    # Given backends of two orgs whose rows name the same secret (inconsistent rows), the bytes in one
    first, second = world.backend(world.org(), is_default=True), world.backend(world.org(), is_default=True)
    world.update_backend(second, secret_name=first.secret_name)
    digest = world.put(first, DATA)

    # When a token of an older release (no org-id) names that secret
    token = KEY.mint(backend="AWS-S3", secret_id=first.secret_name, org_id=None)
    response = follow(links, lambda_context, digest, token)

    # Then no org is guessed: 401
    assert_unauthenticated(
        response, "the token names no org-id, and backends of several organizations hold its secret-id"
    )


def test_a_link_tries_the_orgs_other_mapped_backends_after_the_tokens(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    # Given the token's backend without the bytes, and another backend of the org, neither default nor
    # fallback, holding them and mapped to the digest
    org = world.org()
    token_backend, mapped = world.backend(org, "token-s3"), world.backend(org, "mapped-s3")
    digest = world.put(mapped, DATA)
    world.map(digest, org, mapped)

    # When the link is followed
    response = follow(links, lambda_context, digest, token_for(token_backend))

    # Then the mapped backend serves, a fallback from the token's
    assert_redirected_by(response, mapped, fallback=True)


@pytest.mark.parametrize("secret_of", ["B", "A"], ids=["org-B-token", "org-B-named-with-A-secret"])
def test_a_token_naming_another_org_never_reaches_this_orgs_bytes(
    world: World, links: Service, lambda_context: FakeLambdaContext, secret_of: str
) -> None:
    # Given org A's artifact, and org B with a backend of its own (an empty bucket)
    org_a, org_b = world.org(), world.org()
    backend_a = world.backend(org_a, is_default=True)
    backend_b = world.backend(org_b, is_default=True)
    digest = world.put(backend_a, DATA)
    world.map(digest, org_a, backend_a)
    # When a token naming org B, with B's own secret or with A's, is used for A's digest
    secret_holder = {"A": backend_a, "B": backend_b}[secret_of]
    response = follow(links, lambda_context, digest, token_for(secret_holder, org=org_b))
    # Then A's backend is not org B's: only B's own default is tried, and it has no such object
    assert_failed(response, 404, "content_missing", [(backend_b.name, "not_found")])


def test_an_org_without_live_backends_is_404(
    world: World, links: Service, lambda_context: FakeLambdaContext
) -> None:
    org = world.org()
    backend = world.backend(org, is_default=True, deleted=True)
    response = follow(links, lambda_context, "sha256:" + "1" * 64, token_for(backend))
    assert (response.status, response.error_code) == (404, "not_found")


def test_a_link_of_a_suspended_org_is_403_without_a_secret_or_storage_call(
    world: World, links: Service, call_recorder: CallRecorder, lambda_context: FakeLambdaContext
) -> None:
    # Given an org's artifact, and the org suspended in Chainloop (the sync flagged its rows)
    _org, backend, digest = world.artifact(DATA, mapped=False)
    world.update_backend(backend, org_suspended=True)
    call_recorder.clear()
    # When a link Chainloop minted for it is followed
    response = follow(links, lambda_context, digest, token_for(backend))
    # Then 403 org_suspended, and neither its secret nor its storage is touched
    assert (response.status, response.error_code) == (403, "org_suspended")
    assert call_recorder.count("secretsmanager") == 0
    assert call_recorder.storage_calls() == []


def test_the_log_line_and_metrics_name_the_route_and_never_the_token(
    world: World,
    links: Service,
    lambda_context: FakeLambdaContext,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a link
    org, backend, digest = world.artifact(DATA, mapped=False)
    token = token_for(backend)
    caplog.set_level(logging.DEBUG)
    capsys.readouterr()
    # When it is followed
    follow(links, lambda_context, digest, token)
    # Then the request's log line names the route and the token's org, and no record holds the token
    line = next(r for r in caplog.records if r.getMessage() == "download request")
    assert line.route == "/download/{digest}"  # type: ignore[attr-defined]
    assert line.caller_orgs == [org]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if token.split(".")[2] in str(r.__dict__)]
    # and the metrics (EMF on stdout) count the request under its route
    emf = [json.loads(out) for out in capsys.readouterr().out.splitlines() if '"_aws"' in out]
    assert [m["Route"] for m in emf if "RouteRequests" in m] == ["/download/{digest}"]


@pytest.mark.parametrize(
    ("query", "filename"),
    [({}, "release.tgz"), ({"filename": "sbom.spdx.json"}, "sbom.spdx.json")],
    ids=["stored-name", "query-name"],
)
def test_a_registry_with_no_direct_url_answers_the_link_with_the_verified_body(
    world: World,
    links: Service,
    lambda_context: FakeLambdaContext,
    registry: Registry,
    query: dict[str, str],
    filename: str,
) -> None:
    # Given the token's backend is a self-hosted registry (it serves blobs itself: no credential-free URL)
    oci = oci_artifact(world, registry, OCI_DATA, is_default=True)
    # When its link is followed, asking for a filename or not
    response = follow(links, lambda_context, oci.digest, token_for(oci.backend), query=query)
    # Then the answer is 200 with the verified bytes, as an attachment (under the stored name or the
    # query's, as a redirect's would be), as Chainloop's own CAS answers
    assert_answered_with_the_registrys_body(response, fallback=False)
    assert response.headers["Content-Disposition"] == f'attachment; filename="{filename}"'


@pytest.mark.parametrize(
    ("revoked_copy", "reason"),
    [(True, "credentials_invalid"), (False, "not_found")],
    ids=["holding-under-a-revoked-key", "lacking-the-object"],
)
def test_a_body_served_by_another_backend_than_the_tokens_is_a_fallback_and_the_tokens_is_asked_once(
    world: World,
    links: Service,
    lambda_context: FakeLambdaContext,
    registry: Registry,
    service_log: pytest.CaptureFixture[str],  # noqa: F811 - the fixture imported above
    revoked_copy: bool,
    reason: str,
) -> None:
    # Given the token's S3 backend, holding the bytes under a key that was revoked or lacking them, and
    # the org's default, a self-hosted registry holding them (no credential-free URL: it answers with
    # the body)
    org, _oci, _user, digest = oci_artifact(world, registry, OCI_DATA, is_default=True)
    token_s3 = world.backend(org, "token-s3")
    if revoked_copy:
        world.put(token_s3, OCI_DATA)
        world.revoke(token_s3)
    # When the S3 backend's link is followed
    response = follow(links, lambda_context, digest, token_for(token_s3))
    # Then the registry's verified body answers it, flagged a fallback; the S3 backend was asked once:
    # only a backend that has no credential-free URL is asked again, for the body
    assert_answered_with_the_registrys_body(response, fallback=True)
    attempts = download_log_line(service_log.readouterr().out)["attempts"]
    assert [(a["backend_name"], a["reason"]) for a in attempts] == [
        ("token-s3", reason),
        ("registry", "no_direct_url"),
    ]


def test_a_body_answering_a_token_whose_backend_is_not_synced_yet_is_a_fallback(
    world: World, links: Service, lambda_context: FakeLambdaContext, registry: Registry
) -> None:
    # Given an org whose default is a self-hosted registry holding the bytes (no mapping yet), and a
    # token for a backend of the org that has no row yet (the sync has copied neither)
    org, _oci, _user, digest = oci_artifact(world, registry, OCI_DATA, is_default=True, mapped=False)
    token = KEY.mint(backend="AWS-S3", secret_id=f"chainloop/{org}/not-synced-yet", org_id=org)

    # When the link is followed
    response = follow(links, lambda_context, digest, token)

    # Then the default's verified body answers it, a fallback from the token's backend
    assert_answered_with_the_registrys_body(response, fallback=True)


def test_a_registry_link_over_the_body_limit_is_too_large_for_a_body(
    world: World, links: Service, lambda_context: FakeLambdaContext, registry: Registry
) -> None:
    # Given the token's backend is a self-hosted registry (its answer is the body), and a body limit
    # one byte under the artifact
    _org, oci, _user, digest = oci_artifact(world, registry, OCI_DATA, is_default=True)
    links.configure(CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem, MAX_BODY_BYTES=len(OCI_DATA) - 1)

    # When its link is followed
    response = follow(links, lambda_context, digest, token_for(oci))

    # Then 413 too_large_for_body (the registry holds it, the body cannot carry it): no other error
    assert (response.status, response.error_code) == (413, "too_large_for_body")


def test_a_registry_link_prefers_another_backends_url_to_a_body(
    world: World, links: Service, lambda_context: FakeLambdaContext, registry: Registry
) -> None:
    # Given the token's registry backend and the org's S3 default holding the same bytes
    org, oci, _user, digest = oci_artifact(world, registry, OCI_DATA)
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, OCI_DATA)
    # When its link is followed, Then the S3 default's URL serves it (no body limit), a fallback
    assert_redirected_by(follow(links, lambda_context, digest, token_for(oci)), default, fallback=True)


def test_a_link_with_the_artifacts_etag_answers_304(world: World, links: Service) -> None:
    # Given a link to an artifact the browser already holds (its ETag)
    _org, backend, digest = world.artifact(DATA, mapped=False)
    first = follow(links, FakeLambdaContext(), digest, token_for(backend))
    # When it is followed again with If-None-Match
    again = follow(
        links,
        FakeLambdaContext(),
        digest,
        token_for(backend),
        headers={"If-None-Match": first.headers["ETag"]},
    )
    # Then 304, no body
    assert (first.status, again.status) == (307, 304)
    assert again.headers["ETag"] == first.headers["ETag"]


@pytest.mark.parametrize(
    "etag", ['"0123456789abcdef0123456789abcdef"', 'W/"another"', '"~ after every etag"']
)
def test_a_link_with_another_etag_is_served_not_304(world: World, links: Service, etag: str) -> None:
    # Given a link to an artifact, and a browser holding some other ETag
    _org, backend, digest = world.artifact(DATA, mapped=False)

    # When the link is followed with If-None-Match naming that other ETag
    response = follow(links, FakeLambdaContext(), digest, token_for(backend), headers={"If-None-Match": etag})

    # Then the artifact is served as without it
    assert_redirected_by(response, backend, fallback=False)
    assert response.headers["ETag"] != etag


def test_only_the_backend_holding_the_tokens_secret_is_the_tokens(world: World, links: Service) -> None:
    # Given two backends of one org, neither its default: the one whose secret name sorts first holds
    # the bytes, the token names the other's secret
    org = world.org()
    holder, token_backend = sorted(
        (world.backend(org, "first"), world.backend(org, "second")), key=lambda b: b.secret_name
    )
    digest = world.put(holder, DATA)

    # When the link is followed
    response = follow(links, FakeLambdaContext(), digest, token_for(token_backend))

    # Then only the token's backend is tried (a secret that merely sorts near it is another backend's)
    assert_failed(response, 404, "content_missing", [(token_backend.name, "not_found")])


def test_a_token_naming_s3_with_a_registrys_secret_is_not_that_registrys_token(
    world: World, links: Service, registry: Registry
) -> None:
    # Given an org whose S3 default lacks the bytes, and its registry backend holding them
    org = world.org()
    default = world.backend(org, "s3-default", is_default=True)
    _org, oci, _user, digest = oci_artifact(world, registry, OCI_DATA, org=org, mapped=False)

    # When a token names the registry's secret but the S3 provider
    response = follow(
        links, FakeLambdaContext(), digest, KEY.mint(backend="AWS-S3", secret_id=oci.secret_name, org_id=org)
    )

    # Then the registry is not the token's backend: only the default is tried, and lacks them
    assert_failed(response, 404, "content_missing", [(default.name, "not_found")])


def test_a_token_naming_another_provider_than_its_secrets_backend_is_not_that_backends_token(
    world: World, links: Service
) -> None:
    # Given an org whose default holds the bytes, and another S3 backend of the org holding them too
    org = world.org()
    default = world.backend(org, "default", is_default=True)
    other = world.backend(org, "other")
    digest = world.put(default, DATA)
    world.put(other, DATA)
    # When a token names the other backend's secret but another provider (OCI)
    token = KEY.mint(backend="OCI", secret_id=other.secret_name, org_id=org)
    response = follow(links, FakeLambdaContext(), digest, token)
    # Then that S3 backend is not the token's backend: the org's default serves, as for an unknown one
    assert_redirected_by(response, default, fallback=True)
