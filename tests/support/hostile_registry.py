"""A scripted OCI registry on loopback that misbehaves on purpose: each fault answers the service's
requests the way a broken or hostile registry (or its token endpoint, or its storage) would.

The honest parts follow the distribution API closely enough for the service: a Bearer challenge
whose realm is this server, a token endpoint, the manifest Chainloop writes, and a blob GET that
redirects to this server's own "storage" path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cas_admin.chainloop_layout.oci import image_config, image_manifest
from cas_download.data.storage.oci import MANIFEST_MEDIA_TYPE

from .stub_http import serve_on_loopback, stop_serving

Handler = BaseHTTPRequestHandler


@dataclass
class HostileRegistry:
    data: bytes
    fault: str = "none"
    stall_seconds: float = 3.0
    # Storage answers carry an ETag of the bytes it holds (as S3 and Azure do), so that verification
    # records can be written; off, a registry whose storage gives none.
    storage_etag: bool = False
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.data).hexdigest()}"

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def location(self) -> str:
        return f"{self.host}/cas"

    def start(self) -> HostileRegistry:
        registry = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                registry.requests.append(self.path.split("?")[0])
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    registry._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        # daemon threads: a stalled answer (token_slow, a stall fault) does not hold up stop()
        self._server = serve_on_loopback(RequestHandler, daemon_threads=True)
        return self

    def stop(self) -> None:
        stop_serving(self._server)

    # ------------------------------------------------------------------ the script

    def _answer(self, request: Handler) -> None:
        path = request.path.split("?")[0]
        fault = self.fault
        if path == "/v2/":
            # the API's root, which clients ping to learn the scheme and the challenge: as distribution
            if self._challenge(request, fault):
                _send(request, 200, b"{}")
        elif path == "/token":
            self._token(request, fault)
        elif "/manifests/" in path:
            self._manifest(request, fault)
        elif "/blobs/" in path:
            self._blob(request, fault)
        elif path.startswith("/storage/"):
            self._storage(request, fault)
        else:
            _send(request, 404, b"{}")

    def _challenge(self, request: Handler, fault: str) -> bool:
        """True when the request carries the token; else a 401 challenge was sent."""
        if request.headers.get("Authorization") == "Bearer good-token":
            return True
        header = {
            "challenge_malformed": 'Bearer realm=,service="x" scope',
            "challenge_other_scheme": f'Bearer realm="ftp://{self.host}/token",service="hostile"',
            "token_down": 'Bearer realm="http://127.0.0.1:9/token",service="hostile"',
        }.get(fault, f'Bearer realm="http://{self.host}/token",service="hostile"')
        _send(request, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": header})
        return False

    def _token(self, request: Handler, fault: str) -> None:
        if fault == "token_garbage":
            _send(request, 200, b"<html>not a token</html>", {"Content-Type": "text/html"})
        elif fault == "token_slow":
            time.sleep(self.stall_seconds)
            _send(request, 200, b'{"token": "good-token", "expires_in": 300}')
        elif fault == "token_refused":
            _send(request, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
        else:
            _send(request, 200, b'{"token": "good-token", "expires_in": 300}')

    def _manifest(self, request: Handler, fault: str) -> None:
        if fault == "manifest_500":
            _send(request, 500, b"{}")
            return
        if fault == "manifest_503":
            _send(request, 503, b"{}", {"Retry-After": "1"})
            return
        if fault == "reset":
            _reset(request)
            return
        if fault == "enormous_headers":
            request.send_response(200)
            for index in range(200):
                request.send_header(f"X-Padding-{index}", "x" * 8000)
            request.end_headers()
            return
        if not self._challenge(request, fault):
            return
        # Chainloop's manifest (the writer's), padded past the service's bound for huge_manifest
        manifest: dict[str, Any] = json.loads(
            image_manifest(self.data, "artifact.bin", image_config(self.digest))
        )
        if fault == "huge_manifest":
            manifest["annotations"]["padding"] = "x" * (512 * 1024)
        _send(request, 200, json.dumps(manifest).encode(), {"Content-Type": MANIFEST_MEDIA_TYPE})

    def _blob(self, request: Handler, fault: str) -> None:
        if not self._challenge(request, fault):
            return
        targets = {
            "location_file": "file:///etc/passwd",
            "location_link_local": "http://169.254.169.254/latest/meta-data/",
            "location_link_local_v6": "http://[fd00:ec2::254]/latest/meta-data/",
        }
        location = targets.get(fault, f"http://{self.host}/storage/blob?X-Amz-Expires=300")
        _send(request, 307, b"", {"Location": location})

    def _storage(self, request: Handler, fault: str) -> None:
        stored = bytes(reversed(self.data)) if fault == "storage_other_bytes" else self.data
        etag = {"ETag": f'"{hashlib.md5(stored).hexdigest()}"'} if self.storage_etag else {}
        if fault == "redirect_loop":
            _send(request, 307, b"", {"Location": f"http://{self.host}/storage/again"})
        elif fault == "storage_403":
            _send(request, 403, b"<Error><Code>AccessDenied</Code></Error>")
        elif fault == "storage_other_bytes":
            _send(request, 200, stored, etag)  # same size, other bytes
        elif fault in ("body_stall", "body_short"):
            request.send_response(200)
            request.send_header("Content-Length", str(len(self.data)))
            for name, value in etag.items():
                request.send_header(name, value)
            request.end_headers()
            if fault == "body_stall":
                request.wfile.write(self.data[:10])
                request.wfile.flush()
                time.sleep(self.stall_seconds)
            else:
                request.wfile.write(self.data[: len(self.data) // 2])
                request.wfile.flush()
                request.close_connection = True
        else:
            _send(request, 200, self.data, etag)


def _send(request: Handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _reset(request: Handler) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), no answer."""
    connection: socket.socket = request.connection
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.close_connection = True
    connection.close()


FaultFn = Callable[[Handler], None]
