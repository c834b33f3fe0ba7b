"""Proof that bytes are the digest's, beyond a provider's own proof: hashing the bytes ourselves, or
a verification record the service wrote after an earlier full hash of the same stored object."""

from __future__ import annotations

import binascii
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from cas_download.config import Settings
from cas_download.data.cache import TtlCache
from cas_download.data.storage.port import ObjectDescription
from cas_download.data.tables import TableError, Tables
from cas_download.domain import AttemptFailed, AttemptReason, VerificationRecord
from cas_download.logic.deadline import Deadline

_log = logging.getLogger(__name__)


class DigestMismatch(AttemptFailed):
    """The bytes hash to ``actual_digest``, not to the digest asked for: a failed proof, remembered."""

    def __init__(self, actual_digest: str) -> None:
        super().__init__(AttemptReason.DIGEST_MISMATCH, "bytes do not hash to the digest")
        self.actual_digest = actual_digest


def hash_chunks(chunks: Iterable[bytes], expected_hex: str, expected_size: int, deadline: Deadline) -> None:
    """Hash a stream, raising :class:`AttemptFailed` unless it is exactly the digest's bytes."""
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if seen > expected_size:
            break  # more bytes than announced (a storage that never stops): not the described object
        if deadline.expired():
            raise AttemptFailed(AttemptReason.TIMEOUT, "deadline reached while hashing")
    _check(digest, seen, expected_hex, expected_size)


def hash_and_encode(
    chunks: Iterable[bytes], expected_hex: str, expected_size: int, deadline: Deadline
) -> str:
    """Like :func:`hash_chunks`, keeping the bytes as the base64 text a Lambda response carries.

    Body mode never holds the raw object: each chunk is hashed and encoded as it arrives, so the peak
    is the encoded pieces plus their join (about 2.7x the object), not the bytes plus their encoding.
    Nothing is returned unless the whole stream hashed to the digest.
    """
    digest = hashlib.sha256()
    pieces: list[str] = []
    carry = b""  # base64 encodes 3-byte groups: a chunk's tail waits for the next chunk
    seen = 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if seen > expected_size:
            break  # more bytes than announced: not the object that was described
        data = carry + chunk if carry else chunk
        whole = len(data) // 3 * 3  # whole 3-byte groups now; the rest waits for the next chunk
        pieces.append(binascii.b2a_base64(memoryview(data)[:whole], newline=False).decode("ascii"))
        carry = data[whole:]
        if deadline.expired():
            raise AttemptFailed(AttemptReason.TIMEOUT, "deadline reached while reading")
    _check(digest, seen, expected_hex, expected_size)
    if carry:
        pieces.append(binascii.b2a_base64(carry, newline=False).decode("ascii"))
    return "".join(pieces)


def _check(digest: hashlib._Hash, size: int, expected_hex: str, expected_size: int) -> None:
    if size != expected_size:
        raise AttemptFailed(AttemptReason.UNREACHABLE, f"read {size} of {expected_size} bytes")
    if digest.hexdigest() != expected_hex:
        raise DigestMismatch(f"sha256:{digest.hexdigest()}")


RangeRead = Callable[[int, int], bytes]
"""Reads ``length`` bytes of the object from ``start`` (one ranged GET)."""


