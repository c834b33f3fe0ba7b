"""Errors cas-admin reports as one clear line (no traceback) with an exit code."""

from __future__ import annotations

EXIT_FAILURE = 1  # the request was understood and could not be done (unknown org, duplicate, API error)
EXIT_USAGE = 2  # bad input (argparse uses 2 as well): bad digest, missing file, conflicting options
EXIT_INTEGRITY = 3  # downloaded bytes do not hash to the digest


class AdminError(Exception):
    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(AdminError):
    exit_code = EXIT_USAGE


class IntegrityError(AdminError):
    exit_code = EXIT_INTEGRITY
