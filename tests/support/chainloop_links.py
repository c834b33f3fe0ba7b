"""Chainloop's CAS key pairs and download tokens for tests: every valid token is minted by
``cas_admin.chainloop_link.mint_token`` (what Chainloop's control plane signs), and each is registered
with the suite-wide secret scan (a token is a credential: it must never reach a log)."""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cas_admin.chainloop_link import mint_token

from .events import EVENTS_DIR
from .hygiene import register as register_secret


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # SEC1 "EC PRIVATE KEY", as `openssl ecparam -genkey` writes Chainloop's
    public_pem: str  # SPKI "PUBLIC KEY", as `openssl ec -pubout`

    def mint(self, **fields: Any) -> str:
        """A token as Chainloop mints it (``mint_token``'s arguments), registered as a secret."""
        token = mint_token(self.private_pem, **fields)
        register_secret(token, "chainloop_cas_token")
        return token


def new_key_pair(curve: ec.EllipticCurve | None = None) -> KeyPair:
    key = ec.generate_private_key(curve or ec.SECP521R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem, public_pem.decode("ascii"))


@cache
def control_plane_keys() -> tuple[KeyPair, KeyPair]:
    """The control plane's current key and the one it rotates to (both configured while they overlap)."""
    return new_key_pair(), new_key_pair()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand (``alg: none`` and other forgeries PyJWT refuses to sign)."""
    parts = (json.dumps(header).encode(), json.dumps(claims).encode())
    token = ".".join([*(b64url(p) for p in parts), b64url(signature)])
    register_secret(token, "chainloop_cas_token")
    return token


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


LINK_ROUTE = "/download/{digest}"


def link_event(
    digest: str,
    token: str | None = None,
    *,
    method: str = "GET",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``events/download_redirect.json`` (an API Gateway event of the link route, no authorizer) for
    ``digest``, with ``t=token`` (None: no ``t``) and any other query and headers."""
    event: dict[str, Any] = copy.deepcopy(_link_template())
    context = event["requestContext"]
    context["requestId"] = uuid.uuid4().hex[:16] + "="
    route = f"{method} {LINK_ROUTE}"
    event["routeKey"] = context["routeKey"] = route
    context["http"]["method"] = method
    event["rawPath"] = context["http"]["path"] = f"/download/{digest}"
    event["pathParameters"] = {"digest": digest}
    params = {**({"t": token} if token is not None else {}), **(query or {})}
    event["rawQueryString"] = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    if params:
        event["queryStringParameters"] = params
    else:
        event.pop("queryStringParameters", None)
    event["headers"] = {**event["headers"], **{k.lower(): v for k, v in (headers or {}).items()}}
    return event


@cache
def _link_template() -> dict[str, Any]:
    return dict(json.loads((EVENTS_DIR / "download_redirect.json").read_text()))
