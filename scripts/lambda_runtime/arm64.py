"""Part 2: the ``sam build`` output on CPython 3.13 on arm64 (emulated by qemu-user), as Lambda runs it.

The function goes to /var/task and the dependencies layer's ``python/`` to /opt/python; the Postgres
layer (the sync function's only) to /opt/postgres-layer/python, put on ``sys.path`` only before the
sync runs, so the download path is shown to work without it. driver.py runs there with
``python3.13 -S``: it imports every handler and every lazily imported provider adapter, then serves
one request per provider against ``cas-local run`` on this host (the chroot shares the network, so
127.0.0.1 is the host's) and runs one Chainloop sync against a real PostgreSQL.

Emulation makes everything 20 to 100 times slower: the context's deadline is raised accordingly
(Lambda's 25 s would cut every backend attempt short), and no timing here measures Lambda.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from cas_local.chainloop import ChainloopRows
from cas_local.events import http_event
from cas_local.moto import PREEXEC, SETUP_CONFIG
from cas_local.postgres import Postgres, start_postgres
from cas_local.stack import StackEndpoints

from .chroot import Chroot, StepFailed, Unavailable, run_logged

PACKAGES = ("python3.13",)
TASK, LAYER, POSTGRES_LAYER, CHECK = (
    "/var/task",
    "/opt/python",
    "/opt/postgres-layer/python",
    "/var/runtime-check",
)
EMULATED_TIMEOUT_S = 600  # the handler's context deadline under emulation (Lambda's is 25 s)
STACK_START_TIMEOUT_S = 120.0

HANDLERS = {
    "DownloadFunction": "cas_download.handlers.download",
    "ValidatorFunction": "cas_download.handlers.validator",
    "ChainloopSyncFunction": "cas_download.handlers.chainloop_sync",
    "VerifierFunction": "cas_download.handlers.verifier",
    "VerifierAskFunction": "cas_download.handlers.verifier",
}
# Imported on first use: a backend of their provider (cas_download.data.storage.providers), and the
# first /download request (the link handler and its ES512 verification with cryptography)
LAZY_ADAPTERS = (
    "cas_download.data.storage.oci",
    "cas_download.data.storage.azure",
    "cas_download.handlers.links",
)


# Run by the chroot's python3.13: every .py below the given roots must have a .pyc that importlib
# would load without touching the source (what a read-only /var/task and /opt need).
BYTECODE_CHECK = r"""
import importlib.util, sys
from importlib._bootstrap_external import _classify_pyc, _validate_hash_pyc
from pathlib import Path
checked, bad = 0, []
for root in sys.argv[1:]:
    for source in Path(root).rglob("*.py"):
        name = str(source)
        try:
            data = Path(importlib.util.cache_from_source(name)).read_bytes()
            flags = _classify_pyc(data, name, {})
            if flags != 0b01:
                raise ImportError(f"flags {flags:#b}, not unchecked-hash")
            _validate_hash_pyc(data, importlib.util.source_hash(source.read_bytes()), name, {})
        except (OSError, ImportError) as error:
            bad.append(f"{name}: {error}")
        checked += 1
print("\n".join(bad[:20]))
print(f"{checked} .py files, {len(bad)} without byte code CPython {sys.version.split()[0]} "
      f"({sys.implementation.cache_tag}) uses as it is")
