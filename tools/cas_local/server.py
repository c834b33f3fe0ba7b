"""The local HTTP front end: what API Gateway's HTTP API does in front of the function, on 127.0.0.1.

Each request on ``GET|HEAD /v1/artifacts/{digest}`` (and ``GET|HEAD|OPTIONS /download/{digest}``) becomes a payload 2.0 event for the real handler
(``cas_download.handlers.download.handle`` with an ``App`` built from the function's environment); the
handler's response becomes the HTTP response (a base64 body is decoded). Like API Gateway, any other
route answers ``404 {"message":"Not Found"}`` and a request without valid credentials answers
``401 {"message":"Unauthorized"}`` without reaching the function.

Local authentication stands in for the JWT authorizer: ``Authorization: Bearer local:<org>[,<org>]``
names the caller's orgs, delivered as the org claim in ``requestContext.authorizer.jwt.claims``.
It exists only here; the deployed API accepts only JWTs from its issuer.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TextIO

from cas_download.app import App
from cas_download.handlers.download import instrumented_handler
from cas_local.events import (
    LINK_ONLY_METHODS,
    ROUTE_METHODS,
    LocalLambdaContext,
    http_event,
    is_link_route,
    local_orgs,
    route_digest,
)
from cas_local.httpbase import DispatchingHandler, LoopbackServer, bound_handler


class ApiServer(LoopbackServer):
    """``serve_forever()`` in the foreground (``make run``) or ``start()`` on a thread (tests)."""

    thread_name = "api-server"

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        timeout_seconds: int = 25,
        access_log: TextIO | None = sys.stderr,
    ) -> None:
        self.app = app
        # What Lambda runs: handle() with Powertools' correlation id, cold start and metrics flush.
        self._handler = instrumented_handler(app)
        self.org_claim = app.settings.org_claim
        self.timeout_ms = timeout_seconds * 1000
        self.access_log = access_log
        # One Lambda container runs one request at a time: so does the local one.
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        super().__init__(bound_handler(_ApiHandler, api=self), host, port)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return dict(self._handler(event, LocalLambdaContext(timeout_ms=self.timeout_ms)))

    def log(self, line: str) -> None:
        if self.access_log is not None:
            # One write per line under a lock: concurrent requests must not interleave their lines.
            with self._log_lock:
                self.access_log.write(line + "\n")
                self.access_log.flush()


class _ApiHandler(DispatchingHandler):
    """One access line per request (``ApiServer.log``) instead of the standard request log."""

    api: ApiServer
    server_version = "cas-local-api"

    def _dispatch(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # a body is never used; read it to keep the connection sane
        raw_path, _, raw_query = self.path.partition("?")
        link = is_link_route(raw_path)
        methods = ROUTE_METHODS | LINK_ONLY_METHODS if link else ROUTE_METHODS
        if self.command not in methods or route_digest(raw_path) is None:
            self._send(404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
            self._log(started, 404, "no such route")
            return
        # The link route has no authorizer: its token is verified by the function.
        orgs = "" if link else local_orgs(self.headers.get("Authorization"))
        if orgs is None:
            self._send(
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="cas-local"'},
                b'{"message":"Unauthorized"}',
            )
            self._log(started, 401, "expected Authorization: Bearer local:<org>[,<org>]")
            return
        event = http_event(
            self.command,
            raw_path,
            raw_query,
            self.headers.items(),
            orgs=orgs,
            org_claim=self.api.org_claim,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", self.api.host).split(":")[0],
        )
        response = self.api.invoke(event)
        status = int(response.get("statusCode", 500))
        headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        body_text = response.get("body") or ""
        body = base64.b64decode(body_text) if response.get("isBase64Encoded") else str(body_text).encode()
        self._send(status, headers, body, cookies=response.get("cookies") or [])
        self._log(started, status, _summary(status, headers, body))

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, cookies: list[str] | None = None
    ) -> None:
        self.send_response_only(status)
        head = self.command == "HEAD"
        sent_length = False
        for name, value in headers.items():
            if name.lower() == "content-length":
                if not head:
                    continue  # the body's real length is sent below
                sent_length = True
            self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        if not sent_length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Date", format_datetime(datetime.now(UTC), usegmt=True))
        self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _log(self, started: float, status: int, detail: str) -> None:
        elapsed = (time.monotonic() - started) * 1000
        # the path alone: a query string may hold a Chainloop link's token (`t`), which is never logged
        path = self.path.partition("?")[0]
        self.api.log(f"{self.command} {path} -> {status} {detail} ({elapsed:.0f} ms)")


def _summary(status: int, headers: dict[str, str], body: bytes) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    if "x-cas-backend" in lowered:
        return f"via {lowered['x-cas-backend']} (fallback: {lowered.get('x-cas-fallback', '?')})"
    if status >= 400 and body:
        try:
            return str(json.loads(body)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return ""
    return ""
