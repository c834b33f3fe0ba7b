"""Warm latency, side by side: every target is timed in the same rounds, in a shuffled order per
round, so that drift on a shared machine (moto's own state, other processes) hits all of them alike."""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.counting import CallCounter, Calls, total
from benchmarks.scenarios import Target


@dataclass
class Samples:
    target: Target
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    calls: Calls = field(default_factory=Counter)
    log_bytes: int = 0

    @property
    def n(self) -> int:
        return len(self.wall_s)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.wall_s) * 1000.0

    @property
    def p99_ms(self) -> float:
        return percentile(self.wall_s, 99) * 1000.0

    @property
    def cpu_ms(self) -> float:
        """Mean CPU time of this process per request (the app's own work; moto runs elsewhere)."""
        return statistics.fmean(self.cpu_s) * 1000.0

    @property
    def calls_per_request(self) -> float:
        return total(self.calls) / self.n if self.n else 0.0

    @property
    def seconds(self) -> float:
        return sum(self.wall_s)


def percentile(values: Sequence[float], pct: int) -> float:
    """The ``pct``-th percentile (1-99) of the samples: the standard library's ``statistics.quantiles``
    (inclusive method: interpolated between the two nearest samples)."""
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def interleaved(
    targets: Sequence[Target],
    counter: CallCounter,
    requests: int,
    warmup: int,
    stdout_size: Callable[[], int],
    seed: int = 5,
) -> dict[str, Samples]:
    """``warmup`` untimed rounds, then ``requests`` timed rounds of one request per target.
    ``stdout_size()``: bytes written to stdout so far (the handler's log lines and EMF metrics)."""
    rng = random.Random(seed)  # noqa: S311 - a shuffle, not a secret
    order = list(targets)
    for _ in range(warmup):
        for target in order:
            target.serve(target.prepare())
    samples = {t.key: Samples(t) for t in targets}
    report_every = max(1, requests // 5)
    started = time.monotonic()
    for round_no in range(requests):
        rng.shuffle(order)
        for target in order:
            prepared = target.prepare()
            mark = counter.mark()
            logged = stdout_size()
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            response = target.serve(prepared)
            wall1 = time.perf_counter()
            cpu1 = time.process_time()
            del response
            record = samples[target.key]
            record.wall_s.append(wall1 - wall0)
            record.cpu_s.append(cpu1 - cpu0)
            record.calls.update(counter.since(mark))
            record.log_bytes += stdout_size() - logged
        if (round_no + 1) % report_every == 0:
            print(
                f"  latency: {round_no + 1}/{requests} rounds ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
            )
    return samples
