"""Input the service must accept in every spelling the spec allows, and input it must refuse with the
spec's 4xx JSON error: never a 500, never a traceback."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.scenarios.conftest import HttpResult, Service
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext, load_event
from tests.support.world import World

DATA = b"lib-0.9.1.whl contents\n" * 100
HEX = "0123456789abcdef" * 4  # a well-formed digest no test maps: input checks come first


def assert_json_error(response: HttpResult, status: int, code: str) -> None:
    """The spec's error document, exactly, with no attempts and nothing internal leaking out."""
    assert response.status == status, response.raw.get("body")
    assert response.headers["Content-Type"] == "application/json"
    assert response.raw["isBase64Encoded"] is False
    text = response.body.decode()
    assert "Traceback" not in text
    assert 'File "' not in text
    document = response.json
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message", "attempts"}
    assert document["error"]["code"] == code
    assert isinstance(document["error"]["message"], str)
    assert document["error"]["message"]
    assert document["error"]["attempts"] == []


# ---------------------------------------------------------------------------------------------------
# accepted spellings of a digest


@pytest.fixture
def stored(world: World) -> tuple[str, str]:
    """An org and the hex of a digest its default backend holds."""
    org, _backend, digest = world.artifact(DATA)
    return org, digest.removeprefix("sha256:")


ACCEPTED = {
    "upper_case_hex": "sha256:{upper}",
    "mixed_case_hex": "sha256:{mixed}",
    "url_encoded_colon": "sha256%3A{hex}",
    "url_encoded_colon_lower_case_escape": "sha256%3a{hex}",
    "url_encoded_colon_upper_case_hex": "sha256%3A{upper}",
    "bare_hex": "{hex}",
    "bare_upper_case_hex": "{upper}",
}


@pytest.mark.parametrize("spelling", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_accepted_digest_spelling_is_served_under_the_lower_case_etag(
    world: World, service: Service, stored: tuple[str, str], spelling: str
) -> None:
    # Given an artifact the caller's org holds
    org, hex_digest = stored
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(hex_digest))
    raw = spelling.format(hex=hex_digest, upper=hex_digest.upper(), mixed=mixed)

    # When the caller names it in this spelling
    response = service.get(raw, orgs=org)

    # Then it is served, and the ETag is the canonical lower-case digest
    assert response.status == 307
    assert response.headers["ETag"] == f'"sha256:{hex_digest}"'
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.status == 200
    assert fetched.body == DATA


def test_url_mode_document_names_the_canonical_digest_for_an_upper_case_request(
    service: Service, stored: tuple[str, str]
) -> None:
    # Given an artifact the caller's org holds
    org, hex_digest = stored

    # When the caller names it in upper case with an encoded colon
    response = service.get(f"sha256%3A{hex_digest.upper()}", orgs=org, mode="url")

    # Then the document's digest is the canonical lower-case form
    assert response.status == 200
    assert response.json["digest"] == f"sha256:{hex_digest}"


# ---------------------------------------------------------------------------------------------------
# refused digests

INVALID_DIGESTS = {
    "empty": "",
    "63_hex": "sha256:" + HEX[:63],
    "65_hex": "sha256:" + HEX + "0",
    "bare_63_hex": HEX[:63],
    "bare_65_hex": HEX + "a",
    "non_hex": "sha256:" + "g" * 64,
    "non_hex_last_char": "sha256:" + HEX[:63] + "z",
    "unicode_digits": "sha256:" + "\u0661" * 64,
    "fullwidth_hex": "sha256:" + "\uff41" * 64,
    "sha512": "sha512:" + HEX * 2,
    "sha512_with_64_hex": "sha512:" + HEX,
    "md5": "md5:" + HEX[:32],
    "md5_with_64_hex": "md5:" + HEX,
    "algorithm_only": "sha256:",
    "doubled_algorithm": "sha256:sha256:" + HEX,
    "double_encoded_colon": "sha256%253A" + HEX,
    "space_after_colon": "sha256: " + HEX,
    "trailing_newline": "sha256:" + HEX + "\n",
    "trailing_nul": "sha256:" + HEX + "%00",
    "path_traversal_encoded": "..%2F..%2Fetc%2Fpasswd",
    "path_traversal_after_digest": "sha256:" + HEX + "/../x",
    "encoded_traversal_after_digest": "sha256:" + HEX + "%2F..%2Fx",
    "traversal_before_digest": "../sha256:" + HEX,
    "ten_thousand_chars": "sha256:" + "a" * 9993,
}


