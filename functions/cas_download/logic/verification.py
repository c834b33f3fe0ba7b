"""Proof that bytes are the digest's: S3's full-object SHA-256, hashing the bytes ourselves, or a
verification record the service wrote after an earlier full hash of the same object version."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pynamodb.exceptions import PynamoDBException

from cas_download.data.storage import HeadResult, StorageFailure, StorageLocation
from cas_download.domain import AttemptReason, VerificationRecord
from cas_download.logic.deadline import Deadline

if TYPE_CHECKING:
    from cas_download.data.tables import Tables
    from cas_download.logic.services import Services

_log = logging.getLogger(__name__)

# A multipart upload's ETag ends in "-<parts>"; its SHA-256 checksum is then composite even where a
# server omits ChecksumType or the "-N" suffix on HEAD.
_MULTIPART_ETAG = re.compile(r'-\d+"?$')


def checksum_proof(head: HeadResult, expected_hex: str) -> bool | None:
    """True: S3's full-object SHA-256 equals the digest. False: it differs. None: no usable checksum.

    A composite checksum (multipart upload: a hash of part hashes, shown as ``…-N``) proves nothing
    about the whole object's SHA-256 and is ignored.
    """
    checksum = head.checksum_sha256
    if not checksum:
        return None
    if (head.checksum_type or "").upper() == "COMPOSITE" or "-" in checksum:
        return None
    if head.etag and _MULTIPART_ETAG.search(head.etag):
        return None
    if head.checksum_type and head.checksum_type.upper() != "FULL_OBJECT":
        return None
    try:
        actual = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(actual) != hashlib.sha256().digest_size:
        return None
    return actual.hex() == expected_hex


def hash_chunks(chunks: Iterable[bytes], expected_hex: str, expected_size: int, deadline: Deadline) -> None:
    """Hash a stream, raising :class:`StorageFailure` unless it is exactly the digest's bytes."""
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if deadline.expired():
            raise StorageFailure(AttemptReason.TIMEOUT, "deadline reached while hashing")
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
        whole = len(data) - len(data) % 3
        pieces.append(binascii.b2a_base64(memoryview(data)[:whole], newline=False).decode("ascii"))
        carry = data[whole:]
        if deadline.expired():
            raise StorageFailure(AttemptReason.TIMEOUT, "deadline reached while reading")
    _check(digest, seen, expected_hex, expected_size)
    if carry:
        pieces.append(binascii.b2a_base64(carry, newline=False).decode("ascii"))
    return "".join(pieces)


def _check(digest: hashlib._Hash, size: int, expected_hex: str, expected_size: int) -> None:
    if size != expected_size:
        raise StorageFailure(AttemptReason.UNREACHABLE, f"read {size} of {expected_size} bytes")
    if digest.hexdigest() != expected_hex:
        raise StorageFailure(AttemptReason.DIGEST_MISMATCH, "bytes do not hash to the digest")


def record_proves(tables: Tables, object_id: str, etag: str, size: int, digest: str) -> bool:
    """True when a record of an earlier full hash of ``object_id`` names this digest, ETag and size."""
    try:
        record = tables.verification_record(object_id)
    except PynamoDBException as failure:
        _log.warning("verification record unreadable: %s", type(failure).__name__)
        return False
    return record is not None and record.digest == digest and record.etag == etag and record.size == size


class VerificationRecords:
    """Records of full hashes, keyed by one object version (endpoint, bucket, key, version id).

    A record proves an object only while S3 still reports the same ETag and size: a rewritten object
    changes its ETag, so its old record no longer applies.
    """

    def __init__(self, services: Services, location: StorageLocation, key: str) -> None:
        self._services = services
        self._enabled = services.settings.verifications_table is not None
        self._location = location
        self._key = key

    def _object_id(self, version_id: str | None) -> str:
        endpoint = self._location.endpoint_url or "s3"
        return f"{endpoint}|{self._location.bucket}|{self._key}|{version_id or ''}"

    def proves(self, head: HeadResult, digest: str) -> bool:
        if not self._enabled or not head.etag:
            return False
        return record_proves(
            self._services.tables, self._object_id(head.version_id), head.etag, head.size, digest
        )

    def remember(self, head: HeadResult, digest: str) -> None:
        if not self._enabled or not head.etag:
            return
        now = datetime.now(UTC)
        record = VerificationRecord(
            object_id=self._object_id(head.version_id),
            digest=digest,
            etag=head.etag,
            size=head.size,
            version_id=head.version_id,
            verified_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        ttl = timedelta(days=self._services.settings.verification_record_ttl_days)
        try:
            self._services.tables.save_verification_record(record, now + ttl)
        except PynamoDBException as failure:
            _log.warning("verification record not saved: %s", type(failure).__name__)
