"""The verifier: the Mappings table's stream (``NEW_IMAGE``), or a request's asynchronous ask, in;
each new mapping's object proven ahead of requests (:mod:`cas_download.logic.verifier`).

Powertools' batch utility reports per-record failures (``ReportBatchItemFailures``): a mapping that
may yet be proven is retried by the stream and, after its retries, sent to the on-failure
destination; a record that is no mapping is skipped with a log line, never retried.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from cas_download.app import App
from cas_download.config import Settings
from cas_download.data.verifier_invocations import ON_DEMAND_SOURCE
from cas_download.domain import AttemptReason
from cas_download.logic.deadline import Deadline
from cas_download.logic.verifier import (
    NotAMapping,
    Outcome,
    RetryLater,
    Verification,
    mapping_from_image,
    settle_ask,
    verify_mapping,
)

# Time kept back from Lambda's own timeout to report the batch and flush the metrics.
_RESERVE_SECONDS = 10.0
_DEFAULT_BUDGET_SECONDS = 60.0
# Every stream record carries an eventID: the batch's first one ties its log lines together.
_CORRELATION_PATH = "Records[0].eventID"

_app: App | None = None
_handler: Any = None


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    global _app, _handler  # noqa: PLW0603 - the container's one App, built on the first invocation
    if _app is None or _handler is None:
        _app = App.create(Settings.from_env())
        _handler = instrumented_handler(_app)
    response: PartialItemFailureResponse = _handler(event, context)
    return response


def instrumented_handler(app: App) -> Any:
    """:func:`run` bound to ``app``, wrapped by Powertools (metrics flushed once per batch)."""

    def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return run(app, event, context)

    return app.telemetry.instrument(handler, _CORRELATION_PATH)


def run(app: App, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    budget = remaining_ms() / 1000.0 - _RESERVE_SECONDS if callable(remaining_ms) else _DEFAULT_BUDGET_SECONDS
    deadline = Deadline(budget)  # shared by the batch: a record it leaves unproven is retried

    def record_handler(record: DynamoDBRecord) -> None:
        verify_record(app, record, deadline)

    if not isinstance(event.get("Records"), list):
        app.telemetry.logger.warning("verifier event skipped: no Records list")
        app.telemetry.count("VerifierRecordsSkipped", 1)
        return {"batchItemFailures": []}
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event, record_handler, processor, context)


def verify_record(app: App, record: DynamoDBRecord, deadline: Deadline) -> None:
    """Prove the record's mapping; raise (a batch item failure) only when a retry may prove it."""
    telemetry = app.telemetry
    started = time.monotonic()
    source = {"event_id": record.event_id, "event_source": record.event_source}
    # A request's ask (not the stream): its slot is freed when done, and it is never retried by
    # Lambda; one that may pass is remembered instead, so no request asks it again within the hour.
    asked = record.event_source == ON_DEMAND_SOURCE
    try:
        image = record.dynamodb.new_image if record.dynamodb else {}
        mapping = mapping_from_image(image or {})
        verification = verify_mapping(mapping, app.services, deadline)
    except NotAMapping as skipped:
        telemetry.logger.warning("stream record skipped", extra={**source, "why": str(skipped)})
        telemetry.count("VerifierRecordsSkipped", 1)
        return
    except RetryLater as retry:
        if asked:
            settled = settle_ask(app.services.asks, mapping, unproven=retry)
            telemetry.logger.warning(
                "asked mapping not proven: not asked again within the hour",
                extra={**source, **_attempts(retry.attempts), "settled": settled, "ms": _ms(started)},
            )
            telemetry.count("VerifierAsksDeferred", 1)
            return
        telemetry.logger.warning(
            "mapping not proven yet: the stream retries it",
            extra={**source, **_attempts(retry.attempts), "ms": _ms(started)},
        )
        telemetry.count("VerificationRetries", 1)
        raise
    if asked:
        settle_ask(app.services.asks, mapping)
    _report(app, verification, source, started)


def _report(app: App, verification: Verification, source: dict[str, Any], started: float) -> None:
    telemetry = app.telemetry
    mapping = verification.mapping
    fields = {
        **source,
        "digest": mapping.digest,
        "org_id": mapping.org_id,
        "mapped_backend_id": mapping.backend_id,
        "outcome": verification.outcome.value,
        "proven_by": {"id": verification.backend.id, "name": verification.backend.name}
        if verification.backend
        else None,
        "verification": verification.method.value if verification.method else None,
        **_attempts(verification.attempts),
        "ms": _ms(started),
    }
    mismatches = sum(1 for a in verification.attempts if a.reason is AttemptReason.DIGEST_MISMATCH)
    if mismatches:
        # As in a request: bytes stored under a digest that hash to another are a security incident.
        telemetry.logger.error("integrity failure: stored bytes do not hash to the digest", extra=fields)
        telemetry.count("IntegrityFailures", mismatches)
    if verification.outcome is Outcome.FAILED:
        telemetry.logger.warning("mapping not provable", extra=fields)
    else:
        telemetry.logger.info("mapping verified", extra=fields)
    metric = {
        Outcome.PROVEN: "VerificationsProven",
        Outcome.ALREADY_PROVEN: "VerificationsAlreadyProven",
        Outcome.FAILED: "VerificationsFailed",
    }[verification.outcome]
    telemetry.count(metric, 1)


def _attempts(attempts: list[Any]) -> dict[str, Any]:
    return {
        "attempts": [
            {"backend_id": a.backend.id, "backend_name": a.backend.name, "reason": a.reason.value}
            for a in attempts
        ]
    }


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 1)
