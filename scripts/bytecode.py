"""Byte code for Lambda's Python (CPython 3.13) in ``sam build``'s output.

    python -m scripts.bytecode BUILD_DIR [--require] [--check-only]

Lambda's ``/var/task`` and ``/opt`` are read-only: a package shipped without ``.pyc`` is compiled from
source on every cold start (2.5x of the cold start, issue 31). So after ``sam build`` every ``.py`` of
every function and layer gets a ``__pycache__/<name>.cpython-313.pyc``:

- compiled by a real CPython 3.13 (byte code is version-specific: 3.11's is useless to 3.13);
- ``--invalidation-mode unchecked-hash``: 3.13 uses it without looking at the source's mtime, which a
  zip does not keep reliably and which Lambda could not act on anyway (it cannot rewrite the file);
- with the path Lambda will see in tracebacks (``/var/task``, ``/opt/python``).

Where 3.13 comes from, the first found: ``LAMBDA_PYTHON`` (a command, e.g. ``python3.13`` or
``uv run --python 3.13 python``); ``python3.13`` on ``PATH``; ``make lambda-runtime``'s x86_64 chroot
(Debian trixie's python3.13, as root). With none, one line on stderr says the build ships without byte
code and how to get 3.13; ``--require`` (CI's Lambda-runtime check, ``make deploy``) makes that an
error, so a slow artifact is never silent.

The check (``check_tree``, also ``--check-only``) needs no 3.13: it reads each ``.pyc``'s header and
accepts it only as 3.13 would an unchecked-hash pyc: 3.13's magic number, the hash-based flag, and the
SipHash of the source keyed with 3.13's magic (``_imp.source_hash``, the function 3.13 itself uses).
"""

from __future__ import annotations

import _imp
import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.lambda_runtime.chroot import Chroot
from scripts.lambda_runtime.x86_64 import PACKAGES

ROOT = Path(__file__).resolve().parent.parent
CHROOT_PYTHON = "/usr/bin/python3.13"
CHROOT_DIR = ROOT / ".local" / "lambda-runtime" / "trixie-amd64"

LAMBDA_TAG = "cpython-313"
# importlib.util.MAGIC_NUMBER of CPython 3.13 (3571): what every 3.13.x accepts
LAMBDA_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"
# _RAW_MAGIC_NUMBER: 3.13 keys a source's SipHash with it
LAMBDA_RAW_MAGIC = int.from_bytes(LAMBDA_MAGIC, "little")
HASH_BASED = 0b01  # flags: hash-based, check_source off (unchecked-hash)

NO_PYTHON = (
    "no CPython 3.13 here: {what} ships WITHOUT byte code, so every Lambda cold start compiles it "
    "(about 2.5x slower). Install python3.13 (or set LAMBDA_PYTHON), or run `make lambda-runtime` "
    "once as root, and build again."
)


@dataclass(frozen=True)
class Artifact:
    """One function's or layer's files and the directory Lambda puts them in."""

    root: Path
    in_lambda: str


class NoLambdaPython(Exception):
    """No CPython 3.13 to compile with."""


def artifacts(build_dir: Path) -> list[Artifact]:
    """Each function (``/var/task``) and layer (``python/`` -> ``/opt/python``) of a sam build."""
    found = []
    for directory in sorted(p for p in build_dir.iterdir() if p.is_dir()):
        if (directory / "python").is_dir():
            found.append(Artifact(directory / "python", "/opt/python"))
        elif any(directory.rglob("*.py")):
            found.append(Artifact(directory, "/var/task"))
    return found


def compile_argv(artifact: Artifact) -> list[str]:
    return [
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        str(artifact.root),
        "-p",
        artifact.in_lambda,
        str(artifact.root),
    ]


