"""API Gateway HTTP API (payload 2.0) event -> a validated :class:`DownloadRequest`.

Every field is read defensively: a malformed event is a 400, never an exception.

Not through Powertools' ``APIGatewayProxyEventV2``: importing it runs the ``data_classes`` package,
which imports every event type Powertools knows (about 50 modules). As shipped (no byte code in
Lambda's read-only /opt) that cost 134 ms of cold start (median of 12 paired processes), taking the
cold-start ratio past its 1.5 target (README "Performance"). The five fields read here are the whole
of what the route needs; a unit test keeps the package out of the handlers' imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cas_download.digests import parse_digest
from cas_download.domain import DownloadRequest, Mode
from cas_download.errors import InvalidMode, InvalidRequest, MethodNotAllowed
from cas_download.filenames import decode_filename
from cas_download.identity import parse_orgs

if TYPE_CHECKING:  # /v1 never imports the link route's logic (cold start): parse_link_request does
    from cas_download.logic.links import LinkRequest

ALLOWED_METHODS = frozenset({"GET", "HEAD"})
# A CORS preflight: only on the link route (spec "Chainloop download links", Browsers)
PREFLIGHT_METHOD = "OPTIONS"
ARTIFACTS_ROUTE = "/v1/artifacts/{digest}"
LINK_ROUTE = "/download/{digest}"
_ROUTE_PREFIX = "/v1/artifacts/"
_LINK_PREFIX = "/download/"
_BEARER = "bearer "


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def request_method(event: object) -> str:
    event_dict = _dict(event)
    http = _dict(_dict(event_dict.get("requestContext")).get("http"))
    method = http.get("method", event_dict.get("httpMethod"))
    if not isinstance(method, str) or not method:
        raise InvalidRequest("the event names no HTTP method")
    method = method.upper()
    if method not in ALLOWED_METHODS and not (method == PREFLIGHT_METHOD and route_of(event) == LINK_ROUTE):
        raise MethodNotAllowed(f"method {method[:16]} is not allowed: use GET or HEAD")
    return method


def request_origin(event: object) -> str | None:
    """The browser's ``Origin`` header (None without one: a click, curl, the CLI)."""
    origin = _header(_dict(event), "origin")
    return origin.strip() or None if origin is not None else None


def parse_request(event: object, org_claim: str) -> DownloadRequest:
    if not isinstance(event, dict):
        raise InvalidRequest("the event is not an API Gateway HTTP API event")
    orgs = parse_orgs(_claim(event, org_claim))
    digest = parse_digest(_raw_digest(event))
    mode = _mode(_dict(event.get("queryStringParameters")).get("mode"))
    if_none_match = _header(event, "if-none-match")
    return DownloadRequest(digest=digest, orgs=orgs, mode=mode, if_none_match=if_none_match)


def _claim(event: dict[str, Any], org_claim: str) -> object:
    authorizer = _dict(_dict(event.get("requestContext")).get("authorizer"))
    claims = _dict(_dict(authorizer.get("jwt")).get("claims"))
    if org_claim in claims:
        return claims[org_claim]
    return _dict(authorizer.get("lambda")).get(org_claim)


def _raw_digest(event: dict[str, Any], prefix: str = _ROUTE_PREFIX) -> object:
    from_route = _dict(event.get("pathParameters")).get("digest")
    if from_route is not None:
        return from_route
    raw_path = event.get("rawPath")
    if isinstance(raw_path, str) and raw_path.startswith(prefix):
        return raw_path.removeprefix(prefix)
    return None


def route_of(event: object) -> str:
    """The event's route: the Chainloop link route when API Gateway's route key (or, without one, the
    path) names it, else the artifacts route."""
    event_dict = _dict(event)
    route_key = event_dict.get("routeKey")
    if isinstance(route_key, str) and route_key.partition(" ")[2]:
        return LINK_ROUTE if route_key.partition(" ")[2] == LINK_ROUTE else ARTIFACTS_ROUTE
    raw_path = event_dict.get("rawPath")
    if isinstance(raw_path, str) and raw_path.startswith(_LINK_PREFIX):
        return LINK_ROUTE
    return ARTIFACTS_ROUTE


def parse_link_request(event: object) -> LinkRequest:
    """``GET|HEAD /download/{digest}?t=<token>[&filename=...][&mode=...]``: the token from ``t``, else
    ``Authorization: Bearer``; it is verified by the caller (handlers/links.py), not here."""
    from cas_download.logic.links import LinkRequest  # noqa: PLC0415 - the link route's only

    if not isinstance(event, dict):
        raise InvalidRequest("the event is not an API Gateway HTTP API event")
    digest = parse_digest(_raw_digest(event, _LINK_PREFIX))
    query = _dict(event.get("queryStringParameters"))
    mode = _mode(query.get("mode"))
    token = query.get("t")
    if not isinstance(token, str) or not token:
        authorization = _header(event, "authorization") or ""
        token = authorization[len(_BEARER) :].strip() if authorization.lower().startswith(_BEARER) else None
    raw_filename = query.get("filename")
    filename = decode_filename(raw_filename) if isinstance(raw_filename, str) else None
    return LinkRequest(
        digest=digest,
        token=token or None,
        mode=mode,
        filename=filename,
        if_none_match=_header(event, "if-none-match"),
    )


def _mode(raw: object) -> Mode:
    if raw is None:
        return Mode.REDIRECT
    if isinstance(raw, str):
        try:
            return Mode(raw.strip().lower())
        except ValueError:
            pass
    valid = ", ".join(m.value for m in Mode)
    raise InvalidMode(f"mode must be one of: {valid}")


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in _dict(event.get("headers")).items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None
