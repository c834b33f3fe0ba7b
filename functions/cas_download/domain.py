"""The service's vocabulary: plain values shared by handlers, logic and data access, and the one
failure type an attempt through a backend ends with."""

from __future__ import annotations

from collections import abc
from datetime import datetime
from enum import StrEnum
from typing import Any

from msgspec import Struct, field


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
    # No proof yet and too large to hash within the request: the verifier was asked to prove it.
    VERIFICATION_PENDING = "verification_pending"
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


class DownloadRequest(Struct, frozen=True):
    digest: str  # canonical sha256:<hex>
    orgs: tuple[str, ...]
    mode: Mode
    if_none_match: str | None = None


class NotModified(Struct, frozen=True):
    """The caller's ``If-None-Match`` names the artifact: 304, no storage call."""

    digest: str


def etag_for(digest: str) -> str:
    return f'"{digest}"'


class Backend(Struct, frozen=True):
    """A Backends row (SPEC.md "Backends table"): the one backend type of the service, the validator,
    the Chainloop sync and cas-admin, read and written with :meth:`from_row` and :meth:`to_row`.

    What else looks like a backend is another thing: ``BackendRecord`` (data/tables.py) is the table's
    PynamoDB schema, read into this type; ``ChainloopBackend`` (data/chainloop_db.py) is Chainloop's
    ``cas_backends`` row, with PostgreSQL's types, that the sync turns into this type; the tests'
    ``BackendRef`` is a handle on what a test created (its IAM user and current keys), not a row.
    """

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
    # None: never validated, which the spec reads as OK (see ``status``)
    validation_status: ValidationStatus | None = None
    validation_error: str | None = None
    validated_at: str | None = None
    created_at: str = ""
    deleted_at: str | None = None
    # Chainloop suspended the org (the sync sets and clears it): never used while true
    org_suspended: bool = False

    @property
    def status(self) -> ValidationStatus:
        return self.validation_status or ValidationStatus.OK

    @property
    def is_invalid(self) -> bool:
        return self.validation_status is ValidationStatus.INVALID

    @property
    def deleted(self) -> bool:
        return bool(self.deleted_at)

    @property
    def usable(self) -> bool:
        """Neither deleted nor of a suspended org: a backend that may ever be tried."""
        return not self.deleted and not self.org_suspended

    @classmethod
    def from_row(cls, row: abc.Mapping[str, Any]) -> Backend:
        """A row's plain values (a DynamoDB item deserialized, a PynamoDB record's attributes). Missing
        optional attributes read as the spec reads them: no flag, no status (OK), not deleted."""
        return cls(
            id=str(row.get("id") or ""),
            org_id=str(row.get("org_id") or ""),
            name=str(row.get("name") or row.get("id") or ""),
            provider=str(row.get("provider") or ""),
            location=str(row.get("location") or ""),
            secret_name=str(row.get("secret_name") or ""),
            region=row.get("region") or None,
            key_prefix=row.get("key_prefix") or "",
            is_default=bool(row.get("is_default")),
            is_fallback=bool(row.get("is_fallback")),
            validation_status=_validation_status(row.get("validation_status")),
            validation_error=row.get("validation_error") or None,
            validated_at=row.get("validated_at") or None,
            created_at=str(row.get("created_at") or ""),
            deleted_at=row.get("deleted_at") or None,
            org_suspended=bool(row.get("org_suspended")),
        )

    def to_row(self) -> dict[str, Any]:
        """The row's plain values; None means the attribute is absent. Only true flags are written (a
        missing flag means false, as the spec reads it), and an empty prefix or region not at all."""
        return {
            "id": self.id,
            "org_id": self.org_id,
            "name": self.name,
            "provider": self.provider,
            "location": self.location,
            "secret_name": self.secret_name,
            "region": self.region or None,
            "key_prefix": self.key_prefix or None,
            "is_default": True if self.is_default else None,
            "is_fallback": True if self.is_fallback else None,
            "validation_status": self.validation_status.value if self.validation_status else None,
            "validation_error": self.validation_error,
            "validated_at": self.validated_at,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "org_suspended": True if self.org_suspended else None,
        }


def _validation_status(value: object) -> ValidationStatus | None:
    if value is None or value == "":
        return None
    # Only "Invalid" defers a backend; any other recorded value reads as OK, as the spec says.
    return ValidationStatus.INVALID if value == ValidationStatus.INVALID else ValidationStatus.OK


class Mapping(Struct, frozen=True):
    digest: str
    org_id: str
    backend_id: str
    created_at: str = ""


class Attempt(Struct, frozen=True):
    backend: Backend
    reason: AttemptReason
    elapsed_ms: float = 0.0


class ObjectInfo(Struct, frozen=True):
    """What storage told us about one object, before or after proof."""

    size: int
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    filename: str | None = None


class Artifact(Struct):
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


class VerificationRecord(Struct, frozen=True):
    """Proof written after the service hashed a whole object: valid while ETag and size match."""

    object_id: str  # one stored object as its provider names it (ObjectDescription.record_key)
    digest: str
    etag: str
    size: int
    version_id: str | None
    verified_at: str
