"""Proof of the bytes (spec: "Resolution and fallback", step 4): S3's full-object SHA-256, or hashing
the whole object as it streams; a composite (multipart) checksum is never proof, and body mode always
hashes before anything is returned."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.conftest import Service, assert_failed, assert_redirected_by
from tests.support.calls import CallRecorder
from tests.support.provider_scenarios import assert_presigned_url_serves, assert_served_by
from tests.support.world import MIN_PART_SIZE, Artifact, BackendRef, World, sha256_digest

DATA = b"build-output.bin contents\n" * 400  # 10,400 bytes
CORRUPT = b"these are not the bytes the digest names\n" * 100
# Two parts: moto refuses a part under 5 MiB unless it is the last one.
MULTIPART_DATA = b"m" * MIN_PART_SIZE + b"tail of a multipart upload\n"


def s3_operations(recorder: CallRecorder) -> list[str]:
    """The S3 operations the app made, in order."""
    return [call.operation for call in recorder.storage_calls()]


def stored_artifact(
    world: World, data: bytes, name: str | None = None, *, checksum: bool, multipart: bool = False
) -> Artifact:
    """A new org whose default backend (``name``) holds ``data``, mapped there: with S3's SHA-256 or
    not (``checksum``), uploaded in parts (``multipart``: a composite checksum) or not."""
    org = world.org()
    backend = world.backend(org, name, is_default=True)
    digest = world.put(backend, data, checksum=checksum, multipart=multipart)
    world.map(digest, org, backend)
    return Artifact(org, backend, digest)


def mapped_elsewhere_than_the_default(
    world: World, mapped_name: str, default_name: str, *, default_checksum: bool
) -> tuple[str, BackendRef, BackendRef, str]:
    """An org whose artifact is mapped to one backend (``mapped_name``, left for the test to fill) while
    its default (``default_name``, another bucket) holds the right bytes, with S3's SHA-256 or not:
    the org, the mapped backend, the default, the digest."""
    org = world.org()
    mapped = world.backend(org, mapped_name)
    default = world.backend(org, default_name, is_default=True)
    digest = world.put(default, DATA, checksum=default_checksum)
    world.map(digest, org, mapped)
    return org, mapped, default, digest


def put_corrupt_multipart(world: World, backend: BackendRef, digest: str, data: bytes) -> None:
    """A multipart upload (SHA-256 per part, so a composite checksum) of ``data`` under ``digest``'s key."""
    key = backend.key_for(digest)
    upload = world.s3.create_multipart_upload(Bucket=backend.bucket, Key=key, ChecksumAlgorithm="SHA256")
    parts = []
    for number, start in enumerate(range(0, len(data), MIN_PART_SIZE), start=1):
        part = world.s3.upload_part(
            Bucket=backend.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + MIN_PART_SIZE],
            ChecksumAlgorithm="SHA256",
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]})
    world.s3.complete_multipart_upload(
        Bucket=backend.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


# ---------------------------------------------------------------------------------------------------
# full-object checksum


def test_full_object_checksum_proves_the_bytes_with_one_head_and_no_get(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact stored with its full-object SHA-256 (a single PUT)
    org, backend, digest = stored_artifact(world, DATA, checksum=True)
    assert world.head(backend, digest)["ChecksumSHA256"]  # the precondition: S3 holds the checksum

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then one HeadObject proved the bytes: no GetObject, no other S3 call
    assert_redirected_by(response, backend, fallback=False)
    assert call_recorder.count("s3", "HeadObject") == 1
    assert call_recorder.count("s3", "GetObject") == 0
    assert s3_operations(call_recorder) == ["HeadObject"]
    # and the presigned URL serves exactly the digest's bytes
    assert_presigned_url_serves(world, response.headers["Location"], DATA)


# ---------------------------------------------------------------------------------------------------
# no checksum: hashing the stream


def test_object_without_checksum_is_proven_by_hashing_its_stream(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact stored with no checksum at all
    org, backend, digest = stored_artifact(world, DATA, checksum=False)
    assert "ChecksumSHA256" not in world.head(backend, digest)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the bytes were read and hashed (a GetObject after the HeadObject) before the redirect
    assert_redirected_by(response, backend, fallback=False)
    assert response.headers["ETag"] == f'"{digest}"'
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]
    [get] = call_recorder.of("s3", "GetObject")
    assert get.params["Key"] == digest
    assert "Range" not in get.params  # the whole object, not a probe
    # and the URL serves those bytes
    assert_presigned_url_serves(world, response.headers["Location"], DATA)


@pytest.mark.parametrize(
    ("name", "data", "checksum", "multipart"),
    [("only-copy", DATA, False, False), ("multipart", MULTIPART_DATA, True, True)],
    ids=["no-checksum", "multipart-composite-checksum"],
)
def test_only_copy_without_a_full_object_checksum_over_the_hashing_limit_is_unverifiable(
    world: World,
    service: Service,
    call_recorder: CallRecorder,
    name: str,
    data: bytes,
    checksum: bool,
    multipart: bool,
) -> None:
    # Given the only copy of an artifact, stored with no checksum, or uploaded in parts (a composite
    # checksum)
    org, _backend, digest = stored_artifact(world, data, name, checksum=checksum, multipart=multipart)
    # and a hashing limit below its size
    service.configure(MAX_HASH_BYTES=len(data) - 1)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then nothing can prove it (a composite checksum is not accepted as proof): 502
    # backends_unavailable, the attempt unverifiable, nothing served, no bytes read
    assert_failed(response, 502, "backends_unavailable", [(name, "unverifiable")])
    assert "Location" not in response.headers
    assert call_recorder.count("s3", "GetObject") == 0


def test_unverifiable_copy_falls_back_to_a_copy_with_a_full_object_checksum(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the mapped copy without checksum and the org default's copy (another bucket) with one
    org, mapped, default, digest = mapped_elsewhere_than_the_default(
        world, "no-checksum", "with-checksum", default_checksum=True
    )
    world.put(mapped, DATA, checksum=False)
    # and a hashing limit below the size
    service.configure(MAX_HASH_BYTES=len(DATA) - 1)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the default serves, as a fallback, proven by its checksum alone
    assert_redirected_by(response, default, fallback=True)
    assert s3_operations(call_recorder) == ["HeadObject", "HeadObject"]
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def corrupt_without_checksum(world: World) -> Artifact:
    """Other bytes under the digest's key, with no checksum to betray them."""
    return world.tampered_artifact(DATA, CORRUPT, "corrupt")


def corrupt_multipart(world: World) -> Artifact:
    """A multipart upload of other bytes under the digest's key (a self-consistent composite checksum,
    for the wrong bytes)."""
    org = world.org()
    backend = world.backend(org, "corrupt-multipart", is_default=True)
    digest = sha256_digest(MULTIPART_DATA)
    put_corrupt_multipart(world, backend, digest, b"x" * MIN_PART_SIZE + b"not the artifact\n")
    world.map(digest, org, backend)
    return Artifact(org, backend, digest)


@pytest.mark.parametrize(
    "corrupt_copy", [corrupt_without_checksum, corrupt_multipart], ids=["no-checksum", "multipart"]
)
def test_a_corrupt_object_is_never_redirected_to(
    world: World, service: Service, call_recorder: CallRecorder, corrupt_copy: Callable[[World], Artifact]
) -> None:
    # Given the only object under the digest's key holds other bytes: with no checksum, or uploaded in
    # parts (its composite checksum is no proof either way)
    org, backend, digest = corrupt_copy(world)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then hashing the whole stream finds the mismatch: 502 integrity_failure, no URL
    assert_failed(response, 502, "integrity_failure", [(backend.name, "digest_mismatch")])
    assert "Location" not in response.headers
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]


# ---------------------------------------------------------------------------------------------------
# multipart: a composite checksum is not proof


def test_multipart_object_is_served_only_after_a_full_hash(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact uploaded in two parts (S3 holds a composite SHA-256, never the digest)
    org, backend, digest = stored_artifact(world, MULTIPART_DATA, checksum=True, multipart=True)
    head = world.head(backend, digest)
    assert head["ETag"].endswith('-2"')
    assert head["ChecksumSHA256"]  # moto's HEAD shows it without "-2": it looks like a full-object one

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the composite checksum was neither trusted nor taken for a mismatch: the whole object was
    # read and hashed, and the redirect follows
    assert_redirected_by(response, backend, fallback=False)
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]
    assert_presigned_url_serves(world, response.headers["Location"], MULTIPART_DATA)


# (a multipart copy over the hashing limit is unverifiable: the "multipart-composite-checksum" case
# of test_only_copy_without_a_full_object_checksum_over_the_hashing_limit_is_unverifiable; a corrupt
# one is never served: the "multipart" case of test_a_corrupt_object_is_never_redirected_to)


# ---------------------------------------------------------------------------------------------------
# body mode always hashes


def test_body_mode_never_returns_corrupt_bytes(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the only object under the digest's key holds other bytes, with no checksum
    org, _backend, digest = world.tampered_artifact(DATA, CORRUPT, "corrupt")

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the bytes were hashed before anything was returned: 502 integrity_failure, no body
    assert_failed(response, 502, "integrity_failure", [("corrupt", "digest_mismatch")])
    assert not response.raw.get("isBase64Encoded")
    assert CORRUPT not in response.body
    assert CORRUPT[:32] not in response.body
    assert s3_operations(call_recorder) == ["GetObject"]


def test_body_mode_skips_a_corrupt_copy_and_returns_a_good_one(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the mapped copy is corrupt (no checksum) and the org default holds the right bytes
    org, mapped, _default, digest = mapped_elsewhere_than_the_default(
        world, "corrupt", "good", default_checksum=False
    )
    world.put_corrupt(mapped, digest, CORRUPT, checksum=False)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the good copy's bytes come back, exactly, through the default, flagged as a fallback
    assert_served_by(response, 200, "good", fallback=True)
    assert response.body == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["ETag"] == f'"{digest}"'
    assert s3_operations(call_recorder) == ["GetObject", "GetObject"]


# ---------------------------------------------------------------------------------------------------
# near misses: the whole digest is compared, not a prefix or a suffix


def near_miss(digest: str, position: int) -> str:
    """``digest`` with one hex character changed: the first (position 0) or the last (-1)."""
    hex_part = list(digest.removeprefix("sha256:"))
    hex_part[position] = "0" if hex_part[position] != "0" else "1"
    return "sha256:" + "".join(hex_part)


@pytest.mark.parametrize("position", [0, -1], ids=["first-hex", "last-hex"])
@pytest.mark.parametrize(
    ("mode", "checksum"),
    [("redirect", True), ("redirect", False), ("body", True)],
    ids=["s3-checksum", "stream-hash", "body-base64-stream"],
)
def test_bytes_whose_hash_differs_from_the_digest_in_one_hex_character_are_refused(
    world: World, service: Service, position: int, mode: str, checksum: bool
) -> None:
    # Given bytes stored under a digest that differs from their hash in one hex character only
    org = world.org()
    backend = world.backend(org, is_default=True)
    digest = near_miss(sha256_digest(DATA), position)
    world.put_corrupt(backend, digest, DATA, checksum=checksum)
    world.map(digest, org, backend)

    # When the caller asks for that digest
    response = service.get(digest, orgs=org, mode=mode)

    # Then the bytes are refused as not the digest's
    assert_failed(response, 502, "integrity_failure", [(backend.name, "digest_mismatch")])
