"""A small Docker token issuer for the Bearer flow: it checks a username and password (HTTP Basic) and
signs a JWT with a self-signed certificate that the registry trusts (``auth: token``,
``rootcertbundle``), so the registry really verifies every token.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from cas_local.registry import TOKEN_ISSUER as ISSUER
from cas_local.registry import TOKEN_SERVICE as SERVICE

from .hygiene import register as register_secret
from .json_reply import send_json
from .stub_http import serve_on_loopback, stop_serving


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenIssuer:
    """Issues tokens to known users. ``token_lifetime_s`` is what the JWT says; ``advertised_lifetime_s``
    what the answer's ``expires_in`` says (they differ to test a token that expires early). ``clock``
    (epoch seconds) dates the tokens; the registry checks them by its own clock."""

    cert_path: Path
    users: dict[str, str] = field(default_factory=dict)
    token_lifetime_s: int = 300
    advertised_lifetime_s: int = 300
    issued: list[str] = field(default_factory=list)  # the scopes of the tokens issued, in order
    refused: int = 0
    clock: Callable[[], float] = time.time
    _key: Any = None
    _cert_der: bytes = b""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def realm(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/token"

    def start(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = serve_on_loopback(Handler)

    def stop(self) -> None:
        stop_serving(self._server)

    def add_user(self, name: str, password: str) -> None:
        register_secret(password, "registry_password")
        with self._lock:
            self.users[name] = password

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        user = self._basic_user(request.headers.get("Authorization"))
        if user is None:
            with self._lock:
                self.refused += 1
            send_json(request, 401, {"errors": [{"code": "UNAUTHORIZED"}]})
            return
        scopes = query.get("scope", [])
        token = self.issue_at(self.clock(), user, *scopes)
        with self._lock:
            self.issued.append(" ".join(scopes))
        send_json(request, 200, {"token": token, "expires_in": self.advertised_lifetime_s})

    def issue_at(self, issued_at: float, user: str, *scopes: str) -> str:
        """A token for ``scopes`` (``repository:<name>:<actions>``), dated ``issued_at``."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self._sign(int(issued_at), user, access)
        register_secret(token, "bearer_token")
        return token

    def _basic_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        with self._lock:
            return name if self.users.get(name) == password else None

    def _sign(self, now: int, user: str, access: list[dict[str, Any]]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + self.token_lifetime_s,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"
