"""Figures of a run, written beside BENCHMARKS.md (``make bench``): where a reader would rather look
than read. matplotlib is imported here only, and only when a figure is drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.coldstart import ColdStart
from benchmarks.env import ROOT

FIGURES = ROOT / "benchmarks" / "figures"
COLD_START_PNG = FIGURES / "cold-start.png"


def spread(count: int, width: float = 0.24) -> list[float]:
    """Horizontal offsets that keep ``count`` dots of one column apart: evenly spaced, so that the
    figure is the same for the same data (no random jitter)."""
    if count <= 1:
        return [0.0] * count
    step = width / (count - 1)
    return [-width / 2 + i * step for i in range(count)]


def cold_start(cold: ColdStart, target: float, path: Path = COLD_START_PNG) -> Path:
    """One dot per fresh process: the app's import + first request beside the reference's import +
    client, per mode, with the medians and the target (``target`` x the reference's median)."""
    import matplotlib  # noqa: PLC0415 - only make bench draws, and only here

    matplotlib.use("Agg")  # no display: write files only
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(
        1, len(cold.modes), figsize=(4.2 * len(cold.modes), 4.2), sharey=False, squeeze=False
    )
    for ax, mode in zip(axes[0], cold.modes, strict=True):
        columns: Sequence[tuple[str, list[float], str]] = (
            ("import boto3\n+ 1 client", [r.total_s * 1000 for r in mode.boto3], "#7f7f7f"),
            ("cas-download\nimport + 1st request", [r.total_s * 1000 for r in mode.app], "#1f77b4"),
        )
        for x, (_label, values, colour) in enumerate(columns):
            offsets = spread(len(values))
            ax.scatter([x + o for o in offsets], sorted(values), s=18, color=colour, alpha=0.8, zorder=3)
            median = mode.median("boto3" if x == 0 else "app", "total_s") * 1000
            ax.hlines(median, x - 0.2, x + 0.2, color="black", linewidth=2, zorder=4)
            ax.annotate(f"{median:.0f} ms", (x + 0.22, median), va="center", fontsize=8)
        reference = mode.median("boto3", "total_s") * 1000
        ax.axhline(target * reference, color="#d62728", linestyle="--", linewidth=1)
        ax.annotate(  # at the left, above the reference's dots: the app's dots sit on the right
            f"target: {target:g} x reference median",
            (-0.45, target * reference),
            va="bottom",
            ha="left",
            fontsize=8,
            color="#d62728",
        )
        ax.set_xticks(range(len(columns)), [label for label, _values, _colour in columns], fontsize=8)
        ax.set_xlim(-0.5, 1.5)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{mode.mode}: ratio {mode.ratio:.2f}", fontsize=10)
        ax.set_ylabel("ms, one fresh process each")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Cold start, {len(cold.modes[0].app)} processes per kind and mode", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    pyplot.close(figure)
    return path
