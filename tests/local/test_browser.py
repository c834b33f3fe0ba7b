"""Chainloop's UI in a real browser (spec "Chainloop download links", *Browsers*): headless Chromium
(Debian's ``chromium``) loads a page from an origin, and the page ``fetch()``es download links from the
service's HTTP front end (cas_local's, what API Gateway does in front of the function), as Chainloop's
UI shows SBOMs and reports inline. The browser, not the test, enforces CORS.

Each page reports what it saw by POSTing JSON to its own origin (``/result``); the test waits for that
report (an event, no polling), then reads it and the front end's access log.
"""

from __future__ import annotations

import html
import io
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cas_download.app import App
from cas_download.config import Settings
from cas_local.httpbase import DispatchingHandler, LoopbackServer, bound_handler
from cas_local.server import ApiServer
from tests.support.chainloop_links import control_plane_keys
from tests.support.ci import require
from tests.support.faults import FaultServer
from tests.support.moto_servers import AwsServers
from tests.support.world import BackendRef, World, sha256_digest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPORT_TIMEOUT_S = 60.0
KEY, _ = control_plane_keys()
SBOM = b'{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}\n' * 60  # ~4 KiB
LARGE = bytes(range(256)) * (3 * 4096)  # 3 MiB: within the 4 MiB body limit

# The page's script: fetch each link, hash the bytes in the page (WebCrypto), report to /result.
FETCH_PAGE = """<!doctype html><meta charset="utf-8"><title>cas-download in a browser</title>
<script>
const LINKS = %(links)s;
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
(async () => {
  const report = {};
  for (const [name, link] of Object.entries(LINKS)) {
    try {
      const response = await fetch(link.url, {headers: link.headers});
      const body = await response.arrayBuffer();
      report[name] = {
        status: response.status,
        size: body.byteLength,
        sha256: hex(await crypto.subtle.digest("SHA-256", body)),
        backend: response.headers.get("X-Cas-Backend"),
        disposition: response.headers.get("Content-Disposition"),
      };
    } catch (error) {
      report[name] = {error: String(error)};
    }
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(report)});
})();
</script>"""

CLICK_PAGE = """<!doctype html><meta charset="utf-8"><title>a link to click</title>
<a id="link" href="%(href)s">sbom.cdx.json</a>
<script>document.getElementById("link").click();</script>"""


@dataclass
class Origin:
    """A page server on 127.0.0.1: one origin, its pages, and what its pages reported."""

    server: LoopbackServer | None = None
    pages: dict[str, str] = field(default_factory=dict)
    reports: list[Any] = field(default_factory=list)
    reported: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def wait_for_report(self) -> Any:
        assert self.reported.wait(REPORT_TIMEOUT_S), "the page never reported"
        return self.reports[-1]


