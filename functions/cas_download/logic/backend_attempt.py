"""One attempt through one backend: its own credentials, the object, proof of the bytes, and (for
redirect and url modes) a URL that needs no credentials, made through the same backend.

The verifier proves an object ahead of requests (:func:`prove_ahead`) through the same steps, proofs
and records; only what it may hash, and how it reads, differ.

Speaks only the storage port: the same steps for every provider.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from msgspec.structs import replace

from cas_download.data.secrets import SecretUnavailable
from cas_download.data.storage.port import (
    BackendStore,
    DirectUrl,
    ObjectDescription,
    RangeReader,
    RecordNamer,
    SecretFields,
)
from cas_download.data.verifier_asks import AskState
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
from cas_download.logic.look_ahead import Located, Lookup
from cas_download.logic.services import Services
from cas_download.logic.verification import (
    DigestMismatch,
    RecordReadAhead,
    VerificationRecords,
    hash_and_encode,
    hash_chunks,
    ranged_chunks,
)

T = TypeVar("T")

# The verifier's ranged GETs: large enough that a request's overhead is small against its transfer,
# small enough that VERIFY_READ_CONCURRENCY of them in memory stay well under 64 MiB.
RANGE_PART_BYTES = 8 * 1024 * 1024


class PendingProof(AttemptFailed):
    """The verifier was asked to prove this candidate's object; a retry after ``retry_after_seconds``
    should find the record."""

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(AttemptReason.VERIFICATION_PENDING, detail)
        self.retry_after_seconds = retry_after_seconds


def serve_through(
    backend: Backend,
    digest: str,
    mode: Mode,
    deadline: Deadline,
    services: Services,
    lookup: Lookup | None = None,
) -> Artifact:
    """Serve ``digest`` through ``backend`` or raise :class:`AttemptFailed` with the reason. ``lookup``:
    what a look ahead found (used only if it was made through this backend with these credentials)."""
    return _with_credentials(
        backend,
        deadline,
        services,
        lambda secret: _serve(backend, secret, digest, mode, deadline, services, lookup),
    )


def look_ahead(backend: Backend, digest: str, deadline: Deadline, services: Services) -> Lookup | None:
    """Start what :func:`serve_through` would ask ``backend``'s storage first (describe, the URL, the
    record), on the container's look-ahead worker; None unless the container holds the backend's secret
    (a look ahead reads none) and the backend may be used (logic/look_ahead.py)."""
    secret = services.credentials.held(backend.secret_name)
    if services.look_ahead is None or secret is None or backend.deleted or backend.org_suspended:
        return None
    try:
        services.storage.check_supported(backend)
    except AttemptFailed:
        return None

    def locate() -> Located:
        store = services.storage.open(backend, secret, deadline.remaining())
        # queued behind this lookup on the same worker: read once per object lately, as _serve does
        record = _read_record_ahead(store, digest, services)
        description, url = _locate(store, digest, services)
        return Located(description, url, record)

    return services.look_ahead.start(backend, secret, locate)


def prove_ahead(backend: Backend, digest: str, deadline: Deadline, services: Services) -> VerificationMethod:
    """Prove ``digest``'s object in ``backend`` as a redirect would, ahead of any request: the
    provider's proof or a record costs one describe; otherwise the whole object is hashed (up to
    ``VERIFY_MAX_BYTES``, in ranges at once where the store allows) and the record written, a failed
    proof's included. Raises :class:`AttemptFailed` with the reason, as an attempt would."""
    return _with_credentials(
        backend, deadline, services, lambda secret: _prove_ahead(backend, secret, digest, deadline, services)
    )


def _with_credentials(
    backend: Backend, deadline: Deadline, services: Services, attempt: Callable[[SecretFields], T]
) -> T:
    services.storage.check_supported(backend)  # before its secret is read
    secret = services.credentials.get(backend.secret_name)
    try:
        return attempt(secret)
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
        return attempt(fresh)


def _prove_ahead(
    backend: Backend, secret: SecretFields, digest: str, deadline: Deadline, services: Services
) -> VerificationMethod:
    store = services.storage.open(backend, secret, deadline.remaining())
    description = store.describe(digest)
    if description.provider_proof is False:
        raise AttemptFailed(AttemptReason.DIGEST_MISMATCH, "the provider's checksum differs from the digest")
    # The URL a redirect would hand out: for a registry it names the storage whose bytes are proven.
    url = store.direct_url(digest, description, services.settings.presign_ttl_seconds, None)
    return _prove(store, backend, description, url, digest, deadline, services, ahead=True)


def _serve(
    backend: Backend,
    secret: SecretFields,
    digest: str,
    mode: Mode,
    deadline: Deadline,
    services: Services,
    lookup: Lookup | None,
) -> Artifact:
    store = services.storage.open(backend, secret, deadline.remaining())
    if mode is Mode.BODY:
        return _serve_body(store, backend, digest, deadline, services)

    located = lookup.take(backend, secret) if lookup is not None else None
    if located is None:
        # The record is read while the object is described: both are needed before any proof.
        record = _read_record_ahead(store, digest, services)
        description, url = _locate(store, digest, services)
    else:
        description, url, record = located.description, located.url, located.record_ahead
    method = _prove(
        store, backend, description, url, digest, deadline, services, ahead=False, record_ahead=record
    )
    info = description.info
    return Artifact(digest, backend, False, info, method, url=url.url, expires_at=url.expires_at)


def _locate(store: BackendStore, digest: str, services: Services) -> tuple[ObjectDescription, DirectUrl]:
    """The object's description and the credential-free URL a redirect would hand out. The URL before
    any proof: a provider that has none fails before any bytes are read, and a provider whose URL leads
    to other storage has those bytes proven, not the ones behind its API."""
    description = store.describe(digest)
    if description.provider_proof is False:
        raise AttemptFailed(AttemptReason.DIGEST_MISMATCH, "the provider's checksum differs from the digest")
    info = description.info
    disposition = content_disposition(info.filename) if info.filename else None
    return description, store.direct_url(
        digest, description, services.settings.presign_ttl_seconds, disposition
    )


