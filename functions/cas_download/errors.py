"""Domain errors. Each carries the spec's error code; the HTTP status is decided in one place
(:mod:`cas_download.handlers.responses`)."""

from __future__ import annotations

from collections.abc import Sequence

from cas_download.domain import Attempt


class CasError(Exception):
    code = "internal_error"

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = list(attempts)


class InvalidRequest(CasError):
    code = "invalid_request"


class InvalidDigest(CasError):
    code = "invalid_digest"


class InvalidMode(CasError):
    code = "invalid_mode"


class Unauthenticated(CasError):
    code = "unauthenticated"


class NotFound(CasError):
    code = "not_found"


class ContentMissing(CasError):
    code = "content_missing"


class TooLargeForBody(CasError):
    code = "too_large_for_body"


class BackendsUnavailable(CasError):
    code = "backends_unavailable"


class IntegrityFailure(CasError):
    code = "integrity_failure"


class DeadlineExceeded(CasError):
    code = "deadline_exceeded"


class ServiceUnavailable(CasError):
    code = "service_unavailable"


class MethodNotAllowed(CasError):
    code = "method_not_allowed"
