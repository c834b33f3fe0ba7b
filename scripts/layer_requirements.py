"""The Lambda layers' requirements, derived from ``uv.lock`` (``make lock`` writes them).

    python -m scripts.layer_requirements [--check]

uv.lock decides every version this repository installs; what ships to Lambda is the part of it that
CPython 3.13 on arm64 (manylinux2014_aarch64, as ``layers/dependencies/Makefile`` cross-installs)
needs: the closure of cas-download's runtime dependencies, and psycopg for the sync's layer. Each
pin carries the lock's wheel hashes, so the layer build installs with ``--require-hashes``.

``--check`` exits 1 when a file differs from what the lock gives (a test runs it): a hand edit or a
stale file cannot ship a version the tests never ran.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"
PROJECT = "cas-download"

# Lambda's python3.13 runtime on arm64, as pip sees it when cross-installing for it.
LAMBDA_PYTHON = (3, 13)
LAMBDA_PLATFORMS = ["manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, -1, -1))]
LAMBDA_TAGS: frozenset[Tag] = frozenset(
    [
        *cpython_tags(LAMBDA_PYTHON, abis=["cp313", "abi3", "none"], platforms=LAMBDA_PLATFORMS),
        *compatible_tags(LAMBDA_PYTHON, interpreter="cp313", platforms=LAMBDA_PLATFORMS),
    ]
)


@dataclass(frozen=True)
class Layer:
    path: Path
    header: str
    roots: tuple[str, ...]  # empty: the project's runtime dependencies
    follow_dependencies: bool


LAYERS = (
    Layer(
        ROOT / "layers" / "dependencies" / "requirements.txt",
        "DependenciesLayer: cas-download's runtime dependencies (pyproject.toml [project] dependencies)\n"
        "and everything they need, as uv.lock resolves them.",
        (),
        follow_dependencies=True,
    ),
    Layer(
        ROOT / "layers" / "dependencies" / "requirements-postgres.txt",
        "PostgresLayer: Chainloop's database driver, for ChainloopSyncFunction only (the download and\n"
        "validator functions never carry it). Installed with --no-deps: its one other dependency,\n"
        "typing-extensions, is in DependenciesLayer, which the function also uses.",
        ("psycopg", "psycopg-binary"),
        follow_dependencies=False,
    ),
)


class LockError(Exception):
    """uv.lock cannot give a layer what Lambda needs (no arm64 wheel for 3.13, a missing package)."""


def lambda_environment(project_extra: str) -> dict[str, str]:
    return {
        "python_version": "3.13",
        "python_full_version": "3.13.0",
        "implementation_name": "cpython",
        "implementation_version": "3.13.0",
        "platform_python_implementation": "CPython",
        "platform_machine": "aarch64",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
        # uv marks the project's own branch of a fork with this extra (package conflicts)
        "extra": project_extra,
    }


class LockedPackages:
    def __init__(self, lock: dict[str, Any]) -> None:
        self.by_name: dict[str, list[dict[str, Any]]] = {}
        for package in lock["package"]:
            self.by_name.setdefault(canonicalize_name(package["name"]), []).append(package)
        # uv's name for the project's side of the package conflicts (pyproject.toml [tool.uv])
        self.environment = lambda_environment(f"project-{len(PROJECT)}-{PROJECT}")

    def applies(self, dependency: dict[str, Any]) -> bool:
        marker = dependency.get("marker")
        return marker is None or Marker(marker).evaluate(self.environment)

    def pick(self, dependency: dict[str, Any]) -> dict[str, Any]:
        candidates = self.by_name.get(canonicalize_name(dependency["name"]), [])
        if "version" in dependency:
            candidates = [c for c in candidates if c["version"] == dependency["version"]]
        if len(candidates) != 1:
            raise LockError(f"uv.lock has {len(candidates)} candidates for {dependency['name']}")
        return candidates[0]

    def closure(self, roots: list[dict[str, Any]], follow: bool) -> dict[str, dict[str, Any]]:
        chosen: dict[str, dict[str, Any]] = {}
        todo = [dependency for dependency in roots if self.applies(dependency)]
        while todo:
            dependency = todo.pop()
            package = self.pick(dependency)
            name = canonicalize_name(package["name"])
            chosen[name] = package
            if not follow:
                continue
            wanted = list(package.get("dependencies", []))
            for extra in dependency.get("extra", []):
                wanted += package.get("optional-dependencies", {}).get(extra, [])
            todo += [d for d in wanted if self.applies(d) and canonicalize_name(d["name"]) not in chosen]
        return chosen


def wheel_hashes(package: dict[str, Any]) -> list[str]:
    """Every wheel's hash (the benchmarks install the same pins on this machine's platform), once
    Lambda's platform is known to have one."""
    wheels = package.get("wheels", [])
    if not any(
        LAMBDA_TAGS.intersection(parse_wheel_filename(wheel["url"].rsplit("/", 1)[-1])[3]) for wheel in wheels
    ):
        raise LockError(
            f"{package['name']} {package['version']} (uv.lock) has no wheel for CPython 3.13 on "
            "manylinux2014_aarch64: Lambda's runtime cannot install it; pin a version that has one"
        )
    return sorted(wheel["hash"] for wheel in wheels)


def render(layer: Layer, packages: LockedPackages) -> str:
    if layer.roots:
        roots = [{"name": name} for name in layer.roots]
    else:
        project = packages.pick({"name": PROJECT})
        roots = project.get("dependencies", [])
    chosen = packages.closure(roots, layer.follow_dependencies)
    header = "".join(f"# {line}\n" for line in layer.header.splitlines())
    lines = [
        "# Generated from uv.lock by `make lock` (python -m scripts.layer_requirements): do not edit.",
        header.rstrip("\n"),
        "# Cross-installed for CPython 3.13 on manylinux2014_aarch64 (Lambda's python3.13 arm64 runtime)",
        "# with --require-hashes: the hashes are the lock's wheels (every platform's: make bench installs",
        "# the same pins here).",
    ]
    for name in sorted(chosen):
        package = chosen[name]
        hashes = " \\\n".join(f"    --hash={h}" for h in wheel_hashes(package))
        lines.append(f"{name}=={package['version']} \\\n{hashes}")
    return "\n".join(lines) + "\n"


def pinned(requirements: Path) -> dict[str, str]:
    """``name==version`` of a requirements file, names canonical (hashes and comments aside)."""
    pins: dict[str, str] = {}
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("--"):
            name, _, version = line.removesuffix("\\").strip().partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a layer's file is not the lock's")
    args = parser.parse_args(argv)
    packages = LockedPackages(tomllib.loads(LOCK.read_text()))
    stale = []
    for layer in LAYERS:
        try:
            wanted = render(layer, packages)
        except LockError as error:
            print(f"{layer.path.relative_to(ROOT)}: {error}", file=sys.stderr)
            return 1
        if args.check:
            if not layer.path.is_file() or layer.path.read_text() != wanted:
                stale.append(str(layer.path.relative_to(ROOT)))
        else:
            layer.path.write_text(wanted)
    if stale:
        print(f"{', '.join(stale)} disagree(s) with uv.lock: run `make lock`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
