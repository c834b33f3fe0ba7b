"""SigV4 presigned S3 URLs checked the way S3 checks them: the one implementation of it.

moto with IAM authentication on cannot serve a presigned URL (it reads only the ``Authorization``
header and answers 500), so whoever fetches one locally (the storage gateway of ``make run``, the
tests' ``World.fetch_presigned``) verifies it here first and then performs the request *with the key
the URL names*, so that the storage server still enforces revocation and policies.

The checks, in S3's order: the query carries SigV4 parameters (else 400
``AuthorizationQueryParametersError``); the access key is known (else 403 ``InvalidAccessKeyId``);
the signature recomputed with that key's secret matches (else 403 ``SignatureDoesNotMatch``);
``X-Amz-Expires`` is at most a week (else 400); the URL has not expired (else 403 ``AccessDenied``,
"Request has expired").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES_SECONDS = 604800  # one week, S3's limit
AUTH_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SecretLookup = Callable[[str], str | None]
"""Access key id -> its secret access key, or None for a key nobody issued (or that is unknown)."""

MESSAGES = {
    "AuthorizationQueryParametersError": (
        "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
        "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
    ),
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "SignatureDoesNotMatch": (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    ),
    "AccessDenied": "Request has expired",
}


def is_presigned(query: Mapping[str, str]) -> bool:
    """True when a request authenticates by query string (a presigned URL), not by header."""
    return "X-Amz-Signature" in query


@dataclass(frozen=True)
class PresignCheck:
    """The verdict on one presigned request. ``ok`` or an S3 error (``status``, ``error_code``)."""

    ok: bool
    status: int
    error_code: str | None
    message: str
    access_key_id: str
    bucket: str
    key: str
    query: dict[str, str]
    expires_at: dt.datetime
    region: str
    secret_access_key: str | None = field(default=None, repr=False)

    @property
    def version_id(self) -> str | None:
        return self.query.get("versionId")

    @property
    def session_token(self) -> str | None:
        return self.query.get("X-Amz-Security-Token")

    def forwarded_query(self) -> list[tuple[str, str]]:
        """The query without the presigning parameters (versionId, response-* overrides, ...)."""
        return [(k, v) for k, v in self.query.items() if k not in AUTH_PARAMS]


def verify_presigned(
    url: str,
    secret_for: SecretLookup,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> PresignCheck:
    """Check a path-style presigned S3 URL as S3 would for a ``method`` request.

    ``headers``: the request's headers (lower-case names), for signed headers other than ``host``
    (``host`` defaults to the URL's netloc). ``now``: the server's clock (default: now, UTC).
    """
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    path = urllib.parse.unquote(parts.path).lstrip("/")
    bucket, _, key = path.partition("/")
    credential = query.get("X-Amz-Credential", "")
    scope = credential.split("/")
    key_id = scope[0]
    region = scope[2] if len(scope) == 5 else ""
    amz_date = query.get("X-Amz-Date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        expires_in = int(query.get("X-Amz-Expires", ""))
        expires_at = signed_at + dt.timedelta(seconds=expires_in)
    except ValueError:
        signed_at = expires_at = _EPOCH
        expires_in = 0

    def verdict(status: int, code: str | None, secret: str | None = None) -> PresignCheck:
        return PresignCheck(
            ok=code is None,
            status=status,
            error_code=code,
            message=MESSAGES.get(code or "", ""),
            access_key_id=key_id,
            bucket=bucket,
            key=key,
            query=query,
            expires_at=expires_at,
            region=region,
            secret_access_key=secret,
        )

    well_formed = (
        query.get("X-Amz-Algorithm") == ALGORITHM
        and signed_at != _EPOCH
        and len(scope) == 5
        and scope[1] == amz_date[:8]
        and "X-Amz-SignedHeaders" in query
    )
    if not well_formed:
        return verdict(400, "AuthorizationQueryParametersError")
    secret = secret_for(key_id)
    if secret is None:
        return verdict(403, "InvalidAccessKeyId")
    expected = presign_signature(url, secret, method, headers=headers)
    if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
        return verdict(403, "SignatureDoesNotMatch")
    if not 0 < expires_in <= MAX_EXPIRES_SECONDS:
        return verdict(400, "AuthorizationQueryParametersError")
    if (now or dt.datetime.now(dt.UTC)) > expires_at:
        return verdict(403, "AccessDenied")
    return verdict(200, None, secret)


def presign_signature(
    url: str,
    secret_access_key: str,
    method: str = "GET",
    *,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Recompute the SigV4 query-string signature of a presigned S3 URL (independently of botocore).

    Canonical request per the SigV4 spec for S3: the URI path as sent (S3 does not normalize or
    double-encode), query parameters minus ``X-Amz-Signature`` RFC 3986-encoded and sorted, the
    signed headers (``host`` is all botocore signs for a plain presigned GET), ``UNSIGNED-PAYLOAD``.
    """
    parts = urllib.parse.urlsplit(url)
    params = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k != "X-Amz-Signature"
    ]
    query = dict(params)
    enc = [(_uri_encode(k), _uri_encode(v)) for k, v in params]
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(enc))
    signed_headers = query.get("X-Amz-SignedHeaders", "host")
    header_values = {k.lower(): v for k, v in (headers or {}).items()}
    header_values.setdefault("host", parts.netloc)
    canonical_headers = "".join(
        f"{h}:{' '.join(header_values.get(h, '').split())}\n" for h in signed_headers.split(";")
    )
    canonical_request = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            canonical_query,
            canonical_headers,
            signed_headers,
            "UNSIGNED-PAYLOAD",
        ]
    )
    _key_id, date, region, service, terminal = (query.get("X-Amz-Credential", "") + "////").split("/")[:5]
    scope = f"{date}/{region}/{service}/{terminal}"
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            query.get("X-Amz-Date", ""),
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, terminal):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    return hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _uri_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")
