"""The request handler both local HTTP servers (the API front end and the storage gateway) build on."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar, cast

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

    def _dispatch(self) -> None:
        raise NotImplementedError


def bound_handler(base: type[_Handler], **attributes: object) -> type[_Handler]:
    """A subclass of ``base`` carrying ``attributes`` as class attributes (the server object its
    requests need), for ``ThreadingHTTPServer``, which builds one handler per request from a class."""
    return cast("type[_Handler]", type("Handler", (base,), dict(attributes)))
