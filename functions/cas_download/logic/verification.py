"""Proof that bytes are the digest's, beyond a provider's own proof: hashing the bytes ourselves, or
a verification record the service wrote after an earlier full hash of the same stored object."""

from __future__ import annotations

import binascii
import hashlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cas_download.config import Settings
from cas_download.data.cache import TtlCache
from cas_download.data.storage.port import ObjectDescription
from cas_download.data.tables import TableError, Tables
from cas_download.domain import AttemptFailed, AttemptReason, VerificationRecord
from cas_download.logic.deadline import Deadline

_log = logging.getLogger(__name__)


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
        raise AttemptFailed(AttemptReason.DIGEST_MISMATCH, "bytes do not hash to the digest")


def record_proves(tables: Tables, object_id: str, etag: str, size: int, digest: str) -> bool:
    """True when a record of an earlier full hash of ``object_id`` names this digest, ETag and size."""
    try:
        record = tables.verification_record(object_id)
    except TableError as failure:
        _log.warning("verification record unreadable: %s", failure)
        return False
    return record is not None and record.digest == digest and record.etag == etag and record.size == size


class VerificationRecords:
    """Records of full hashes, keyed by one stored object as its provider names it (an S3 object
    version; a registry's repository and blob digest).

    A record proves an object only while the provider still reports the same ETag and size: a
    rewritten object changes its ETag, so its old record no longer applies.

    The container remembers the proofs it read or wrote (the same key, ETag, size and digest prove
    the same thing again), so a warm container does not read the table for an object it has proven.
    """

    def __init__(self, settings: Settings, tables: Tables, memory_seconds: float = 300.0) -> None:
        self._enabled = settings.verifications_table is not None
        self._ttl = timedelta(days=settings.verification_record_ttl_days)
        self._tables = tables
        self._proven: TtlCache[tuple[str, str, int, str], bool] = TtlCache(memory_seconds)

    def proves(self, description: ObjectDescription, digest: str) -> bool:
        info = description.info
        if not self._enabled or not info.etag or description.record_key is None:
            return False
        proof = (description.record_key, info.etag, info.size, digest)
        if self._proven.get(proof):
            return True
        proven = record_proves(self._tables, description.record_key, info.etag, info.size, digest)
        if proven:
            self._proven.put(proof, True)
        return proven

    def remember(self, description: ObjectDescription, digest: str) -> None:
        info = description.info
        if not self._enabled or not info.etag or description.record_key is None:
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
        self._proven.put((description.record_key, info.etag, info.size, digest), True)
