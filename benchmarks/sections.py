"""Sections of BENCHMARKS.md that another command writes (``make bench-sync``, ``make bench-verifier``,
``make lambda-runtime``'s cold start on 3.13) and ``make bench`` keeps when it rewrites the rest: each
between two HTML comment markers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeptSection:
    begin: str
    end: str

    def of(self, path: Path) -> str | None:
        """This section of ``path`` (markers included), if it has one."""
        text = path.read_text() if path.exists() else ""
        if self.begin not in text or self.end not in text:
            return None
        return self.begin + text.split(self.begin, 1)[1].split(self.end, 1)[0] + self.end + "\n"

    def publish(self, path: Path, section: str, *, write: bool) -> None:
        """Print ``section``; with ``write``, put it in ``path`` too (a command's last step)."""
        print(section)
        if write:
            self.write(path, section)
            print(f"wrote {path}")

    def write(self, path: Path, section: str) -> None:
        """Put ``section`` (markers included) in place of this section of ``path``, or at its end."""
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        if self.begin in text and self.end in text:
            head, rest = text.split(self.begin, 1)
            tail = rest.split(self.end, 1)[1].lstrip("\n")
            text = head + section + ("\n" + tail if tail else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        path.write_text(text)


CHAINLOOP_SYNC = KeptSection("<!-- chainloop-sync:begin -->", "<!-- chainloop-sync:end -->")
VERIFIER = KeptSection(
    "<!-- verifier: written by `make bench-verifier`, kept by `make bench` -->", "<!-- /verifier -->"
)
COLD_START_313 = KeptSection("<!-- coldstart-3.13:begin -->", "<!-- coldstart-3.13:end -->")
KEPT = (COLD_START_313, CHAINLOOP_SYNC, VERIFIER)


def stamp() -> str:
    """When and at which commit a section was measured (sections of one file come from several runs)."""
    from benchmarks.env import Machine  # noqa: PLC0415 - the report's one source of date and commit

    machine = Machine.describe()
    return f"Measured {machine.date_utc}, commit {machine.commit}."
