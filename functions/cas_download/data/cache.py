"""A small per-container TTL cache (Lambda reuses containers; a TTL of 0 disables caching)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl_seconds: float, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        # The look-ahead worker (logic/look_ahead.py) writes some caches while the request reads them.
        self._lock = threading.Lock()

    def lookup(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` on a live entry (the value may itself be None), else ``(False, None)``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return False, None
            return True, value

    def get(self, key: K) -> V | None:
        return self.lookup(key)[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max_entries:
                # Drop the oldest insertion: enough for a cache that only bounds memory.
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (self._clock() + self._ttl, value)

    def forget(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
