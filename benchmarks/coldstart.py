"""Cold start in fresh processes, with only what Lambda would have on ``sys.path``.

The dev venv is not what Lambda runs: it holds aws-sam-cli's dependencies (awscrt, pyOpenSSL, ...),
and botocore changes behaviour when awscrt is importable. So the child processes run this interpreter
with ``-S`` (no site-packages at all) and ``PYTHONPATH`` = a copy of the function's package (as
functions/Makefile ships it) + a ``pip install --target`` of ``layers/dependencies/requirements.txt``
for this Python (every pinned package is pure Python, so these are the layer's files; the layer itself
is built for CPython 3.13 on arm64).

Another interpreter: ``python -m benchmarks.coldstart --python "COMMAND"`` measures only the cold
start (moto on loopback, one healthy backend), with COMMAND as the child's interpreter; ``make
lambda-runtime``'s chroot gives CPython 3.13 that way: ``python -m scripts.lambda_runtime --coldstart``.

Instructions (``--count-instructions-with``, which ``--coldstart`` passes): valgrind's cachegrind in the
chroot counts the user-space instructions of three more cold starts per kind. A time ratio moves with
what the host does (the same build gave 1.19x and 1.38x an hour apart); the count does not.

Byte code: the layer and the function are built with no ``.pyc`` (``--no-compile``; functions/Makefile
deletes ``__pycache__``) and Lambda's ``/opt`` and ``/var/task`` are read-only, so in Lambda every cold
start compiles every imported module of the layer and the package from source. That is the ``as
shipped`` mode (``PYTHONDONTWRITEBYTECODE=1``; the standard library keeps its own .pyc, as the
runtime's does). ``with .pyc`` is the same files with byte code cached (``PYTHONPYCACHEPREFIX``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import ROOT, WORK_DIR
from benchmarks.sections import COLD_START_313, stamp

REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
PACKAGE = ROOT / "functions" / "cas_download"
CHILD = Path(__file__).with_name("coldstart_child.py")
MODES = ("as shipped (no .pyc)", "with .pyc")
# Measuring a sam build (``--build-dir``): its files as built, with the 3.13 byte code it ships, and the
# same files without byte code (what shipped before issue 31). Neither writes byte code (Lambda's
# /var/task and /opt are read-only); the reference always has byte code, as the runtime's boto3 does.
BUILT_MODES = ("as built (3.13 byte code)", "the same files without byte code")
IMPORTTIME_RUNS = 3


@dataclass
class Run:
    import_s: float
    work_s: float
    total_s: float
    process_s: float
    modules: int
    warm_request_s: float | None = None


@dataclass
class ModeResult:
    mode: str
    app: list[Run] = field(default_factory=list)
    boto3: list[Run] = field(default_factory=list)
    # a container whose first request is a Chainloop download link (/download: PyJWT, the key)
    download: list[Run] = field(default_factory=list)

    def median(self, kind: str, attr: str) -> float:
        runs = {"app": self.app, "boto3": self.boto3, "download": self.download}[kind]
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    @property
    def ratio(self) -> float:
        return self.median("app", "total_s") / self.median("boto3", "total_s")

    @property
    def download_ratio(self) -> float:
        """The same ratio for a container whose first request is a download link."""
        return self.median("download", "total_s") / self.median("boto3", "total_s")


@dataclass
class ColdStart:
    layer_dir: Path
    modes: list[ModeResult]
    imports: dict[str, list[tuple[str, float, float]]]  # mode -> [(package, self ms, share)]
    import_total_ms: dict[str, float]
    profile: list[tuple[str, int, float]] | None = None  # (what, calls, cumulative ms)
    profile_total_ms: float = 0.0
    profile_mode: str = ""
    clients: dict[str, float] = field(default_factory=dict)  # kind -> median seconds (with .pyc)
    snapstart_env: dict[str, str] = field(default_factory=dict)  # the first mode's app environment
    # kind ("app", "download", "boto3", "start") -> median instructions of one process (valgrind)
    instructions: dict[str, float] = field(default_factory=dict)

    def net_instructions(self, kind: str) -> float:
        """``kind``'s instructions less the script's own start (the interpreter's and the child's)."""
        return self.instructions[kind] - self.instructions["start"]

    def instruction_ratio(self, kind: str) -> float:
        """``kind``'s net instructions over the reference's."""
        return self.net_instructions(kind) / self.net_instructions("boto3")


def interpreter_version(python: Sequence[str]) -> tuple[str, str]:
    """``python``'s ``sys.version`` and its short tag (``py313``)."""
    if list(python) == [sys.executable]:
        return sys.version, f"py{sys.version_info.major}{sys.version_info.minor}"
    answer = subprocess.run(  # noqa: S603 - the interpreter the user named
        [
            *python,
            "-S",
            "-c",
            "import sys; print(sys.version_info.major, sys.version_info.minor, sys.version)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(" ", 2)
    return answer[2].strip(), f"py{answer[0]}{answer[1]}"


def layer_dir(python: Sequence[str] = (sys.executable,)) -> Path:
    """``pip install --target`` of the layer's pins for ``python``, cached by content."""
    version, tag = interpreter_version(python)
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + version.encode()).hexdigest()[:12]
    target = WORK_DIR / f"layer-{tag}-{key}"
    done = target / ".installed"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(  # noqa: S603 - this interpreter's pip, fixed arguments
            [
                *python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--no-compile",
                "--target",
                str(target),
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            stdout=sys.stderr,
        )
        shutil.rmtree(target / "bin", ignore_errors=True)
        done.touch()
    _remove_bytecode(target)
    return target


def task_dir(scratch: Path) -> Path:
    """The function's package as functions/Makefile ships it (no byte code)."""
    task = scratch / "task"
    shutil.rmtree(task, ignore_errors=True)
    shutil.copytree(PACKAGE, task / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
    return task


def _remove_bytecode(tree: Path) -> None:
    for cache in tree.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _child_env(base: dict[str, str], path: list[Path], mode: str, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    env["PYTHONHASHSEED"] = "0"
    if mode == MODES[0]:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _child(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """One child process of the benchmark (the measured interpreter, maybe under valgrind, running the
    harness's own child script), its output captured."""
    return subprocess.run(  # noqa: S603 - fixed arguments
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _run_json(
    args: list[str], env: dict[str, str], cwd: Path, python: Sequence[str] = (sys.executable,)
) -> dict[str, Any]:
    started = time.perf_counter()
    proc = _child([*python, "-S", *args], env, cwd, timeout=180)
    process_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    data["process_s"] = process_s
    return data


def _run_child(
    args: list[str], env: dict[str, str], cwd: Path, python: Sequence[str] = (sys.executable,)
) -> Run:
    data = _run_json(args, env, cwd, python)
    process_s = float(data["process_s"])
    return Run(
        import_s=data["import_s"],
        work_s=data["work_s"],
        total_s=data["total_s"],
        process_s=process_s,
        modules=data["modules"],
        warm_request_s=data.get("warm_request_s"),
    )


def measure(
    base_env: dict[str, str],
    event: dict[str, Any],
    scratch: Path,
    reps: int,
    profile_above: float | None,
    python: Sequence[str] = (sys.executable,),
    download: tuple[dict[str, Any], dict[str, str]] | None = None,
    built: Path | None = None,
    counter: Sequence[str] | None = None,
) -> ColdStart:
    """``reps`` fresh processes per kind and mode; a cProfile of one more cold start in the worst mode
    when its ratio is above ``profile_above``. ``python``: the command of the interpreter to measure
    (another one than this, e.g. a chroot's 3.13, must see this checkout at the same path).
    ``download``: a ``/download`` event and the environment that configures its keys, measured as a
    third kind (the link route's first request in a new container). ``built``: a ``sam build``
    directory to measure as built (BUILT_MODES) instead of this checkout's package and a layer
    installed here (MODES). ``counter``: the interpreter's command under valgrind, to count the
    instructions of the first mode's cold starts (:func:`count_instructions`)."""
    child = scratch / CHILD.name  # run from scratch: the script's directory lands on sys.path
    shutil.copy(CHILD, child)
    event_path = scratch / "coldstart-event.json"
    event_path.write_text(json.dumps(event))
    pycache = scratch / "pycache"
    modes, task, layer, envs, ref_envs = _environments(base_env, scratch, pycache, python, built)
    app_args, boto3_args = [str(child), "app", str(event_path)], [str(child), "boto3"]
    download_args: list[str] = []
    if download is not None:
        download_path = scratch / "coldstart-download-event.json"
        download_path.write_text(json.dumps(download[0]))
        download_args = [str(child), "app", str(download_path)]
        envs = {mode: {**env, **download[1]} for mode, env in envs.items()}
        _run_child(download_args, envs[modes[1]], scratch, python)
    _run_child(app_args, envs[modes[1]], scratch, python)  # fill the byte-code cache
    _run_child(boto3_args, ref_envs[modes[1]], scratch, python)
    results = [ModeResult(mode) for mode in modes]
    for _ in range(reps):  # modes and kinds alternate, so that a busy moment hits them alike
        for result in results:
            result.app.append(_run_child(app_args, envs[result.mode], scratch, python))
            result.boto3.append(_run_child(boto3_args, ref_envs[result.mode], scratch, python))
            if download_args:
                result.download.append(_run_child(download_args, envs[result.mode], scratch, python))
    for result in results:
        also = f", /download {result.download_ratio:.2f}" if result.download else ""
        print(f"  cold start, {result.mode}: ratio {result.ratio:.2f}{also}", file=sys.stderr)
    if built is None:
        _remove_bytecode(task)
        _remove_bytecode(layer)

    imports: dict[str, list[tuple[str, float, float]]] = {}
    totals: dict[str, float] = {}
    for mode in modes:
        env = envs[mode]
        runs = [
            subprocess.run(  # noqa: S603 - the measured interpreter, fixed arguments
                [*python, "-S", "-X", "importtime", "-c", "import cas_download.handlers.download"],
                env=env,
                cwd=scratch,
                capture_output=True,
                text=True,
                check=True,
            ).stderr
            for _ in range(IMPORTTIME_RUNS)
        ]
        imports[mode], totals[mode] = heaviest_imports(runs)

    cold = ColdStart(layer, results, imports, totals, snapstart_env=envs[modes[0]])
    if counter is not None:
        counted = {
            "app": (["first", str(event_path)], envs[modes[0]]),
            "boto3": (["boto3"], ref_envs[modes[0]]),
            "start": (["start"], envs[modes[0]]),
        }
        if download_args:
            counted["download"] = (["first", download_args[-1]], envs[modes[0]])
        cold.instructions = {
            kind: count_instructions(counter, [str(child), *args], env, scratch)
            for kind, (args, env) in counted.items()
        }
    env = envs[modes[0]] if built is not None else _child_env(base_env, [task, layer], MODES[1], pycache)
    client_runs = [_run_json([str(child), "clients"], env, scratch, python) for _ in range(max(3, reps))]
    cold.clients = {
        k: statistics.median(float(r[k]) for r in client_runs)
        for k in client_runs[0]
        if k not in ("modules", "process_s")
    }
    worst = max(results, key=lambda r: r.ratio)
    if profile_above is not None and worst.ratio > profile_above:
        env = envs[worst.mode]
        cold.profile, cold.profile_total_ms = _profile(env, child, event_path, scratch, python)
        cold.profile_mode = worst.mode
        if built is None:
            _remove_bytecode(task)
            _remove_bytecode(layer)
    return cold


INSTRUCTION_RUNS = 3
_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count_instructions(counter: Sequence[str], args: list[str], env: dict[str, str], cwd: Path) -> float:
    """The median over INSTRUCTION_RUNS processes of the user-space instructions one ran, as valgrind's
    cachegrind counts them (``counter``: the interpreter's command under it). Unlike a time, the count
    does not change with what else the host runs: the cold start's own work, without the waits for the
    AWS answers and the kernel's part (files opened, pages mapped)."""
    counts = []
    for _ in range(INSTRUCTION_RUNS):
        proc = _child([*counter, "-S", *args], env, cwd, timeout=600)
        found = _INSTRUCTIONS.search(proc.stderr)
        if proc.returncode != 0 or found is None:
            raise RuntimeError(
                f"instruction count of {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        counts.append(float(found.group(1).replace(",", "")))
    return float(statistics.median(counts))


def _environments(
    base_env: dict[str, str], scratch: Path, pycache: Path, python: Sequence[str], built: Path | None
) -> tuple[tuple[str, ...], Path, Path, dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The modes, the function's and the layer's trees, and each mode's environment for the app and
    for the reference (``import boto3`` + a client)."""
    if built is None:
        layer = layer_dir(python)
        task = task_dir(scratch)
        envs = {mode: _child_env(base_env, [task, layer], mode, pycache) for mode in MODES}
        return MODES, task, layer, envs, envs
    task, layer = built / "DownloadFunction", built / "DependenciesLayer" / "python"
    bare = scratch / "without-byte-code"
    shutil.rmtree(bare, ignore_errors=True)
    for source, name in ((task, "task"), (layer, "layer")):
        shutil.copytree(source, bare / name, ignore=shutil.ignore_patterns("__pycache__"))
    trees = {BUILT_MODES[0]: [task, layer], BUILT_MODES[1]: [bare / "task", bare / "layer"]}
    envs = {mode: _child_env(base_env, trees[mode], MODES[0], pycache) for mode in BUILT_MODES}
    reference = _child_env(base_env, [runtime_boto3(layer, scratch)], MODES[0], pycache)
    return BUILT_MODES, task, layer, envs, dict.fromkeys(BUILT_MODES, reference)


def runtime_boto3(layer: Path, scratch: Path) -> Path:
    """boto3 as Lambda's runtime ships it, for the reference: the layer's files and byte code (the same
    pinned versions), with botocore's data for every service, which the layer trims to the functions'
    four (layers/dependencies/Makefile: BOTOCORE_SERVICES)."""
    import botocore  # noqa: PLC0415 - this venv's: the lock pins the layer's version

    built_version = (layer / "botocore" / "__init__.py").read_text(encoding="utf-8")
    if f"__version__ = '{botocore.__version__}'" not in built_version:
        raise SystemExit(f"the layer's botocore is not this venv's {botocore.__version__}: rebuild the layer")
    tree = scratch / "runtime-boto3"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(layer, tree, symlinks=True)
    shutil.rmtree(tree / "botocore" / "data")
    shutil.copytree(Path(botocore.__file__).parent / "data", tree / "botocore" / "data")
    return tree


def heaviest_imports(importtimes: list[str], top: int = 12) -> tuple[list[tuple[str, float, float]], float]:
    """``-X importtime`` outputs summed by top-level package (self times, so nothing counts twice);
    each package's median over the runs."""
    per_run: list[dict[str, float]] = []
    for importtime in importtimes:
        by_root: dict[str, float] = defaultdict(float)
        for line in importtime.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            _, self_us, _cumulative, name = (
                part.strip() for part in line.replace("import time:", "|", 1).split("|")
            )
            by_root[_package_label(name.split(".")[0])] += int(self_us) / 1000.0
        per_run.append(by_root)
    names = {name for run in per_run for name in run}
    by_package = {name: statistics.median(run.get(name, 0.0) for run in per_run) for name in names}
    grand = sum(by_package.values())
    ranked = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return [(name, ms, ms / grand if grand else 0.0) for name, ms in ranked], grand


_STDLIB = set(sys.stdlib_module_names)


def _package_label(root: str) -> str:
    if root in _STDLIB or root.startswith("_"):
        return "(standard library)"
    return root


# What the cold-start profile reports: cumulative time of these functions (first match by name).
_PROFILE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("every import (importlib _find_and_load)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("  compiling source to byte code (builtins.compile)", "~", "<built-in method builtins.compile>"),
    ("  loading byte code (marshal.loads)", "~", "<built-in method marshal.loads>"),
    ("App.create (sessions, Secrets Manager client, models)", "cas_download/app.py", "create"),
    ("first request: handle()", "cas_download/handlers/download.py", "handle"),
    ("botocore: creating clients (Session.create_client)", "botocore/session.py", "create_client"),
    (
        "botocore: reading service models and data (Loader.load_data*)",
        "botocore/loaders.py",
        "load_data_with_path",
    ),
    ("botocore: JSON parsing of data files (json.loads)", "json/__init__.py", "loads"),
    ("botocore: endpoint resolvers (regions.py constructors)", "botocore/regions.py", "__init__"),
    ("PynamoDB: its own botocore session (get_session)", "botocore/session.py", "get_session"),
    ("S3 HeadObject/GetObject/Query... (BaseClient._make_api_call)", "botocore/client.py", "_make_api_call"),
    ("presigning (generate_presigned_url)", "botocore/signers.py", "generate_presigned_url"),
    (
        "Powertools Logger + Metrics construction (Telemetry.__init__)",
        "cas_download/observability.py",
        "__init__",
    ),
)


def _profile(
    env: dict[str, str], child: Path, event_path: Path, scratch: Path, python: Sequence[str]
) -> tuple[list[tuple[str, int, float]], float]:
    """cProfile of one more cold start (import + first request): where the time goes."""
    out = scratch / "coldstart.prof"
    subprocess.run(  # noqa: S603 - this interpreter, the harness's own child script
        [*python, "-S", "-m", "cProfile", "-o", str(out), str(child), "app", str(event_path)],
        env=env,
        cwd=scratch,
        capture_output=True,
        check=True,
        timeout=180,
    )
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    rows = []
    for label, file_part, func in _PROFILE_ROWS:
        calls, cumulative = 0, 0.0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            if name == func and (
                (file_part == "~" and filename == "~") or file_part in filename.replace(os.sep, "/")
            ):
                calls += nc
                cumulative += ct  # cProfile counts a recursive function's time once
        rows.append((label, calls, cumulative * 1000.0))
    total_ms = max(
        (
            ct
            for (f, _l, n), (_cc, _nc, _tt, ct, _c) in stats.items()
            if n == "main" and f.endswith(CHILD.name)
        ),
        default=0.0,
    )
    return rows, total_ms * 1000.0


def main(argv: list[str] | None = None) -> int:
    """The cold start alone, with another interpreter for the children (3.13 beside 3.11)."""
    import argparse  # noqa: PLC0415 - only this entry point needs them
    import shlex  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from tests.support.events import load_event  # noqa: PLC0415
    from tests.support.moto_servers import start_aws_servers  # noqa: PLC0415
    from tests.support.tables import create_tables, create_verifications_table  # noqa: PLC0415
    from tests.support.world import World  # noqa: PLC0415

    from benchmarks.counting import CallCounter  # noqa: PLC0415
    from benchmarks.env import apply_env, aws_env  # noqa: PLC0415
    from benchmarks.scenarios import Scenarios, download_link_case  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m benchmarks.coldstart", description=main.__doc__)
    parser.add_argument("--python", default=sys.executable, help="the children's interpreter, a command")
    parser.add_argument("--reps", type=int, default=15, help="fresh processes per kind and mode")
    parser.add_argument(
        "--build-dir", type=Path, help="measure this sam build (with its byte code) instead of the checkout"
    )
    parser.add_argument(
        "--profile-above", type=float, help="profile one more cold start when a ratio is above this"
    )
    parser.add_argument(
        "--count-instructions-with",
        metavar="COMMAND",
        help="the children's interpreter under valgrind's cachegrind: count the instructions of a cold start",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print only (with --build-dir)")
    args = parser.parse_args(argv)
    python = shlex.split(args.python)
    scratch = WORK_DIR / "coldstart"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    servers = start_aws_servers(scratch)
    try:
        apply_env(aws_env(servers, scratch))
        world = World(servers, create_tables(servers, f"bench-{uuid.uuid4().hex[:8]}"))
        verifications = create_verifications_table(servers, f"bench-{uuid.uuid4().hex[:8]}")
        scenarios = Scenarios(world, CallCounter(), verifications)
        org, backend, digest = scenarios.healthy_backend()
        event = load_event("get_redirect", digest=digest, orgs=org)
        cold = measure(
            {**os.environ, **scenarios.function_env},
            event,
            scratch,
            args.reps,
            args.profile_above,
            python,
            download=download_link_case(digest, org, backend),
            built=args.build_dir,
            counter=shlex.split(args.count_instructions_with) if args.count_instructions_with else None,
        )
        snapstart = _snapstart_runs(cold, args.reps, python) if args.build_dir else []
    finally:
        servers.stop()
    section = render_section(cold, snapstart, interpreter_version(python)[0], args)
    if args.build_dir is not None:
        COLD_START_313.publish(args.output, section, write=not args.no_write)
    else:
        print(section)
    return 0


def render_section(cold: ColdStart, snapstart: list[dict[str, Any]], version: str, args: Any) -> str:
    """What one run measured, as BENCHMARKS.md's section 4b when it measured a ``sam build``."""
    what = f"the sam build in {args.build_dir}" if args.build_dir else "this checkout's package and pins"
    lines = [f"Python {version.split(maxsplit=1)[0]}, {what}, {args.reps} processes per kind and mode", ""]
    lines += [
        "| mode | /v1: import + first request (ms) | /download: the same (ms) "
        "| reference: import + client (ms) | ratio /v1 | ratio /download |",
        "|---|---|---|---|---|---|",
    ]
    for mode in cold.modes:
        app, link, ref = (
            [mode.median(kind, a) * 1000 for a in ("import_s", "work_s", "total_s")]
            for kind in ("app", "download", "boto3")
        )
        lines.append(
            f"| {mode.mode} | {app[0]:.0f} + {app[1]:.0f} = {app[2]:.0f} "
            f"| {link[0]:.0f} + {link[1]:.0f} = {link[2]:.0f} "
            f"| {ref[0]:.0f} + {ref[1]:.0f} = {ref[2]:.0f} | {mode.ratio:.2f}x | {mode.download_ratio:.2f}x |"
        )
    first = cold.modes[0].mode
    if cold.instructions:
        lines += ["", instruction_sentence(cold, first)]
    heaviest = ", ".join(f"{name} {ms:.0f} ms" for name, ms, _share in cold.imports.get(first, [])[:6])
    if heaviest:
        lines += [
            "",
            f"`-X importtime` of the handler, {first} (self time by top-level package, median of "
            f"{IMPORTTIME_RUNS}; {cold.import_total_ms.get(first, 0.0):.0f} ms in all): {heaviest}.",
        ]
    if cold.profile:
        lines += [
            "",
            f"Profile of one more cold start ({cold.profile_mode}, {cold.profile_total_ms:.0f} ms in all):",
            "",
        ]
        lines += [f"- {label.strip()}: {calls} calls, {ms:.1f} ms" for label, calls, ms in cold.profile]
    if snapstart:
        init, hooks, first_ms = (
            statistics.median(r[k] * 1000 for r in snapstart) for k in ("import_s", "hooks_s", "work_s")
        )
        built = cold.modes[0]
        lines += [
            "",
            f"**SnapStart**, {built.mode} (medians of {len(snapstart)} processes): the initialization a "
            f"snapshot holds (both routes' imports, the App, its clients) {init:.0f} ms, the hooks {hooks:.1f} ms, "
            f"then the first request {first_ms:.0f} ms, against {built.median('app', 'work_s') * 1000:.0f} ms "
            f"for a container that imports then serves ({built.median('app', 'total_s') * 1000:.0f} ms in all). "
            "A restore's own time is Lambda's and is not measured here.",
        ]
    body = "\n".join(lines)
    if args.build_dir is None:
        return body + "\n"
    return (
        f"{COLD_START_313.begin}\n## 4b. Cold start of what ships: the `sam build` output on CPython 3.13\n\n"
        f"Written by `python -m scripts.lambda_runtime --coldstart N`. {stamp()} The "
        "template's `sam build` (`DownloadFunction` and `DependenciesLayer/python`) with the CPython 3.13 byte "
        "code `make build` adds (`scripts/bytecode.py`, unchecked-hash `.pyc`), run by `make lambda-runtime`'s "
        "x86_64 chroot with `-S` and only the build on `PYTHONPATH`, nothing written "
        "(`PYTHONDONTWRITEBYTECODE=1`: Lambda's `/var/task` and `/opt` are read-only). The layer's wheels are "
        "x86_64's for this run (the same pins and Python files). The function is configured as the template "
        "configures it (benchmarks/env.py). The reference is `import boto3` + one S3 client from the same "
        "layer's files, **with** their byte code and botocore's data for every service (the layer keeps the "
        "functions' four: `BOTOCORE_SERVICES`), as Lambda's runtime ships its own boto3; it makes no call, "
        "while the app's first request makes its AWS calls to moto on loopback.\n\n"
        f"{body}\n{COLD_START_313.end}\n"
    )


def instruction_sentence(cold: ColdStart, mode: str) -> str:
    """The instruction counts of one mode's cold starts, and what the time ratio holds beyond them."""

    def millions(kind: str) -> str:
        return f"{cold.net_instructions(kind) / 1e6:,.0f} M"

    link = (
        f", /download {millions('download')} ({cold.instruction_ratio('download'):.2f}x)"
        if "download" in cold.instructions
        else ""
    )
    return (
        f"**Instructions**, {mode} (valgrind's cachegrind: the user-space instructions of one process, "
        f"median of {INSTRUCTION_RUNS}, less the {cold.instructions['start'] / 1e6:,.0f} M of the interpreter's and the child "
        f"script's own start): /v1 {millions('app')} ({cold.instruction_ratio('app'):.2f}x){link}, "
        f"against the reference's {millions('boto3')}. A count does not change with what else the host "
        "runs, as a time does; what the time ratio holds beyond it is what no instruction of the process "
        "counts: the waits for the first request's AWS answers (the reference makes no call) and the "
        "kernel's work (files opened, pages mapped)."
    )


def _snapstart_runs(cold: ColdStart, reps: int, python: Sequence[str]) -> list[dict[str, Any]]:
    """The snapstart child on the build as built, with snapshot_restore_py beside it as Lambda's runtime
    provides it (a copy of AWS's release, alone on the path)."""
    import snapshot_restore_py  # noqa: PLC0415 - only to copy its one file

    scratch = WORK_DIR / "coldstart"
    runtime = scratch / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    shutil.copy(str(snapshot_restore_py.__file__), runtime / "snapshot_restore_py.py")
    env = cold.snapstart_env
    env = {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + str(runtime),
           "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}  # fmt: skip
    args = [str(scratch / CHILD.name), "snapstart", str(scratch / "coldstart-event.json")]
    return [_run_json(args, env, scratch, python) for _ in range(reps)]


if __name__ == "__main__":
    sys.exit(main())
