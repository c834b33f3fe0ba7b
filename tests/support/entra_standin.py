"""A stand-in for Microsoft Entra ID's token endpoint (``AZURE_AUTHORITY_HOST``), over HTTPS as
azure-identity requires: OpenID discovery and a client-credentials token endpoint that accepts only
the client secrets it knows, answering ``401 invalid_client`` to any other (a deleted secret)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .json_reply import send_json
from .stub_http import serve_on_loopback, stop_serving


@dataclass
class EntraStandIn:
    workdir: Path
    secrets: set[str] = field(default_factory=set)  # accepted client secrets
    requests: list[str] = field(default_factory=list)  # paths asked for, in order
    _server: ThreadingHTTPServer | None = None

    @property
    def authority(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "entra-ca.pem"

    def start(self) -> EntraStandIn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = self.workdir / "entra-key.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in._get(self)

            def do_POST(self) -> None:
                stand_in._post(self)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server = serve_on_loopback(Handler, tls=context)
        return self

    def stop(self) -> None:
        stop_serving(self._server)

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        self.requests.append(f"GET {path}")
        tenant = path.strip("/").split("/", 1)[0]
        base = f"{self.authority}/{tenant}"
        if path.endswith("/discovery/instance"):
            body: dict[str, Any] = {
                "tenant_discovery_endpoint": f"{base}/v2.0/.well-known/openid-configuration",
                "metadata": [],
            }
        else:
            body = {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
            }
        send_json(request, 200, body)

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        form = parse_qs(request.rfile.read(length).decode())
        self.requests.append(f"POST {urlsplit(request.path).path}")
        if form.get("client_secret", [""])[0] not in self.secrets:
            send_json(
                request,
                401,
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."},
            )
            return
        send_json(
            request, 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": uuid.uuid4().hex}
        )
