"""Part 1: the test suite's unit layer and scenario tests on CPython 3.13 (x86_64, Debian trixie).

The working tree (tracked and untracked, not ignored: what the lead would commit) is copied to /src
in the chroot and installed there into /opt/venv as ``make venv`` does: this machine's uv (pinned by
tools/envs/uv-requirements.txt) copied in, ``uv sync --locked --extra dev`` on the chroot's
python3.13, so the versions are uv.lock's, as on the host.
The CNCF registry and Azurite (``make registry azurite``) are mounted at the same place in /src/.local;
Debian's nodejs in the chroot runs Azurite, so no scenario test skips for want of a server.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .chroot import Chroot, StepFailed

# util-linux: runuser, with which the tests' PostgreSQL runs initdb and the server as another user
PACKAGES = ("python3.13", "python3.13-venv", "ca-certificates", "make", "nodejs", "util-linux")
SRC = "/src"
VENV = "/opt/venv"
# sbin too: runuser (util-linux), with which the tests run PostgreSQL as an unprivileged user
BASE_ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
DEFAULT_TESTS = ("tests/unit", "tests/scenarios")
UV = "/usr/local/bin/uv"
# as the Makefile's UV_ENV, with the venv at /opt/venv and the cache inside the chroot
UV_ENV = {
    "UV_PROJECT_ENVIRONMENT": VENV,
    "UV_PREVIEW_FEATURES": "package-conflicts",
    "UV_PYTHON_DOWNLOADS": "never",
    "UV_LINK_MODE": "copy",
}


def tls_settings(chroot: Chroot) -> dict[str, str]:
    """This machine's CA bundle (SSL_CERT_FILE), copied into the chroot at the same path, for uv: where
    a proxy re-signs TLS (as here), Debian's own bundle in the chroot does not know its issuer."""
    bundle = os.environ.get("SSL_CERT_FILE", "")
    if not bundle or not Path(bundle).is_file():
        return {}
    inside = chroot.path(bundle)
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle, inside)
    return {"SSL_CERT_FILE": bundle}


def copy_working_tree(root: Path, target: Path) -> int:
    """The files git would commit (tracked + untracked, not ignored) copied to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    shutil.rmtree(target, ignore_errors=True)
    copied = 0
    for relative in filter(None, listed.split("\0")):
        source = root / relative
        if source.is_file():  # a deleted, not yet committed file is still listed
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
            copied += 1
    return copied


class X8664Part:
    def __init__(self, root: Path, chroot_dir: Path, logs: Path) -> None:
        self.root = root
        self.chroot = Chroot(chroot_dir, "amd64", PACKAGES)
        self.logs = logs

    def prepare_source(self) -> str:
        copied = copy_working_tree(self.root, self.chroot.path(SRC))
        return f"{copied} files copied to {SRC}"

    def install(self) -> str:
        """/opt/venv with exactly uv.lock's project and dev extras; reused while the lock is unchanged."""
        key = hashlib.sha256(
            b"".join((self.root / name).read_bytes() for name in ("pyproject.toml", "uv.lock"))
        )
        marker = self.chroot.path(f"{VENV}/.installed")
        uv = self.chroot.path(UV)
        uv.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.root / ".local" / "uv" / "bin" / "uv", uv)
        tls = tls_settings(self.chroot)
        # editable: the venv points at /src, so the fresh copy of each run is what the tests import
        log = self.logs / "x86_64-install.log"
        with self.chroot.session({}) as chroot:
            if marker.is_file() and marker.read_text() == key.hexdigest():
                return "venv reused (pyproject.toml and uv.lock unchanged)"
            shutil.rmtree(self.chroot.path(VENV), ignore_errors=True)
            chroot.run(
                [UV, "sync", "--quiet", "--locked", "--extra", "dev", "--python", "/usr/bin/python3.13"],
                {**BASE_ENV, **UV_ENV, **tls},
                log,
                cwd=SRC,
            )
        marker.write_text(key.hexdigest())
        return "venv built from uv.lock"

    def test(self, tests: list[str], ci: str) -> str:
        """pytest in the chroot; the servers the tests start come from /src/.local and the venv."""
        binds = {self.root / ".local" / name: f"{SRC}/.local/{name}" for name in ("registry", "node")}
        log = self.logs / "x86_64-pytest.log"
        log.unlink(missing_ok=True)
        argv = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", *tests]
        with self.chroot.session(binds) as chroot:
            done = chroot.run(argv, {**BASE_ENV, "CI": ci, "TMPDIR": "/tmp"}, log, cwd=SRC, check=False)
        summary = next(
            (line for line in reversed(log.read_text(errors="replace").splitlines()) if " in " in line), ""
        ).strip("= ")
        if done.returncode != 0:
            raise StepFailed(f"pytest on 3.13 failed: {summary} (log: {log})")
        return summary
