"""Proof of the bytes (spec: "Resolution and fallback", step 4): S3's full-object SHA-256, or hashing
the whole object as it streams; a composite (multipart) checksum is never proof, and body mode always
hashes before anything is returned."""

from __future__ import annotations

import pytest

from tests.scenarios.conftest import Service, assert_failed
from tests.support.calls import CallRecorder
from tests.support.world import MIN_PART_SIZE, BackendRef, World, sha256_digest

DATA = b"build-output.bin contents\n" * 400  # 10,400 bytes
CORRUPT = b"these are not the bytes the digest names\n" * 100
# Two parts: moto refuses a part under 5 MiB unless it is the last one.
MULTIPART_DATA = b"m" * MIN_PART_SIZE + b"tail of a multipart upload\n"


def s3_operations(recorder: CallRecorder) -> list[str]:
    """The S3 operations the app made, in order."""
    return [call.operation for call in recorder.storage_calls()]


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
    org = world.org()
    backend = world.backend(org, is_default=True)
    digest = world.put(backend, DATA, checksum=True)
    world.map(digest, org, backend)
    assert world.head(backend, digest)["ChecksumSHA256"]  # the precondition: S3 holds the checksum

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then one HeadObject proved the bytes: no GetObject, no other S3 call
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == backend.name
    assert call_recorder.count("s3", "HeadObject") == 1
    assert call_recorder.count("s3", "GetObject") == 0
    assert s3_operations(call_recorder) == ["HeadObject"]
    # and the presigned URL serves exactly the digest's bytes
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.status == 200
    assert fetched.body == DATA


# ---------------------------------------------------------------------------------------------------
# no checksum: hashing the stream


def test_object_without_checksum_is_proven_by_hashing_its_stream(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact stored with no checksum at all
    org = world.org()
    backend = world.backend(org, is_default=True)
    digest = world.put(backend, DATA, checksum=False)
    world.map(digest, org, backend)
    assert "ChecksumSHA256" not in world.head(backend, digest)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the bytes were read and hashed (a GetObject after the HeadObject) before the redirect
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == backend.name
    assert response.headers["ETag"] == f'"{digest}"'
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]
    [get] = call_recorder.of("s3", "GetObject")
    assert get.params["Key"] == digest
    assert "Range" not in get.params  # the whole object, not a probe
    # and the URL serves those bytes
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.status == 200
    assert fetched.body == DATA


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
    org = world.org()
    backend = world.backend(org, name, is_default=True)
    digest = world.put(backend, data, checksum=checksum, multipart=multipart)
    world.map(digest, org, backend)
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
    org = world.org()
    mapped = world.backend(org, "no-checksum")
    default = world.backend(org, "with-checksum", is_default=True)
    digest = world.put(mapped, DATA, checksum=False)
    world.put(default, DATA, checksum=True)
    world.map(digest, org, mapped)
    # and a hashing limit below the size
    service.configure(MAX_HASH_BYTES=len(DATA) - 1)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the default serves, as a fallback, proven by its checksum alone
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "with-checksum"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert s3_operations(call_recorder) == ["HeadObject", "HeadObject"]
    assert world.fetch_presigned(response.headers["Location"]).body == DATA


def test_corrupt_object_without_checksum_is_never_redirected_to(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given the only object under the digest's key holds other bytes, with no checksum to betray them
    org, _backend, digest = world.tampered_artifact(DATA, CORRUPT, "corrupt")

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then hashing the stream finds the mismatch: 502 integrity_failure, no URL
    assert_failed(response, 502, "integrity_failure", [("corrupt", "digest_mismatch")])
    assert "Location" not in response.headers
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]


# ---------------------------------------------------------------------------------------------------
# multipart: a composite checksum is not proof


def test_multipart_object_is_served_only_after_a_full_hash(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given an artifact uploaded in two parts (S3 holds a composite SHA-256, never the digest)
    org = world.org()
    backend = world.backend(org, is_default=True)
    digest = world.put(backend, MULTIPART_DATA, checksum=True, multipart=True)
    world.map(digest, org, backend)
    head = world.head(backend, digest)
    assert head["ETag"].endswith('-2"')
    assert head["ChecksumSHA256"]  # moto's HEAD shows it without "-2": it looks like a full-object one

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the composite checksum was neither trusted nor taken for a mismatch: the whole object was
    # read and hashed, and the redirect follows
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == backend.name
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]
    fetched = world.fetch_presigned(response.headers["Location"])
    assert fetched.status == 200
    assert fetched.body == MULTIPART_DATA


# (a multipart copy over the hashing limit is unverifiable: the "multipart-composite-checksum" case
# of test_only_copy_without_a_full_object_checksum_over_the_hashing_limit_is_unverifiable)


def test_corrupt_multipart_object_is_never_served(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a multipart upload of other bytes under the digest's key (a self-consistent composite
    # checksum, for the wrong bytes)
    org = world.org()
    backend = world.backend(org, "corrupt-multipart", is_default=True)
    digest = sha256_digest(MULTIPART_DATA)
    put_corrupt_multipart(world, backend, digest, b"x" * MIN_PART_SIZE + b"not the artifact\n")
    world.map(digest, org, backend)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the full hash finds the mismatch: 502 integrity_failure, no URL
    assert_failed(response, 502, "integrity_failure", [("corrupt-multipart", "digest_mismatch")])
    assert "Location" not in response.headers
    assert s3_operations(call_recorder) == ["HeadObject", "GetObject"]


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
    org = world.org()
    mapped = world.backend(org, "corrupt")
    default = world.backend(org, "good", is_default=True)
    digest = world.put(default, DATA)
    world.put_corrupt(mapped, digest, CORRUPT, checksum=False)
    world.map(digest, org, mapped)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the good copy's bytes come back, exactly, through the default, flagged as a fallback
    assert response.status == 200
    assert response.body == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["X-Cas-Backend"] == "good"
    assert response.headers["X-Cas-Fallback"] == "true"
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
