#!/usr/bin/env python3
"""Build the SAM application and check what would ship to Lambda.

Runs ``sam build`` (makefile builds: no Docker, no local python3.13) into a temporary build
directory, then, for every function of template.yaml and the layers it uses:

* reports files, unzipped and zipped size (a table);
* fails if a function plus its layers exceeds Lambda's 250 MB unzipped limit;
* compiles every function's and layer's byte code for CPython 3.13 (scripts/bytecode.py) and fails
  if any .py lacks a .pyc that 3.13 uses as it is; without a 3.13 it says so in one line and goes on,
  unless --require-bytecode (CI's Lambda-runtime check);
* fails if a function artifact holds anything but its handler's package (tests, byte code for
  another Python, egg-info, vendored dependencies...) or lacks the handler module;
* fails if a layer ships a compiled extension or byte code for another platform or Python than the
  function's runtime and architecture, ships the application package, or does not hold exactly the
  distributions pinned in its requirements.txt.

Exit status: 0 when every check passes, 1 otherwise.

    python -m scripts.check_package                     # build into a temp dir, check, clean up
    python -m scripts.check_package --build-dir .aws-sam/build --no-build   # check an existing build
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from cas_local.template import TemplateError, function_properties, load_template
from scripts import bytecode
from scripts.layer_requirements import pinned

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

# Lambda quota: deployment package (function code + all its layers) unzipped, 250 MB.
UNZIPPED_LIMIT_BYTES = 262_144_000
MIB = 1024 * 1024

# ELF e_machine values and the platform tag CPython puts in extension file names.
ELF_MACHINE = {"arm64": 183, "x86_64": 62}
ARCH_TAG = {"arm64": "aarch64", "x86_64": "x86_64"}

# Anything a function artifact must never contain (matched against every path component). Byte code
# is welcome, for the runtime's Python only (scripts/bytecode.py compiles it; checked below).
FORBIDDEN_IN_FUNCTION = re.compile(
    r"^(tests?|conftest\.py|test_.*\.py|.*_test\.py|.*\.py[od]|.*\.egg-info|.*\.dist-info"
    r"|\.[a-z_]*cache)$"
)
EXTENSION_NAME = re.compile(r"\.cpython-(?P<version>\d+)-(?P<platform>[^.]+)\.so$")
SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
PYC_NAME = re.compile(r"\.cpython-(?P<version>\d+)(?:\.opt-\d)?\.pyc$")


def _byte_code_of_another_python(filename: str, version: str) -> bool:
    """A ``.pyc`` not tagged for CPython ``version`` (``313``): the runtime would never read it."""
    tagged = PYC_NAME.search(filename)
    return filename.endswith(".pyc") and (not tagged or tagged["version"] != version)


@dataclass
class Artifact:
    logical_id: str
    kind: str  # "function" | "layer"
    path: Path
    files: dict[str, int] = field(default_factory=dict)  # relative posix path -> bytes
    zipped: int = 0

    @property
    def unzipped(self) -> int:
        return sum(self.files.values())

    def scan(self) -> None:
        self.files = dict(_walk(self.path))
        self.zipped = _zipped_size(self.path, self.files)


@dataclass
class FunctionSpec:
    logical_id: str
    handler: str
    runtime: str
    architecture: str
    layers: list[str]  # logical ids of layers built by this template
    external_layers: list[str]


@dataclass
class LayerSpec:
    logical_id: str
    content_uri: Path


def _walk(base: Path) -> Iterator[tuple[str, int]]:
    for directory, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(directory, name)
            yield full.relative_to(base).as_posix(), full.lstat().st_size


def _zipped_size(base: Path, files: dict[str, int]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch, "artifact.zip")
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for relative in files:
                zipped.write(base / relative, relative)
        return archive.stat().st_size


def read_specs(template: dict[str, Any]) -> tuple[list[FunctionSpec], dict[str, LayerSpec]]:
    resources: dict[str, Any] = template.get("Resources", {})
    layers = {
        logical_id: LayerSpec(logical_id, ROOT / str(resource["Properties"]["ContentUri"]))
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    }
    functions = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = function_properties(template, logical_id)
        built, external = [], []
        for layer in props.get("Layers", []):
            if isinstance(layer, dict) and layer.get("Ref") in layers:
                built.append(str(layer["Ref"]))
            else:
                external.append(str(layer))
        functions.append(
            FunctionSpec(
                logical_id=logical_id,
                handler=str(props["Handler"]),
                runtime=str(props["Runtime"]),
                architecture=str((props.get("Architectures") or ["x86_64"])[0]),
                layers=built,
                external_layers=external,
            )
        )
    return functions, layers


def run_sam_build(sam: str, build_dir: Path) -> None:
    env = dict(os.environ)
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    # The layer Makefile runs "$(PYTHON) -m pip": use this interpreter unless told otherwise.
    env.setdefault("PYTHON", sys.executable)
    command = [sam, "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise SystemExit(f"sam build failed with exit status {result.returncode}")


def check_function(spec: FunctionSpec, artifact: Artifact) -> list[str]:
    errors = []
    package = spec.handler.split(".", 1)[0]
    module = "/".join(spec.handler.split(".")[:-1]) + ".py"
    top_level = sorted({relative.split("/", 1)[0] for relative in artifact.files})
    for entry in top_level:
        if entry != package:
            errors.append(f"{spec.logical_id}: unexpected top-level entry {entry!r} (only {package!r} ships)")
    version = spec.runtime.removeprefix("python").replace(".", "")
    for relative in artifact.files:
        if any(FORBIDDEN_IN_FUNCTION.match(part) for part in relative.split("/")):
            errors.append(f"{spec.logical_id}: must not ship {relative}")
        if _byte_code_of_another_python(relative, version):
            errors.append(
                f"{spec.logical_id}: {relative} is byte code for another Python than {spec.runtime}"
            )
    if module not in artifact.files:
        errors.append(f"{spec.logical_id}: handler module {module} is missing (Handler {spec.handler})")
    return errors


def _elf_machine(path: Path) -> int | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def _installed(artifact: Artifact) -> dict[str, str]:
    installed = {}
    for relative in artifact.files:
        if relative.endswith(".dist-info/METADATA"):
            headers = HeaderParser().parsestr((artifact.path / relative).read_text(encoding="utf-8"))
            installed[_normalize(str(headers["Name"]))] = str(headers["Version"])
    return installed


def check_layer(layer: LayerSpec, artifact: Artifact, users: list[FunctionSpec]) -> list[str]:
    errors = []
    name = layer.logical_id
    for entry in sorted({relative.split("/", 1)[0] for relative in artifact.files}):
        if entry != "python":
            errors.append(f"{name}: unexpected top-level entry {entry!r} (a Python layer holds python/)")
    for spec in users:
        package = spec.handler.split(".", 1)[0]
        if any(relative.startswith(f"python/{package}/") for relative in artifact.files):
            errors.append(f"{name}: contains python/{package}: the application ships in {spec.logical_id}")
    targets = {(spec.runtime, spec.architecture) for spec in users}
    for runtime, architecture in sorted(targets):
        version = runtime.removeprefix("python").replace(".", "")
        arch_tag, machine = ARCH_TAG.get(architecture), ELF_MACHINE.get(architecture)
        for relative in artifact.files:
            filename = relative.rsplit("/", 1)[-1]
            if SHARED_OBJECT.search(filename):
                found = _elf_machine(artifact.path / relative)
                if found is not None and found != machine:
                    errors.append(f"{name}: {relative} is ELF machine {found}, not {architecture}")
                tagged = EXTENSION_NAME.search(filename)
                if tagged and (tagged["version"] != version or arch_tag not in tagged["platform"]):
                    errors.append(f"{name}: {relative} is built for another Python/platform than {runtime}")
            elif _byte_code_of_another_python(filename, version):
                errors.append(f"{name}: {relative} is byte code for another Python than {runtime}")
    requirements = requirements_of(layer)
    if requirements is not None and requirements.is_file():
        pins, installed = pinned(requirements), _installed(artifact)
        for dist, version in sorted(pins.items()):
            if dist not in installed:
                errors.append(f"{name}: {dist}=={version} is pinned but not in the layer")
            elif installed[dist] != version:
                errors.append(f"{name}: {dist} {installed[dist]} installed, {version} pinned")
        for dist in sorted(set(installed) - set(pins)):
            errors.append(f"{name}: {dist} {installed[dist]} is in the layer but not pinned")
    return errors


def requirements_of(layer: LayerSpec) -> Path | None:
    """The pinned requirements file the layer's Makefile installs for it
    (``build-<LayerId>: REQUIREMENTS ?= $(HERE)<file>``): the Makefile is the one place that says so."""
    makefile = layer.content_uri / "Makefile"
    if not makefile.is_file():
        return None
    pattern = rf"^build-{re.escape(layer.logical_id)}:\s*REQUIREMENTS\s*\??=\s*\$\(HERE\)(\S+)\s*$"
    match = re.search(pattern, makefile.read_text(encoding="utf-8"), re.MULTILINE)
    return layer.content_uri / match.group(1) if match else None


def _mib(size: int) -> str:
    return f"{size / MIB:,.2f}"


def print_table(artifacts: list[Artifact], functions: list[FunctionSpec], by_id: dict[str, Artifact]) -> None:
    header = ("artifact", "files", "unzipped MiB", "zipped MiB")
    rows = [header] + [
        (f"{a.logical_id} ({a.kind})", f"{len(a.files):,}", _mib(a.unzipped), _mib(a.zipped))
        for a in artifacts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    line = "  ".join("-" * width for width in widths)
    print()
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))
        if number == 0:
            print(line)
    print(line)
    for spec in functions:
        total = by_id[spec.logical_id].unzipped + sum(by_id[layer].unzipped for layer in spec.layers)
        share = 100 * total / UNZIPPED_LIMIT_BYTES
        print(
            f"{spec.logical_id} + layers: {_mib(total)} MiB unzipped of the "
            f"{_mib(UNZIPPED_LIMIT_BYTES)} MiB (250 MB) Lambda limit ({share:.1f}%)"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--build-dir", type=Path, help="sam build directory (default: a temporary one)")
    parser.add_argument("--no-build", action="store_true", help="check an existing --build-dir")
    parser.add_argument(
        "--sam", help="sam executable (default: next to this Python, else .venv/bin, else PATH)"
    )
    parser.add_argument(
        "--require-bytecode",
        action="store_true",
        help="fail when no CPython 3.13 can compile the byte code (default: say so and go on)",
    )
    args = parser.parse_args(argv)
    if args.no_build and args.build_dir is None:
        parser.error("--no-build needs --build-dir")

    sam = (
        args.sam
        or shutil.which("sam", path=str(Path(sys.executable).parent))
        or shutil.which("sam", path=str(ROOT / ".venv" / "bin"))
        or shutil.which("sam")
    )
    if not args.no_build and not sam:
        print("sam not found: install aws-sam-cli (pip install -e '.[dev]')", file=sys.stderr)
        return 1

    try:
        template = load_template(TEMPLATE)  # the repository's one reader (cfn-lint's decoder)
    except TemplateError as unreadable:
        print(f"FAIL: {unreadable}")
        return 1
    functions, layers = read_specs(template)
    with tempfile.TemporaryDirectory(prefix="cas-download-build-") as scratch:
        build_dir = (args.build_dir or Path(scratch, "build")).resolve()
        if not args.no_build:
            assert sam is not None
            run_sam_build(sam, build_dir)
            if bytecode.main([str(build_dir), *(["--require"] if args.require_bytecode else [])]) != 0:
                return 1
        elif args.require_bytecode and bytecode.main([str(build_dir), "--check-only"]) != 0:
            return 1

        artifacts: list[Artifact] = []
        by_id: dict[str, Artifact] = {}
        for logical_id, kind in [(f.logical_id, "function") for f in functions] + [
            (layer, "layer") for layer in layers
        ]:
            artifact = Artifact(logical_id, kind, build_dir / logical_id)
            if not artifact.path.is_dir():
                print(f"FAIL: {logical_id}: no build artifact at {artifact.path}", file=sys.stderr)
                return 1
            artifact.scan()
            artifacts.append(artifact)
            by_id[logical_id] = artifact

        print_table(artifacts, functions, by_id)

        errors: list[str] = []
        for spec in functions:
            errors += check_function(spec, by_id[spec.logical_id])
            total = by_id[spec.logical_id].unzipped + sum(by_id[layer].unzipped for layer in spec.layers)
            if total > UNZIPPED_LIMIT_BYTES:
                errors.append(f"{spec.logical_id}: {_mib(total)} MiB unzipped with its layers exceeds 250 MB")
            for external in spec.external_layers:
                print(f"note: {spec.logical_id} uses layer {external}, not built here: size not counted")
        for layer in layers.values():
            users = [spec for spec in functions if layer.logical_id in spec.layers]
            errors += check_layer(layer, by_id[layer.logical_id], users)

    for error in errors:
        print(f"FAIL: {error}")
    if errors:
        return 1
    print("package check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
