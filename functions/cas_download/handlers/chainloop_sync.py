"""Scheduled Chainloop sync (EventBridge): copy Chainloop's backends and new mappings into the tables.

Deployed only when the stack is given ``ChainloopDatabaseSecretArn`` (template: ChainloopSyncFunction),
with psycopg in its own layer. A run that cannot reach the database or DynamoDB raises, so Lambda
counts an error and ChainloopSyncErrorsAlarm fires; a run cut short by its timeout saves its
watermark first and the next run goes on from there.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from msgspec import Struct

from cas_download.config import SyncSettings
from cas_download.data.chainloop_db import ChainloopDatabase, SourceUnavailable, dsn_from_secret
from cas_download.data.sync_target import SyncTarget, TargetError, sync_client_config
from cas_download.logic.chainloop_sync import SyncSummary, run_sync
from cas_download.observability import ScheduledHandler, Telemetry

# Stop taking new chunks when less than this is left of Lambda's timeout: time to save the watermark.
_RESERVE_SECONDS = 30.0


class SyncFailed(Exception):
    """The run could not finish; the message is one line without secrets, ``code`` says which part
    failed (``schema_unsupported``: Chainloop is older than the sync supports)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Container(Struct):
    settings: SyncSettings
    target: SyncTarget
    secrets: Any
    telemetry: Telemetry


# The container's run, its clients bound (built on the first invocation, reused by the next).
_handler: ScheduledHandler | None = None


def build(settings: SyncSettings, session: boto3.session.Session | None = None) -> Container:
    session = session or boto3.session.Session()
    config = sync_client_config()
    return Container(
        settings=settings,
        target=SyncTarget(
            session.client("dynamodb", region_name=settings.region, config=config),
            settings.backends_table,
            settings.mappings_table,
        ),
        secrets=session.client("secretsmanager", region_name=settings.region, config=config),
        # Telemetry quiets the SDKs' DEBUG logs: GetSecretValue's answer is the database password.
        telemetry=Telemetry(settings.service_name, settings.metrics_namespace),
    )


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _handler  # noqa: PLW0603 - one set of clients per container
    if _handler is None:
        _handler = instrumented_handler(build(SyncSettings.from_env()))
    return _handler(event, context)


def instrumented_handler(container: Container) -> ScheduledHandler:
    """:func:`run` bound to ``container``, wrapped by Powertools (the EventBridge event id as
    correlation id, the run's metrics flushed once, also when it fails)."""

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return run(container, context)

    return container.telemetry.instrument(handler, correlation_paths.EVENT_BRIDGE)


def run(container: Container, context: LambdaContext) -> dict[str, Any]:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)

    def should_stop() -> bool:
        return callable(remaining_ms) and remaining_ms() / 1000.0 < _RESERVE_SECONDS

    try:
        secret = container.secrets.get_secret_value(SecretId=container.settings.database_secret_arn)
        # RDS's managed master secret holds username and password only: the stack's parameters say
        # host, port, database and sslmode (each used only where the secret is silent)
        defaults = container.settings.database_defaults.as_conninfo()
        dsn = dsn_from_secret(secret.get("SecretString") or "", defaults)
        with ChainloopDatabase(dsn) as database:
            summary = run_sync(
                database,
                container.target,
                now=lambda: dt.datetime.now(dt.UTC),
                overlap=dt.timedelta(seconds=container.settings.overlap_seconds),
                should_stop=should_stop,
            )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        message = f"reading the database secret failed: {code}"
        raise _failed(container, message, "secret_unavailable") from None
    except (SourceUnavailable, TargetError) as error:
        raise _failed(container, str(error), error.code) from None
    _report(container, summary)
    return summary.as_dict()


def _failed(container: Container, message: str, code: str) -> SyncFailed:
    """Log the failure and count it (the run's one metric: flushed as Lambda records the error)."""
    container.telemetry.logger.error("chainloop sync failed", extra={"error": message, "code": code})
    container.telemetry.count("SyncFailed", 1)
    return SyncFailed(message, code)


def _report(container: Container, summary: SyncSummary) -> None:
    telemetry = container.telemetry
    telemetry.logger.info("chainloop sync done", extra=summary.as_dict())
    telemetry.count("BackendsCreated", summary.backends.created)
    telemetry.count("BackendsUpdated", summary.backends.updated)
    telemetry.count("MappingsCreated", summary.mappings.created)
    telemetry.count("MappingsBackendMissing", summary.mappings.backend_missing)
    skipped = sum(summary.backends.skipped.values()) + sum(summary.mappings.skipped.values())
    telemetry.count("SyncRowsSkipped", skipped)
    telemetry.count("SyncIncomplete", 0 if summary.complete else 1)
