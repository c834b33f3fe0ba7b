"""``GET``/``HEAD /v1/artifacts/{digest}`` and ``/download/{digest}`` (Chainloop links): the Lambda
handler (thin: parse, call, respond)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec.structs import replace

from cas_download.app import App
from cas_download.config import ConfigError, Settings, snapshot_initialization
from cas_download.domain import Artifact, Mode
from cas_download.errors import CasError, TooLargeForBody
from cas_download.handlers.cors import allowed_origin, preflight_response, with_cors
from cas_download.handlers.requests import (
    LINK_ROUTE,
    PREFLIGHT_METHOD,
    parse_link_request,
    parse_request,
    request_method,
    request_origin,
    route_of,
)
from cas_download.handlers.responses import Response, error_response, success_response
from cas_download.logic.deadline import Deadline
from cas_download.logic.download import download
from cas_download.observability import RequestRecord

# Time kept back from Lambda's own timeout so that a response is always written.
_RESPONSE_RESERVE_SECONDS = 1.5

LambdaHandler = Callable[[dict[str, Any], LambdaContext], Response]

# One App per container, built on the first request, and handle() bound to it and instrumented.
_app: App | None = None
_handler: LambdaHandler | None = None


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Response:
    global _app, _handler  # noqa: PLW0603 - the container's one App, built on the first request
    if _app is None or _handler is None:
        try:
            _app = App.create(Settings.from_env())
        except ConfigError as error:
            # No App, so no Powertools logger yet: the runtime's own logging still reaches CloudWatch.
            logging.getLogger(__name__).error("service misconfigured: %s", error)
            return error_response(CasError(f"service misconfigured: {error}"))
        _handler = instrumented_handler(_app)
    return _handler(event, context)


def instrumented_handler(app: App) -> LambdaHandler:
    """:func:`handle` bound to ``app`` and wrapped by Powertools as a Lambda handler (correlation id
    and cold start on every log line, metrics flushed once per invocation): what Lambda runs, and what
    the local server runs."""

    def handler(event: dict[str, Any], context: LambdaContext) -> Response:
        return handle(event, context, app)

    return app.telemetry.instrument(handler)


def handle(event: object, context: LambdaContext, app: App) -> Response:
    """Parse, download, answer. The request's log line and metrics are recorded; the metrics are
    flushed by :func:`instrumented_handler`'s wrapper."""
    started = time.monotonic()
    record = RequestRecord(function_version=str(getattr(context, "function_version", "$LATEST")))
    try:
        record.route = route_of(event)
        record.method = request_method(event)
        if record.route == LINK_ROUTE and record.method == PREFLIGHT_METHOD:
            record.digest = parse_link_request(event).digest  # a malformed link is refused here too
            response = preflight_response(request_origin(event), app.settings.chainloop_allowed_origins)
        elif record.route == LINK_ROUTE:
            response = _handle_link(event, context, app, record)
        else:
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
    if record.route == LINK_ROUTE and record.method != PREFLIGHT_METHOD:
        response = with_cors(response, request_origin(event), app.settings.chainloop_allowed_origins)
    record.status = response["statusCode"]
    record.total_ms = (time.monotonic() - started) * 1000.0
    app.telemetry.record(record)
    return response


def _handle_link(event: object, context: LambdaContext, app: App, record: RequestRecord) -> Response:
    """A Chainloop download link. Its module, and with it ``cryptography``, is imported on the first such request."""
    from cas_download.handlers.links import serve_link  # noqa: PLC0415 - keeps /v1's cold start

    link = parse_link_request(event)
    record.digest, record.mode = link.digest, link.mode.value
    deadline = Deadline(_budget(app.settings, context))
    if _body_for_browser(event, link.mode, record.method, app.settings):
        # Chainloop's UI reads the bytes from its own origin: the verified body within the limit, so
        # that no storage needs a CORS rule; a larger object gets the usual redirect.
        try:
            outcome = serve_link(replace(link, mode=Mode.BODY), app.services, deadline, record)
        except TooLargeForBody:
            outcome = serve_link(link, app.services, deadline, record)
    else:
        outcome = serve_link(link, app.services, deadline, record)
    record.outcome = outcome
    if isinstance(outcome, Artifact):
        record.attempts = outcome.attempts
    # A provider with no credential-free URL answers a link with the verified body (spec).
    mode = Mode.BODY if isinstance(outcome, Artifact) and outcome.body_base64 is not None else link.mode
    return success_response(outcome, mode, record.method, attachment=True)


def _body_for_browser(event: object, mode: Mode, method: str, settings: Settings) -> bool:
    """A GET for a redirect from an origin allowed to fetch links (spec: Browsers)."""
    if method != "GET" or mode is not Mode.REDIRECT:
        return False
    return allowed_origin(request_origin(event), settings.chainloop_allowed_origins) is not None


def _budget(settings: Settings, context: LambdaContext) -> float:
    budget = settings.request_deadline_seconds
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        budget = min(budget, remaining_ms() / 1000.0 - _RESPONSE_RESERVE_SECONDS)
    return budget


def _initialize_for_snapshot() -> None:
    """SnapStart: build the container's App while Lambda initializes the version for its snapshot, so
    restored containers start with it (cas_download.snapstart says what it holds and what a restore
    drops). Without SnapStart the first request builds it, as before."""
    global _app, _handler  # noqa: PLW0603 - the container's one App
    if not snapshot_initialization():
        return
    try:
        settings = Settings.from_env()
    except ConfigError:
        return  # the first request answers "service misconfigured"
    from cas_download.snapstart import prepare_snapshot  # noqa: PLC0415 - only when Lambda snapshots

    _app = App.create(settings)
    _handler = instrumented_handler(_app)
    prepare_snapshot(_app)


_initialize_for_snapshot()
