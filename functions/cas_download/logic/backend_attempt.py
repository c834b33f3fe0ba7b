"""One attempt through one backend: its own credentials, the object, proof of the bytes, and (for
redirect and url modes) a URL that needs no credentials, made through the same backend.

Speaks only the storage port: the same steps for every provider.
"""

from __future__ import annotations

from dataclasses import replace

from cas_download.data.secrets import SecretUnavailable
from cas_download.data.storage.port import BackendStore, DirectUrl, ObjectDescription, SecretFields
from cas_download.digests import digest_hex
from cas_download.domain import (
    Artifact,
    AttemptFailed,
    AttemptReason,
    Backend,
    Mode,
    VerificationMethod,
)
from cas_download.errors import TooLargeForBody
from cas_download.filenames import content_disposition
from cas_download.logic.deadline import Deadline
from cas_download.logic.services import Services
from cas_download.logic.verification import hash_and_encode, hash_chunks


def serve_through(
    backend: Backend, digest: str, mode: Mode, deadline: Deadline, services: Services
) -> Artifact:
    """Serve ``digest`` through ``backend`` or raise :class:`AttemptFailed` with the reason."""
    services.storage.check_supported(backend)  # before its secret is read
    secret = services.credentials.get(backend.secret_name)
    try:
        return _serve(backend, secret, digest, mode, deadline, services)
    except AttemptFailed as failure:
        if failure.reason is not AttemptReason.CREDENTIALS_INVALID or deadline.expired():
            raise
        # The control plane may have rotated the credentials inside the same secret: read it once more.
        try:
            fresh = services.credentials.refresh(backend.secret_name)
        except SecretUnavailable:
            raise failure from None
        if fresh is None or fresh == secret:
            raise
        return _serve(backend, fresh, digest, mode, deadline, services)


def _serve(
    backend: Backend, secret: SecretFields, digest: str, mode: Mode, deadline: Deadline, services: Services
) -> Artifact:
    store = services.storage.open(backend, secret, deadline.remaining())
    if mode is Mode.BODY:
        return _serve_body(store, backend, digest, deadline, services)

    description = store.describe(digest)
    if description.provider_proof is False:
        raise AttemptFailed(AttemptReason.DIGEST_MISMATCH, "the provider's checksum differs from the digest")
    info = description.info
    disposition = content_disposition(info.filename) if info.filename else None
    # The URL first: a provider that has none fails before any bytes are read, and a provider whose
    # URL leads to other storage has those bytes proven, not the ones behind its API.
    url = store.direct_url(digest, description, services.settings.presign_ttl_seconds, disposition)
    method = _prove(store, description, url, digest, deadline, services)
    return Artifact(digest, backend, False, info, method, url=url.url, expires_at=url.expires_at)


def _prove(
    store: BackendStore,
    description: ObjectDescription,
    url: DirectUrl,
    digest: str,
    deadline: Deadline,
    services: Services,
) -> VerificationMethod:
    if description.provider_proof:
        return VerificationMethod.CHECKSUM
    if url.storage_etag is not None:
        # The URL's storage, not the provider, says which bytes are stored: a record holds only while
        # they stay the same (a registry that swaps a blob's bytes cannot keep its storage's ETag).
        description = replace(description, info=replace(description.info, etag=url.storage_etag))
    records = services.verification_records
    if records.proves(description, digest):
        return VerificationMethod.RECORD
    size = description.info.size
    if size > services.settings.max_hash_bytes:
        raise AttemptFailed(
            AttemptReason.UNVERIFIABLE, f"no provider proof and {size} bytes is over the hashing limit"
        )
    opened = store.open(digest, description, via=url)
    try:
        hash_chunks(opened.chunks(), digest_hex(digest), size, deadline)
    finally:
        opened.close()
    records.remember(description, digest)
    return VerificationMethod.STREAM_HASH


def _serve_body(
    store: BackendStore, backend: Backend, digest: str, deadline: Deadline, services: Services
) -> Artifact:
    limit = services.settings.max_body_bytes
    opened = store.open(digest)
    try:
        info = opened.info
        if info.size > limit:
            raise TooLargeForBody(
                f"the artifact is {info.size} bytes, over the body limit of {limit}: "
                "use mode=redirect or mode=url"
            )
        body_base64 = hash_and_encode(opened.chunks(), digest_hex(digest), info.size, deadline)
    finally:
        opened.close()
    return Artifact(digest, backend, False, info, VerificationMethod.STREAM_HASH, body_base64=body_base64)
