"""API Gateway HTTP API (payload 2.0) event -> a validated :class:`DownloadRequest`.

The event is read through Powertools' event data class, ``APIGatewayProxyEventV2``. Its accessors
assume the shape API Gateway sends; an event built by hand, truncated or fuzzed may lack a part or hold
another type there, so every read goes through :func:`_part`: such a part reads as absent, and the
request gets the 400 or 401 its absence means, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from cas_download.digests import parse_digest
from cas_download.domain import DownloadRequest, Mode
from cas_download.errors import InvalidMode, InvalidRequest, MethodNotAllowed
from cas_download.identity import parse_orgs

ALLOWED_METHODS = frozenset({"GET", "HEAD"})
_ROUTE_PREFIX = "/v1/artifacts/"


def http_event(event: object) -> APIGatewayProxyEventV2:
    """The event as Powertools' data class (a non-mapping event reads as an empty one)."""
    return APIGatewayProxyEventV2(event if isinstance(event, dict) else {})


def request_method(event: APIGatewayProxyEventV2) -> str:
    method = _part(lambda: event.http_method)
    if method is None:
        # A payload 1.0 event names it at the top level.
        method = event.get("httpMethod")
    if not isinstance(method, str) or not method:
        raise InvalidRequest("the event names no HTTP method")
    method = method.upper()
    if method not in ALLOWED_METHODS:
        raise MethodNotAllowed(f"method {method[:16]} is not allowed: use GET or HEAD")
    return method


def parse_request(event: APIGatewayProxyEventV2, org_claim: str) -> DownloadRequest:
    orgs = parse_orgs(_claim(event, org_claim))
    digest = parse_digest(_raw_digest(event))
    mode = _mode(_mapping(_part(lambda: event.query_string_parameters)).get("mode"))
    return DownloadRequest(digest=digest, orgs=orgs, mode=mode, if_none_match=_header(event, "if-none-match"))


def _part(read: Callable[[], object]) -> object:
    """One accessor of the data class, or None where the event lacks that part or has another shape."""
    try:
        return read()
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _claim(event: APIGatewayProxyEventV2, org_claim: str) -> object:
    """The org claim from the JWT authorizer, else from a Lambda authorizer's context."""
    claims = _mapping(_part(lambda: event.request_context.authorizer.jwt_claim))
    if org_claim in claims:
        return claims[org_claim]
    return _mapping(_part(lambda: event.request_context.authorizer.get_lambda)).get(org_claim)


def _raw_digest(event: APIGatewayProxyEventV2) -> object:
    from_route = _mapping(_part(lambda: event.path_parameters)).get("digest")
    if from_route is not None:
        return from_route
    raw_path = _part(lambda: event.raw_path)
    if isinstance(raw_path, str) and raw_path.startswith(_ROUTE_PREFIX):
        return raw_path.removeprefix(_ROUTE_PREFIX)
    return None


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


def _header(event: APIGatewayProxyEventV2, name: str) -> str | None:
    # The data class's headers are case-insensitive, as HTTP's are; only a mapping of them is read.
    if not isinstance(event.get("headers"), dict):
        return None
    value = _part(lambda: event.headers.get(name))
    return value if isinstance(value, str) else None
