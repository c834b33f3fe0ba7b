"""uv.lock decides every version `make venv` installs, and a lock that no longer matches pyproject.toml
fails CI with one line (issue 26: an unpinned moto broke every clean clone overnight)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".local" / "uv" / "bin" / "uv"
LOCK_INPUTS = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "tools/envs/uv-requirements.txt",
    "tools/envs/checkov/pyproject.toml",
    "tools/envs/cosmic-ray/pyproject.toml",
)


def lock_check(checkout: Path) -> subprocess.CompletedProcess[str]:
    """`make lock-check` in ``checkout``, with this machine's uv, offline: the check needs no index."""
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "lock-check", f"UV={UV}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={**os.environ, "UV_OFFLINE": "1"},
        timeout=60,
        check=False,
    )


def copy_lock_inputs(target: Path) -> Path:
    for name in LOCK_INPUTS:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    return target


def test_the_venv_holds_exactly_what_uv_lock_says() -> None:
    # Given the venv these tests run in (make venv: uv sync --locked)
    # When uv compares it with the lock, without changing anything
    compared = subprocess.run(
        [str(UV), "sync", "--locked", "--extra", "dev", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": sys.prefix,
            "UV_PREVIEW_FEATURES": "package-conflicts",
        },
        timeout=60,
        check=False,
    )

    # Then nothing would change: every installed version is the lock's
    assert compared.returncode == 0, compared.stderr
    assert "Would make no changes" in compared.stderr


def test_the_lock_as_committed_passes_the_check(tmp_path: Path) -> None:
    # Given a checkout whose uv.lock was made from its pyproject.toml
    checkout = copy_lock_inputs(tmp_path)

    # When CI checks the lock
    checked = lock_check(checkout)

    # Then it passes
    assert checked.returncode == 0, checked.stderr


def test_a_stale_lock_fails_ci_with_one_line_that_says_make_lock(tmp_path: Path) -> None:
    # Given a pyproject.toml changed (a dev dependency dropped) without re-locking
    checkout = copy_lock_inputs(tmp_path)
    pyproject = checkout / "pyproject.toml"
    changed = pyproject.read_text().replace('    "tqdm>=4.66",  # cas-admin: progress bars\n', "")
    assert changed != pyproject.read_text()
    pyproject.write_text(changed)

    # When CI checks the lock
    checked = lock_check(checkout)

    # Then it fails, with one line that says what to do (beside make's own "*** Error" line)
    assert checked.returncode != 0
    assert [line for line in checked.stderr.strip().splitlines() if "***" not in line] == [
        "uv.lock is stale against pyproject.toml: run `make lock` and commit uv.lock"
    ]
