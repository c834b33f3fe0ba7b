"""Whether a missing server (or tool) must fail the run rather than skip: under CI it must, so a CI
run can never pass by skipping. CI systems spell the flag differently (true, 1, yes, on; any case)."""

from __future__ import annotations

import os

import pytest

__all__ = ["missing_server_fails", "require"]

_TRUTHY = frozenset({"1", "true", "yes", "on"})


def missing_server_fails() -> bool:
    """True under CI (``CI`` set to 1, true, yes or on, in any case, surrounding blanks ignored)."""
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def require(present: object, message: str) -> None:
    """Fail under CI, skip elsewhere, when ``present`` is falsy (a missing binary, server or demo part)."""
    if present:
        return
    if missing_server_fails():
        pytest.fail(message)
    pytest.skip(message)
