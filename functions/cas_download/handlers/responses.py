"""The one place where results and domain errors become HTTP responses (Lambda proxy format)."""

from __future__ import annotations

import json
from typing import TypedDict
from urllib.parse import quote

from cas_download.domain import Artifact, Attempt, Mode, NotModified, etag_for
from cas_download.errors import CasError
from cas_download.filenames import content_disposition

RETRY_AFTER_SECONDS = "1"
_NO_STORE = "private, no-store"


class Response(TypedDict):
    """A Lambda proxy response (API Gateway HTTP API, payload format 2.0)."""

    statusCode: int
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


def success_response(
    outcome: Artifact | NotModified, mode: Mode, method: str, *, attachment: bool = False
) -> Response:
    """``attachment``: always a Content-Disposition, ``attachment`` even without a filename (Chainloop
    download links, as Chainloop's CAS answers them)."""
    if isinstance(outcome, NotModified):
        return _response(304, {"ETag": etag_for(outcome.digest), "Cache-Control": _NO_STORE})
    headers = {
        "ETag": etag_for(outcome.digest),
        "X-Cas-Backend": _header_safe(outcome.backend.name),
        "X-Cas-Fallback": "true" if outcome.fallback else "false",
        "Cache-Control": _NO_STORE,
    }
    if outcome.info.filename:
        headers["Content-Disposition"] = content_disposition(outcome.info.filename)
    elif attachment:
        headers["Content-Disposition"] = "attachment"
    head_only = method == "HEAD"

    if mode is Mode.REDIRECT:
        assert outcome.url is not None
        headers["Location"] = outcome.url
        return _response(307, headers)
    if mode is Mode.URL:
        assert outcome.url is not None
        assert outcome.expires_at is not None
        document = {
            "digest": outcome.digest,
            "url": outcome.url,
            "expires_at": outcome.expires_at.isoformat().replace("+00:00", "Z"),
            "size": outcome.info.size,
            "filename": outcome.info.filename,
            "backend": {"id": outcome.backend.id, "name": outcome.backend.name},
            "fallback": outcome.fallback,
        }
        return _json(200, document, headers, head_only=head_only)
    assert outcome.body_base64 is not None
    headers["Content-Type"] = outcome.info.content_type or "application/octet-stream"
    headers["Content-Length"] = str(outcome.info.size)
    if head_only:
        return _response(200, headers)
    return _response(200, headers, outcome.body_base64, base64_encoded=True)


def error_response(error: CasError, method: str = "GET") -> Response:
    status = error.http_status
    headers = {"Cache-Control": "no-store"}
    if status == 503:
        # verification_pending knows when the proof should exist; any other 503 retries after a second
        retry_after = getattr(error, "retry_after_seconds", None)
        headers["Retry-After"] = str(retry_after) if retry_after else RETRY_AFTER_SECONDS
    document = {
        "error": {
            "code": error.code,
            "message": error.message,
            "attempts": [_public_attempt(a) for a in error.attempts],
        }
    }
    return _json(status, document, headers, head_only=method == "HEAD")


def _public_attempt(attempt: Attempt) -> dict[str, str]:
    return {"backend": attempt.backend.name, "reason": attempt.reason.value}


def _json(status: int, document: object, headers: dict[str, str], *, head_only: bool) -> Response:
    body = json.dumps(document, separators=(",", ":"))
    headers = {**headers, "Content-Type": "application/json"}
    if head_only:
        headers["Content-Length"] = str(len(body.encode()))
        return _response(status, headers)
    return _response(status, headers, body)


def _response(
    status: int, headers: dict[str, str], body: str = "", *, base64_encoded: bool = False
) -> Response:
    return {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": base64_encoded}


def _header_safe(value: str) -> str:
    """Header values must be ASCII: percent-encode anything else (names are human text)."""
    return (
        value
        if value.isascii() and value.isprintable()
        else quote(value, safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
    )
