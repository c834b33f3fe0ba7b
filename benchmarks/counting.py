"""Count every AWS call the app makes, DynamoDB calls made through PynamoDB included.

The tests' :class:`~tests.support.calls.CallRecorder` hooks botocore's ``before-call`` event on the
boto3 session given to ``App.create``. The app hands that session to its PynamoDB models
(``data/tables.py: _share_session``) for the thread that builds it, so Secrets Manager, S3 and
DynamoDB calls are all seen there. Any other thread's PynamoDB connection still creates its own
botocore session with ``botocore.session.get_session()`` (imported by name into
``pynamodb.connection.base``): :meth:`CallCounter.pynamodb_sessions` wraps that one function, so
such sessions get the same hooks before their client exists (botocore copies a session's event
handlers into a client when the client is created). Nothing in the app is patched.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

import boto3
import pynamodb.connection.base as pynamodb_connection
from tests.support.calls import CallRecorder

Calls = Counter[tuple[str, str]]


class _Registry(Protocol):
    def register(self, event_name: str, handler: Any, unique_id: Any = None) -> Any: ...


class CallCounter(CallRecorder):
    """One recorder for the whole run: watches any number of sessions; requests are sequential, so a
    request's calls are those recorded between two :meth:`mark` calls."""

    def watch(self, registry: _Registry) -> None:
        """Hook a boto3 session's ``events`` or a botocore session (both have ``register``)."""
        registry.register(
            "before-parameter-build", self._before_parameter_build, unique_id=f"cas-p-{id(self)}"
        )
        registry.register("before-call", self._before_call, unique_id=f"cas-c-{id(self)}")

    def new_session(self) -> boto3.session.Session:
        """A fresh boto3 session whose clients are counted (one per App: no shared client caches)."""
        session = boto3.session.Session()
        self.watch(session.events)
        return session

    @contextlib.contextmanager
    def pynamodb_sessions(self) -> Iterator[None]:
        """While active, every botocore session PynamoDB creates is counted."""
        original = pynamodb_connection.get_session  # type: ignore[attr-defined]

        def counted_get_session(*args: Any, **kwargs: Any) -> Any:
            session = original(*args, **kwargs)
            self.watch(session)
            return session

        pynamodb_connection.get_session = counted_get_session  # type: ignore[attr-defined]
        try:
            yield
        finally:
            pynamodb_connection.get_session = original  # type: ignore[attr-defined]

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> Calls:
        """Calls by (service, operation) recorded after ``mark``."""
        with self._lock:
            return Counter((c.service, c.operation) for c in self.calls[mark:])


def total(calls: Calls) -> int:
    return sum(calls.values())


def describe(calls: Calls, per: float = 1.0) -> str:
    """``dynamodb:Query 1 + s3:HeadObject 1`` (counts divided by ``per``), busiest first."""
    if not calls:
        return "none"
    parts = []
    for (service, operation), count in sorted(calls.items(), key=lambda item: (-item[1], item[0])):
        value = count / per
        shown = f"{value:.0f}" if abs(value - round(value)) < 0.005 else f"{value:.2f}"
        parts.append(f"{service}:{operation} {shown}")
    return " + ".join(parts)
