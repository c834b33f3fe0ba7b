"""The sections of BENCHMARKS.md that other commands write survive `make bench`'s rewrite."""

from __future__ import annotations

from pathlib import Path

from benchmarks import sections


def test_a_section_is_replaced_in_place_and_read_back_with_its_markers(tmp_path: Path) -> None:
    # Given a report with a verifier section between two others
    report = tmp_path / "BENCHMARKS.md"
    old = f"{sections.VERIFIER.begin}\nold figures\n{sections.VERIFIER.end}\n"
    report.write_text(f"# Benchmarks\n\n## 1. before\n\n{old}\n## 2. after\n")

    # When the verifier's benchmark writes its new section
    new = f"{sections.VERIFIER.begin}\nnew figures\n{sections.VERIFIER.end}\n"
    sections.VERIFIER.write(report, new)

    # Then it takes the old one's place, the rest untouched, and reads back whole
    assert report.read_text() == f"# Benchmarks\n\n## 1. before\n\n{new}\n## 2. after\n"
    assert sections.VERIFIER.of(report) == new


def test_every_kept_section_of_the_committed_report_is_found() -> None:
    # Given the committed BENCHMARKS.md, Then make bench finds each section it must keep
    report = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
    assert all(section.of(report) for section in sections.KEPT)
