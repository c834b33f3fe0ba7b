"""``GET``/``HEAD /v1/artifacts/{digest}``: the Lambda handler (thin: parse, call, respond)."""

from __future__ import annotations

import logging
import time
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from cas_download.app import App
from cas_download.config import ConfigError, Settings
from cas_download.domain import Artifact
from cas_download.errors import CasError
from cas_download.handlers.requests import parse_request, request_method
from cas_download.handlers.responses import Response, error_response, success_response
from cas_download.logic.deadline import Deadline
from cas_download.logic.download import download
from cas_download.observability import RequestRecord

# Time kept back from Lambda's own timeout so that a response is always written.
_RESPONSE_RESERVE_SECONDS = 1.5

_app: App | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> Response:
    global _app  # noqa: PLW0603 - one App per container, built on the first request
    if _app is None:
        try:
            _app = App.create(Settings.from_env())
        except ConfigError as error:
            # No App, so no Powertools logger yet: the runtime's own logging still reaches CloudWatch.
            logging.getLogger(__name__).error("service misconfigured: %s", error)
            return error_response(CasError(f"service misconfigured: {error}"))
    # Powertools' own decorator: every line the request logs carries the API Gateway request id
    # (correlation_id) and the Lambda context (cold_start, function_request_id, ...).
    with_context = _app.telemetry.logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
    )(_handle_with_container_app)
    response: Response = with_context(event, context)
    return response


def _handle_with_container_app(event: dict[str, Any], context: Any) -> Response:
    assert _app is not None  # built by lambda_handler before it calls this
    return handle(event, context, _app)


def handle(event: dict[str, Any], context: Any, app: App) -> Response:
    started = time.monotonic()
    record = RequestRecord()
    try:
        record.method = request_method(event)
        request = parse_request(event, app.settings.org_claim)
        record.digest, record.orgs, record.mode = request.digest, request.orgs, request.mode.value
        outcome = download(request, app.services, Deadline(_budget(app.settings, context)))
        record.outcome = outcome
        if isinstance(outcome, Artifact):
            record.attempts = outcome.attempts
        response = success_response(outcome, request.mode, record.method)
    except CasError as error:
        record.error_code, record.attempts = error.code, error.attempts
        response = error_response(error, record.method)
    except Exception:
        app.telemetry.logger.exception("unexpected failure")
        record.error_code = "internal_error"
        response = error_response(CasError("internal error"), record.method)
    record.status = response["statusCode"]
    record.total_ms = (time.monotonic() - started) * 1000.0
    app.telemetry.record(record)
    return response


def _budget(settings: Settings, context: Any) -> float:
    budget = settings.request_deadline_seconds
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        budget = min(budget, remaining_ms() / 1000.0 - _RESPONSE_RESERVE_SECONDS)
    return budget
