"""Looking ahead: a storage lookup started before the request knows it needs it.

A Chainloop download link names its backend, so the backend that will most likely serve is known before
the digest's mappings are read. The request asks that backend's storage about the object (describe,
the credential-free URL, the verification record) on a worker thread while it reads the mappings, and
uses the answer only when the search reaches that very backend with the very credentials the answer
was made with: the same steps, made a few milliseconds early, so nothing unproven is served. An answer
the search never reaches is dropped (a miss: the calls it made are the whole cost).

What a look ahead never does: read a secret or a row (it starts only with credentials and rows the
container holds), touch a backend outside the request's org, hash, ask the verifier, or write a
record. ``/v1/artifacts`` does not look ahead at storage: until the mapping is read, the caller may not
hold the digest, and the spec's 404 then makes no storage call. It only reads its caller's own org's
backend rows on the worker while it reads the mappings, when the container holds none
(:mod:`cas_download.logic.download`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from msgspec import Struct

from cas_download.data.storage.port import DirectUrl, ObjectDescription, SecretFields
from cas_download.domain import AttemptFailed, Backend
from cas_download.logic.verification import RecordReadAhead

T = TypeVar("T")


class Located(Struct, frozen=True):
    """What a backend's storage says of the object before a proof: its description, the URL a redirect
    would hand out, and its verification record being read (None: not read ahead)."""

    description: ObjectDescription
    url: DirectUrl
    record_ahead: RecordReadAhead | None


class Lookup:
    """One look ahead of one request, through ``backend`` with ``secret``."""

    def __init__(
        self, backend: Backend, secret: SecretFields, future: Future[Located], tally: LookAheadTally
    ):
        self._backend_id = backend.id
        self._secret = secret
        self._future: Future[Located] | None = future
        self._tally = tally

    def take(self, backend: Backend, secret: SecretFields) -> Located | None:
        """The answer, once, when it was made through ``backend`` with ``secret``; else None. A failure
        of the storage is the attempt's (raised as it would have been); any other is not, and None."""
        future = self._future
        if future is None or backend.id != self._backend_id or secret != self._secret:
            return None
        self._future = None
        try:
            located = future.result()
        except AttemptFailed:
            self._tally.count(used=True)
            raise
        except Exception:  # the request asks again itself, and meets its own error then
            self._tally.count(used=False)
            return None
        self._tally.count(used=True)
        return located

    def drop(self) -> None:
        """The request is done without this answer: a miss. The work is over before the request answers:
        Lambda freezes a container between requests, and calls frozen in flight on the one worker would
        hold up the next request's."""
        future = self._future
        if future is not None:
            self._future = None
            wait([future])
            self._tally.count(used=False)


class LookAheadTally:
    """How often a look ahead paid: started, and of those, used (hit rate = used / started)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = 0
        self.used = 0
        self.dropped = 0

    def count(self, *, used: bool | None = None) -> None:
        with self._lock:
            if used is None:
                self.started += 1
            elif used:
                self.used += 1
            else:
                self.dropped += 1


class LookAhead:
    """Per container: one worker thread (made on first use; ``thread_setup`` runs in it first) and the
    tally."""

    def __init__(self, thread_setup: Callable[[], None] | None = None) -> None:
        self.tally = LookAheadTally()
        self._thread_setup = thread_setup
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self, backend: Backend, secret: SecretFields, locate: Callable[[], Located]) -> Lookup:
        self.tally.count()
        return Lookup(backend, secret, self.submit(locate), self.tally)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """``work`` on the worker thread (a read that overlaps the request's own calls)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="look-ahead", initializer=self._thread_setup
                )
            pool = self._pool
        return pool.submit(work)

    def forget_all(self) -> None:
        """Stop the worker (a SnapStart restore): it is made again on first use."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