sys.exit(1 if bad or not checked else 0)
"""


@dataclass
class Expected:
    name: str
    status: int
    headers: dict[str, str]
    body_sha256: str | None = None


@dataclass
class Job:
    invocations: list[dict[str, Any]] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Arm64Part:
    def __init__(self, root: Path, chroot_dir: Path, logs: Path, build_dir: Path) -> None:
        self.root = root
        self.chroot = Chroot(chroot_dir, "arm64", PACKAGES)
        self.logs = logs
        self.build_dir = build_dir

    def sam_build(self) -> str:
        """``sam build`` through scripts/check_package.py, which also checks what it built (the
        layers' wheels for 3.13 on arm64, the function's files) and keeps it in ``build_dir``."""
        shutil.rmtree(self.build_dir, ignore_errors=True)
        log = self.logs / "sam-build.log"
        log.unlink(missing_ok=True)
        run_logged(
            [
                sys.executable,
                "-m",
                "scripts.check_package",
                "--build-dir",
                str(self.build_dir),
                "--require-bytecode",
            ],
            log,
            cwd=self.root,
        )
        return f"into {self.build_dir.relative_to(self.root)}, checked by scripts/check_package.py"

    def install_build(self) -> str:
        """The build where Lambda puts it (what was there from an earlier run goes)."""
        placed = {
            TASK: self.build_dir / "DownloadFunction",
            LAYER: self.build_dir / "DependenciesLayer" / "python",
            POSTGRES_LAYER: self.build_dir / "PostgresLayer" / "python",
        }
        for inside, source in placed.items():
            if not source.is_dir():
                raise StepFailed(f"sam build made no {source}")
            target = self.chroot.path(inside)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
        check = self.chroot.path(CHECK)
        shutil.rmtree(check, ignore_errors=True)
        check.mkdir(parents=True)
        shutil.copy2(Path(__file__).with_name("driver.py"), check / "driver.py")
        return f"{TASK}, {LAYER}, {POSTGRES_LAYER}"

    def check_bytecode(self) -> str:
        """3.13 on arm64 itself judges the shipped byte code: importlib's own header checks on each
        .py's cached .pyc (3.13's cache tag, hash-based and unchecked, the source's hash)."""
        log = self.logs / "arm64-bytecode.log"
        log.unlink(missing_ok=True)
        with self.chroot.session() as chroot:
            done = chroot.run(
                ["python3.13", "-S", "-c", BYTECODE_CHECK, TASK, LAYER, POSTGRES_LAYER],
                {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                log,
                check=False,
            )
        answer = log.read_text(errors="replace").strip().splitlines()[-1]
        if done.returncode != 0:
            raise StepFailed(f"byte code 3.13 would not use as it is: {answer} (log: {log})")
        return answer

    def run_checks(self, ci_strict: bool) -> list[str]:
        """Start the stack and PostgreSQL on the host, run driver.py in the chroot, check its answers.
        Returns the lines to print (timings of the imports and of each request)."""
        scratch = self.logs / "arm64-stack"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        stack = LocalStackProcess(self.root, scratch)
        postgres: Postgres | None = None
        try:
            endpoints = stack.start()
            postgres = start_postgres()
            job = plan(endpoints, postgres, ci_strict)
            results = self._drive(endpoints, job)
        finally:
            if postgres is not None:
                postgres.stop()
            stack.stop()
        return [*job.notes, *check_results(results, job)]

    def _drive(self, endpoints: StackEndpoints, job: Job) -> list[dict[str, Any]]:
        results_path = f"{CHECK}/results.jsonl"
        self.chroot.path(results_path).unlink(missing_ok=True)
        env = {**endpoints.aws_env(), **endpoints.function_env, "POWERTOOLS_METRICS_DISABLED": "true",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}  # fmt: skip
        document = {
            "sys_path": [TASK, LAYER],
            "env": env,
            "imports": [*dict.fromkeys(HANDLERS.values()), *LAZY_ADAPTERS],
            "invocations": job.invocations,
            "results": results_path,
        }
        self.chroot.path(f"{CHECK}/job.json").write_text(json.dumps(document))
        log = self.logs / "arm64-driver.log"
        log.unlink(missing_ok=True)
        # As shipped: no byte code is written (Lambda's /var/task and /opt are read-only)
        runtime_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        with self.chroot.session() as chroot:
            done = chroot.run(
                ["python3.13", "-S", f"{CHECK}/driver.py", f"{CHECK}/job.json"], runtime_env, log, check=False
            )
        results_file = self.chroot.path(results_path)
        results = (
            [json.loads(line) for line in results_file.read_text().splitlines()]
            if results_file.exists()
            else []
        )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise StepFailed(f"the handler failed on arm64 (exit {done.returncode}, log: {log}):\n{tail}")
        return results


class LocalStackProcess:
    """``cas-local run --port 0`` (what ``make run`` starts), as tests/local/conftest.py starts it."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root = root
        self.state = scratch / "stack.json"
        self.stdout = scratch / "run.out"
        self.stderr = scratch / "run.err"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> StackEndpoints:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "POWERTOOLS_"))}
        env.update(
            {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
        )
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cas_local", "run", "--port", "0", "--state-file", str(self.state)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                preexec_fn=PREEXEC,  # noqa: PLW1509 - the stack's own process group, as in the tests
            )
        return StackEndpoints.wait_for(self.process, self.state, self.stderr, STACK_START_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C: the stack stops its servers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _download_event(endpoints: StackEndpoints, digest: str, query: str = "") -> dict[str, Any]:
    return http_event("GET", f"/v1/artifacts/{digest}", query, [], orgs=str(endpoints.demo["org"]))


def plan(endpoints: StackEndpoints, postgres: Postgres, ci_strict: bool) -> Job:
    """The invocations and what each must answer: one request per provider, one sync."""
    demo = endpoints.demo
    artifacts = {a["name"]: a for a in demo["artifacts"]}
    job = Job()

    def download(name: str, label: str, query: str, expected: Expected) -> None:
        job.invocations.append({"name": label, "handler": f"{HANDLERS['DownloadFunction']}.lambda_handler",
                                "event": _download_event(endpoints, artifacts[name]["digest"], query),
                                "timeout_seconds": EMULATED_TIMEOUT_S})  # fmt: skip
        job.expected.append(expected)

    hello = artifacts["hello.txt"]
    download("hello.txt", "S3: redirect through fallback", "",
             Expected("S3: redirect through fallback", 307,
                      {"x-cas-backend": demo["new_backend"], "x-cas-fallback": "true", "etag": f'"{hello["digest"]}"'}))  # fmt: skip
    for part, name, label, backend in (
        ("registry", "sbom.json", "OCI: bytes from the registry", "registry-ro"),
        ("azure", "azure-notes.txt", "Azure: bytes from the container", "azure-2025"),
    ):
        if not demo.get(part):
            message = f"no {part} in the local stack (make registry azurite): {label} not checked"
            if ci_strict:
                raise Unavailable(message)
            job.notes.append("skipped: " + message)
            continue
        digest = artifacts[name]["digest"]
        download(name, label, "mode=body", Expected(label, 200, {"x-cas-backend": backend}, digest))
    job.invocations.append(link_invocation(endpoints))
    link = demo["link"]
    job.expected.append(
        Expected(
            "Chainloop link: redirect through fallback",
            307,
            {"x-cas-backend": link["served_by"], "x-cas-fallback": "true", "etag": f'"{link["digest"]}"'},
        )
    )

    job.invocations.append(sync_invocation(endpoints, postgres))
    job.expected.append(Expected("Chainloop sync", 0, {}))
    return job


def link_invocation(endpoints: StackEndpoints) -> dict[str, Any]:
    """The demo's Chainloop download link (``Demo.link``), its token minted with the stack's CAS key as
    Chainloop's control plane mints it (the ES512 verification with cryptography runs on aarch64), valid for as long
    as emulation may take rather than Chainloop's 30 s."""
    from cas_admin.chainloop_link import mint_token  # noqa: PLC0415 - PyJWT, only for this invocation

    link = endpoints.demo["link"]
    assert endpoints.chainloop_cas_private_key_path, "the local stack configured no Chainloop CAS key"
    token = mint_token(
        Path(endpoints.chainloop_cas_private_key_path).read_bytes(),
        backend=link["provider"],
        secret_id=link["secret_id"],
        org_id=link["org"],
        expires_in=EMULATED_TIMEOUT_S,
    )
    event = http_event("GET", f"/download/{link['digest']}", f"t={token}", [], orgs="")
    return {
        "name": "Chainloop link: redirect through fallback",
        "handler": f"{HANDLERS['DownloadFunction']}.lambda_handler",
        "event": event,
        "timeout_seconds": EMULATED_TIMEOUT_S,
    }


def sync_invocation(endpoints: StackEndpoints, postgres: Postgres) -> dict[str, Any]:
    """Chainloop's tables with one backend and one mapping, the database secret in RDS's form in
    the stack's Secrets Manager, and the sync function's event."""
    rows = ChainloopRows(postgres.create_database(f"chainloop_{uuid.uuid4().hex[:12]}"))
    try:
        rows.create_schema()
        org = rows.add_org(inline=False).id  # no INLINE backend: the one S3 backend is the default
        backend = rows.add_backend(org, "runtime-check", location="bucket", secret_name="s", default=True)
        rows.add_mapping("sha256:" + hashlib.sha256(b"lambda runtime check").hexdigest(), org, backend)
    finally:
        rows.close()
    secret = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port, "username": postgres.user,
              "password": postgres.password, "dbname": rows.dsn.rsplit("/", 1)[1]}  # fmt: skip
    secrets = boto3.session.Session().client(
        "secretsmanager",
        endpoint_url=endpoints.control_url,
        region_name=endpoints.region,
        aws_access_key_id=endpoints.admin_access_key_id,
        aws_secret_access_key=endpoints.admin_secret_access_key,
        config=SETUP_CONFIG,
    )
    arn = secrets.create_secret(Name=f"chainloop-db-{uuid.uuid4().hex}", SecretString=json.dumps(secret))[
        "ARN"
    ]
    return {
        "name": "Chainloop sync",
        "handler": f"{HANDLERS['ChainloopSyncFunction']}.lambda_handler",
        "event": {
            "id": f"runtime-check-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}",
            "detail-type": "Scheduled Event",
        },
        "extra_sys_path": [POSTGRES_LAYER],
        "env": {"CHAINLOOP_DATABASE_SECRET_ARN": arn},
        "imports": ["psycopg"],
        "timeout_seconds": EMULATED_TIMEOUT_S,
    }


