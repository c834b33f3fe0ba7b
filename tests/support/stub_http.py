"""The lifecycle of a test stand-in server (Entra ID stand-in, hostile registry): a threading HTTP
server on a free loopback port, answering from a daemon thread until it is stopped."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_on_loopback(
    handler: type[BaseHTTPRequestHandler],
    *,
    tls: ssl.SSLContext | None = None,
    daemon_threads: bool = False,
) -> ThreadingHTTPServer:
    """Serve ``handler`` on 127.0.0.1 (over ``tls`` when given) from now on; ``daemon_threads``: a
    request still being answered (a stalled one) does not hold up ``stop_serving``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = daemon_threads
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_serving(server: ThreadingHTTPServer | None) -> None:
    """Stop a server ``serve_on_loopback`` started (None: one never started) and free its port."""
    if server is not None:
        server.shutdown()
        server.server_close()
