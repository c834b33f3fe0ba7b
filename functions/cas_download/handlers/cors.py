"""CORS on ``/download`` links (spec "Chainloop download links", *Browsers*): Chainloop's UI ``fetch()``es
them from its own origin, as its CAS allows for ``cas.allowedOrigins`` (``app/artifact-cas/internal/
server/cors.go``, whose answers these follow): a listed origin is echoed with ``Vary: Origin``; ``*``
allows any; an origin not listed gets no CORS header, so the browser refuses the answer; a request
without ``Origin`` (a click, curl) is answered as before.
"""

from __future__ import annotations

from cas_download.handlers.responses import Response

# What the UI may read of an answer: the proof's headers, the file's name, and when to come back.
EXPOSED_HEADERS = "ETag, Content-Disposition, Content-Length, Retry-After, X-Cas-Backend, X-Cas-Fallback"
# A preflight's answer: the methods a link has, and the headers the UI sends (a Bearer token).
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, If-None-Match"
PREFLIGHT_MAX_AGE_SECONDS = "86400"


def allowed_origin(origin: str | None, allowed: tuple[str, ...]) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``: itself when listed, ``*`` when any
    origin is; None when it gets no CORS header."""
    if not origin or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def with_cors(response: Response, origin: str | None, allowed: tuple[str, ...]) -> Response:
    """``response`` with the CORS headers ``origin`` gets (none without an Origin or a list)."""
    if not origin or not allowed:
        return response
    headers = {**response["headers"], "Vary": "Origin"}  # the answer depends on the Origin
    matched = allowed_origin(origin, allowed)
    if matched is not None:
        headers["Access-Control-Allow-Origin"] = matched
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return {**response, "headers": headers}


def preflight_response(origin: str | None, allowed: tuple[str, ...]) -> Response:
    """``OPTIONS`` with ``Access-Control-Request-Method``: 204, with what a listed origin may send."""
    headers: dict[str, str] = {}
    if allowed_origin(origin, allowed) is not None:
        headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_SECONDS
    response: Response = {"statusCode": 204, "headers": headers, "body": "", "isBase64Encoded": False}
    return with_cors(response, origin, allowed)
