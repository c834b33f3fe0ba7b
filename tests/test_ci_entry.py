"""The CI entry point (.ci/run) must get past its own preamble on any machine.

A run once ended with exit 141 after 0 s: ``make --version | head -n 1`` under ``pipefail`` lets
``head`` close the pipe while ``make`` is still writing, and the writer's SIGPIPE failed the run.
Whether that happens depends on timing, so the stand-in ``make`` here writes far more than a pipe
buffer holds, which makes an early-closing reader fail every time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_MAKE = """#!/usr/bin/env bash
if [ "${1:-}" = "--version" ]; then
  echo "GNU Make 4.3 (stand-in)"
  # ~1 MiB after the first line, written by this script itself (a builtin in a loop): more than
  # any pipe buffer, so a reader that stops early kills this process with SIGPIPE (exit 141).
  for _ in $(seq 80000); do echo "licence text"; done
  exit 0
fi
# `make venv` and everything after it: this test only cares that the preamble was passed.
echo "stand-in make: $*"
exit 3
"""


def run_ci_in_scratch_checkout(
    tmp_path: Path, stand_ins: dict[str, str], **env_overrides: str | None
) -> subprocess.CompletedProcess[str]:
    """.ci/run in a copy of the checkout under ``tmp_path`` (it deletes .venv where it runs), with the
    ``stand_ins`` (name: script) first on PATH; an override of None unsets that variable."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for name, value in env_overrides.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_ci_run_survives_a_tool_whose_version_output_is_long(tmp_path: Path) -> None:
    # Given a scratch checkout and a `make` whose --version output is about 1 MiB
    # When the CI script runs there
    done = run_ci_in_scratch_checkout(tmp_path, {"make": FAKE_MAKE})

    # Then it prints the first version line and goes on to check the lock
    assert "GNU Make 4.3 (stand-in)" in done.stdout
    assert "licence text" not in done.stdout
    assert "== the lock" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "stand-in make: lock-check" in done.stdout
    # and fails only where the stand-in make told it to, not on a broken pipe
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])


# A `make` that records each call (with the CI it saw) and succeeds, except for the target named in
# STANDIN_FAIL ("target:status"); `make venv` leaves stand-in tools where .ci/run asks their versions.
RECORDING_MAKE = """#!/usr/bin/env bash
if [ "${1:-}" = "--version" ]; then echo "GNU Make 4.3 (stand-in)"; exit 0; fi
echo "make $* CI=${CI-<unset>}" >> "$CALLS"
if [ "${1:-}" = "venv" ]; then
  mkdir -p .venv/bin .local/uv/bin
  for tool in .venv/bin/python .venv/bin/ruff .venv/bin/mypy .venv/bin/pytest .venv/bin/cfn-lint \\
      .venv/bin/sam .local/uv/bin/uv; do
    printf '#!/usr/bin/env bash\\necho "%s (stand-in)"\\n' "$tool" > "$tool"
    chmod +x "$tool"
  done
fi
if [ "${STANDIN_FAIL%%:*}" = "${1:-}" ]; then exit "${STANDIN_FAIL##*:}"; fi
exit 0
"""
RECORDING_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
"""
ROOT_ID = """#!/usr/bin/env bash
[ "${1:-}" = "-u" ] && echo 0 || /usr/bin/id "$@"
"""


def run_ci_with_recording_tools(tmp_path: Path, **env_overrides: str | None) -> tuple[int, list[str]]:
    """.ci/run in a scratch checkout with recording stand-ins for make and apt-get, as root; the
    exit status and the calls, in order."""
    calls = tmp_path / "calls.txt"
    done = run_ci_in_scratch_checkout(
        tmp_path,
        {"make": RECORDING_MAKE, "apt-get": RECORDING_TOOL, "id": ROOT_ID},
        CALLS=str(calls),
        **env_overrides,
    )
    return done.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_ci_run_sets_ci_to_true_when_the_machine_does_not(tmp_path: Path) -> None:
    # Given a CI machine that does not set CI
    # When the CI script runs
    status, calls = run_ci_with_recording_tools(tmp_path, CI=None, STANDIN_FAIL="")

    # Then every make it runs sees CI=true, so that a missing server fails instead of skipping
    assert status == 0, calls
    assert calls[0] == "make lock-check BOOTSTRAP_PYTHON=python3 CI=true"
    assert all(call.endswith("CI=true") for call in calls if call.startswith("make "))


def test_ci_run_keeps_the_ci_value_the_machine_set(tmp_path: Path) -> None:
    # Given a CI system that sets CI=1
    status, calls = run_ci_with_recording_tools(tmp_path, CI="1", STANDIN_FAIL="")

    # Then the CI script passes it on unchanged
    assert status == 0, calls
    assert calls[0] == "make lock-check BOOTSTRAP_PYTHON=python3 CI=1"


def test_ci_run_checks_the_lambda_runtime_after_make_check_with_fresh_chroots(tmp_path: Path) -> None:
    # Given a root CI machine with apt-get, where every make target passes
    status, calls = run_ci_with_recording_tools(tmp_path, CI=None, STANDIN_FAIL="")

    # Then after make check it installs the chroot and emulation tools, then runs make lambda-runtime
    assert status == 0, calls
    assert calls == [
        "make lock-check BOOTSTRAP_PYTHON=python3 CI=true",
        "make venv BOOTSTRAP_PYTHON=python3 CI=true",
        "make check CI=true",
        "apt-get update -qq",
        "apt-get install -y -qq debootstrap qemu-user-static binfmt-support",
        "make lambda-runtime LAMBDA_RUNTIME_ARGS=--fresh CI=true",
    ]


def test_ci_run_fails_when_the_lambda_runtime_check_fails(tmp_path: Path) -> None:
    # Given make check passes and make lambda-runtime fails with status 2
    status, calls = run_ci_with_recording_tools(tmp_path, CI=None, STANDIN_FAIL="lambda-runtime:2")

    # Then the CI run fails with that status
    assert status == 2
    assert calls[-1] == "make lambda-runtime LAMBDA_RUNTIME_ARGS=--fresh CI=true"


def test_ci_run_stops_before_the_lambda_runtime_when_make_check_fails(tmp_path: Path) -> None:
    # Given make check fails
    status, calls = run_ci_with_recording_tools(tmp_path, CI=None, STANDIN_FAIL="check:2")

    # Then the CI run fails with its status and goes no further
    assert status == 2
    assert calls[-1] == "make check CI=true"


def test_make_deploy_from_a_fresh_clone_makes_the_venv_before_sam_build(tmp_path: Path) -> None:
    # Given a checkout with no venv yet (a fresh clone)
    venv = tmp_path / "no-venv-yet"

    # When make is asked what `make deploy` would run
    planned = subprocess.run(
        ["make", "-n", "deploy", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    # Then it installs the project from the lock before the venv's own sam builds and deploys
    installed = next(
        i for i, line in enumerate(planned) if " sync " in line and "--locked" in line and str(venv) in line
    )
    built = next(i for i, line in enumerate(planned) if f"{venv}/bin/sam" in line and " build" in line)
    deployed = next(i for i, line in enumerate(planned) if f"{venv}/bin/sam" in line and " deploy" in line)
    assert installed < built < deployed
