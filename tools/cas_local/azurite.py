"""Azurite (Microsoft's Azure Storage emulator, the npm package) on loopback for the tests and the
local stack: ``make azurite`` installs it without root into ``.local/node``.

Azurite checks shared-key signatures and SAS tokens; its accounts come from ``AZURITE_ACCOUNTS``
(``name:key1[:key2]``) and its data from ``--location``, so a restart with other keys on the same
location revokes the old keys while the blobs stay.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cas_local.moto import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BINARY = ROOT / ".local" / "node" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = "Azurite is not installed: run `make azurite` (npm install --prefix .local/node azurite@3)"
READY_TIMEOUT_S = 30.0


def azurite_binary() -> str | None:
    if LOCAL_BINARY.is_file():
        return str(LOCAL_BINARY)
    return shutil.which("azurite-blob")


def new_account_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


@dataclass
class Azurite:
    workdir: Path
    accounts: dict[str, list[str]]  # account name -> its keys (one or two)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    history: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def location(self, account: str, container: str) -> str:
        """A backend location: path-style, as the spec writes Azurite's."""
        return f"{self.endpoint}/{account}/{container}"

    def account_url(self, account: str) -> str:
        return f"{self.endpoint}/{account}"

    def start(self) -> Azurite:
        binary = azurite_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.port = self.port or free_port()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "AZURITE_ACCOUNTS": ";".join(f"{name}:{':'.join(keys)}" for name, keys in self.accounts.items()),
        }
        log = (self.workdir / "azurite.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary, generated arguments
            [
                binary,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(data),
                "--skipApiVersionCheck",
                "--disableProductStyleUrl",
                "--silent",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait_ready()
        return self

    def restart(self, accounts: dict[str, list[str]]) -> None:
        """Stop, then start on the same port and data with these accounts and keys (keys left out are
        revoked)."""
        self.stop()
        self.accounts = accounts
        self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"azurite exited: {(self.workdir / 'azurite.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("azurite did not start in time")
