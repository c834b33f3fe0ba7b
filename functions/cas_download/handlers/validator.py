"""Scheduled backend validation (EventBridge): probe every live backend, record its status."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from cas_download.app import App
from cas_download.config import Settings
from cas_download.domain import ValidationStatus
from cas_download.logic.deadline import Deadline
from cas_download.logic.validation import Validation, ValidationReport, validate_backends
from cas_download.observability import ScheduledHandler

# Time kept back from Lambda's own timeout to write the results and the log line.
_RESERVE_SECONDS = 5.0
_DEFAULT_BUDGET_SECONDS = 60.0

# One App per container, built on the first invocation, and run() bound to it and instrumented.
_app: App | None = None
_handler: ScheduledHandler | None = None


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _app, _handler  # noqa: PLW0603 - the container's one App, built on the first invocation
    if _app is None or _handler is None:
        _app = App.create(Settings.from_env())
        _handler = instrumented_handler(_app)
    return _handler(event, context)


def instrumented_handler(app: App) -> ScheduledHandler:
    """:func:`run` bound to ``app``, wrapped by Powertools (the EventBridge event id as correlation id,
    the run's metrics flushed once)."""

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return run(app, context)

    return app.telemetry.instrument(handler, correlation_paths.EVENT_BRIDGE)


def run(app: App, context: LambdaContext) -> dict[str, Any]:
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
