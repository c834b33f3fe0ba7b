"""The three response modes, HEAD, If-None-Match, filenames and versioned buckets."""

from __future__ import annotations

import base64
import datetime as dt
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.scenarios.conftest import HttpResult, Service, presigned_key_id
from tests.support.calls import CallRecorder
from tests.support.world import BackendRef, World, sha256_digest

DATA = b"tool-4.2.0-linux-amd64.tgz contents\n" * 100
CORRUPT = b"overwritten, not the artifact\n" * 100
MODES = ("redirect", "url", "body")
SUCCESS_STATUS = {"redirect": 307, "url": 200, "body": 200}
NON_ASCII_NAME = "résumé 2026.pdf"
# RFC 5987 ext-value characters: attr-char or a percent-encoded octet
_EXT_VALUE = re.compile(r"(?:[A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-Fa-f]{2})+")
_DISPOSITION = re.compile(r'attachment; filename="((?:[^"\\]|\\.)*)"; filename\*=UTF-8\'\'(\S+)')


def healthy(
    world: World, data: bytes = DATA, *, filename: str | None = None, content_type: str | None = None
) -> tuple[str, str, BackendRef]:
    """An org whose default backend holds ``data``, mapped to it."""
    org = world.org()
    backend = world.backend(org, "primary", is_default=True)
    digest = world.put(backend, data, filename=filename, content_type=content_type)
    world.map(digest, org, backend)
    return org, digest, backend


