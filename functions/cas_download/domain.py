"""The service's vocabulary: plain values shared by handlers, logic and data access, and the one
failure type an attempt through a backend ends with."""

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
    NO_DIRECT_URL = "no_direct_url"
    SKIPPED_INVALID = "skipped_invalid"


class AttemptFailed(Exception):
    """One backend could not serve: the spec's reason, and a log-safe detail (never a secret)."""

    def __init__(self, reason: AttemptReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ValidationStatus(StrEnum):
    """A backend's recorded health (Backends table ``validation_status``; missing means OK)."""

    OK = "OK"
    INVALID = "Invalid"


class Provider(StrEnum):
    """The providers the service serves; any other value is skipped as ``unsupported_provider``."""

    S3 = "AWS-S3"
    OCI = "OCI"
    AZURE_BLOB = "AzureBlob"


class Mode(StrEnum):
    REDIRECT = "redirect"
    URL = "url"
    BODY = "body"


class VerificationMethod(StrEnum):
    CHECKSUM = "checksum_sha256"
    STREAM_HASH = "stream_hash"
    RECORD = "verification_record"


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    digest: str  # canonical sha256:<hex>
    orgs: tuple[str, ...]
    mode: Mode
    if_none_match: str | None = None


@dataclass(frozen=True, slots=True)
class NotModified:
    """The caller's ``If-None-Match`` names the artifact: 304, no storage call."""

    digest: str


def etag_for(digest: str) -> str:
    return f'"{digest}"'


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
    validation_status: ValidationStatus = ValidationStatus.OK
    created_at: str = ""
    deleted: bool = False

    @property
    def is_invalid(self) -> bool:
        return self.validation_status == ValidationStatus.INVALID


@dataclass(frozen=True, slots=True)
class Mapping:
    digest: str
    org_id: str
    backend_id: str
    created_at: str = ""


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

    object_id: str  # one stored object as its provider names it (ObjectDescription.record_key)
    digest: str
    etag: str
    size: int
    version_id: str | None
    verified_at: str
