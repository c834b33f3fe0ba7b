"""A real OCI registry on loopback for the tests and ``make run``: CNCF distribution (Debian's
``docker-registry``).

``make registry`` unpacks it into ``.local/registry`` without root. Two kinds run:

* self-hosted (``filesystem`` storage): the registry serves blob bytes itself (``no_direct_url``);
* hosted (``s3`` storage on the moto control server, no auth): blob GETs answer ``307`` to a
  presigned moto URL, as GHCR, Docker Hub and ECR do.

Both use ``auth: htpasswd`` with bcrypt entries; the registry re-reads the file when it changes, so
a changed password is refused at once (real revocation).
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError

import bcrypt

from cas_local.moto import free_port

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "CNCF distribution (docker-registry) is not installed: run `make registry`"
# The token issuer's names (tests/support/token_issuer.py) for registries with ``auth: token``.
TOKEN_SERVICE = "cas-test-registry"  # noqa: S105 - a service name
TOKEN_ISSUER = "cas-test-issuer"  # noqa: S105 - an issuer name
LOCAL_BINARY = ROOT / ".local" / "registry" / "usr" / "bin" / "docker-registry"
READY_TIMEOUT_S = 20.0


def registry_binary() -> str | None:
    if LOCAL_BINARY.is_file():
        return str(LOCAL_BINARY)
    return shutil.which("docker-registry")


@dataclass
class RegistryUser:
    name: str
    password: str


@dataclass
class Registry:
    url: str  # http://127.0.0.1:PORT
    root: Path
    htpasswd: Path
    process: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)
    on_password: list[Callable[[str], None]] = field(default_factory=list)  # tests: the secret scan
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://").removeprefix("https://")

    def location(self, path: str | None = None) -> str:
        """A backend location on this registry, as Chainloop writes it (no scheme: loopback is tried
        over HTTPS, then plain HTTP, as go-containerregistry does)."""
        return f"{self.host}/{path or 'cas-' + uuid.uuid4().hex[:8]}"

    def new_user(self) -> RegistryUser:
        user = RegistryUser(f"user-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(18))
        self.set_password(user, user.password)
        return user

    def set_password(self, user: RegistryUser, password: str) -> None:
        """Write (or change) the user's bcrypt entry; the registry sees it at its next request."""
        for listener in self.on_password:
            listener(password)
        with self._lock:
            self.users[user.name] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            lines = "".join(f"{name}:{entry}\n" for name, entry in self.users.items())
            tmp = self.htpasswd.with_suffix(".tmp")
            tmp.write_text(lines)
            tmp.replace(self.htpasswd)
        user.password = password
        time.sleep(0.05)  # the registry notices the file by its modification time

    def blob_path(self, digest: str) -> Path:
        """The filesystem driver's file of a blob (overwrite it to tamper: reads are not re-checked)."""
        hex_part = digest.removeprefix("sha256:")
        return (
            self.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_part[:2] / hex_part / "data"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_registry(
    workdir: Path,
    *,
    s3_endpoint: str | None = None,
    s3_bucket: str | None = None,
    token_realm: str | None = None,
    token_cert: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Registry:
    """A registry on a free loopback port: filesystem storage, or with ``s3_endpoint`` the s3 driver
    (redirects on); htpasswd auth, or with ``token_realm`` bearer tokens signed by ``token_cert``'s key
    (tests/support/token_issuer.py); plain HTTP, or with ``tls`` (certificate, key: PEM files) HTTPS
    only (the certificate's issuer must be trusted by whoever connects: SSL_CERT_FILE)."""
    binary = registry_binary()
    if binary is None:
        raise RuntimeError(INSTALL_HINT)
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text("")
    port = free_port()
    if s3_endpoint:
        storage = f"""
  s3:
    accesskey: testing
    secretkey: testing
    region: us-east-1
    regionendpoint: {s3_endpoint}
    bucket: {s3_bucket}
    secure: false
    v4auth: true
    rootdirectory: /registry
  redirect:
    disable: false"""
    else:
        storage = f"""
  filesystem:
    rootdirectory: {root}"""
    if token_realm:
        auth = f"""
  token:
    realm: {token_realm}
    service: {TOKEN_SERVICE}
    issuer: {TOKEN_ISSUER}
    rootcertbundle: {token_cert}"""
    else:
        auth = f"""
  htpasswd:
    realm: cas-test
    path: {htpasswd}"""
    config = workdir / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:{storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}{_tls_config(tls)}
auth:{auth}
"""
    )
    # The s3 driver panics when AWS_CA_BUNDLE is set; no AWS variable of this process is its business.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - a fixed binary and a generated config
        [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    registry = Registry(f"{'https' if tls else 'http'}://127.0.0.1:{port}", root, htpasswd, process)
    _wait_ready(registry, workdir / "registry.log")
    return registry


def _tls_config(tls: tuple[Path, Path] | None) -> str:
    if tls is None:
        return ""
    certificate, key = tls
    return f"""
  tls:
    certificate: {certificate}
    key: {key}"""


def _wait_ready(registry: Registry, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    # A context of its own, read now: from 3.12, urlopen's shared opener keeps the trust it was built
    # with, before whoever started this registry pointed SSL_CERT_FILE at its CA.
    context = ssl.create_default_context() if registry.url.startswith("https:") else None
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{registry.url}/v2/", timeout=1, context=context)  # noqa: S310 - loopback
            return
        except HTTPError as answer:
            if answer.code == 401:  # up, and asking for credentials
                return
        except (URLError, OSError):
            pass
        time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
