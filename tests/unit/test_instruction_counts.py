"""The cold-start benchmark's instruction counts (benchmarks/coldstart.py): valgrind's summary read, the
interpreter's own start left out of both sides of the ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from benchmarks.coldstart import ColdStart, count_instructions, instruction_sentence


def _cachegrind_says(refs: str, exit_code: int = 0) -> list[str]:
    """A stand-in for ``valgrind --tool=cachegrind python``: prints cachegrind's summary line."""
    script = f"import sys; sys.stderr.write('==7== \\n==7== I refs:      {refs}\\n'); sys.exit({exit_code})"
    return [sys.executable, "-c", script]


def _counted(**instructions: float) -> ColdStart:
    return ColdStart(Path("layer"), [], {}, {}, instructions=instructions)


def test_the_count_is_cachegrinds_instruction_refs(tmp_path: Path) -> None:
    # Given an interpreter command whose run ends with cachegrind's summary
    counter = _cachegrind_says("1,234,567,890")
    # When the instructions of a child run are counted
    counted = count_instructions(counter, ["child.py", "first", "event.json"], {}, tmp_path)
    # Then the count is the summary's, commas read as thousands
    assert counted == 1_234_567_890


def test_a_run_that_fails_is_an_error_with_its_output(tmp_path: Path) -> None:
    # Given a run that exits non-zero
    counter = _cachegrind_says("5", exit_code=3)
    # When it is counted, Then the benchmark stops and says why
    with pytest.raises(RuntimeError, match="failed \\(3\\)"):
        count_instructions(counter, ["child.py", "start"], {}, tmp_path)


def test_the_ratio_leaves_the_interpreters_start_out_of_both_sides() -> None:
    # Given a start of 100 M, the app at 1,140 M and the reference at 1,100 M
    cold = _counted(start=100e6, app=1140e6, download=1200e6, boto3=1100e6)
    # Then the ratios compare the work after the start: 1,040 / 1,000 and 1,100 / 1,000
    assert cold.instruction_ratio("app") == pytest.approx(1.04)
    assert cold.instruction_ratio("download") == pytest.approx(1.10)
    # and the report says so, for both routes
    sentence = instruction_sentence(cold, "as built")
    assert "/v1 1,040 M (1.04x)" in sentence
    assert "/download 1,100 M (1.10x)" in sentence
    assert "reference's 1,000 M" in sentence
    assert "less the 100 M" in sentence
