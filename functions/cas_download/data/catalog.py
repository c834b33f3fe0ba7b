"""Backend rows, cached briefly per container; mappings are always read fresh (one query a request)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

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
        # A missing row is cached too (as None) so that a deleted backend does not cost a read per request.
        self._backends: TtlCache[str, Backend | None] = TtlCache(backend_ttl_seconds)
        self._org_backends: TtlCache[str, tuple[Backend, ...]] = TtlCache(backend_ttl_seconds)

    def mappings_for_digest(self, digest: str) -> list[Mapping]:
        return self._reader.mappings_for_digest(digest)

    def backends(self, backend_ids: Iterable[str]) -> dict[str, Backend]:
        wanted = set(backend_ids)
        found: dict[str, Backend] = {}
        unknown = set()
        for backend_id in wanted:
            hit, cached = self._backends.lookup(backend_id)
            if not hit:
                unknown.add(backend_id)
            elif cached is not None:
                found[backend_id] = cached
        if unknown:
            fetched = self._reader.backends_by_id(unknown)
            for backend_id in unknown:
                backend = fetched.get(backend_id)
                self._backends.put(backend_id, backend)
                if backend is not None:
                    found[backend_id] = backend
        return found

    def org_backends(self, org_id: str) -> tuple[Backend, ...]:
        cached = self._org_backends.get(org_id)
        if cached is None:
            cached = self._read_org(org_id)
        return cached

    def reread_org_backends(self, org_id: str, since: float) -> tuple[Backend, ...] | None:
        """The org's rows read again when the cached ones were read before ``since`` (a rotation may
        have added a default meanwhile); None when they were read since, so nothing newer is known."""
        read_at = self._org_read_at.get(org_id)
        if read_at is not None and read_at >= since:
            return None
        return self._read_org(org_id)

    def now(self) -> float:
        return self._clock()

    def _read_org(self, org_id: str) -> tuple[Backend, ...]:
        rows = tuple(self._reader.backends_of_org(org_id))
        self._org_read_at[org_id] = self._clock()
        self._org_backends.put(org_id, rows)
        for backend in rows:
            self._backends.put(backend.id, backend)
        return rows
