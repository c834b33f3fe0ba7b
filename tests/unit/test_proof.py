"""Every proof path compares the whole digest: a hash that differs in its first or its last hex
character only is refused (stream hash, base64 stream, S3 checksum, verification record)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec
import pytest

from cas_download.data.storage.s3 import HeadResult, checksum_proof
from cas_download.data.tables import TableError
from cas_download.domain import AttemptFailed, AttemptReason, VerificationRecord
from cas_download.logic.deadline import Deadline
from cas_download.logic.verification import hash_and_encode, hash_chunks, record_proves

DATA = b"content-addressed bytes\n" * 300
TRUE_HEX = hashlib.sha256(DATA).hexdigest()


def one_hex_off(hex_digest: str, position: int) -> str:
    chars = list(hex_digest)
    chars[position] = "0" if chars[position] != "0" else "1"
    return "".join(chars)


NEAR_MISSES = pytest.mark.parametrize(
    "expected_hex", [one_hex_off(TRUE_HEX, 0), one_hex_off(TRUE_HEX, -1)], ids=["first-hex", "last-hex"]
)


def head_with_checksum(data: bytes) -> HeadResult:
    return HeadResult(
        size=len(data),
        etag='"etag"',
        version_id=None,
        content_type=None,
        metadata={},
        checksum_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        checksum_type="FULL_OBJECT",
    )


def test_the_true_digest_is_proven_by_every_path() -> None:
    # Given the bytes' own digest, When each proof path checks it, Then each accepts it
    hash_chunks([DATA], TRUE_HEX, len(DATA), Deadline(10))
    assert hash_and_encode([DATA], TRUE_HEX, len(DATA), Deadline(10)) == base64.b64encode(DATA).decode()
    assert checksum_proof(head_with_checksum(DATA), TRUE_HEX) is True


@NEAR_MISSES
def test_stream_hash_refuses_a_digest_one_hex_character_off(expected_hex: str) -> None:
    with pytest.raises(AttemptFailed) as failure:
        hash_chunks([DATA], expected_hex, len(DATA), Deadline(10))
    assert failure.value.reason is AttemptReason.DIGEST_MISMATCH


@NEAR_MISSES
def test_base64_stream_refuses_a_digest_one_hex_character_off(expected_hex: str) -> None:
    with pytest.raises(AttemptFailed) as failure:
        hash_and_encode([DATA], expected_hex, len(DATA), Deadline(10))
    assert failure.value.reason is AttemptReason.DIGEST_MISMATCH


@NEAR_MISSES
def test_s3_checksum_refuses_a_digest_one_hex_character_off(expected_hex: str) -> None:
    assert checksum_proof(head_with_checksum(DATA), expected_hex) is False


class _RecordTables:
    """The Verifications table as the record check reads it: one record for one object."""

    def __init__(self, record: VerificationRecord) -> None:
        self.record = record

    def verification_record(self, object_id: str) -> VerificationRecord | None:
        return self.record if object_id == self.record.object_id else None


def _record_of_true_bytes(head: HeadResult) -> VerificationRecord:
    """The record a full hash of ``DATA`` leaves for the object ``head`` describes."""
    return VerificationRecord(
        object_id="endpoint|bucket|key|",
        digest=f"sha256:{TRUE_HEX}",
        etag=str(head.etag),
        size=head.size,
        version_id=None,
        verified_at="2026-01-01T00:00:00Z",
    )


@NEAR_MISSES
def test_a_verification_record_of_a_digest_one_hex_character_off_proves_nothing(
    expected_hex: str,
) -> None:
    head = head_with_checksum(DATA)
    record = _record_of_true_bytes(head)
    tables: Any = _RecordTables(record)
    assert record_proves(tables, record.object_id, head.etag, head.size, f"sha256:{TRUE_HEX}") is True
    assert record_proves(tables, record.object_id, head.etag, head.size, f"sha256:{expected_hex}") is False


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),
        ({"checksum_type": None}, True),  # older answers carry no type: a full-object checksum
        ({"checksum_type": "full_object"}, True),
        ({"checksum_type": "COMPOSITE"}, None),
        ({"checksum_type": "ANOTHER_TYPE"}, None),  # sorts before FULL_OBJECT
        ({"checksum_type": "ZZZ_TYPE"}, None),  # sorts after it
        ({"checksum_sha256": None}, None),
        ({"checksum_sha256": ""}, None),
        ({"etag": '"0123456789abcdef0123456789abcdef-3"'}, None),  # a multipart upload
        ({"checksum_sha256": "not base64!"}, None),
        # the right checksum with one character that is not base64: refused, not skipped over
        (
            {
                "checksum_sha256": head_with_checksum(DATA).checksum_sha256[:10]
                + "!"
                + head_with_checksum(DATA).checksum_sha256[10:]
            },
            None,
        ),
        ({"checksum_sha256": base64.b64encode(b"short").decode()}, None),
        ({"checksum_sha256": base64.b64encode(hashlib.sha256(DATA).digest() + b"x").decode()}, None),
    ],
)
def test_only_a_full_object_sha256_checksum_proves_anything(
    changes: dict[str, Any], expected: bool | None
) -> None:
    # Given S3's answer for the true bytes, changed in one way
    head = msgspec.structs.replace(head_with_checksum(DATA), **changes)
    # Then only a full-object SHA-256 of the right size proves them; anything else is no proof at all
    assert checksum_proof(head, TRUE_HEX) is expected


def test_a_record_proves_with_equal_values_whatever_objects_carry_them() -> None:
    # Given a record, and the same etag, size and digest arriving as other (equal) objects
    head = head_with_checksum(DATA)
    record = _record_of_true_bytes(head)
    tables: Any = _RecordTables(record)
    etag, size, digest = "".join(list(str(head.etag))), int(str(head.size)), "".join(["sha256:", TRUE_HEX])
    # Then the record proves them: values are compared, not identities
    assert record_proves(tables, record.object_id, etag, size, digest) is True
    assert record_proves(tables, record.object_id, etag, size + 1, digest) is False
    assert record_proves(tables, record.object_id, etag + "x", size, digest) is False


class _CountingChunks:
    """A stream of 1 KiB chunks that counts how many were taken (it never ends on its own)."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Any:
        while self.taken < 1000:
            self.taken += 1
            yield b"x" * 1024


