"""``cas-admin chainloop link``: a download link minted exactly as Chainloop's control plane mints one.

Chainloop's ``CASRedirectService.GetDownloadURL`` answers ``<download_url>/sha256:<hex>?t=<token>``
(``url.JoinPath`` then ``q.Set("t", token)``), the token minted by ``robotaccount.GenerateJWT``
(``internal/robotaccount/cas/robotaccount.go``) through ``CASCredentialsUseCase`` (issuer
``cp.chainloop``, 30 s expiry): ES512 with the control plane's CAS private key (P-521), header
``{"alg":"ES512","typ":"JWT"}``, claims in the order Go marshals them: ``iss``, ``aud`` (a one-element
array), ``exp``, ``role``, ``secret-id``, ``backend``, ``maxbytes``, ``org-id``. The tests mint every
token through :func:`mint_token`, so what the service accepts is what Chainloop sends.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cas_admin.artifacts import canonical_digest
from cas_admin.errors import AdminError, UsageError
from cas_admin.output import print_json
from cas_admin.parsing import Command, option
from cas_admin.store import AdminStore

ISSUER = "cp.chainloop"  # app/controlplane/pkg/jwt/common.go: DefaultIssuer
AUDIENCE = "artifact-cas.chainloop"  # CASAudience
EXPIRY_SECONDS = 30  # app/controlplane/pkg/biz/cascredentials.go: defaultExpirationTime
KEY_VARIABLE = "CHAINLOOP_CAS_PRIVATE_KEY_PATH"


def mint_token(
    private_key_pem: bytes,
    *,
    backend: str,
    secret_id: str,
    org_id: str | None,
    role: str = "downloader",
    max_bytes: int = 0,
    issuer: str = ISSUER,
    expires_in: float = EXPIRY_SECONDS,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A CAS token as ``GenerateJWT`` signs it. ``org_id`` None: as releases before ``org-id`` existed.
    ``extra_claims`` (tests): claims Chainloop never sets (``nbf``), or overrides."""
    import jwt  # noqa: PLC0415 - only this command needs it

    key = _p521_private_key(private_key_pem)
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"iss": issuer, "aud": [AUDIENCE], "exp": int(issued + expires_in)}
    claims.update({"role": role, "secret-id": secret_id, "backend": backend, "maxbytes": max_bytes})
    if org_id is not None:
        claims["org-id"] = org_id
    claims.update(extra_claims or {})
    return jwt.encode(claims, key, algorithm="ES512", headers={"typ": "JWT"})


def _p521_private_key(pem: bytes) -> Any:
    """The P-521 private key in ``pem`` (SEC1 or PKCS #8, unencrypted), or one UsageError line: a public
    key, another curve or another kind of key cannot sign what the service verifies (ES512)."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - only this command
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"the key is not an EC P-521 private key in PEM ({reason})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP521R1):
        kind = f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
        raise UsageError(f"the key is not an EC P-521 private key in PEM (it is {kind}): ES512 needs P-521")
    return key


def download_link(download_url: str, digest: str, token: str) -> str:
    """``downloadBase.JoinPath(digest)`` with ``?t=<token>``, as GetDownloadURL builds it."""
    return f"{download_url.rstrip('/')}/{digest}?{urlencode({'t': token})}"


def cmd_link(args: argparse.Namespace, store: AdminStore) -> int:
    digest = canonical_digest(args.digest)
    key_path = args.key or (Path(os.environ[KEY_VARIABLE]) if os.environ.get(KEY_VARIABLE) else None)
    if key_path is None:
        raise UsageError(
            f'which key? pass --key FILE or set {KEY_VARIABLE} (the local stack\'s: eval "$(cas-local env)")'
        )
    download_url = args.download_url or _local_download_url()
    if args.expires_in < 1:
        raise UsageError("--expires-in must be 1 or more")
    try:
        private_key = key_path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {key_path}: {error.strerror}") from None
    backend = store.find_backend(args.org, args.backend)
    if not backend.secret_name:
        raise AdminError(f"backend {backend.name} has no secret: Chainloop mints no link for it")
    token = mint_token(
        private_key,
        backend=backend.provider,
        secret_id=backend.secret_name,
        org_id=None if args.no_org_id else args.org,
        expires_in=args.expires_in,
    )
    link = download_link(download_url, digest, token)
    if args.json:
        print_json({"url": link, "backend": backend.name, "expires_in": args.expires_in})
    else:
        print(link)
    return 0


# ``cas-admin chainloop link``: the group's one command.
GROUP: dict[str, Any] = {
    "help": "Chainloop's download links",
    "description": "Chainloop's download links (spec: Chainloop download links).",
    "commands": [
        Command(
            "link",
            cmd_link,
            help="mint a download link as Chainloop's control plane would",
            description=(
                "Print <download URL>/sha256:<hex>?t=<token>, the token minted as Chainloop's control plane "
                "mints it (ES512, its claims, 30 s expiry) for backend NAME of ORG, with the CAS private key. "
                "For the local demo and for testing a deployment's /download route."
            ),
            arguments=(
                option("digest", metavar="DIGEST", help="sha256:<hex>"),
                option("--org", required=True, help="organization id (the token's org-id)"),
                option("--backend", required=True, metavar="NAME", help="the backend's name or id in ORG"),
                option(
                    "--key",
                    type=Path,
                    help=f"the control plane's CAS private key, PEM (default: env {KEY_VARIABLE}; the local stack's)",
                ),
                option(
                    "--download-url",
                    help="Chainloop's CAS download URL (default: env CAS_API_URL + /download, the local stack's)",
                ),
                option(
                    "--expires-in",
                    type=int,
                    default=EXPIRY_SECONDS,
                    help="token lifetime, seconds (Chainloop: 30)",
                ),
                option(
                    "--no-org-id",
                    action="store_true",
                    help="mint no org-id claim, as Chainloop releases before it",
                ),
            ),
        )
    ],
}


def _local_download_url() -> str:
    api = os.environ.get("CAS_API_URL", "").strip()
    if not api:
        raise UsageError('which URL? pass --download-url or set CAS_API_URL (eval "$(cas-local env)")')
    return f"{api.rstrip('/')}/download"
