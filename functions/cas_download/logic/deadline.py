"""The request's time budget: every attempt checks it, so the request ends before Lambda's timeout."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    def __init__(self, budget_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._end = self._start + max(budget_seconds, 0.0)

    def remaining(self) -> float:
        return max(self._end - self._clock(), 0.0)

    def expired(self) -> bool:
        return self._clock() >= self._end

    def elapsed_ms(self) -> float:
        return (self._clock() - self._start) * 1000.0
