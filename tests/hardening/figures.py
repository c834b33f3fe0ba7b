"""Figures the hardening tests count as they run (faults covered, fuzz cases, isolation cases,
violations), printed in the terminal summary by ``tests/hardening/conftest.py``."""

from __future__ import annotations

import threading
from collections import Counter

_LOCK = threading.Lock()
FIGURES: Counter[str] = Counter()
FAULTS_COVERED: set[str] = set()


def count(name: str, amount: int = 1) -> None:
    with _LOCK:
        FIGURES[name] += amount


def fault_covered(name: str) -> None:
    with _LOCK:
        FAULTS_COVERED.add(name)


def summary_lines() -> list[str]:
    with _LOCK:
        lines = [f"{name}: {value}" for name, value in sorted(FIGURES.items())]
        if FAULTS_COVERED:
            lines.append(f"faults covered ({len(FAULTS_COVERED)}): {', '.join(sorted(FAULTS_COVERED))}")
    return lines
