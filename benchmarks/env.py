"""The benchmark's process environment (AWS stand-ins on loopback) and the facts a report must state."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tests.support.moto_servers import (
    AwsServers,
)

from cas_local.template import Template

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / "build" / "bench"  # scratch (build/ is git-ignored): layer install, profiles, logs

PACKAGES = ("boto3", "botocore", "pynamodb", "aws-lambda-powertools", "moto", "pyinstrument")


def aws_env(servers: AwsServers, scratch: Path) -> dict[str, str]:
    """What every AWS client of the benchmark (and of its child processes) needs: the moto servers,
    test credentials, no config files, no instance metadata (the tests' values)."""
    empty = scratch / "no-aws-config"
    empty.touch()
    return servers.client_env(empty, metrics_namespace="CasDownloadBench")


# The download function's table variables, each named by the bench's own tables in function_env.
TABLE_VARIABLES = ("BACKENDS_TABLE", "MAPPINGS_TABLE", "VERIFICATIONS_TABLE")


def function_env(tables: dict[str, str]) -> dict[str, str]:
    """The download function's environment exactly as the template sets it (each parameter at its
    default, the verifier asked by its logical id), its tables replaced by the bench's: ``tables``
    names each of TABLE_VARIABLES. A scenario's own variations go on top of this, never instead."""
    env = Template.load().function_environment()
    missing = set(TABLE_VARIABLES) - set(tables)
    if missing:
        raise ValueError(f"the bench names no table for {sorted(missing)}")
    return {**env, **{name: tables[name] for name in TABLE_VARIABLES}}


def apply_env(values: dict[str, str]) -> None:
    """Replace every AWS_* and POWERTOOLS_* variable of this process by ``values``."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "POWERTOOLS_")):
            del os.environ[name]
    os.environ.update(values)


@dataclass
class Machine:
    date_utc: str
    host: str
    cpu: str
    cores: int
    memory_gib: float
    python: str
    commit: str
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def describe(cls) -> Machine:
        return cls(
            date_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            host=f"{platform.system()} {platform.release()} {platform.machine()}",
            cpu=_cpu_model(),
            cores=os.cpu_count() or 0,
            memory_gib=_memory_gib(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            commit=_commit(),
            versions={name: _version(name) for name in PACKAGES},
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _commit() -> str:
    """``abc1234``, flagged when the function's code differs from the commit."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "functions")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (functions/ modified)" if dirty else head


def _git(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed arguments
        ["git", *args],  # noqa: S607 - git from PATH, as make does
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
