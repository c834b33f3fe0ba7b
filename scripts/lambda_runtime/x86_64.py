"""Part 1: the test suite's unit layer and scenario tests on CPython 3.13 (x86_64, Debian trixie).

The working tree (tracked and untracked, not ignored: what the lead would commit) is copied to /src
in the chroot and installed there with ``pip install -e '.[dev]'`` into /opt/venv, as a developer
would. pip inside the chroot is configured like this machine's (``pip config list``): files it names
are copied in, directories (local indexes, wheel caches) are mounted read-only at the same path.
The CNCF registry and Azurite (``make registry azurite``) are mounted at the same place in /src/.local;
Debian's nodejs in the chroot runs Azurite, so no scenario test skips for want of a server.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
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


def pip_settings(root: Path) -> tuple[dict[str, str], dict[Path, str], list[Path]]:
    """This machine's pip configuration as PIP_* variables for the chroot, the directories it names
    (to mount read-only) and the files it names (to copy)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False, cwd=root
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"[^.]*\.([a-z0-9-]+)='(.*)'", line.strip())
        if match:
            settings["PIP_" + match[1].upper().replace("-", "_")] = match[2]
    settings.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    directories: dict[Path, str] = {}
    files: list[Path] = []
    for value in settings.values():
        for token in value.split():
            path = Path(token.removeprefix("file://"))
            if not path.is_absolute() or not path.exists():
                continue
            if path.is_dir():
                # a local index's pages (.../simple) link to files beside them: mount its root
                mounted = path.parent if path.name == "simple" else path
                directories[mounted] = str(mounted)
            else:
                files.append(path)
    return settings, directories, files


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
        """/opt/venv with the project and its dev extras; reused while pyproject.toml is unchanged."""
        settings, directories, files = pip_settings(self.root)
        key = hashlib.sha256(
            (self.root / "pyproject.toml").read_bytes() + repr(sorted(settings.items())).encode()
        )
        marker = self.chroot.path(f"{VENV}/.installed")
        for file in files:
            inside = self.chroot.path(str(file))
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, inside)
        # editable: the venv points at /src, so the fresh copy of each run is what the tests import
        log = self.logs / "x86_64-install.log"
        with self.chroot.session(directories) as chroot:
            if marker.is_file() and marker.read_text() == key.hexdigest():
                return "venv reused (pyproject.toml unchanged)"
            shutil.rmtree(self.chroot.path(VENV), ignore_errors=True)
            chroot.run(["python3.13", "-m", "venv", VENV], BASE_ENV, log)
            chroot.run(["pip", "install", "--quiet", "--upgrade", "pip"], {**BASE_ENV, **settings}, log)
            chroot.run(["pip", "install", "--quiet", "-e", ".[dev]"], {**BASE_ENV, **settings}, log, cwd=SRC)
        marker.write_text(key.hexdigest())
        return "venv built"

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
