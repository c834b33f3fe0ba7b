"""One structured log line and the EMF metrics for each request (Powertools Logger and Metrics).

Only names, ids, reasons and timings are logged: never a URL, a secret or an access key id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import Struct, field

from cas_download.domain import Artifact, Attempt, AttemptReason, NotModified
from cas_download.errors import CasError, VerificationPending


class RequestRecord(Struct):
    method: str = ""
    # The API route: "/v1/artifacts/{digest}" or "/download/{digest}" (a Chainloop link, whose token
    # is never recorded).
    route: str = "/v1/artifacts/{digest}"
    mode: str | None = None
    digest: str | None = None
    orgs: tuple[str, ...] = ()
    status: int = 0
    error_code: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    outcome: Artifact | NotModified | None = None
    total_ms: float = 0.0
    # The Lambda version that answered ($LATEST outside an alias): a deploy's rollback alarm reads the
    # new version's internal errors alone.
    function_version: str = "$LATEST"

    def log_fields(self) -> dict[str, Any]:
        served = self.outcome if isinstance(self.outcome, Artifact) else None
        return {
            "method": self.method,
            "route": self.route,
            "mode": self.mode,
            "digest": self.digest,
            "caller_orgs": list(self.orgs),
            "status": self.status,
            "error_code": self.error_code,
            "attempts": [
                {
                    "backend_id": a.backend.id,
                    "backend_name": a.backend.name,
                    "provider": a.backend.provider,
                    "reason": a.reason.value,
                    "ms": round(a.elapsed_ms, 1),
                }
                for a in self.attempts
            ],
            "served_by": {"id": served.backend.id, "name": served.backend.name} if served else None,
            "fallback": served.fallback if served else None,
            "verification": served.verification.value if served and served.verification else None,
            "not_modified": isinstance(self.outcome, NotModified),
            "total_ms": round(self.total_ms, 1),
        }


# The SDKs log request headers and response bodies (a GetSecretValue body is the secret itself) at
# DEBUG. Whatever level the function runs at, their loggers stop at WARNING.
QUIET_LIBRARY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "pynamodb", "psycopg")


def quiet_library_loggers() -> None:
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


Handler = TypeVar("Handler", bound=Callable[..., Any])
# A scheduled function's handler (the validator, the Chainloop sync): an EventBridge event in, a summary out.
ScheduledHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class Telemetry:
    def __init__(self, service: str, namespace: str) -> None:
        quiet_library_loggers()
        self.logger = Logger(service=service)
        self._namespace = namespace
        self._metrics = Metrics(namespace=namespace, service=service)

    def instrument(
        self, handler: Handler, correlation_id_path: str = correlation_paths.API_GATEWAY_HTTP
    ) -> Handler:
        """``handler`` as Powertools wraps a Lambda handler: every line it logs carries the event's id
        (``correlation_id``: the API Gateway request id, or the EventBridge event id) and the Lambda
        context (``cold_start``, ``function_request_id``, ...); the metrics it adds are flushed once when
        it returns or raises, with a ``ColdStart`` metric on a container's first invocation."""
        with_metrics = self._metrics.log_metrics(capture_cold_start_metric=True)(handler)
        instrumented: Handler = self.logger.inject_lambda_context(
            correlation_id_path=correlation_id_path, clear_state=True
        )(with_metrics)
        return instrumented

    def record(self, record: RequestRecord) -> None:
        """Log the request's summary line and add its metrics (flushed by :meth:`instrument`'s wrapper)."""
        self.logger.info("download request", extra=record.log_fields())
        self._add_metrics(record)

    def _add_metrics(self, record: RequestRecord) -> None:
        failures = Counter(
            a.reason.value for a in record.attempts if a.reason is not AttemptReason.SKIPPED_INVALID
        )
        for reason, count in failures.items():
            self._dimensioned("AttemptFailures", count, Reason=reason)
        if failures.get(AttemptReason.DIGEST_MISMATCH.value):
            self._metrics.add_metric("IntegrityFailures", MetricUnit.Count, failures["digest_mismatch"])
        if isinstance(record.outcome, Artifact):
            self._dimensioned("Downloads", 1, Mode=record.mode or "")
            if record.outcome.fallback:
                self._metrics.add_metric("Fallbacks", MetricUnit.Count, 1)
        elif isinstance(record.outcome, NotModified):
            self._metrics.add_metric("NotModified", MetricUnit.Count, 1)
        # 503 verification_pending is the service working as designed (the verifier was asked): no
        # server error, so neither the 5xx rate alarm nor a canary deployment's rollback fires on it.
        if record.status >= 500 and record.error_code != VerificationPending.code:
            self._metrics.add_metric("ServerErrors", MetricUnit.Count, 1)
        if record.error_code == VerificationPending.code:
            # ApiServerErrorRateAlarm subtracts these from API Gateway's 5xx, which counts them
            self._metrics.add_metric("VerificationPending", MetricUnit.Count, 1)
        if record.error_code == CasError.code:
            # 500 internal_error: the code failed, not a backend or a tenant's data. Per version, so that
            # a deploy rolls back on what its new version does wrong, and only that.
            self._dimensioned("InternalErrors", 1, FunctionVersion=record.function_version)
        self._metrics.add_metric("Requests", MetricUnit.Count, 1)
        # The undimensioned metrics above stay what the alarms read; this one splits them by route.
        self._dimensioned("RouteRequests", 1, Route=record.route)

    def count(self, name: str, value: int) -> None:
        """Add a count to this invocation's metrics (flushed by :meth:`instrument`'s wrapper)."""
        self._metrics.add_metric(name, MetricUnit.Count, value)

    def _dimensioned(self, name: str, value: int, **dimensions: str) -> None:
        with single_metric(
            name=name, unit=MetricUnit.Count, value=value, namespace=self._namespace
        ) as metric:
            for key, dimension in dimensions.items():
                metric.add_dimension(name=key, value=dimension)
