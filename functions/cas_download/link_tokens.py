"""Chainloop's CAS download tokens (SPEC.md "Chainloop download links"), verified in the function.

Chainloop's control plane mints them (``internal/robotaccount/cas/robotaccount.go``): a JWT signed
ES512 with its CAS private key (P-521), claims ``role``, ``secret-id``, ``backend``, ``maxbytes``,
``org-id`` (missing in older releases), ``iss`` (``cp.chainloop``), ``aud`` ``["artifact-cas.chainloop"]``
and ``exp`` (30 s after minting). Verified here rather than by an API Gateway Lambda authorizer: a
refusal names the rule that failed, which an authorizer's bare 401/403 cannot.

One algorithm, checked with ``cryptography`` alone (ECDSA P-521 over SHA-512, RFC 7518 section 3.4):
the ``alg`` header must be ES512 before anything else, the signature must be the 132 bytes of ``r || s``,
and it must verify under one of the configured keys; only then are the claims read. PyJWT would do the
same, but importing it loads every algorithm it knows, X.509 and SSH serialization, and urllib for JWKS:
about 60 ms more of the ``/download`` route's cold start on Lambda's Python (BENCHMARKS.md, cold start),
for a token format this small. The keys are read with ``cryptography``'s own point validation from
the fixed DER form of a P-521 public key (RFC 5480), so ``serialization`` (and its SSH parser) is not
imported either. This module is imported only when a ``/download`` request arrives
(``handlers/links.py``): the ``/v1`` route's cold start never loads ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from msgspec import Struct

from cas_download.config import PEM_PUBLIC_KEY, ConfigError
from cas_download.errors import Unauthenticated

AUDIENCE = "artifact-cas.chainloop"
ALGORITHM = "ES512"
DOWNLOADER_ROLE = "downloader"
LEEWAY_SECONDS = 30
DEFAULT_MAX_LIFETIME_SECONDS = 3600
# An ES512 token with Chainloop's claims is about 600 characters; anything far longer is not one.
MAX_TOKEN_LENGTH = 8192
# ES512's signature: r and s, 66 bytes each, big-endian (RFC 7518 section 3.4)
_COORDINATE_BYTES = 66
# The DER of a P-521 SubjectPublicKeyInfo (RFC 5480) up to its point: SEQUENCE { SEQUENCE {
# id-ecPublicKey, secp521r1 }, BIT STRING with no unused bits }, then the 133-byte uncompressed point.
_P521_SPKI_PREFIX = bytes.fromhex("30819b301006072a8648ce3d020106052b8104002303818600")
_P521_POINT_BYTES = 1 + 2 * _COORDINATE_BYTES
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class LinkGrant(Struct, frozen=True):
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
        # Every time rule (exp, nbf, iat, the lifetime) reads this clock: the tests drive it.
        self._clock = clock

    def verify(self, token: str) -> LinkGrant:
        """The token's grant, or :class:`Unauthenticated` naming the rule that failed (never the token)."""
        # a compact JWS is ASCII (base64url and dots): anything else is refused before it is decoded
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
            raise Unauthenticated("the token is not a JWT")
        encoded_header, encoded_claims, encoded_signature = token.split(".")
        header = _json_object(encoded_header)
        if header is None:
            raise Unauthenticated("the token is not a JWT")
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("the token is not signed ES512")
        self._check_signature(f"{encoded_header}.{encoded_claims}".encode("ascii"), encoded_signature)
        claims = _json_object(encoded_claims)
        if claims is None:
            raise Unauthenticated("the token is not a valid JWT")
        self._check_claims(claims)
        self._check_times(claims)
        return _grant(claims)

    def _check_signature(self, signing_input: bytes, encoded_signature: str) -> None:
        signature = _base64url(encoded_signature)
        if signature is None or len(signature) != 2 * _COORDINATE_BYTES:
            # not r || s of P-521 (another curve's, or none): no configured key can have made it
            raise Unauthenticated("the token's signature matches none of the configured keys")
        r = int.from_bytes(signature[:_COORDINATE_BYTES], "big")
        s = int.from_bytes(signature[_COORDINATE_BYTES:], "big")
        der = encode_dss_signature(r, s)
        for key in self._keys:
            try:
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA512()))
            except InvalidSignature:
                continue  # perhaps the other key of an overlapping rotation
            return
        raise Unauthenticated("the token's signature matches none of the configured keys")

    def _check_claims(self, claims: dict[str, object]) -> None:
        """exp and aud present, aud naming the CAS, iss the configured issuer (when one is)."""
        for required in ("exp", "aud"):
            if claims.get(required) is None:  # absent or null
                raise Unauthenticated(f"the token has no {required} claim")
        audience = claims["aud"]
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or AUDIENCE not in audiences:
            raise Unauthenticated(f"the token's audience is not {AUDIENCE}")
        if self._issuer is not None:
            if claims.get("iss") is None:
                raise Unauthenticated("the token has no iss claim")
            if claims["iss"] != self._issuer:
                raise Unauthenticated("the token's issuer is not the configured one")

    def _check_times(self, claims: dict[str, object]) -> None:
        """exp in the future (within the leeway), nbf and iat not in it, and a lifetime of at most
        max_lifetime_seconds from iat (from now when there is none: Chainloop mints no iat)."""
        now = self._clock()
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        for name, value in times.items():
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise Unauthenticated(f"the token's {name} is not a number")
        exp, nbf, iat = (float(v) if isinstance(v, int | float) else None for v in times.values())
        if exp is None:  # _check_claims refused a missing or null exp already
            raise Unauthenticated("the token has no exp claim")
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


def _base64url(text: str) -> bytes | None:
    """A JWS segment's bytes: unpadded base64url (RFC 7515 section 2), else None."""
    if not _BASE64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error is one: e.g. 4n + 1 characters, which no base64 has
        return None


def _json_object(segment: str) -> dict[str, object] | None:
    raw = _base64url(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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
    """An EC P-521 public key from its PEM (SubjectPublicKeyInfo), validated as a point of the curve."""
    match = PEM_PUBLIC_KEY.fullmatch(pem.strip())
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True) if match else b""
    except (binascii.Error, ValueError) as error:
        raise ConfigError(f"CHAINLOOP_CAS_PUBLIC_KEYS: a key cannot be read: {error}") from None
    if not der:
        raise ConfigError("CHAINLOOP_CAS_PUBLIC_KEYS: a key cannot be read: not a PEM public key")
    if not der.startswith(_P521_SPKI_PREFIX) or len(der) != len(_P521_SPKI_PREFIX) + _P521_POINT_BYTES:
        raise ConfigError("CHAINLOOP_CAS_PUBLIC_KEYS: every key must be an EC P-521 public key (ES512)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP521R1(), der[len(_P521_SPKI_PREFIX) :])
    except ValueError as error:
        raise ConfigError(f"CHAINLOOP_CAS_PUBLIC_KEYS: a key cannot be read: {error}") from None
