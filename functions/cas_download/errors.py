"""Domain errors: each class carries the spec's error code and its HTTP status, so the response
layer (:mod:`cas_download.handlers.responses`) maps any of them without a table of its own."""

from __future__ import annotations

from collections.abc import Sequence

from cas_download.domain import Attempt


class CasError(Exception):
    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = list(attempts)


class InvalidRequest(CasError):
    code = "invalid_request"
    http_status = 400


class InvalidDigest(CasError):
    code = "invalid_digest"
    http_status = 400


class InvalidMode(CasError):
    code = "invalid_mode"
    http_status = 400


class Unauthenticated(CasError):
    code = "unauthenticated"
    http_status = 401


class OrgSuspended(CasError):
    code = "org_suspended"
    http_status = 403


class NotFound(CasError):
    code = "not_found"
    http_status = 404


class ContentMissing(CasError):
    code = "content_missing"
    http_status = 404


class TooLargeForBody(CasError):
    code = "too_large_for_body"
    http_status = 413


class BackendsUnavailable(CasError):
    code = "backends_unavailable"
    http_status = 502


class IntegrityFailure(CasError):
    code = "integrity_failure"
    http_status = 502


class DeadlineExceeded(CasError):
    code = "deadline_exceeded"
    http_status = 504


class ServiceUnavailable(CasError):
    code = "service_unavailable"
    http_status = 503


class VerificationPending(CasError):
    """No proof yet and too large to hash within the request: the verifier was asked to prove it.
    ``retry_after_seconds``: when a retry may find the proof (from the size and the measured rate)."""

    code = "verification_pending"
    http_status = 503

    def __init__(self, message: str, attempts: Sequence[Attempt] = (), retry_after_seconds: int = 1) -> None:
        super().__init__(message, attempts)
        self.retry_after_seconds = max(1, retry_after_seconds)


class MethodNotAllowed(CasError):
    code = "method_not_allowed"
    http_status = 405
