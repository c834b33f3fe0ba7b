"""API Gateway HTTP API (payload format 2.0) events: built from an HTTP request (the local server)
or read from a file of ``events/`` (``cas-local invoke``), and the Lambda context to go with them."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

ROUTE_PATH = "/v1/artifacts/{digest}"
ROUTE_PREFIX = "/v1/artifacts/"
ROUTE_METHODS = frozenset({"GET", "HEAD"})
# The link route's CORS preflight (template: PreflightChainloopLink)
LINK_ONLY_METHODS = frozenset({"OPTIONS"})
# Chainloop download links: outside the JWT authorizer (the link's token is the credential)
LINK_ROUTE_PATH = "/download/{digest}"
LINK_ROUTE_PREFIX = "/download/"
LOCAL_BEARER_PREFIX = "local:"
# The bytes behind the digest that every events/ file asks for (the demo seeds them).
EXAMPLE_DATA = b"hello, cas\n"
API_ID = "local"


def route_digest(path: str) -> str | None:
    """The ``{digest}`` segment when ``path`` is the artifact or the link route, else None (API
    Gateway: 404)."""
    prefix = LINK_ROUTE_PREFIX if path.startswith(LINK_ROUTE_PREFIX) else ROUTE_PREFIX
    if not path.startswith(prefix):
        return None
    segment = path.removeprefix(prefix)
    return segment if segment and "/" not in segment else None


def is_link_route(path: str) -> bool:
    return path.startswith(LINK_ROUTE_PREFIX)


def local_orgs(authorization: str | None) -> str | None:
    """``Bearer local:<org>[,<org>]`` -> the org list as the claim carries it; None if not that form.

    This is the local server's stand-in for API Gateway's JWT authorizer; it exists nowhere else.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(LOCAL_BEARER_PREFIX):
        return None
    return token.removeprefix(LOCAL_BEARER_PREFIX)


def http_event(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    *,
    orgs: str,
    org_claim: str = "org_id",
    source_ip: str = "127.0.0.1",
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway would send for this request on the artifact route, the
    JWT authorizer's claims replaced by the local org claim."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    link = is_link_route(raw_path)
    route = f"{method} {LINK_ROUTE_PATH if link else ROUTE_PATH}"
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "authorizer": {
                "jwt": {
                    "claims": {org_claim: orgs, "sub": f"local:{orgs}", "iss": "cas-local"},
                    "scopes": None,
                }
            },
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16] + "=",
            "routeKey": route,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "pathParameters": {"digest": route_digest(raw_path) or ""},
        "isBase64Encoded": False,
    }
    if link:  # no authorizer on the link route: API Gateway sends no authorizer context
        del event["requestContext"]["authorizer"]
    if params:
        event["queryStringParameters"] = params
    if cookies:
        event["cookies"] = cookies
    return event


def load_event_file(path: Path) -> dict[str, Any]:
    event = json.loads(path.read_text())
    if not isinstance(event, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return event


class LocalLambdaContext(LambdaContext):
    """Powertools' ``LambdaContext``, filled in as Lambda fills it, with the template's timeout."""

    def __init__(self, timeout_ms: int = 25_000, function_name: str = "cas-download-local") -> None:
        self.timeout_ms = timeout_ms
        self._function_name = function_name
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._memory_limit_in_mb = 512
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = "local"
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]  # static in the stub class
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))
