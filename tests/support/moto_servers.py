"""Real AWS stand-ins over HTTP for the tests: the moto pair, plus a TCP black hole.

The moto servers themselves (start-up, readiness, the storage server's admin bootstrap) are
``cas_local.moto``, shared with the local stack (``make run``); this module adds what only tests need.

Two moto servers run for a test session:

* ``control``: DynamoDB and Secrets Manager (and anything else the app reaches through
  ``AWS_ENDPOINT_URL``). IAM authentication is off: any credentials work.
* ``storage``: S3 and IAM, with moto's IAM authentication ON (see ``cas_local.moto``): after the
  admin bootstrap every request is checked, signature against the key's secret and the key's policies.
  A deleted key answers ``InvalidAccessKeyId``, so a revoked credential is really revoked.

The servers are plain subprocesses (``python -m moto.server``), never the in-process mocks, so
botocore talks real HTTP to them and the app under test cannot tell them from AWS.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config

from cas_local.moto import (
    ACCOUNT_ID,
    CONTROL_ACCESS_KEY_ID,
    CONTROL_SECRET_ACCESS_KEY,
    HOST,
    READY_TIMEOUT_S,
    REGION,
    SETUP_CONFIG,
    STOP_TIMEOUT_S,
    STORAGE_NO_AUTH_REQUESTS,
    MotoServer,
    free_port,
    start_moto_pair,
    start_moto_server,
    start_moto_servers,
)

ADMIN_USER = "cas-test-admin"

# --------------------------------------------------------------------------------------------------
# black hole


# The tests' own clients, once the servers are up, retry what a loaded moto answers transiently (500,
# 503, throttling: botocore's standard mode): on a busy machine a seeding call once got a 500 and
# failed an isolation case. The servers' bootstrap keeps SETUP_CONFIG (no retry: a retry would spend
# one of the few unauthenticated requests the storage server allows).
SEEDING_CONFIG = SETUP_CONFIG.merge(Config(retries={"total_max_attempts": 5, "mode": "standard"}))


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

    def client_env(self, no_config_file: Path, metrics_namespace: str) -> dict[str, str]:
        """What every AWS client of a process needs to use these servers: their endpoints, the
        control credentials, ``no_config_file`` for AWS config and credentials files, no instance
        metadata; Powertools names for the app's telemetry."""
        return {
            "AWS_ENDPOINT_URL": self.control_url,
            "AWS_ENDPOINT_URL_S3": self.storage_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": CONTROL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": CONTROL_SECRET_ACCESS_KEY,
            "AWS_CONFIG_FILE": str(no_config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(no_config_file),
            "AWS_EC2_METADATA_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "cas-download",
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
        }

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
            config=SEEDING_CONFIG,
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
            config=SEEDING_CONFIG.merge(config) if config else SEEDING_CONFIG,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for stop in (self.black_hole.stop, self.storage.stop, self.control.stop):
            with contextlib.suppress(Exception):
                stop()


def start_aws_servers(log_dir: Path | None = None) -> AwsServers:
    """Start both moto servers and the black hole; on any failure, stop what was started."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cas-moto-"))
    pair = start_moto_pair(log_dir, ADMIN_USER)
    try:
        black_hole = BlackHole()
    except BaseException:
        pair.stop()
        raise
    return AwsServers(
        control=pair.control,
        storage=pair.storage,
        black_hole=black_hole,
        admin_access_key_id=pair.admin_access_key_id,
        admin_secret_access_key=pair.admin_secret_access_key,
        log_dir=log_dir,
    )


__all__ = [
    "ACCOUNT_ID",
    "ADMIN_USER",
    "CONTROL_ACCESS_KEY_ID",
    "CONTROL_SECRET_ACCESS_KEY",
    "HOST",
    "READY_TIMEOUT_S",
    "REGION",
    "SETUP_CONFIG",
    "STOP_TIMEOUT_S",
    "STORAGE_NO_AUTH_REQUESTS",
    "AwsServers",
    "BlackHole",
    "MotoServer",
    "free_port",
    "start_aws_servers",
    "start_moto_server",
    "start_moto_servers",
]