class _PageHandler(DispatchingHandler):
    origin: Origin

    def _dispatch(self) -> None:
        if self.command == "POST" and self.path == "/result":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.origin.reports.append(json.loads(body))
            self.origin.reported.set()
            self._send(204, b"", "text/plain")
        elif self.command == "GET" and self.path in self.origin.pages:
            self._send(200, self.origin.pages[self.path].encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_origin() -> Origin:
    origin = Origin()
    origin.server = LoopbackServer(bound_handler(_PageHandler, origin=origin), "127.0.0.1", 0).start()
    return origin


@dataclass
class Browsing:
    """The service's front end, an origin it allows (Chainloop's UI) and one it does not."""

    api: ApiServer
    access_log: io.StringIO
    ui: Origin
    other: Origin
    profile: Path

    def link(self, digest: str, token: str | None = None) -> str:
        return f"{self.api.url}/download/{digest}" + (f"?t={token}" if token else "")

    def open(self, origin: Origin, page: str) -> None:
        """Headless Chromium on ``origin``'s ``page`` until the page reports (or a navigation ends)."""
        command = [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-proxy-server",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={self.profile}",
            f"{origin.url}{page}",
        ]
        origin.reported.clear()
        self.browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        browser = getattr(self, "browser", None)
        if browser is not None and browser.poll() is None:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait(timeout=5)

    def access_lines(self) -> list[str]:
        return self.access_log.getvalue().splitlines()


@pytest.fixture
def browsing(world: World, tmp_path: Path) -> Iterator[Browsing]:
    require(CHROMIUM, "headless Chromium is missing: apt-get install chromium (make chromium)")
    ui, other = serve_origin(), serve_origin()
    settings = Settings.from_env(
        world.settings_env(CHAINLOOP_CAS_PUBLIC_KEYS=KEY.public_pem, CHAINLOOP_ALLOWED_ORIGINS=ui.url)
    )
    access_log = io.StringIO()
    api = ApiServer(App.create(settings), port=0, access_log=access_log).start()
    browsing = Browsing(api, access_log, ui, other, tmp_path / "chromium-profile")
    try:
        yield browsing
    finally:
        browsing.close()
        api.stop()
        for origin in (ui, other):
            assert origin.server is not None
            origin.server.stop()


def token_for(backend: BackendRef) -> str:
    return KEY.mint(backend=backend.provider, secret_id=backend.secret_name, org_id=backend.org)


def fetch_page(links: dict[str, dict[str, Any]]) -> str:
    return FETCH_PAGE % {"links": json.dumps(links)}


def test_the_ui_origin_fetches_an_sbom_and_a_3_mib_link_and_the_page_hashes_the_right_bytes(
    world: World, browsing: Browsing
) -> None:
    # Given an SBOM and a 3 MiB report behind links Chainloop handed out
    org = world.org()
    backend = world.backend(org, "cas", is_default=True)
    sbom, large = world.put(backend, SBOM, filename="sbom.cdx.json"), world.put(backend, LARGE)
    browsing.ui.pages["/"] = fetch_page(
        {
            "sbom": {"url": browsing.link(sbom, token_for(backend)), "headers": {}},
            "large": {"url": browsing.link(large, token_for(backend)), "headers": {}},
        }
    )

    # When Chainloop's UI page (an allowed origin) fetches them in Chromium
    browsing.open(browsing.ui, "/")
    report = browsing.ui.wait_for_report()

    # Then the page read both bodies, and their SHA-256, computed in the page, are the digests
    assert report["sbom"]["status"] == 200
    assert f"sha256:{report['sbom']['sha256']}" == sbom
    assert report["sbom"]["disposition"] == 'attachment; filename="sbom.cdx.json"'
    assert report["sbom"]["backend"] == "cas"  # an exposed header the page may read
    assert (report["large"]["status"], report["large"]["size"]) == (200, len(LARGE))
    assert f"sha256:{report['large']['sha256']}" == large


def test_a_page_from_another_origin_is_refused_by_the_browser(world: World, browsing: Browsing) -> None:
    # Given an SBOM behind a link, and a page on an origin ChainloopAllowedOrigins does not list
    org = world.org()
    backend = world.backend(org, "cas", is_default=True)
    sbom = world.put(backend, SBOM)
    browsing.other.pages["/"] = fetch_page(
        {"sbom": {"url": browsing.link(sbom, token_for(backend)), "headers": {}}}
    )

    # When that page fetches the link
    browsing.open(browsing.other, "/")
    report = browsing.other.wait_for_report()

    # Then the browser refuses the answer: the page gets a network error, never the bytes
    assert report["sbom"] == {"error": "TypeError: Failed to fetch"}


def test_a_bearer_token_passes_the_preflight(world: World, browsing: Browsing) -> None:
    # Given a link fetched with its token in Authorization: Bearer (not in the URL)
    org = world.org()
    backend = world.backend(org, "cas", is_default=True)
    sbom = world.put(backend, SBOM)
    bearer = {"Authorization": f"Bearer {token_for(backend)}"}
    browsing.ui.pages["/"] = fetch_page({"sbom": {"url": browsing.link(sbom), "headers": bearer}})

    # When the UI's page fetches it
    browsing.open(browsing.ui, "/")
    report = browsing.ui.wait_for_report()

    # Then Chromium sent a preflight, which passed, and then the GET, which served the bytes
    assert report["sbom"]["status"] == 200
    assert f"sha256:{report['sbom']['sha256']}" == sbom
    methods = [line.split(" ", 1)[0] for line in browsing.access_lines() if f"/download/{sbom}" in line]
    assert methods[:2] == ["OPTIONS", "GET"]
    assert " -> 204 " in next(line for line in browsing.access_lines() if line.startswith("OPTIONS"))


def test_a_click_on_a_link_still_gets_the_307_to_the_verified_url(
    world: World, browsing: Browsing, aws_servers: AwsServers
) -> None:
    # Given a link to an object whose storage records the requests it gets
    with FaultServer(upstream=aws_servers.control_url) as storage:
        digest = sha256_digest(SBOM)
        location = storage.healthy_s3("clicked-bucket", {digest: SBOM}, checksum=False)
        org = world.org()
        backend = world.backend(org, "cas", location=location, is_default=True)
        href = html.escape(browsing.link(digest, token_for(backend)))
        browsing.ui.pages["/click"] = CLICK_PAGE % {"href": href}

        # When a user clicks it on the UI's page (a navigation: no Origin, no CORS)
        browsing.open(browsing.ui, "/click")
        # The service's own GET hashes the object before it answers (no record yet); a second GET of
        # the object is the browser following the 307 to the presigned URL.
        arrived = threading.Event()
        for _ in range(int(REPORT_TIMEOUT_S * 10)):
            if sum(s.operation == "GET" for s in storage.seen_for_bucket("clicked-bucket")) >= 2:
                arrived.set()
                break
            arrived.wait(0.1)

        # Then the service answered 307, and the browser followed it to the storage
        [line] = [line for line in browsing.access_lines() if f"/download/{digest}" in line]
        assert line.startswith(f"GET /download/{digest} -> 307 ")
        assert arrived.is_set(), "the browser never reached the storage"
