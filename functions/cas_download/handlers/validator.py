"""Scheduled backend validation (EventBridge): probe every live backend, record its status."""

from __future__ import annotations

from typing import Any

from cas_download.app import App
from cas_download.config import Settings
from cas_download.domain import ValidationStatus
from cas_download.logic.deadline import Deadline
from cas_download.logic.validation import Validation, ValidationReport, validate_backends

# Time kept back from Lambda's own timeout to write the results and the log line.
_RESERVE_SECONDS = 5.0
_DEFAULT_BUDGET_SECONDS = 60.0

_app: App | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _app  # noqa: PLW0603 - one App per container, built on the first invocation
    if _app is None:
        _app = App.create(Settings.from_env())
    return run(_app, context)


def run(app: App, context: Any) -> dict[str, Any]:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    budget = remaining_ms() / 1000.0 - _RESERVE_SECONDS if callable(remaining_ms) else _DEFAULT_BUDGET_SECONDS
    report = validate_backends(app.services, Deadline(budget))
    summary = _summary(report)
    telemetry = app.telemetry
    for validation in report.invalidated:
        telemetry.logger.warning("backend invalidated", extra=_describe(validation))
    for validation in report.recovered:
        telemetry.logger.info("backend recovered", extra=_describe(validation))
    telemetry.logger.info("backends validated", extra=summary)
    telemetry.count("BackendsValidated", len(report.validated))
    telemetry.count("BackendInvalidated", len(report.invalidated))
    telemetry.count("BackendRecovered", len(report.recovered))
    telemetry.count("ValidationErrors", len(report.write_errors) + len(report.not_finished))
    telemetry.flush()
    return summary


def _describe(validation: Validation) -> dict[str, Any]:
    backend = validation.backend
    return {
        "backend_id": backend.id,
        "backend_name": backend.name,
        "org_id": backend.org_id,
        "error": validation.error,
    }


def _summary(report: ValidationReport) -> dict[str, Any]:
    return {
        "validated": len(report.validated),
        "invalid": sorted(v.backend.id for v in report.validated if v.status is ValidationStatus.INVALID),
        "invalidated": sorted(v.backend.id for v in report.invalidated),
        "recovered": sorted(v.backend.id for v in report.recovered),
        "not_finished": sorted(b.id for b in report.not_finished),
        "write_conflicts": sorted(b.id for b in report.write_conflicts),
        "write_errors": sorted(b.id for b in report.write_errors),
    }
