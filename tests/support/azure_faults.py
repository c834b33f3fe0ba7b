"""A fault endpoint in front of Azurite: requests are forwarded to the real emulator, byte for byte,
unless a fault is armed; then the blob service misbehaves the way a storage account (or the network in
between) can. Point a backend's location at ``proxy.location(account, container)``.

Shared-key signatures cover the path and the ``x-ms-*`` headers, not the host, so forwarded requests
stay valid. HEAD is the blob's properties (its error code travels in ``x-ms-error-code``: a HEAD has no
body); GET is the download, or a SAS URL's read.
"""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from enum import StrEnum
from typing import Any

from .faults import ask_upstream, reset_connection

HOST = "127.0.0.1"
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


def _announced_length(method: str, headers: list[tuple[str, str]], payload: bytes) -> str:
    """A HEAD carries no body: its Content-Length is the blob's, as the emulator announced it."""
    if method == "HEAD":
        return next((v for n, v in headers if n.lower() == "content-length"), "0")
    return str(len(payload))


class AzureFault(StrEnum):
    NONE = "none"
    PROPERTIES_500 = "properties_500"  # 500 InternalError
    PROPERTIES_503 = "properties_503"  # 503 ServerBusy (Azure's throttling answer)
    RESET = "reset"  # TCP RST before any answer
    STALL_BEFORE_HEADERS = "stall_before_headers"  # the request is read, nothing comes back
    BODY_STALL = "body_stall"  # GET: headers and half the body, then silence
    BODY_SHORT = "body_short"  # GET: the full Content-Length announced, half sent, connection closed
    BODY_RESET = "body_reset"  # GET: headers and half the body, then a TCP RST
    OTHER_BYTES = "other_bytes"  # GET: the same length of other bytes
    CLOCK_SKEW = "clock_skew"  # 403 AuthenticationFailed, the answer's Date an hour from ours
    AUTHORIZATION_FAILURE = "authorization_failure"  # 403 AuthorizationFailure (Azure's wording)
    PERMISSION_MISMATCH = "permission_mismatch"  # 403 AuthorizationPermissionMismatch
    ENORMOUS_HEADERS = "enormous_headers"  # 200 with more header lines than any client accepts


_ERRORS: dict[AzureFault, tuple[int, str, str]] = {
    AzureFault.PROPERTIES_500: (500, "InternalError", "The server encountered an internal error."),
    AzureFault.PROPERTIES_503: (503, "ServerBusy", "The server is currently unable to receive requests."),
    AzureFault.CLOCK_SKEW: (
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is "
        "formed correctly including the signature.",
    ),
    AzureFault.AUTHORIZATION_FAILURE: (
        403,
        "AuthorizationFailure",
        "This request is not authorized to perform this operation.",
    ),
    AzureFault.PERMISSION_MISMATCH: (
        403,
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
    ),
}


class AzureFaultProxy:
    def __init__(self, upstream: str, *, stall_seconds: float = 5.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.stall_seconds = stall_seconds
        self.fault = AzureFault.NONE
        self.requests: list[str] = []
        self._stopping = threading.Event()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def location(self, account: str, container: str) -> str:
        return f"http://{HOST}:{self.port}/{account}/{container}"

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: AzureFaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_HEAD(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.owner
        owner.requests.append(f"{self.command} {self.path.split('?', 1)[0]}")
        fault = owner.fault
        if fault is AzureFault.RESET:
            self._reset()
            return
        if fault is AzureFault.STALL_BEFORE_HEADERS:
            owner.wait(owner.stall_seconds)
            self.close_connection = True
            return
        if fault is AzureFault.ENORMOUS_HEADERS:
            self.send_response(200)
            for index in range(200):
                self.send_header(f"x-ms-meta-padding{index}", "x" * 1000)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault in _ERRORS:
            self._error(*_ERRORS[fault], skewed=fault is AzureFault.CLOCK_SKEW)
            return
        status, headers, payload = self._forward(body)
        if self.command == "GET" and status in (200, 206) and fault in _BODY_FAULTS:
            self._faulty_body(fault, status, headers, payload)
            return
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", _announced_length(self.command, headers, payload))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        return ask_upstream(self, self.owner.upstream, body or None, _HOP_BY_HOP)

    def _faulty_body(
        self, fault: AzureFault, status: int, headers: list[tuple[str, str]], payload: bytes
    ) -> None:
        half = payload[: len(payload) // 2]
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if fault is AzureFault.OTHER_BYTES:
            self.wfile.write(bytes(reversed(payload)))
            return
        self.wfile.write(half)
        self.wfile.flush()
        if fault is AzureFault.BODY_STALL:
            self.owner.wait(self.owner.stall_seconds)
            self.close_connection = True
        elif fault is AzureFault.BODY_RESET:
            self._reset()
        else:  # BODY_SHORT
            self.close_connection = True

    def _error(self, status: int, code: str, message: str, *, skewed: bool) -> None:
        document = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            + (
                "<AuthenticationErrorDetail>Request date header too old</AuthenticationErrorDetail>"
                if skewed
                else ""
            )
            + "</Error>"
        ).encode()
        self.send_response_only(status)
        # Azure dates its answers by its own clock: an hour away from ours is the skew the client sees
        self.send_header("Date", email.utils.formatdate(time.time() + (3600 if skewed else 0), usegmt=True))
        self.send_header("x-ms-error-code", code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(document)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(document)

    def _reset(self) -> None:
        reset_connection(self)


_BODY_FAULTS = {AzureFault.BODY_STALL, AzureFault.BODY_SHORT, AzureFault.BODY_RESET, AzureFault.OTHER_BYTES}
