"""Scheduled validation of every live backend's credentials, with a read-only probe.

Defaults and fallbacks are validated first (they are what fallback relies on); backends run
concurrently within the invocation's deadline; each result is written with a conditional update that
never overwrites a newer validation. A backend whose probe did not finish in time is left as it was.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from msgspec import Struct, field

from cas_download.data.tables import StatusGuard, TableError
from cas_download.domain import AttemptFailed, AttemptReason, Backend, ValidationStatus
from cas_download.logic.candidates import validation_order
from cas_download.logic.deadline import Deadline
from cas_download.logic.health import utc_now_iso
from cas_download.logic.services import Services

_log = logging.getLogger(__name__)

_EXPLANATIONS = {
    AttemptReason.CREDENTIALS_INVALID: "storage rejected the credentials",
    AttemptReason.ACCESS_DENIED: "the credentials may not read the bucket or repository",
    AttemptReason.NOT_FOUND: "the bucket or repository does not exist",
    AttemptReason.UNREACHABLE: "the storage endpoint is unreachable",
    AttemptReason.TIMEOUT: "the storage endpoint did not answer in time",
    AttemptReason.SECRET_UNAVAILABLE: "the secret is missing, unreadable or incomplete",
    AttemptReason.UNSUPPORTED_PROVIDER: "unsupported provider",
}


class Validation(Struct, frozen=True):
    backend: Backend
    status: ValidationStatus
    error: str | None


class ValidationReport(Struct):
    validated: list[Validation] = field(default_factory=list)
    invalidated: list[Validation] = field(default_factory=list)
    recovered: list[Validation] = field(default_factory=list)
    not_finished: list[Backend] = field(default_factory=list)
    write_conflicts: list[Backend] = field(default_factory=list)
    write_errors: list[Backend] = field(default_factory=list)


def probe(backend: Backend, services: Services) -> Validation:
    """Judge one backend's stored credentials against its storage."""
    try:
        services.storage.check_supported(backend)
        secret = services.credentials.fresh(backend.secret_name)
        reason = services.storage.open(backend, secret).probe(backend.key_prefix)
    except AttemptFailed as failure:
        reason = failure.reason
    if reason is None:
        return Validation(backend, ValidationStatus.OK, None)
    explanation = _EXPLANATIONS.get(reason, reason.value)
    return Validation(backend, ValidationStatus.INVALID, f"{reason.value}: {explanation}")


def validate_backends(services: Services, deadline: Deadline) -> ValidationReport:
    report = ValidationReport()
    backends = validation_order(services.tables.all_backends())
    pool = ThreadPoolExecutor(max_workers=services.settings.validator_concurrency)
    pending: dict[Future[Validation], Backend] = {
        pool.submit(probe, backend, services): backend for backend in backends
    }
    try:
        while pending and not deadline.expired():
            done, _ = wait(pending, timeout=deadline.remaining(), return_when=FIRST_COMPLETED)
            for future in done:
                backend = pending.pop(future)
                try:
                    validation = future.result()
                except Exception:  # a bug in one probe must not stop the others
                    _log.exception("probe failed for backend %s", backend.id)
                    report.write_errors.append(backend)
                    continue
                _record(validation, services, report)
    finally:
        report.not_finished = list(pending.values())
        # Probes still running end on their own socket timeouts; the invocation does not wait.
        pool.shutdown(wait=False, cancel_futures=True)
    return report


def _record(validation: Validation, services: Services, report: ValidationReport) -> None:
    backend = validation.backend
    report.validated.append(validation)
    try:
        written = services.tables.record_status(
            backend.id, validation.status, validation.error, utc_now_iso(), StatusGuard.NOT_NEWER
        )
    except TableError:
        report.write_errors.append(backend)
        return
    if not written:
        report.write_conflicts.append(backend)
    elif validation.status is ValidationStatus.INVALID and not backend.is_invalid:
        report.invalidated.append(validation)
    elif validation.status is ValidationStatus.OK and backend.is_invalid:
        report.recovered.append(validation)
