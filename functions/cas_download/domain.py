"""Plain domain values shared by the data access layer and the download logic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AttemptReason(StrEnum):
    """Why a candidate backend did not serve (the spec's attempt reasons)."""

    CREDENTIALS_INVALID = "credentials_invalid"
    ACCESS_DENIED = "access_denied"
    NOT_FOUND = "not_found"
    DIGEST_MISMATCH = "digest_mismatch"
    SECRET_UNAVAILABLE = "secret_unavailable"  # noqa: S105 - a reason name, not a secret
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    UNVERIFIABLE = "unverifiable"
    UNSUPPORTED_PROVIDER = "unsupported_provider"
    SKIPPED_INVALID = "skipped_invalid"


class Mode(StrEnum):
    REDIRECT = "redirect"
    URL = "url"
    BODY = "body"


class VerificationMethod(StrEnum):
    CHECKSUM = "checksum_sha256"
    STREAM_HASH = "stream_hash"
    RECORD = "verification_record"


SUPPORTED_PROVIDER = "AWS-S3"
STATUS_OK = "OK"
STATUS_INVALID = "Invalid"


@dataclass(frozen=True, slots=True)
class Backend:
    id: str
    org_id: str
    name: str
    provider: str
    location: str
    secret_name: str
    region: str | None = None
    key_prefix: str = ""
    is_default: bool = False
    is_fallback: bool = False
    validation_status: str = "OK"
    created_at: str = ""
    deleted: bool = False

    @property
    def is_invalid(self) -> bool:
        return self.validation_status == STATUS_INVALID


@dataclass(frozen=True, slots=True)
class Mapping:
    digest: str
    org_id: str
    backend_id: str
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # never let a key reach a log through repr()
        return "Credentials(<redacted>)"


@dataclass(frozen=True, slots=True)
class Attempt:
    backend: Backend
    reason: AttemptReason
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What storage told us about one object, before or after proof."""

    size: int
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class Artifact:
    """A digest proven to be served by ``backend``: what the response is built from."""

    digest: str
    backend: Backend
    fallback: bool
    info: ObjectInfo
    verification: VerificationMethod | None
    url: str | None = None
    expires_at: datetime | None = None
    # Body mode: the verified bytes, already base64 as the Lambda response carries them (see
    # logic.verification.hash_and_encode: the raw bytes are never held whole).
    body_base64: str | None = None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VerificationRecord:
    """Proof written after the service hashed a whole object: valid while ETag and size match."""

    object_id: str  # storage endpoint, bucket, key and version: one object version
    digest: str
    etag: str
    size: int
    version_id: str | None
    verified_at: str
