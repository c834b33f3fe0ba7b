"""What both local HTTP servers (the API front end and the storage gateway) build on: the request
handler and the server's lifecycle."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar, cast

_Handler = TypeVar("_Handler", bound="DispatchingHandler")


class DispatchingHandler(BaseHTTPRequestHandler):
    """HTTP/1.1; every method (GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS) goes to ``_dispatch``,
    which decides what the method means; no request log on stderr (each server logs its own way)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the API server writes its own access line, the gateway (plumbing) none."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, CONNECT, made-up ones) goes to _dispatch too, as API Gateway routes
        # it: never the standard library's 501 HTML page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        raise NotImplementedError


def bound_handler(base: type[_Handler], **attributes: object) -> type[_Handler]:
    """A subclass of ``base`` carrying ``attributes`` as class attributes (the server object its
    requests need), for ``ThreadingHTTPServer``, which builds one handler per request from a class."""
    return cast("type[_Handler]", type("Handler", (base,), dict(attributes)))


class LoopbackServer:
    """A threading HTTP server for one handler class: ``serve_forever()`` in the foreground, or
    ``start()`` on a daemon thread; ``url``; ``stop()``."""

    thread_name = "http-server"

    def __init__(self, handler: type[DispatchingHandler], host: str, port: int) -> None:
        self.host = host
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        # shutdown() waits for a serve_forever loop: only ask when one was started on a thread here.
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
