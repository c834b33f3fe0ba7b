"""Run what ships on Lambda's own runtime: CPython 3.13, on x86_64 and on arm64 (emulated).

    python -m scripts.lambda_runtime                    # both parts (make lambda-runtime)
    python -m scripts.lambda_runtime --part arm64       # one part
    python -m scripts.lambda_runtime --fresh            # rebuild the chroots (CI does)
    python -m scripts.lambda_runtime --tests tests/unit tests/scenarios/test_oci.py

x86_64: the unit layer and the scenario tests on Debian trixie's python3.13 in a chroot.
arm64: ``sam build``'s function and layers on python3.13 for arm64 under qemu-user: every handler and
lazily imported adapter imported, one request per provider (S3, OCI, Azure) and one Chainloop sync
against ``cas-local run`` and a real PostgreSQL on this host.

Needs root, debootstrap, binfmt_misc with qemu-aarch64, and this machine's Debian mirror (from apt's
configuration). When one is missing it says so in one line: exit 1 under CI (CI=true, 1, yes, on),
else exit 0, skipped. Chroots are cached in .local/lambda-runtime; logs go to build/lambda-runtime.
Prints one line per step with its wall time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.ci import missing_server_fails

from scripts import bytecode

from .arm64 import Arm64Part
from .chroot import (
    Chroot,
    StepFailed,
    Unavailable,
    debian_mirror,
    enable_aarch64_emulation,
    require_root_tools,
)
from .x86_64 import DEFAULT_TESTS, VENV, X8664Part

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".local" / "lambda-runtime"
WORK = ROOT / "build" / "lambda-runtime"
PREFIX = "lambda-runtime:"


def step(name: str, action: Callable[[], str | list[str]]) -> None:
    started = time.monotonic()
    outcome = action()
    lines = [outcome] if isinstance(outcome, str) else outcome
    print(f"{PREFIX} {name}: {time.monotonic() - started:.1f} s{': ' + lines[0] if lines and lines[0] else ''}",
          flush=True)  # fmt: skip
    for line in lines[1:]:
        print(f"{PREFIX}   {line}", flush=True)


def ensure_chroot(chroot: Chroot, fresh: bool, mirror: str) -> str:
    if chroot.is_built() and not fresh:
        return f"cached ({chroot.root.relative_to(ROOT)})"
    chroot.build(mirror, WORK / f"debootstrap-{chroot.arch}.log")
    return f"built ({chroot.root.relative_to(ROOT)}, Debian trixie {chroot.arch})"


def coldstart_on_313(reps: int) -> int:
    """benchmarks/coldstart.py on what ``sam build`` ships, run by the x86_64 chroot's python3.13; the
    checkout is mounted at its own path inside, so every path the benchmark passes holds.

    The build is the template's, byte code included (scripts/bytecode.py), except that the layer's
    wheels are x86_64's (PIP_PLATFORM): the same pins and the same Python files, with extension
    modules this machine can load (arm64's run only under emulation, 20 to 100 times slower)."""
    x86 = X8664Part(ROOT, CACHE / "trixie-amd64", WORK)
    if not os.path.lexists(x86.chroot.path(f"{VENV}/bin/python")):  # a link into the chroot
        print(f"{PREFIX} no 3.13 venv in the x86_64 chroot yet: run `make lambda-runtime` first", flush=True)
        return 1
    build = WORK / "sam-build-x86_64"
    shutil.rmtree(build, ignore_errors=True)
    sam = str(Path(sys.executable).with_name("sam"))
    env = {**os.environ, "PIP_PLATFORM": "manylinux2014_x86_64", "PYTHON": sys.executable}
    built = subprocess.run([sam, "build", "--build-dir", str(build)], cwd=ROOT, env=env, check=False)
    if built.returncode != 0 or bytecode.main([str(build), "--require"]) != 0:
        print(f"{PREFIX} the x86_64 build for the cold start failed", flush=True)
        return 1
    command = ["chroot", str(x86.chroot.root), f"{VENV}/bin/python"]
    # valgrind counts each cold start's instructions: a figure the host's noise does not move
    x86.chroot.add_package("valgrind", "/usr/bin/valgrind", WORK / "valgrind-install.log")
    cachegrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    counter = ["chroot", str(x86.chroot.root), *cachegrind, f"{VENV}/bin/python"]
    with x86.chroot.session({ROOT: str(ROOT)}, read_only=False):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.coldstart",
                "--python",
                shlex.join(command),
                "--reps",
                str(reps),
                "--build-dir",
                str(build),
                "--count-instructions-with",
                shlex.join(counter),
            ],
            cwd=ROOT,
            check=False,
        )
    return done.returncode


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.lambda_runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--part", action="append", choices=["x86_64", "arm64"], help="(default: both)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the chroots")
    parser.add_argument(
        "--coldstart",
        type=int,
        metavar="REPS",
        help="only the cold-start benchmark with the x86_64 chroot's 3.13 (REPS processes per kind and mode)",
    )
    parser.add_argument(
        "--tests", nargs="+", default=list(DEFAULT_TESTS), help="(x86_64; default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.part or ["x86_64", "arm64"]
    ci_strict = missing_server_fails()
    started = time.monotonic()
    try:
        require_root_tools("debootstrap", "chroot", "mount")
        if "arm64" in parts:
            enable_aarch64_emulation()
        mirror = debian_mirror()
    except Unavailable as missing:
        verdict = "FAILED (CI)" if ci_strict else "skipped"
        print(f"{PREFIX} {verdict}: {missing}", flush=True)
        return 1 if ci_strict else 0
    WORK.mkdir(parents=True, exist_ok=True)
    if args.coldstart is not None:
        return coldstart_on_313(args.coldstart)
    print(
        f"{PREFIX} Debian mirror {mirror}, chroots in {CACHE.relative_to(ROOT)}, logs in {WORK.relative_to(ROOT)}"
    )
    try:
        if "x86_64" in parts:
            x86 = X8664Part(ROOT, CACHE / "trixie-amd64", WORK)
            step("x86_64 chroot", lambda: ensure_chroot(x86.chroot, args.fresh, mirror))
            step("x86_64 source", x86.prepare_source)
            step("x86_64 venv", x86.install)
            step("x86_64 pytest on 3.13", lambda: x86.test(args.tests, os.environ.get("CI", "")))
        if "arm64" in parts:
            arm = Arm64Part(ROOT, CACHE / "trixie-arm64", WORK, WORK / "sam-build")
            step("arm64 chroot", lambda: ensure_chroot(arm.chroot, args.fresh, mirror))
            step("sam build", arm.sam_build)
            step("arm64 install build", arm.install_build)
            step("arm64 byte code accepted by 3.13", arm.check_bytecode)
            step("arm64 imports and requests (emulated)", lambda: ["", *arm.run_checks(ci_strict)])
    except Unavailable as missing:
        verdict = "FAILED (CI)" if ci_strict else "skipped"
        print(f"{PREFIX} {verdict}: {missing}", flush=True)
        return 1 if ci_strict else 0
    except StepFailed as failure:
        print(f"{PREFIX} FAILED: {failure}", flush=True)
        return 1
    print(f"{PREFIX} passed: {', '.join(parts)} in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