def url_of(response: HttpResult, mode: str) -> str:
    return response.headers["Location"] if mode == "redirect" else response.json["url"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


# ---------------------------------------------------------------------------------------------------
# body mode


# application/octet-stream too passes through: S3 itself stores binary/octet-stream when an uploader
# gives no type, so "no content type at all" cannot be built against S3
@pytest.mark.parametrize("content_type", ["application/gzip", "application/octet-stream"])
def test_body_mode_returns_the_exact_bytes_base64_encoded_with_their_headers(
    world: World, service: Service, content_type: str
) -> None:
    # Given an artifact stored with its own content type
    org, digest, backend = healthy(world, content_type=content_type)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the exact bytes come back base64-encoded, with length, that type and the success headers
    assert response.status == 200
    assert response.raw["isBase64Encoded"] is True
    assert base64.b64decode(response.raw["body"], validate=True) == DATA
    assert response.body == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Content-Type"] == content_type
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["X-Cas-Backend"] == backend.name
    assert response.headers["X-Cas-Fallback"] == "false"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "Location" not in response.headers


def test_body_mode_serves_an_object_exactly_at_the_body_limit(world: World, service: Service) -> None:
    # Given a body limit of 64 bytes and an artifact of exactly 64 bytes
    data = b"x" * 63 + b"\n"
    org, digest, _backend = healthy(world, data, content_type="text/plain")
    service.configure(MAX_BODY_BYTES=len(data))

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then it is served
    assert response.status == 200
    assert response.body == data
    assert response.headers["Content-Length"] == "64"


def test_body_mode_over_the_limit_is_413_naming_the_other_modes(world: World, service: Service) -> None:
    # Given a body limit of 64 bytes and an artifact of 65 bytes
    data = b"y" * 64 + b"\n"
    org, digest, _backend = healthy(world, data, content_type="text/plain")
    service.configure(MAX_BODY_BYTES=64)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then 413 too_large_for_body, whose message names redirect and url, and no bytes of the artifact
    assert response.status == 413
    assert response.error_code == "too_large_for_body"
    assert response.headers["Content-Type"] == "application/json"
    message = response.json["error"]["message"]
    assert "redirect" in message
    assert "url" in message
    assert response.attempts == []
    assert data not in response.body
    assert response.raw["isBase64Encoded"] is False


# ---------------------------------------------------------------------------------------------------
# url mode


def test_url_mode_returns_the_spec_document_with_a_fetchable_url(world: World, service: Service) -> None:
    # Given an artifact with a filename
    org, digest, backend = healthy(world, filename="tool.tgz")

    # When the caller asks for a URL
    response = service.get(digest, orgs=org, mode="url")

    # Then 200 JSON with exactly the spec's fields, and the URL serves the bytes
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json
    assert set(document) == {"digest", "url", "expires_at", "size", "filename", "backend", "fallback"}
    assert document["digest"] == digest
    assert document["size"] == len(DATA)
    assert document["filename"] == "tool.tgz"
    assert document["backend"] == {"id": backend.id, "name": backend.name}
    assert document["fallback"] is False
    assert presigned_key_id(document["url"]) == backend.access_key_id
    fetched = world.fetch_presigned(document["url"])
    assert fetched.status == 200
    assert fetched.body == DATA
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["X-Cas-Backend"] == backend.name
    assert response.headers["X-Cas-Fallback"] == "false"
    assert response.headers["Cache-Control"] == "private, no-store"


def test_url_mode_expires_at_is_presign_ttl_ahead_and_matches_the_signed_expiry(
    world: World, service: Service
) -> None:
    # Given PRESIGN_TTL_SECONDS=120
    org, digest, _backend = healthy(world)
    service.configure(PRESIGN_TTL_SECONDS=120)

    # When the caller asks for a URL
    before = dt.datetime.now(dt.UTC)
    response = service.get(digest, orgs=org, mode="url")
    after = dt.datetime.now(dt.UTC)

    # Then expires_at is an ISO 8601 UTC time about 120 s ahead, and the URL is signed for 120 s
    assert response.status == 200
    expires_at = dt.datetime.fromisoformat(response.json["expires_at"])
    assert expires_at.utcoffset() == dt.timedelta(0)
    slack = dt.timedelta(seconds=3)
    assert (
        before + dt.timedelta(seconds=120) - slack <= expires_at <= after + dt.timedelta(seconds=120) + slack
    )
    url = response.json["url"]
    assert query_of(url)["X-Amz-Expires"] == "120"
    assert abs(world.fetch_presigned(url).expires_at - expires_at) <= slack


# ---------------------------------------------------------------------------------------------------
# redirect is the default; unknown modes are refused


@pytest.mark.parametrize("mode", [None, "redirect"], ids=["no_mode", "mode_redirect"])
def test_redirect_is_the_default_mode(world: World, service: Service, mode: str | None) -> None:
    # Given a healthy artifact
    org, digest, backend = healthy(world)

    # When the caller asks with no mode, or mode=redirect
    query = {} if mode is None else {"mode": mode}
    response = service.request("get_redirect", digest=digest, orgs=org, query=query)

    # Then 307 to a presigned URL that serves the bytes, and no body
    assert response.status == 307
    assert response.body == b""
    assert presigned_key_id(response.headers["Location"]) == backend.access_key_id
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_unknown_mode_is_400_invalid_mode(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a healthy artifact
    org, digest, _backend = healthy(world)

    # When the caller asks with mode=zip
    response = service.get(digest, orgs=org, mode="zip")

    # Then 400 invalid_mode, and no storage call
    assert response.status == 400
    assert response.error_code == "invalid_mode"
    assert response.attempts == []
    assert call_recorder.count("s3") == 0


# ---------------------------------------------------------------------------------------------------
# HEAD


@pytest.mark.parametrize("mode", ["redirect", "body"])
def test_head_answers_like_get_with_an_empty_body(world: World, service: Service, mode: str) -> None:
    # Given a healthy artifact with a filename and a content type
    org, digest, _backend = healthy(world, filename="tool.tgz", content_type="application/gzip")
    query = {"mode": mode}

    # When the caller sends HEAD, then GET
    head = service.request("head", digest=digest, orgs=org, query=query)
    get = service.request("get_redirect", digest=digest, orgs=org, query=query)

    # Then HEAD has GET's status and headers (a fresh presigned Location aside) and no body
    assert head.status == get.status == SUCCESS_STATUS[mode]
    assert set(head.headers) == set(get.headers)
    for name, value in get.headers.items():
        if name != "Location":
            assert head.headers[name] == value, name
    assert head.raw["body"] in ("", None)
    assert head.body == b""
    if mode == "body":
        assert head.headers["Content-Length"] == str(len(DATA))
        assert get.body == DATA
    else:
        assert world.fetch_presigned(head.headers["Location"]).body == DATA


# ---------------------------------------------------------------------------------------------------
# If-None-Match


@pytest.mark.parametrize("mode", MODES)
def test_if_none_match_equal_to_the_etag_is_304_without_any_storage_or_secret_call(
    world: World, service: Service, call_recorder: CallRecorder, mode: str
) -> None:
    # Given a healthy artifact
    org, digest, _backend = healthy(world)

    # When the caller revalidates with If-None-Match equal to its ETag
    response = service.request(
        "get_if_none_match", digest=digest, orgs=org, mode=mode, headers={"If-None-Match": f'"{digest}"'}
    )

    # Then 304 with the ETag and no body, and neither a secret nor storage was touched
    assert response.status == 304
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.body == b""
    assert "Location" not in response.headers
    assert call_recorder.count("s3") == 0
    assert call_recorder.count("secretsmanager") == 0


def test_if_none_match_for_another_digest_serves_normally(world: World, service: Service) -> None:
    # Given a healthy artifact
    org, digest, backend = healthy(world)
    other = sha256_digest(b"some other artifact")

    # When the caller sends If-None-Match with another digest's ETag
    response = service.request(
        "get_if_none_match", digest=digest, orgs=org, headers={"If-None-Match": f'"{other}"'}
    )

    # Then it is served as usual
    assert response.status == 307
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["X-Cas-Backend"] == backend.name
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_if_none_match_for_a_digest_the_callers_org_does_not_hold_is_not_found(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a digest held by org X only
    _org_x, digest, _backend = healthy(world)
    org_y = world.org()

    # When a caller of org Y revalidates it with the matching ETag
    response = service.request(
        "get_if_none_match", digest=digest, orgs=org_y, headers={"If-None-Match": f'"{digest}"'}
    )

    # Then 404 not_found, not 304: a 304 would confirm the artifact exists
    assert response.status == 404
    assert response.error_code == "not_found"
    assert "ETag" not in response.headers
    assert call_recorder.count("s3") == 0


# ---------------------------------------------------------------------------------------------------
# filenames


@pytest.mark.parametrize("mode", MODES)
def test_ascii_filename_gives_a_quoted_content_disposition(world: World, service: Service, mode: str) -> None:
    # Given an artifact whose metadata names it x.tgz
    org, digest, _backend = healthy(world, filename="x.tgz")

    # When the caller asks for it
    response = service.get(digest, orgs=org, mode=mode)

    # Then Content-Disposition is an attachment with the quoted name, and nothing else
    assert response.status == SUCCESS_STATUS[mode]
    assert response.headers["Content-Disposition"] == 'attachment; filename="x.tgz"'


def test_non_ascii_filename_gives_an_ascii_fallback_and_a_utf8_filename_star(
    world: World, service: Service
) -> None:
    # Given an artifact whose name is not ASCII (stored RFC 2047-encoded in S3 metadata)
    org, digest, backend = healthy(world, filename=NON_ASCII_NAME)
    assert world.head(backend, digest)["Metadata"]["filename"].startswith("=?UTF-8?")

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then a quoted ASCII fallback plus filename*=UTF-8'' with the percent-encoded UTF-8 name
    assert response.status == 307
    disposition = response.headers["Content-Disposition"]
    assert disposition.isascii()
    match = _DISPOSITION.fullmatch(disposition)
    assert match, disposition
    fallback, encoded = match.groups()
    assert fallback.strip()
    assert fallback.isprintable()
    assert _EXT_VALUE.fullmatch(encoded), encoded
    assert unquote(encoded, encoding="utf-8", errors="strict") == NON_ASCII_NAME


def test_url_mode_reports_the_decoded_non_ascii_filename(world: World, service: Service) -> None:
    # Given an artifact whose name is not ASCII
    org, digest, _backend = healthy(world, filename=NON_ASCII_NAME)

    # When the caller asks for a URL
    response = service.get(digest, orgs=org, mode="url")

    # Then the document's filename is the decoded name
    assert response.status == 200
    assert response.json["filename"] == NON_ASCII_NAME


@pytest.mark.parametrize("name", ["x.tgz", NON_ASCII_NAME], ids=["ascii", "non_ascii"])
def test_presigned_url_carries_the_content_disposition_and_s3_sends_it_back(
    world: World, service: Service, name: str
) -> None:
    # Given an artifact with a filename
    org, digest, _backend = healthy(world, filename=name)

    # When the caller is redirected and follows the URL
    response = service.get(digest, orgs=org)
    location = response.headers["Location"]
    fetched = world.fetch_presigned(location)

    # Then the URL asks S3 for the same Content-Disposition, and the download carries it
    disposition = response.headers["Content-Disposition"]
    assert query_of(location)["response-content-disposition"] == disposition
    assert fetched.status == 200
    assert fetched.headers["content-disposition"] == disposition
    assert fetched.body == DATA


@pytest.mark.parametrize("mode", MODES)
def test_no_filename_means_no_content_disposition(world: World, service: Service, mode: str) -> None:
    # Given an artifact without a filename
    org, digest, _backend = healthy(world)

    # When the caller asks for it
    response = service.get(digest, orgs=org, mode=mode)

    # Then no Content-Disposition anywhere: not in the response, not in the URL, null in the document
    assert response.status == SUCCESS_STATUS[mode]
    assert "Content-Disposition" not in response.headers
    assert all(name.lower() != "content-disposition" for name in response.headers)
    if mode != "body":
        assert "response-content-disposition" not in query_of(url_of(response, mode))
    if mode == "url":
        assert response.json["filename"] is None


# ---------------------------------------------------------------------------------------------------
# versioned buckets


@pytest.mark.parametrize("mode", ["redirect", "url"])
def test_presigned_url_pins_the_verified_version(world: World, service: Service, mode: str) -> None:
    # Given an artifact in a versioned bucket
    org = world.org()
    backend = world.backend(org, "versioned", bucket=world.bucket(versioned=True), is_default=True)
    digest = world.put(backend, DATA)
    version = world.puts[(backend.bucket, backend.key_for(digest))].version_id
    assert version
    world.map(digest, org, backend)

    # When the caller gets a URL, and the key is overwritten with other bytes afterwards
    response = service.get(digest, orgs=org, mode=mode)
    url = url_of(response, mode)
    world.put_corrupt(backend, digest, CORRUPT)
    fetched = world.fetch_presigned(url)

    # Then the URL names the verified version and still serves the verified bytes
    assert query_of(url)["versionId"] == version
    assert fetched.status == 200
    assert fetched.version_id == version
    assert fetched.body == DATA
