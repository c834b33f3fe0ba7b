"""Real AWS stand-ins over HTTP: moto servers as subprocesses, plus a TCP black hole.

Two moto servers run for a test session:

* ``control``: DynamoDB and Secrets Manager (and anything else the app reaches through
  ``AWS_ENDPOINT_URL``). IAM authentication is off: any credentials work.
* ``storage``: S3 and IAM, with moto's IAM authentication ON. moto counts every request that reaches
  an authenticating service (``moto.core.authorization.ActionAuthenticatorMixin.request_count``, one
  counter per server process, all services together) and lets the first
  ``INITIAL_NO_AUTH_ACTION_COUNT`` through unchecked. ``/moto-api/*`` requests do not count. We spend
  exactly three of them (CreateUser, PutUserPolicy, CreateAccessKey) on an admin user, then every
  request is checked: signature against the key's secret, and the key's policies. A deleted key answers
  ``InvalidAccessKeyId``, so a revoked credential is really revoked.

The servers are plain subprocesses (``python -m moto.server``), never the in-process mocks, so
botocore talks real HTTP to them and the app under test cannot tell them from AWS.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HOST = "127.0.0.1"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Credentials for the control server (auth off: any value is accepted).
CONTROL_ACCESS_KEY_ID = "testing"
CONTROL_SECRET_ACCESS_KEY = "testing"
# Unauthenticated requests the storage server lets through: CreateUser, PutUserPolicy, CreateAccessKey.
STORAGE_NO_AUTH_REQUESTS = 3
ADMIN_USER = "cas-test-admin"

READY_TIMEOUT_S = 60.0  # a cold ``import moto`` on a busy 2-core machine can take several seconds
STOP_TIMEOUT_S = 10.0

# Setup clients never retry silently (NB: Config retries "max_attempts" counts RETRIES, so 1 means
# two attempts; "total_max_attempts" counts attempts): a retry would spend one of the few unauthenticated requests,
# and a slow test is better than a hidden failure.
SETUP_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    s3={"addressing_style": "path"},
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM the server if the test process dies without teardown."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class MotoServer:
    """A moto server subprocess listening on ``url``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate (then kill) the subprocess; idempotent, never raises."""
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT_S)


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": CONTROL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": CONTROL_SECRET_ACCESS_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _wait_ready(server: MotoServer, deadline: float) -> bool:
    """Poll ``/moto-api/config`` (does not count as an action) until it answers; False if it died."""
    url = f"{server.url}/moto-api/config"
    delay = 0.05
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
                return True
        except urllib.error.HTTPError:
            return True  # it answered HTTP: it is up
        except (OSError, urllib.error.URLError):
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
    raise TimeoutError(
        f"moto server {server.name!r} on {server.url} not ready within {READY_TIMEOUT_S}s\n"
        f"{server.log_tail()}"
    )


def _spawn(name: str, log_dir: Path, env: dict[str, str]) -> MotoServer:
    port = free_port()
    log_path = log_dir / f"moto-{name}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(env),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
    server = MotoServer(name=name, port=port, process=proc, log_path=log_path)
    _LIVE.append(server)
    return server


def start_moto_servers(specs: dict[str, dict[str, str]], log_dir: Path) -> dict[str, MotoServer]:
    """Start one ``python -m moto.server`` per ``{name: extra env}`` on free ports, all at once, and
    wait (bounded) until each answers HTTP. A port taken between choosing and binding shows as an
    early exit: that server is retried on a new port. On failure every server started is stopped.
    """
    servers = {name: _spawn(name, log_dir, env) for name, env in specs.items()}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, env in specs.items():
            for attempt in range(3):
                if _wait_ready(servers[name], deadline):
                    break
                tail = servers[name].log_tail()
                servers[name].stop()
                if attempt == 2:
                    raise RuntimeError(f"moto server {name!r} would not start:\n{tail}")
                time.sleep(0.2 * (attempt + 1))
                servers[name] = _spawn(name, log_dir, env)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def start_moto_server(name: str, log_dir: Path, env: dict[str, str] | None = None) -> MotoServer:
    """Start one moto server (see ``start_moto_servers``)."""
    return start_moto_servers({name: env or {}}, log_dir)[name]


_LIVE: list[MotoServer] = []


@atexit.register
def _stop_leftovers() -> None:
    for server in _LIVE:
        server.stop()


# --------------------------------------------------------------------------------------------------
# black hole


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers.

    A client connects at once (the kernel completes the handshake) and then waits for a response that
    never comes, so its read timeout fires: the shape of a stuck S3 endpoint. Connections are held
    open until ``stop()``.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def bucket_url(self, bucket: str) -> str:
        """A backend ``location`` (path style) pointing into the black hole."""
        return f"{self.url}/{bucket}"

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
            self._conns.clear()


# --------------------------------------------------------------------------------------------------
# the pair of servers


ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass
class AwsServers:
    """Running stand-ins: ``control`` (DynamoDB, Secrets Manager), ``storage`` (S3, IAM, auth on)."""

    control: MotoServer
    storage: MotoServer
    black_hole: BlackHole
    admin_access_key_id: str
    admin_secret_access_key: str
    log_dir: Path
    _stopped: bool = field(default=False, repr=False)
    _clients: dict[tuple[str, str, str], Any] = field(default_factory=dict, repr=False)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cached_client(self, server: Literal["control", "storage"], service: str, variant: str = "") -> Any:
        """A shared setup client (creating a boto3 client costs ~0.1 s; clients are thread-safe).
        ``variant="plain"``: S3 without flexible checksums on requests or responses."""
        key = (server, service, variant)
        with self._clients_lock:
            if key not in self._clients:
                if server == "control":
                    self._clients[key] = self.control_client(service)
                else:
                    config = (
                        Config(
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                        )
                        if variant == "plain"
                        else None
                    )
                    self._clients[key] = self.storage_client(service, config=config)
            return self._clients[key]

    @property
    def control_url(self) -> str:
        return self.control.url

    @property
    def storage_url(self) -> str:
        return self.storage.url

    @property
    def black_hole_url(self) -> str:
        return self.black_hole.url

    def control_client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for the control server (DynamoDB, Secrets Manager)."""
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.control.url,
            region_name=REGION,
            aws_access_key_id=CONTROL_ACCESS_KEY_ID,
            aws_secret_access_key=CONTROL_SECRET_ACCESS_KEY,
            config=SETUP_CONFIG,
            **kwargs,
        )

    def storage_client(
        self,
        service: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> Any:
        """A boto3 client for the storage server (S3, IAM); the admin key unless another is given."""
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.storage.url,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.admin_access_key_id,
            aws_secret_access_key=secret_access_key or self.admin_secret_access_key,
            config=SETUP_CONFIG.merge(config) if config else SETUP_CONFIG,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for stop in (self.black_hole.stop, self.storage.stop, self.control.stop):
            with contextlib.suppress(Exception):
                stop()


def _bootstrap_admin(storage: MotoServer) -> tuple[str, str]:
    """Spend the storage server's unauthenticated requests on an allow-all admin user and key."""
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=storage.url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
        config=SETUP_CONFIG,
    )
    iam.create_user(UserName=ADMIN_USER)  # unauthenticated request 1
    iam.put_user_policy(  # 2
        UserName=ADMIN_USER, PolicyName="allow-all", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]  # 3: auth is on from here
    # Prove it: a key IAM never issued must now be refused.
    probe = boto3.session.Session().client(
        "s3",
        endpoint_url=storage.url,
        region_name=REGION,
        aws_access_key_id="AKIAPROBEPROBEPROBE0",
        aws_secret_access_key="probe",
        config=SETUP_CONFIG,
    )
    try:
        probe.list_buckets()
    except ClientError as exc:
        if exc.response["Error"].get("Code") != "InvalidAccessKeyId":
            raise
    else:
        raise RuntimeError("moto storage server accepted an unknown key: IAM authentication is not on")
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def start_aws_servers(log_dir: Path | None = None) -> AwsServers:
    """Start both moto servers and the black hole; on any failure, stop what was started."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cas-moto-"))
    started: list[MotoServer] = []
    black_hole: BlackHole | None = None
    try:
        servers = start_moto_servers(
            {
                "control": {},
                "storage": {"INITIAL_NO_AUTH_ACTION_COUNT": str(STORAGE_NO_AUTH_REQUESTS)},
            },
            log_dir,
        )
        control, storage = servers["control"], servers["storage"]
        started.extend((control, storage))
        admin_key_id, admin_secret = _bootstrap_admin(storage)
        black_hole = BlackHole()
        return AwsServers(
            control=control,
            storage=storage,
            black_hole=black_hole,
            admin_access_key_id=admin_key_id,
            admin_secret_access_key=admin_secret,
            log_dir=log_dir,
        )
    except BaseException:
        if black_hole is not None:
            black_hole.stop()
        for server in reversed(started):
            server.stop()
        raise
