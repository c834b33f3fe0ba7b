"""Proof of the bytes in body mode: hashed and base64-encoded as they stream."""

import base64
import hashlib

import pytest

from cas_download.domain import AttemptFailed, AttemptReason
from cas_download.logic.deadline import Deadline
from cas_download.logic.verification import hash_and_encode

DATA = bytes(range(256)) * 41 + b"tail"  # 10,500 bytes: not a multiple of 3


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 5, 7, 1000, 4096, len(DATA)])
def test_any_chunking_gives_exactly_the_base64_of_the_whole_object(chunk_size: int) -> None:
    expected = hashlib.sha256(DATA).hexdigest()
    encoded = hash_and_encode(chunked(DATA, chunk_size), expected, len(DATA), Deadline(10))
    assert encoded == base64.b64encode(DATA).decode("ascii")


def test_an_empty_object_is_empty_text() -> None:
    assert hash_and_encode([], hashlib.sha256(b"").hexdigest(), 0, Deadline(10)) == ""


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        (chunked(DATA[:-1] + b"X", 999), AttemptReason.DIGEST_MISMATCH),  # other bytes
        (chunked(DATA[:-10], 999), AttemptReason.UNREACHABLE),  # fewer bytes than announced
        (chunked(DATA + b"more", 999), AttemptReason.UNREACHABLE),  # more bytes than announced
    ],
    ids=["mismatch", "short", "long"],
)
def test_bytes_that_are_not_the_digests_are_never_returned(
    chunks: list[bytes], reason: AttemptReason
) -> None:
    with pytest.raises(AttemptFailed) as failure:
        hash_and_encode(chunks, hashlib.sha256(DATA).hexdigest(), len(DATA), Deadline(10))
    assert failure.value.reason is reason