def check_results(results: list[dict[str, Any]], job: Job) -> list[str]:
    """Every expectation met, or StepFailed naming the first that is not; one line per step."""
    runtime = next((r for r in results if r["step"] == "runtime"), None)
    if runtime is None or not runtime["python"].startswith("3.13") or runtime["machine"] != "aarch64":
        raise StepFailed(f"not CPython 3.13 on aarch64: {runtime}")
    lines = [f"runtime: CPython {runtime['python']} on {runtime['machine']}"]
    imports = [r for r in results if r["step"] == "import"]
    lines.append(
        "imports: " + ", ".join(f"{r['module'].rsplit('.', 1)[1]} {r['seconds']:.1f} s" for r in imports)
    )
    invoked = {r["name"]: r for r in results if r["step"] == "invoke"}
    for expected in job.expected:
        got = invoked.get(expected.name)
        if got is None:
            raise StepFailed(f"{expected.name}: never answered")
        if expected.name == "Chainloop sync":
            outcome = got.get("result", {})
            created = (outcome.get("backends", {}).get("created"), outcome.get("mappings", {}).get("created"))
            if created != (1, 1) or outcome.get("complete") is not True:
                raise StepFailed(f"Chainloop sync: expected 1 backend and 1 mapping, complete; got {outcome}")
            lines.append(f"{expected.name}: 1 backend, 1 mapping written ({got['seconds']:.1f} s)")
            continue
        wrong = {k: got["headers"].get(k) for k, v in expected.headers.items() if got["headers"].get(k) != v}
        if got["status"] != expected.status or wrong:
            raise StepFailed(f"{expected.name}: expected {expected.status} {expected.headers}, got {got['status']} "
                             f"{wrong} {got['body_head']!r}")  # fmt: skip
        if expected.body_sha256 is not None and got["body_sha256"] != expected.body_sha256:
            raise StepFailed(f"{expected.name}: the body is not the artifact ({got['body_sha256']})")
        shown = ", ".join(f"{k}: {v}" for k, v in expected.headers.items() if k != "etag")
        lines.append(f"{expected.name}: {got['status']} {shown} ({got['seconds']:.1f} s)")
    return lines
