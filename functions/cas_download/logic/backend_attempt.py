"""One attempt through one backend: its own credentials, the object, proof of the bytes, and (for
redirect and url modes) a presigned URL made through the same credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cas_download.data.secrets import SecretUnavailable
from cas_download.data.storage import (
    StorageFailure,
    StorageLocation,
    get_object,
    head_object,
    parse_location,
    presign_get,
)
from cas_download.digests import digest_hex
from cas_download.domain import (
    SUPPORTED_PROVIDER,
    Artifact,
    AttemptReason,
    Backend,
    Credentials,
    Mode,
    VerificationMethod,
)
from cas_download.errors import TooLargeForBody
from cas_download.filenames import content_disposition
from cas_download.logic.deadline import Deadline
from cas_download.logic.services import Services
from cas_download.logic.verification import (
    VerificationRecords,
    checksum_proof,
    hash_and_encode,
    hash_chunks,
)

# A presigned URL must stay usable for at least this long, or it is not worth handing out.
_MIN_URL_LIFETIME_SECONDS = 30


def serve_through(
    backend: Backend, digest: str, mode: Mode, deadline: Deadline, services: Services
) -> Artifact:
    """Serve ``digest`` through ``backend`` or raise :class:`StorageFailure` with the reason."""
    if backend.provider != SUPPORTED_PROVIDER:
        raise StorageFailure(AttemptReason.UNSUPPORTED_PROVIDER, f"provider {backend.provider!r}")
    location = parse_location(backend.location)
    credentials = _read_credentials(services, backend.secret_name)
    try:
        return _serve(backend, location, credentials, digest, mode, deadline, services)
    except StorageFailure as failure:
        if failure.reason is not AttemptReason.CREDENTIALS_INVALID or deadline.expired():
            raise
        # The control plane may have rotated the keys inside the same secret: read it once more.
        try:
            fresh = services.credentials.refresh(backend.secret_name)
        except SecretUnavailable:
            raise failure from None
        if fresh is None or fresh == credentials:
            raise
        return _serve(backend, location, fresh, digest, mode, deadline, services)


def _read_credentials(services: Services, secret_name: str) -> Credentials:
    try:
        return services.credentials.get(secret_name)
    except SecretUnavailable as error:
        raise StorageFailure(AttemptReason.SECRET_UNAVAILABLE, str(error)) from None


def _serve(
    backend: Backend,
    location: StorageLocation,
    credentials: Credentials,
    digest: str,
    mode: Mode,
    deadline: Deadline,
    services: Services,
) -> Artifact:
    settings = services.settings
    region = backend.region or credentials.region or "us-east-1"
    client = services.s3_clients.client(credentials, region, location.endpoint_url, deadline.remaining())
    key = f"{backend.key_prefix}{digest}"
    expected_hex = digest_hex(digest)

    if mode is Mode.BODY:
        opened = get_object(client, location.bucket, key)
        try:
            if opened.size > settings.max_body_bytes:
                raise TooLargeForBody(
                    f"the artifact is {opened.size} bytes, over the body limit of "
                    f"{settings.max_body_bytes}: use mode=redirect or mode=url"
                )
            body_base64 = hash_and_encode(opened.chunks(), expected_hex, opened.size, deadline)
        finally:
            opened.close()
        return Artifact(
            digest, backend, False, opened.info(), VerificationMethod.STREAM_HASH, body_base64=body_base64
        )

    head = head_object(client, location.bucket, key)
    info = head.info()
    proof = checksum_proof(head, expected_hex)
    if proof is False:
        raise StorageFailure(AttemptReason.DIGEST_MISMATCH, "S3 checksum differs from the digest")
    method = VerificationMethod.CHECKSUM
    if proof is None:
        records = VerificationRecords(services, location, key)
        if records.proves(head, digest):
            method = VerificationMethod.RECORD
        else:
            if head.size > settings.max_hash_bytes:
                raise StorageFailure(
                    AttemptReason.UNVERIFIABLE,
                    f"no full-object SHA-256 and {head.size} bytes is over the hashing limit",
                )
            opened = get_object(client, location.bucket, key, version_id=head.version_id, if_match=head.etag)
            try:
                hash_chunks(opened.chunks(), expected_hex, head.size, deadline)
            finally:
                opened.close()
            method = VerificationMethod.STREAM_HASH
            records.remember(head, digest)

    expires_in = _url_lifetime(settings.presign_ttl_seconds, credentials.expires_at)
    disposition = content_disposition(info.filename) if info.filename else None
    url = presign_get(client, location.bucket, key, expires_in, info.version_id, disposition)
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
    return Artifact(digest, backend, False, info, method, url=url, expires_at=expires_at)


def _url_lifetime(configured_seconds: int, credentials_expire_at: datetime | None) -> int:
    """The configured TTL, cut short so the URL never outlives temporary credentials."""
    if credentials_expire_at is None:
        return configured_seconds
    left = int((credentials_expire_at - datetime.now(UTC)).total_seconds())
    if left < _MIN_URL_LIFETIME_SECONDS:
        raise StorageFailure(AttemptReason.CREDENTIALS_INVALID, "temporary credentials expire too soon")
    return min(configured_seconds, left)