@pytest.mark.parametrize("raw", INVALID_DIGESTS.values(), ids=INVALID_DIGESTS.keys())
def test_malformed_digest_is_400_invalid_digest(
    service: Service, call_recorder: CallRecorder, world: World, raw: str
) -> None:
    # Given a caller with an org
    org = world.org()

    # When the caller asks for a malformed digest
    response = service.get(raw, orgs=org)

    # Then 400 invalid_digest as the spec's JSON error, and no secret or storage call
    assert_json_error(response, 400, "invalid_digest")
    assert call_recorder.count("s3") == 0
    assert call_recorder.count("secretsmanager") == 0


def test_ten_thousand_char_digest_error_does_not_echo_the_input(world: World, service: Service) -> None:
    # Given a 10,000-character digest
    raw = "sha256:" + "a" * 9993

    # When the caller asks for it
    response = service.get(raw, orgs=world.org())

    # Then the error is short and does not repeat the input back
    assert_json_error(response, 400, "invalid_digest")
    assert len(response.body) < 1000
    assert "a" * 100 not in response.body.decode()


# ---------------------------------------------------------------------------------------------------
# refused modes

INVALID_MODES = {
    "unknown": "zip",
    "near_miss": "redirects",
    "repeated_parameter": "body,url",
}


@pytest.mark.parametrize("mode", INVALID_MODES.values(), ids=INVALID_MODES.keys())
def test_unknown_mode_is_400_invalid_mode(world: World, service: Service, mode: str) -> None:
    # Given a caller with an org and a well-formed digest
    # When the caller asks with an unknown mode (API Gateway joins a repeated parameter with commas)
    response = service.get(f"sha256:{HEX}", orgs=world.org(), mode=mode)

    # Then 400 invalid_mode as the spec's JSON error
    assert_json_error(response, 400, "invalid_mode")


# ---------------------------------------------------------------------------------------------------
# refused callers

NO_ORG_CLAIMS = {
    "missing_claim": [],
    "empty_claim": "",
    "blank_claim": "   ",
    "separators_only": " , ,",
    "empty_array": "[]",
}


@pytest.mark.parametrize("event_name", ["get_redirect", "get_lambda_authorizer"])
@pytest.mark.parametrize("orgs", NO_ORG_CLAIMS.values(), ids=NO_ORG_CLAIMS.keys())
def test_authorizer_without_an_org_is_401_unauthenticated(
    service: Service, call_recorder: CallRecorder, event_name: str, orgs: Any
) -> None:
    # Given an authorizer context whose org claim is missing or names no org
    # When the caller asks for a digest
    response = service.request(event_name, digest=f"sha256:{HEX}", orgs=orgs)

    # Then 401 unauthenticated as the spec's JSON error, and no secret or storage call
    assert_json_error(response, 401, "unauthenticated")
    assert call_recorder.count("s3") == 0
    assert call_recorder.count("secretsmanager") == 0


def test_request_without_any_authorizer_is_401_unauthenticated(service: Service) -> None:
    # Given a request that reached the function with no authorizer context at all
    # When it asks for a digest
    response = service.request("get_unauthenticated", digest=f"sha256:{HEX}")

    # Then 401 unauthenticated as the spec's JSON error
    assert_json_error(response, 401, "unauthenticated")


# ---------------------------------------------------------------------------------------------------
# events that are not a GET/HEAD HTTP API request (reachable only by invoking the function directly)


@pytest.mark.parametrize(
    "event", [None, [], "GET /v1/artifacts/x", 42, {}], ids=["none", "list", "str", "int", "empty_dict"]
)
def test_event_that_is_not_an_http_api_event_is_a_4xx_json_error(
    service: Service, lambda_context: FakeLambdaContext, event: Any
) -> None:
    # Given an event that is not an API Gateway HTTP API event
    # When the function is invoked with it
    response = service.invoke(event, lambda_context)

    # Then a 400 invalid_request JSON error, not a crash
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize("removed", ["requestContext", "requestContext.http"])
def test_event_without_request_context_is_a_4xx_json_error(
    service: Service, lambda_context: FakeLambdaContext, removed: str
) -> None:
    # Given an otherwise valid event missing its requestContext (or its http block)
    event = copy.deepcopy(load_event("get_redirect", digest=f"sha256:{HEX}", orgs="org-a"))
    if removed == "requestContext":
        del event["requestContext"]
    else:
        del event["requestContext"]["http"]

    # When the function is invoked with it
    response = service.invoke(event, lambda_context)

    # Then a 400 invalid_request JSON error, not a crash
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT", "OPTIONS"])
def test_method_other_than_get_or_head_is_405_method_not_allowed(service: Service, method: str) -> None:
    # Given an otherwise valid request with another method
    # When the function is invoked with it
    response = service.request("get_redirect", digest=f"sha256:{HEX}", orgs="org-a", method=method)

    # Then 405 method_not_allowed (README) as the spec's JSON error
    assert_json_error(response, 405, "method_not_allowed")