def ranged_chunks(read_range: RangeRead, size: int, part_bytes: int, concurrency: int) -> Iterator[bytes]:
    """The object as parts read by ``concurrency`` ranged GETs at once, yielded in order, so one
    SHA-256 can consume them: the hash is sequential, the network need not be.

    At most ``concurrency`` parts are in flight plus the one being hashed: memory stays at about
    ``(concurrency + 1) * part_bytes`` whatever the size. A part that fails raises when its turn comes;
    the parts still queued are cancelled.
    """
    starts = iter(range(0, size, part_bytes))
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ranged-get")
    in_flight: deque[Future[bytes]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            in_flight.append(pool.submit(read_range, start, min(part_bytes, size - start)))

    try:
        for _ in range(concurrency):
            submit_next()
        while in_flight:
            part = in_flight.popleft().result()
            submit_next()
            yield part
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def record_proves(tables: Tables, object_id: str, etag: str, size: int, digest: str) -> bool:
    """True when a record of an earlier full hash of ``object_id`` names this digest, ETag and size."""
    return record_verdict(tables, object_id, etag, size, digest) is True


def record_verdict(tables: Tables, object_id: str, etag: str, size: int, digest: str) -> bool | None:
    """What a record of an earlier full hash of ``object_id`` at this ETag and size says of ``digest``:
    True, those bytes hash to it; False, they hash to another digest (a failed proof, remembered);
    None, no record of these bytes (none, another ETag or size, or unreadable)."""
    return _judge(_read_record(tables, object_id), etag, size, digest)


def _read_record(tables: Tables, object_id: str) -> VerificationRecord | None:
    try:
        return tables.verification_record(object_id)
    except TableError as failure:
        _log.warning("verification record unreadable: %s", failure)
        return None


def _judge(record: VerificationRecord | None, etag: str, size: int, digest: str) -> bool | None:
    if record is None or record.etag != etag or record.size != size:
        return None
    return record.digest == digest


class RecordReadAhead:
    """A verification record being read while its object is described: used only if the description
    names the same stored object."""

    def __init__(self, record_key: str, future: Future[VerificationRecord | None]) -> None:
        self.record_key = record_key
        self._future = future

    def record(self) -> VerificationRecord | None:
        try:
            return self._future.result()
        except Exception as failure:  # an unreadable record is no record: the bytes are hashed instead
            _log.warning("verification record unreadable: %s", failure)
            return None


class VerificationRecords:
    """Records of full hashes, keyed by one stored object as its provider names it (an S3 object
    version; a registry's repository and blob digest).

    A record proves an object only while the provider still reports the same ETag and size: a
    rewritten object changes its ETag, so its old record no longer applies.

    A record names the digest the bytes hashed to: the digest asked for (a proof), or another one (a
    failed proof, so that a request answers ``digest_mismatch`` without reading the bytes again).

    The container remembers the records it read or wrote (the same key, ETag and size hash to the same
    digest), so a warm container does not read the table for an object it has hashed.
    """

    def __init__(self, settings: Settings, tables: Tables, memory_seconds: float = 300.0) -> None:
        self._enabled = settings.verifications_table is not None
        self._ttl = timedelta(days=settings.verification_record_ttl_days)
        self._tables = tables
        self._hashed_to: TtlCache[tuple[str, str, int], str] = TtlCache(memory_seconds)
        # Objects whose record this container read ahead lately: read ahead once each, not per request.
        self._read_ahead: TtlCache[str, bool] = TtlCache(memory_seconds)

    def forget_all(self) -> None:
        self._hashed_to.clear()
        self._read_ahead.clear()

    def read_ahead(
        self, record_key: str | None, submit: Callable[[Callable[[], VerificationRecord | None]], Future[Any]]
    ) -> RecordReadAhead | None:
        """Start reading ``record_key``'s record with ``submit`` (a worker thread), the first time this
        container meets the object lately; None otherwise (a warm container remembers its proofs, and an
        object proven by its provider needs none: one wasted read per object, not per request)."""
        if not self._enabled or record_key is None or self._read_ahead.get(record_key):
            return None
        self._read_ahead.put(record_key, True)
        tables = self._tables
        return RecordReadAhead(record_key, submit(lambda: tables.verification_record(record_key)))

    def can_record(self, description: ObjectDescription) -> bool:
        """Whether a record can hold a proof of the described bytes: the table is there, and the
        provider names the object and reports an ETag (without one, a rewrite could not be told)."""
        return self._enabled and bool(description.info.etag) and description.record_key is not None

    def proves(self, description: ObjectDescription, digest: str) -> bool:
        return self.verdict(description, digest) is True

    def verdict(
        self, description: ObjectDescription, digest: str, ahead: RecordReadAhead | None = None
    ) -> bool | None:
        """True: a record proves these bytes are ``digest``'s; False: a record says they hash to
        another digest; None: no record of these bytes. ``ahead``: the record read ahead, if it is
        this object's."""
        info = description.info
        if not self.can_record(description) or description.record_key is None or info.etag is None:
            return None
        stored = (description.record_key, info.etag, info.size)
        known = self._hashed_to.get(stored)
        if known is not None:
            return known == digest
        if ahead is not None and ahead.record_key == description.record_key:
            record = ahead.record()
        else:
            record = _read_record(self._tables, description.record_key)
        verdict = _judge(record, info.etag, info.size, digest)
        if verdict is not None:
            self._hashed_to.put(stored, digest if verdict else "")
        return verdict

    def remember(self, description: ObjectDescription, digest: str) -> None:
        """Record that the described bytes hash to ``digest`` (the one asked for, or not)."""
        info = description.info
        if not self.can_record(description) or description.record_key is None or info.etag is None:
            return
        now = datetime.now(UTC)
        record = VerificationRecord(
            object_id=description.record_key,
            digest=digest,
            etag=info.etag,
            size=info.size,
            version_id=info.version_id,
            verified_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        try:
            self._tables.save_verification_record(record, now + self._ttl)
        except TableError as failure:
            _log.warning("verification record not saved: %s", failure)
            return
        self._hashed_to.put((description.record_key, info.etag, info.size), digest)
