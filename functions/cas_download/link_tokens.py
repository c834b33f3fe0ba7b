"""Chainloop's CAS download tokens (SPEC.md "Chainloop download links"), verified in the function.

Chainloop's control plane mints them (``internal/robotaccount/cas/robotaccount.go``): a JWT signed
ES512 with its CAS private key (P-521), claims ``role``, ``secret-id``, ``backend``, ``maxbytes``,
``org-id`` (missing in older releases), ``iss`` (``cp.chainloop``), ``aud`` ``["artifact-cas.chainloop"]``
and ``exp`` (30 s after minting). Verified here rather than by an API Gateway Lambda authorizer: a
refusal names the rule that failed, which an authorizer's bare 401/403 cannot.

PyJWT (with ``cryptography`` for ECDSA): maintained, already shipped in the dependencies layer (MSAL
needs it), and pinned there. The ``alg`` header is checked against ES512 before anything else, and
PyJWT is given only ES512, so HS*/RS*/``none`` tokens are refused whatever the key. This module is
imported only when a ``/download`` request arrives (``handlers/links.py``): the ``/v1`` route's cold
start never loads PyJWT or the parts of ``cryptography`` it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from cas_download.config import ConfigError
from cas_download.errors import Unauthenticated

AUDIENCE = "artifact-cas.chainloop"
ALGORITHM = "ES512"
DOWNLOADER_ROLE = "downloader"
LEEWAY_SECONDS = 30
DEFAULT_MAX_LIFETIME_SECONDS = 3600
# An ES512 token with Chainloop's claims is about 600 characters; anything far longer is not one.
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class LinkGrant:
    """What a verified token grants: downloads through the backend whose secret is ``secret_id``
    (provider ``backend``) in org ``org_id`` (None: an older Chainloop release named no org)."""

    secret_id: str
    backend: str
    org_id: str | None


class LinkTokenVerifier:
    """Verifies tokens against the control plane's CAS public keys (several while a rotation overlaps)."""

    def __init__(
        self,
        public_keys_pem: Sequence[str],
        issuer: str | None,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = tuple(_p521_key(pem) for pem in public_keys_pem)
        self._issuer = issuer
        self._max_lifetime = max_lifetime_seconds
        # Every time rule (exp, nbf, iat, the lifetime) reads this clock, not PyJWT's: the tests drive it.
        self._clock = clock

    def verify(self, token: str) -> LinkGrant:
        """The token's grant, or :class:`Unauthenticated` naming the rule that failed (never the token)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise Unauthenticated("the token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated("the token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("the token is not signed ES512")
        claims = self._claims(token)
        self._check_times(claims)
        return _grant(claims)

    def _check_times(self, claims: dict[str, object]) -> None:
        """exp in the future (within the leeway), nbf and iat not in it, and a lifetime of at most
        max_lifetime_seconds from iat (from now when there is none: Chainloop mints no iat)."""
        now = self._clock()
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        for name, value in times.items():
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise Unauthenticated(f"the token's {name} is not a number")
        exp, nbf, iat = (float(v) if isinstance(v, int | float) else None for v in times.values())
        assert exp is not None  # PyJWT required it
        if exp <= now - LEEWAY_SECONDS:
            raise Unauthenticated("the token has expired")
        if (nbf is not None and nbf > now + LEEWAY_SECONDS) or (
            iat is not None and iat > now + LEEWAY_SECONDS
        ):
            raise Unauthenticated("the token is not valid yet (nbf or iat in the future)")
        if exp - (iat if iat is not None else now) > self._max_lifetime:
            raise Unauthenticated(
                f"the token lives longer than {self._max_lifetime} s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"
            )

    def _claims(self, token: str) -> dict[str, object]:
        # PyJWT checks the signature, the audience and the issuer; the times are _check_times'
        options: jwt.types.Options = {
            "require": ["exp", "aud"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        for key in self._keys:
            try:
                claims: dict[str, object] = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=AUDIENCE,
                    issuer=self._issuer,
                    options=options,
                )
                return claims
            except jwt.InvalidSignatureError:
                continue  # perhaps the other key of an overlapping rotation
            except jwt.PyJWTError as error:
                raise Unauthenticated(_rule(error)) from None
            except (ValueError, TypeError):
                raise Unauthenticated("the token is not a JWT") from None
        raise Unauthenticated("the token's signature matches none of the configured keys")


def _rule(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat in the future)"
    if isinstance(error, jwt.InvalidAudienceError):
        return f"the token's audience is not {AUDIENCE}"
    if isinstance(error, jwt.InvalidIssuerError):
        return "the token's issuer is not the configured one"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no {error.claim} claim"
    return "the token is not a valid JWT"


def _grant(claims: dict[str, object]) -> LinkGrant:
    if claims.get("role") != DOWNLOADER_ROLE:
        raise Unauthenticated("the token's role is not downloader")
    secret_id, backend, org_id = claims.get("secret-id"), claims.get("backend"), claims.get("org-id")
    if not isinstance(secret_id, str) or not secret_id.strip():
        raise Unauthenticated("the token names no secret-id")
    if not isinstance(backend, str) or not backend.strip():
        raise Unauthenticated("the token names no backend")
    if org_id is not None and not isinstance(org_id, str):
        raise Unauthenticated("the token's org-id is not a string")
    return LinkGrant(secret_id, backend, org_id.strip() or None if org_id else None)


def _p521_key(pem: str) -> ec.EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"CHAINLOOP_CAS_PUBLIC_KEYS: a key cannot be read: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP521R1):
        raise ConfigError("CHAINLOOP_CAS_PUBLIC_KEYS: every key must be an EC P-521 public key (ES512)")
    return key
