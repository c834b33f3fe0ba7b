"""The local stack as a user runs it: ``cas-local run`` (what ``make run`` starts) in a subprocess.

Fixtures:
    local_stack  (session)   RunningStack: the `cas-local run --port 0` process, its endpoints (state
                             file), the banner it printed; stopped with SIGINT (Ctrl-C) at the end.
    admin        (function)  Admin: ``cas_admin.cli.main(argv)`` in-process, with the environment
                             ``eval "$(cas-local env)"`` would give (monkeypatched for the test).
    identity     (function)  a new IAM user allowed on a new bucket of the stack: (user, bucket).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from cas_admin.cli import main as admin_main
from cas_local.moto import PREEXEC, SETUP_CONFIG
from cas_local.seed import grant_bucket_access
from cas_local.stack import StackEndpoints, is_foreign_aws_variable, stop_run_process

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def subprocess_env() -> dict[str, str]:
    """The environment of a fresh shell: nothing of the test session's AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "POWERTOOLS_"))}
    env.update(NO_PROXY)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    endpoints: StackEndpoints
    state_file: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def api_url(self) -> str:
        assert self.endpoints.api_url
        return self.endpoints.api_url

    @property
    def demo(self) -> dict[str, Any]:
        return self.endpoints.demo

    def artifact(self, name: str) -> dict[str, Any]:
        return next(a for a in self.demo["artifacts"] if a["name"] == name)

    def banner(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = self.stdout_path.read_text(errors="replace")
            if "Ctrl-C stops everything" in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"no banner in {self.stdout_path}:\n{self.stdout_path.read_text()}")

    def client(self, service: str, *, storage: bool = False) -> Any:
        """An admin client straight to moto (``storage``: S3/IAM server; else DynamoDB/Secrets)."""
        e = self.endpoints
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=e.storage_url if storage else e.control_url,
            region_name=e.region,
            aws_access_key_id=e.admin_access_key_id,
            aws_secret_access_key=e.admin_secret_access_key,
            config=SETUP_CONFIG,
        )


def start_run(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    state = tmp / "stack.json"
    out, err = tmp / "run.out", tmp / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cas_local", "run", "--port", "0", "--state-file", str(state), *extra],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=subprocess_env(),
            preexec_fn=PREEXEC,  # noqa: PLW1509
        )
    return proc, state, out, err


def wait_for_state(proc: subprocess.Popen[bytes], state: Path, err: Path) -> StackEndpoints:
    return StackEndpoints.wait_for(proc, state, err, START_TIMEOUT_S)


def stop_run(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as a user would; the exit status. A run that ignores it is killed, and that fails."""
    if not stop_run_process(proc, signal.SIGINT, STOP_TIMEOUT_S):
        raise subprocess.TimeoutExpired(proc.args, STOP_TIMEOUT_S)
    return int(proc.returncode)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("cas-local")
    proc, state, out, err = start_run(tmp)
    try:
        endpoints = wait_for_state(proc, state, err)
        yield RunningStack(proc, endpoints, state, out, err)
    finally:
        stop_run(proc)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Admin:
    """``cas-admin`` in-process, as a user of the local stack runs it."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> Result:
        self._capsys.readouterr()
        code = admin_main(list(argv))
        captured = self._capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str) -> Result:
        result = self(*argv)
        assert result.code == 0, f"cas-admin {' '.join(argv)} -> {result.code}\n{result.err}"
        return result


@pytest.fixture
def admin(
    local_stack: RunningStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Admin:
    for name in list(os.environ):
        if is_foreign_aws_variable(name):
            monkeypatch.delenv(name)
    for name, value in {**local_stack.endpoints.admin_env(), **NO_PROXY}.items():
        monkeypatch.setenv(name, value)
    return Admin(capsys)


@pytest.fixture
def identity(local_stack: RunningStack) -> tuple[str, str]:
    """A new IAM user allowed to read and write a new bucket: what an org brings to `backend add`."""
    suffix = uuid.uuid4().hex[:10]
    user, bucket = f"user-{suffix}", f"bucket-{suffix}"
    local_stack.client("s3", storage=True).create_bucket(Bucket=bucket)
    iam = local_stack.client("iam", storage=True)
    iam.create_user(UserName=user)
    grant_bucket_access(iam, user, bucket)
    return user, bucket


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


NO_FOLLOW = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    follow: bool = False,
    data: bytes | None = None,
) -> Http:
    """One request, no proxy; redirects followed only with ``follow`` (as curl -L)."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    opener = DIRECT if follow else NO_FOLLOW
    try:
        with opener.open(request, timeout=30) as response:
            return Http(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Http(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def new_org_with_backend(
    admin: Admin, identity: tuple[str, str], name: str, *options: str, location: str | None = None
) -> tuple[str, Result]:
    """A new org, and its backend ``name`` added with a new key of the identity's user, on the
    identity's bucket unless ``location`` says otherwise: the org, and what ``backend add`` answered."""
    user, bucket = identity
    org = new_org()
    added = admin.ok(
        "backend", "add", name, "--org", org, "--location", location or bucket, "--new-key-for-user", user,
        *options,
    )  # fmt: skip
    return org, added
