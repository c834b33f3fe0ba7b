"""API Gateway HTTP API (payload 2.0) events, built only from the files in ``events/``.

The files are valid ``sam local invoke -e`` input. ``load_event`` rewrites the few fields a test
varies, keeping every copy of them consistent (``rawPath`` / ``requestContext.http.path`` /
``pathParameters``, ``rawQueryString`` / ``queryStringParameters``, ``routeKey`` /
``requestContext.routeKey`` / ``requestContext.http.method``, the authorizer's org claim).
"""

from __future__ import annotations

import copy
import json
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cas_local.events import LocalLambdaContext

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
EXAMPLE_DATA = b"hello, cas\n"
EXAMPLE_DIGEST = "sha256:afaa745206e121d8cb4c88dac08c52d728c24ed0b5fd5eb7a8d682ed8a39bc4c"
EXAMPLE_ORG = "org-example"
ROUTE_PATH = "/v1/artifacts/{digest}"
EVENT_NAMES = (
    "get_redirect",
    "get_url",
    "get_body",
    "head",
    "get_if_none_match",
    "get_lambda_authorizer",
    "get_invalid_digest",
    "get_unauthenticated",
)


class _Keep:
    """Sentinel: leave the field as the file has it."""


KEEP: Any = _Keep()


@cache
def _read(name: str) -> str:
    return (EVENTS_DIR / f"{name.removesuffix('.json')}.json").read_text()


def load_event(
    name: str,
    *,
    digest: str | None = None,
    orgs: str | Sequence[str] | None = None,
    mode: str | None = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str | None] | None = None,
    method: str | None = None,
    claim: str = "org_id",
    authorizer: Mapping[str, Any] | _Keep | None = KEEP,
) -> dict[str, Any]:
    """Load ``events/{name}.json`` and rewrite fields consistently. Every argument left out keeps the
    file's value.

    * ``digest``: placed as given in ``rawPath``, ``requestContext.http.path`` and
      ``pathParameters.digest`` (pass ``"sha256%3A..."`` for a URL-encoded colon).
    * ``orgs``: the org claim. A str is written verbatim (``"a,b"``, ``"a b"``, ``"[a b]"``); a
      sequence is joined with ``","``; an empty sequence removes the claim (authorizer still there).
      Written to ``authorizer.jwt.claims`` or ``authorizer.lambda``, whichever the file has.
      ``claim``: the claim's name (for ``ORG_CLAIM``).
    * ``mode``: sets ``mode=...`` in the query (merged with ``query`` when both are given).
    * ``query``: replaces the whole query string (``{}``: no query; API Gateway then omits
      ``queryStringParameters``).
    * ``headers``: merged, names lower-cased as API Gateway delivers them; a None value removes one.
    * ``method``: ``GET``/``HEAD``/...: routeKey becomes ``"{method} /v1/artifacts/{digest}"``.
    * ``authorizer``: replaces ``requestContext.authorizer`` wholesale (None removes it).
    """
    event: dict[str, Any] = json.loads(_read(name))
    ctx = event["requestContext"]
    ctx["requestId"] = uuid.uuid4().hex[:16] + "="
    now_ms = int(time.time() * 1000)
    ctx["timeEpoch"] = now_ms
    ctx["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000))

    if digest is not None:
        path = f"/v1/artifacts/{digest}"
        event["rawPath"] = path
        ctx["http"]["path"] = path
        event["pathParameters"] = {"digest": digest}

    if method is not None:
        route = f"{method.upper()} {ROUTE_PATH}"
        event["routeKey"] = route
        ctx["routeKey"] = route
        ctx["http"]["method"] = method.upper()

    if query is not None or mode is not None:
        params: dict[str, str] = (
            dict(query) if query is not None else dict(event.get("queryStringParameters") or {})
        )
        if mode is not None:
            params["mode"] = mode
        event["rawQueryString"] = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        if params:
            event["queryStringParameters"] = params
        else:
            event.pop("queryStringParameters", None)

    if headers is not None:
        merged = dict(event.get("headers") or {})
        for key, value in headers.items():
            if value is None:
                merged.pop(key.lower(), None)
            else:
                merged[key.lower()] = value
        event["headers"] = merged

    if not isinstance(authorizer, _Keep):
        if authorizer is None:
            ctx.pop("authorizer", None)
        else:
            ctx["authorizer"] = copy.deepcopy(dict(authorizer))

    if orgs is not None:
        auth = ctx.get("authorizer")
        if not auth:
            raise ValueError(f"event {name!r} has no authorizer to put orgs into")
        target = auth["jwt"]["claims"] if "jwt" in auth else auth.setdefault("lambda", {})
        target.pop("org_id", None)
        if isinstance(orgs, str):
            target[claim] = orgs
        elif orgs:
            target[claim] = ",".join(orgs)
        else:
            target.pop(claim, None)
    return event


# The local stack's Lambda context (the template's timeout) serves the tests too.
FakeLambdaContext = LocalLambdaContext


__all__ = [
    "EVENT_NAMES",
    "EXAMPLE_DATA",
    "EXAMPLE_DIGEST",
    "EXAMPLE_ORG",
    "FakeLambdaContext",
    "load_event",
]