def is_python_313(command: list[str]) -> bool:
    try:
        done = subprocess.run(
            [*command, "-S", "-c", "import sys; print(sys.implementation.cache_tag)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == LAMBDA_TAG


def host_python() -> list[str] | None:
    """LAMBDA_PYTHON, else python3.13 on PATH, when it really is CPython 3.13."""
    named = os.environ.get("LAMBDA_PYTHON", "").strip()
    if named:
        command = shlex.split(named)
        if not is_python_313(command):
            raise NoLambdaPython(f"LAMBDA_PYTHON={named!r} is not CPython 3.13")
        return command
    on_path = shutil.which("python3.13")
    if on_path and is_python_313([on_path]):
        return [on_path]
    return None


def chroot_available() -> bool:
    return os.geteuid() == 0 and (CHROOT_DIR / CHROOT_PYTHON.lstrip("/")).is_file()


def compile_build(build_dir: Path, log: Path) -> str:
    """Compile every artifact of ``build_dir`` with 3.13; says which interpreter did it."""
    # Absolute: the chroot's compileall runs from its own / (`make build` passes .aws-sam/build).
    build_dir = build_dir.resolve()
    items = artifacts(build_dir)
    command = host_python()
    if command is not None:
        for artifact in items:
            _run([*command, *compile_argv(artifact)], log)
        return shlex.join(command)
    if chroot_available():
        chroot = Chroot(CHROOT_DIR, "amd64", PACKAGES)
        with chroot.session({build_dir: str(build_dir)}, read_only=False) as session:
            for artifact in items:
                session.run([CHROOT_PYTHON, *compile_argv(artifact)], {"PATH": "/usr/bin:/bin"}, log)
        return f"{CHROOT_PYTHON} in {CHROOT_DIR.relative_to(ROOT)}"
    raise NoLambdaPython(NO_PYTHON.format(what=build_dir))


def _run(argv: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compileall failed ({shlex.join(argv[:3])} ...): see {log}")


def pyc_problem(source: Path) -> str | None:
    """Why CPython 3.13 would not use ``source``'s cached byte code as it is, or None."""
    pyc = source.parent / "__pycache__" / f"{source.stem}.{LAMBDA_TAG}.pyc"
    if not pyc.is_file():
        return "no .pyc"
    header = pyc.read_bytes()[:16]
    if header[:4] != LAMBDA_MAGIC:
        return f"magic {header[:4]!r} is not 3.13's"
    if int.from_bytes(header[4:8], "little") != HASH_BASED:
        return "not an unchecked-hash .pyc"
    if header[8:16] != _imp.source_hash(LAMBDA_RAW_MAGIC, source.read_bytes()):
        return "compiled from other source"
    return None


def check_tree(root: Path) -> list[str]:
    """Every ``.py`` below ``root`` whose byte code 3.13 would not use, with the reason."""
    return [
        f"{source.relative_to(root)}: {problem}"
        for source in sorted(root.rglob("*.py"))
        if "__pycache__" not in source.parts and (problem := pyc_problem(source)) is not None
    ]


def check_build(build_dir: Path) -> list[str]:
    return [
        f"{artifact.root.relative_to(build_dir)}/{problem}"
        for artifact in artifacts(build_dir)
        for problem in check_tree(artifact.root)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--require", action="store_true", help="no CPython 3.13 is an error")
    parser.add_argument("--check-only", action="store_true", help="only check the byte code that is there")
    args = parser.parse_args(argv)
    if not args.check_only:
        try:
            used = compile_build(args.build_dir, ROOT / "build" / "bytecode.log")
        except NoLambdaPython as missing:
            print(f"bytecode: {missing}", file=sys.stderr)
            return 1 if args.require else 0
        print(f"bytecode: compiled for CPython 3.13 by {used}")
    problems = check_build(args.build_dir)
    if problems:
        print(f"bytecode: {len(problems)} file(s) 3.13 would compile at every cold start:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems[:20]), file=sys.stderr)
        return 1
    print(f"bytecode: every .py of {args.build_dir} has {LAMBDA_TAG} byte code that 3.13 uses as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
