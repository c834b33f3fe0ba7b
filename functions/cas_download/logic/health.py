"""Backend health as the download path sees it.

- A per-container memory of backends that just failed with ``credentials_invalid`` or
  ``secret_unavailable``: they are tried after every other candidate for a short TTL, so that in steady
  state a rotated-away backend costs no round trip.
- Status repair in the Backends table: a ``credentials_invalid`` answer through a backend recorded OK
  marks it Invalid; success through a backend recorded Invalid marks it OK. Each write is conditional
  and made at most once per container per backend and status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cas_download.data.cache import TtlCache
from cas_download.data.tables import StatusGuard, TableError, Tables
from cas_download.domain import AttemptReason, Backend, ValidationStatus

_log = logging.getLogger(__name__)

REMEMBERED_REASONS = frozenset({AttemptReason.CREDENTIALS_INVALID, AttemptReason.SECRET_UNAVAILABLE})


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BackendHealth:
    def __init__(
        self, tables: Tables, memory_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tables = tables
        self._recent_failures: TtlCache[str, AttemptReason] = TtlCache(memory_seconds, clock=clock)
        self._status_written: set[tuple[str, ValidationStatus]] = set()

    def forget_all(self) -> None:
        self._recent_failures.clear()
        self._status_written.clear()

    def recently_failed(self, backend_id: str) -> bool:
        return self._recent_failures.get(backend_id) is not None

    def observe_failure(self, backend: Backend, reason: AttemptReason) -> None:
        if reason in REMEMBERED_REASONS:
            self._recent_failures.put(backend.id, reason)
        if reason is AttemptReason.CREDENTIALS_INVALID and not backend.is_invalid:
            self._record(
                backend,
                ValidationStatus.INVALID,
                "credentials rejected by storage",
                StatusGuard.OK_TO_INVALID,
            )

    def observe_success(self, backend: Backend) -> None:
        self._recent_failures.forget(backend.id)
        if backend.is_invalid:
            self._record(backend, ValidationStatus.OK, None, StatusGuard.INVALID_TO_OK)

    def _record(
        self, backend: Backend, status: ValidationStatus, error: str | None, guard: StatusGuard
    ) -> None:
        marker = (backend.id, status)
        if marker in self._status_written:
            return
        self._status_written.add(marker)
        # A later opposite transition may be written again.
        opposite = ValidationStatus.OK if status is ValidationStatus.INVALID else ValidationStatus.INVALID
        self._status_written.discard((backend.id, opposite))
        try:
            self._tables.record_status(backend.id, status, error, utc_now_iso(), guard)
        except TableError as failure:
            # Repair is best effort: the request itself must not fail because of it.
            _log.warning("could not record status %s for backend %s: %s", status, backend.id, failure)
