"""moto servers as subprocesses: the AWS stand-ins shared by the local stack and the tests.

Two servers make the pair:

* ``control``: DynamoDB and Secrets Manager (and anything else reached through ``AWS_ENDPOINT_URL``).
  IAM authentication is off: any credentials work.
* ``storage``: S3 and IAM, with moto's IAM authentication ON. moto counts every request that reaches
  an authenticating service (``moto.core.authorization.ActionAuthenticatorMixin.request_count``, one
  counter per server process, all services together) and lets the first
  ``INITIAL_NO_AUTH_ACTION_COUNT`` through unchecked. ``/moto-api/*`` requests do not count. We spend
  exactly three of them (CreateUser, PutUserPolicy, CreateAccessKey) on an admin user, then every
  request is checked: signature against the key's secret, and the key's policies. A deleted key answers
  ``InvalidAccessKeyId``, so a revoked credential is really revoked.

The servers are plain subprocesses (``python -m moto.server``), never the in-process mocks, so
botocore talks real HTTP to them and the code under test cannot tell them from AWS.
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
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HOST = "127.0.0.1"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Credentials for the control server (auth off: any value is accepted).
CONTROL_ACCESS_KEY_ID = "testing"
CONTROL_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto accepts anything here
# Unauthenticated requests the storage server lets through: CreateUser, PutUserPolicy, CreateAccessKey.
STORAGE_NO_AUTH_REQUESTS = 3

READY_TIMEOUT_S = 60.0  # a cold ``import moto`` on a busy 2-core machine can take several seconds
STOP_TIMEOUT_S = 10.0

# Setup clients never retry silently (NB: Config retries "max_attempts" counts RETRIES, so 1 means
# two attempts; "total_max_attempts" counts attempts): a retry would spend one of the few unauthenticated
# requests, and a slow start is better than a hidden failure.
SETUP_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    s3={"addressing_style": "path"},
)

ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM the child if its parent dies without cleaning up."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


PREEXEC = die_with_parent if sys.platform.startswith("linux") else None


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

    @property
    def pid(self) -> int:
        return self.process.pid

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
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http URL
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


def _spawn(name: str, log_dir: Path, env: dict[str, str], port: int | None = None) -> MotoServer:
    port = port or free_port()
    log_path = log_dir / f"moto-{name}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter running moto
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(env),
            preexec_fn=PREEXEC,  # noqa: PLW1509 - only prctl, no locks taken
        )
    server = MotoServer(name=name, port=port, process=proc, log_path=log_path)
    _LIVE.append(server)
    return server


def start_moto_servers(specs: dict[str, dict[str, str]], log_dir: Path) -> dict[str, MotoServer]:
    """Start one ``python -m moto.server`` per ``{name: extra env}`` on free ports, all at once, and
    wait (bounded) until each answers HTTP. A port taken between choosing and binding shows as an
    early exit: that server is retried on a new port. On failure every server started is stopped.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
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


def bootstrap_admin(storage: MotoServer, user_name: str) -> tuple[str, str]:
    """Spend the storage server's unauthenticated requests on an allow-all admin user and key, then
    prove that authentication is on. Returns the admin key (id, secret)."""
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=storage.url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",  # noqa: S106 - unchecked bootstrap requests
        config=SETUP_CONFIG,
    )
    iam.create_user(UserName=user_name)  # unauthenticated request 1
    iam.put_user_policy(  # 2
        UserName=user_name, PolicyName="allow-all", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    key = iam.create_access_key(UserName=user_name)["AccessKey"]  # 3: auth is on from here
    # Prove it: a key IAM never issued must now be refused.
    probe = boto3.session.Session().client(
        "s3",
        endpoint_url=storage.url,
        region_name=REGION,
        aws_access_key_id="AKIAPROBEPROBEPROBE0",
        aws_secret_access_key="probe",  # noqa: S106 - a deliberately wrong test credential
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


@dataclass
class MotoPair:
    """``control`` (DynamoDB, Secrets Manager; auth off) and ``storage`` (S3, IAM; auth on)."""

    control: MotoServer
    storage: MotoServer
    admin_access_key_id: str
    admin_secret_access_key: str

    def stop(self) -> None:
        for server in (self.storage, self.control):
            with contextlib.suppress(Exception):
                server.stop()


def start_moto_pair(log_dir: Path, admin_user: str) -> MotoPair:
    """Start both servers and bootstrap the storage server's admin; on failure stop what started."""
    servers = start_moto_servers(
        {"control": {}, "storage": {"INITIAL_NO_AUTH_ACTION_COUNT": str(STORAGE_NO_AUTH_REQUESTS)}},
        log_dir,
    )
    try:
        key_id, secret = bootstrap_admin(servers["storage"], admin_user)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return MotoPair(servers["control"], servers["storage"], key_id, secret)