@pytest.mark.parametrize("prove", [hash_chunks, hash_and_encode], ids=["hash", "hash-and-encode"])
def test_proof_stops_reading_at_the_first_byte_beyond_the_announced_size(prove: Any) -> None:
    # Given a stream far longer than the 3 KiB the object was announced as
    chunks = _CountingChunks()
    # When it is proven, Then it fails and no more than one chunk past the size was read
    with pytest.raises(AttemptFailed) as failed:
        prove(chunks, TRUE_HEX, 3 * 1024, Deadline(10))
    assert failed.value.reason is AttemptReason.UNREACHABLE
    assert chunks.taken == 4


def test_the_s3_checksum_refuses_a_digest_above_the_true_one_too() -> None:
    above = "f" + TRUE_HEX[1:] if TRUE_HEX[0] != "f" else "f" * 64
    assert checksum_proof(head_with_checksum(DATA), above) is False


@pytest.mark.parametrize("sizes", [(1,), (2,), (4, 5), (1, 1, 1, 7), (3, 3, 2)], ids=str)
def test_body_mode_encodes_any_split_of_the_stream_as_one_base64_text(sizes: tuple[int, ...]) -> None:
    # Given the bytes arriving in chunks of uneven sizes (base64 works in groups of 3 bytes)
    data = DATA + b"odd!"  # 7,204 bytes: not a multiple of 3, so the last group is partial
    chunks, start, index = [], 0, 0
    while start < len(data):
        size = sizes[index % len(sizes)] * 97
        chunks.append(data[start : start + size])
        start, index = start + size, index + 1
    digest_hex = hashlib.sha256(data).hexdigest()
    # Then the encoded body is exactly the base64 of the whole
    assert hash_and_encode(chunks, digest_hex, len(data), Deadline(10)) == base64.b64encode(data).decode()


class _UnreadableTables:
    def verification_record(self, object_id: str) -> VerificationRecord | None:
        raise TableError("throttled")


def test_an_unreadable_record_proves_nothing_and_raises_nothing() -> None:
    tables: Any = _UnreadableTables()
    assert record_proves(tables, "id", '"e"', 1, f"sha256:{TRUE_HEX}") is False


def test_a_record_of_another_size_or_etag_either_side_proves_nothing() -> None:
    head = head_with_checksum(DATA)
    record = VerificationRecord(
        object_id="o", digest=f"sha256:{TRUE_HEX}", etag='"m"', size=head.size, version_id=None,
        verified_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    tables: Any = _RecordTables(record)
    digest = f"sha256:{TRUE_HEX}"
    assert record_proves(tables, "o", '"m"', head.size, digest) is True
    for etag, size in (
        ('"a"', head.size),
        ('"z"', head.size),
        ('"m"', head.size - 1),
        ('"m"', head.size + 1),
    ):
        assert record_proves(tables, "o", etag, size, digest) is False
    assert record_proves(tables, "o", '"m"', head.size, "sha256:" + "0" * 64) is False
    assert record_proves(tables, "o", '"m"', head.size, "sha256:" + "f" * 64) is False
