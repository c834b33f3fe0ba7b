"""Keep the handler's output (a JSON log line and EMF metrics per request, on stdout) off the console
while measuring, and measure how many bytes it is: CloudWatch Logs bills them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType


class CapturedStdout:
    """Points file descriptor 1 at ``path`` for the duration of the ``with`` block. Progress goes to
    stderr meanwhile; the report is printed after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: int | None = None

    def __enter__(self) -> CapturedStdout:
        sys.stdout.flush()
        self._saved = os.dup(1)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.close(fd)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        sys.stdout.flush()
        if self._saved is not None:
            os.dup2(self._saved, 1)
            os.close(self._saved)
            self._saved = None

    def size(self) -> int:
        """Bytes written to stdout since the block began."""
        sys.stdout.flush()
        return os.fstat(1).st_size