def _read_record_ahead(store: BackendStore, digest: str, services: Services) -> RecordReadAhead | None:
    if services.look_ahead is None or not isinstance(store, RecordNamer):
        return None
    return services.verification_records.read_ahead(store.record_key(digest), services.look_ahead.submit)


def _as_recorded(description: ObjectDescription, url: DirectUrl) -> ObjectDescription:
    """The description a verification record is read and written under."""
    if url.storage_etag is None:
        return description
    # The URL's storage, not the provider, says which bytes are stored: a record holds only while
    # they stay the same (a registry that swaps a blob's bytes cannot keep its storage's ETag).
    return replace(description, info=replace(description.info, etag=url.storage_etag))


def _prove(
    store: BackendStore,
    backend: Backend,
    description: ObjectDescription,
    url: DirectUrl,
    digest: str,
    deadline: Deadline,
    services: Services,
    *,
    ahead: bool,
    record_ahead: RecordReadAhead | None = None,
) -> VerificationMethod:
    """Step 4 of Resolution: the provider's proof, else a record, else hashing the whole object (a
    request within ``MAX_HASH_BYTES``, asking the verifier beyond it; the verifier within
    ``VERIFY_MAX_BYTES``). ``record_ahead``: the object's record, being read beside its description."""
    if description.provider_proof:
        return VerificationMethod.CHECKSUM
    description = _as_recorded(description, url)
    records = services.verification_records
    verdict = records.verdict(description, digest, record_ahead)
    if verdict is True:
        return VerificationMethod.RECORD
    if verdict is False:
        raise AttemptFailed(
            AttemptReason.DIGEST_MISMATCH, "a verification record: these bytes hash elsewhere"
        )
    size = description.info.size
    settings = services.settings
    if ahead and size > settings.verify_max_bytes:
        raise AttemptFailed(AttemptReason.UNVERIFIABLE, f"{size} bytes is over VERIFY_MAX_BYTES")
    if not ahead and _over_request_hash_limit(size, deadline, services):
        raise _ask_verifier(backend, description, digest, services)
    concurrency = settings.verify_read_concurrency if ahead else 1
    _hash_and_record(store, description, url, digest, deadline, records, concurrency)
    return VerificationMethod.STREAM_HASH


def _hash_and_record(
    store: BackendStore,
    description: ObjectDescription,
    url: DirectUrl,
    digest: str,
    deadline: Deadline,
    records: VerificationRecords,
    concurrency: int,
) -> None:
    """Hash the whole described object and record what it hashed to, whether or not the digest."""
    size = description.info.size
    try:
        if concurrency > 1 and size > RANGE_PART_BYTES and isinstance(store, RangeReader):
            # Several ranged GETs feed one SHA-256 in order; memory stays at a few parts.
            reader = store

            def read_range(start: int, length: int) -> bytes:
                return reader.read_range(digest, description, start, length)

            hash_chunks(
                ranged_chunks(read_range, size, RANGE_PART_BYTES, concurrency),
                digest_hex(digest),
                size,
                deadline,
            )
        else:
            opened = store.open(digest, description, via=url)
            try:
                hash_chunks(opened.chunks(), digest_hex(digest), size, deadline)
            finally:
                opened.close()
    except DigestMismatch as mismatch:
        records.remember(description, mismatch.actual_digest)  # a failed proof is remembered too
        raise
    records.remember(description, digest)


def _over_request_hash_limit(size: int, deadline: Deadline, services: Services) -> bool:
    """Whether a request may not hash ``size`` bytes itself: over ``MAX_HASH_BYTES``, or, when a
    verifier can be asked instead, over what the time left hashes at the measured rate."""
    settings = services.settings
    if size > settings.max_hash_bytes:
        return True
    return size > deadline.remaining() * settings.verify_bytes_per_second and services.verifier is not None


def _ask_verifier(
    backend: Backend, description: ObjectDescription, digest: str, services: Services
) -> AttemptFailed:
    """The failure of a request's attempt on an object too large to hash within it: pending when the
    verifier was asked to prove it (or is proving it, or will be asked once the org's other asks are
    done), unverifiable when there is none to ask, it cannot, or no record could keep its proof."""
    settings = services.settings
    size = description.info.size
    over = f"no provider proof and {size} bytes is over the hashing limit"
    verifier = services.verifier
    if verifier is None or size > settings.verify_max_bytes:
        return AttemptFailed(AttemptReason.UNVERIFIABLE, over)
    if not services.verification_records.can_record(description):
        # The verifier's proof would be lost with it (no ETag to tie a record to): never asked.
        return AttemptFailed(AttemptReason.UNVERIFIABLE, f"{over}, and no record can keep a proof of it")
    seconds = max(1, math.ceil(size / settings.verify_bytes_per_second))
    claim = verifier.ask(digest, backend, seconds)
    if claim is None:
        return AttemptFailed(AttemptReason.UNVERIFIABLE, f"{over}, and the verifier could not be asked")
    return PendingProof(f"{over}: {_PENDING_DETAIL[claim.state]}", claim.retry_after_seconds)


_PENDING_DETAIL = {
    AskState.CLAIMED: "the verifier was asked to prove it",
    AskState.IN_FLIGHT: "the verifier is proving it",
    AskState.ORG_BUSY: "the org's asks of the verifier are all in flight; it is asked when one is done",
    AskState.NOT_BEFORE: "the verifier could not prove it lately; it is asked again after Retry-After",
}


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
