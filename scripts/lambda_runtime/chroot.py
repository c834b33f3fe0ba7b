"""Debian trixie chroots with Python 3.13, built by debootstrap from this machine's Debian mirror.

Everything here needs root: debootstrap, chroot and mount. Mounts live only as long as a
``Chroot.session()``; the trees are cached under ``.local/lambda-runtime`` and rebuilt when the
package list they were built from changes (or with ``fresh``, as CI does).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SUITE = "trixie"  # Debian 13: its python3.13 is the runtime's minor version
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


class Unavailable(Exception):
    """Something this machine lacks (root, a tool, binfmt_misc, the mirror): one line says what."""


def debian_mirror() -> str:
    """The Debian archive apt uses here (its ``Label: Debian`` source), read at run time so that no
    mirror host name is written in the repository."""
    if shutil.which("apt-get") is None:
        raise Unavailable("no apt-get: cannot find this machine's Debian mirror")
    listed = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(SITE)|$(LABEL)|$(IDENTIFIER)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in listed.splitlines():
        site, label, identifier = ([*line.split("|"), "", ""])[:3]
        if label == "Debian" and identifier == "Packages" and site.startswith(("http://", "https://")):
            return site
    raise Unavailable("apt knows no Debian mirror (no Label: Debian source; run apt-get update)")


def require_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable("not root: debootstrap, chroot and mount need root")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise Unavailable(
            f"missing {', '.join(missing)} (apt-get install debootstrap qemu-user-static binfmt-support)"
        )


def enable_aarch64_emulation() -> None:
    """binfmt_misc with qemu-aarch64 registered (mounted and enabled here when it is not yet)."""
    if not (BINFMT_DIR / "status").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True, check=False
        )
    if not (BINFMT_DIR / "status").exists():
        raise Unavailable("binfmt_misc is not available (the kernel cannot run foreign binaries)")
    entry = BINFMT_DIR / "qemu-aarch64"
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Unavailable("qemu-aarch64 is not registered in binfmt_misc (apt-get install qemu-user-static)")


@dataclass(frozen=True)
class Chroot:
    root: Path
    arch: str  # Debian's name: amd64, arm64
    packages: tuple[str, ...]

    @property
    def _marker(self) -> Path:
        return self.root / ".lambda-runtime-ready"

    def _key(self) -> str:
        return hashlib.sha256(f"{SUITE} {self.arch} {' '.join(sorted(self.packages))}".encode()).hexdigest()

    def is_built(self) -> bool:
        return self._marker.is_file() and self._marker.read_text().strip() == self._key()

    def build(self, mirror: str, log: Path) -> None:
        """debootstrap a fresh tree (whatever was there goes)."""
        self.remove()
        self.root.parent.mkdir(parents=True, exist_ok=True)
        command = [
            "debootstrap",
            f"--arch={self.arch}",
            "--variant=minbase",
            f"--include={','.join(self.packages)}",
            SUITE,
            str(self.root),
            mirror,
        ]
        run_logged(command, log)
        self._marker.write_text(self._key() + "\n")

    def add_package(self, package: str, program: str, log: Path) -> None:
        """apt-get install ``package`` in the chroot unless ``program`` is there already: a tool only a
        benchmark needs stays out of the chroots the tests build."""
        if self.path(program).exists():
            return
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
        with self.session():
            self.run(["apt-get", "update", "-qq"], env, log)
            self.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], env, log)

    def remove(self) -> None:
        if self.root.exists():
            unmount_below(self.root)
            shutil.rmtree(self.root)

    def path(self, inside: str) -> Path:
        """A path of the chroot as seen from the host."""
        return self.root / inside.lstrip("/")

    @contextlib.contextmanager
    def session(
        self,
        binds: Mapping[Path, str] = {},
        *,
        read_only: bool = True,
    ) -> Iterator[Chroot]:
        """/proc, /dev (with /dev/shm for PostgreSQL) and ``binds`` (host path -> path inside,
        read-only unless told) mounted; all unmounted on the way out, whatever happened."""
        mounted: list[Path] = []
        try:
            proc = self.path("/proc")
            _mount(["-t", "proc", "proc", str(proc)], proc, mounted)
            dev = self.path("/dev")
            _mount(["--rbind", "/dev", str(dev)], dev, mounted)
            subprocess.run(["mount", "--make-rslave", str(dev)], check=True)
            for source, inside in binds.items():
                target = self.path(inside)
                target.mkdir(parents=True, exist_ok=True)
                _mount(["--bind", str(source), str(target)], target, mounted)
                if read_only:
                    subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
            yield self
        finally:
            for target in reversed(mounted):
                subprocess.run(["umount", "-R", "-l", str(target)], check=False)
            unmount_below(self.root)  # a mount umount -R left behind must not outlive the session

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        cwd: str = "/",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the chroot with exactly ``env``; its output goes to ``log``."""
        script = f"cd {shlex.quote(cwd)} && exec {shlex.join(argv)}"
        command = ["chroot", str(self.root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                   "/bin/sh", "-c", script]  # fmt: skip
        return run_logged(command, log, check=check)


def _mount(options: list[str], target: Path, mounted: list[Path]) -> None:
    subprocess.run(["mount", *options], check=True)
    mounted.append(target)


def unmount_below(root: Path) -> None:
    """Unmount whatever an interrupted run left mounted inside ``root`` (deepest first)."""
    resolved = str(root.resolve())
    targets = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((t for t in targets if t == resolved or t.startswith(resolved + "/")), reverse=True):
        subprocess.run(["umount", "-R", "-l", target], check=False)


def run_logged(
    command: Sequence[str], log: Path, *, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command``, appending its output to ``log``; on failure the error names the log and
    shows its last lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        sink.write(f"\n$ {shlex.join(command)}\n")
        sink.flush()
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, text=True, check=False, cwd=cwd)
    if check and done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise StepFailed(f"{shlex.join(command[:4])} ... exited {done.returncode} (log: {log})\n{tail}")
    return done


class StepFailed(Exception):
    """A step ran and failed (not a missing prerequisite)."""
