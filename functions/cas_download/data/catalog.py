"""Backend rows by org, cached briefly per container; mappings are always read fresh (one query a
request). One org-index query gives an org's mapped backends and its default and fallback at once."""

from __future__ import annotations

import time
from collections.abc import Callable

from cas_download.data.cache import TtlCache
from cas_download.data.tables import Tables
from cas_download.domain import Backend, Mapping


class Catalog:
    def __init__(
        self, reader: Tables, backend_ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._org_read_at: dict[str, float] = {}
        self._org_backends: TtlCache[str, tuple[Backend, ...]] = TtlCache(backend_ttl_seconds)
        self._by_secret: TtlCache[str, tuple[Backend, ...]] = TtlCache(backend_ttl_seconds)

    def forget_all(self) -> None:
        """Drop every cached row (a SnapStart restore: the rows may have changed since the snapshot)."""
        self._org_read_at.clear()
        self._org_backends.clear()
        self._by_secret.clear()

    def mappings_for_digest(self, digest: str) -> list[Mapping]:
        return self._reader.mappings_for_digest(digest)

    def org_backends(self, org_id: str) -> tuple[Backend, ...]:
        cached = self._org_backends.get(org_id)
        if cached is None:
            cached = self._read_org(org_id)
        return cached

    def held_org_backends(self, org_id: str) -> tuple[Backend, ...] | None:
        """The org's rows while the container holds them; None rather than a read."""
        return self._org_backends.get(org_id)

    def reread_org_backends(self, org_id: str, since: float) -> tuple[Backend, ...] | None:
        """The org's rows read again when the cached ones were read before ``since`` (a rotation may
        have added a default meanwhile); None when they were read since, so nothing newer is known."""
        read_at = self._org_read_at.get(org_id)
        if read_at is not None and read_at >= since:
            return None
        return self._read_org(org_id)

    def live_backends_with_secret(self, secret_name: str) -> tuple[Backend, ...]:
        """Every org's live rows whose ``secret_name`` is this one: one Query of the secret_name index.
        Only a Chainloop download token of an older release, which names no org, needs it (spec
        "Chainloop download links"); the answer is cached."""
        cached = self._by_secret.get(secret_name)
        if cached is None:
            rows = self._reader.backends_with_secret(secret_name)
            cached = tuple(b for b in rows if not b.deleted)
            self._by_secret.put(secret_name, cached)
        return cached

    def now(self) -> float:
        return self._clock()

    def _read_org(self, org_id: str) -> tuple[Backend, ...]:
        rows = tuple(self._reader.backends_of_org(org_id))
        self._org_read_at[org_id] = self._clock()
        self._org_backends.put(org_id, rows)
        return rows
