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


def test_ci_run_survives_a_tool_whose_version_output_is_long(tmp_path: Path) -> None:
    # Given a copy of the CI script in a scratch checkout (it deletes .venv where it runs)
    # and a `make` whose --version output is about 1 MiB
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_make = bin_dir / "make"
    fake_make.write_text(FAKE_MAKE)
    fake_make.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    # When the CI script runs
    done = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )

    # Then it prints the first version line and goes on to build the venv
    assert "GNU Make 4.3 (stand-in)" in done.stdout
    assert "licence text" not in done.stdout
    assert "== fresh venv" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "stand-in make: venv" in done.stdout
    # and fails only where the stand-in make told it to, not on a broken pipe
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
