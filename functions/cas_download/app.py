"""The per-container object graph: settings, AWS clients, caches, telemetry. Built once, reused."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from cas_download.config import Settings
from cas_download.data.catalog import Catalog
from cas_download.data.secrets import CredentialStore
from cas_download.data.storage.providers import StorageProviders
from cas_download.data.tables import build_tables
from cas_download.logic.health import BackendHealth
from cas_download.logic.services import Services
from cas_download.logic.verification import VerificationRecords
from cas_download.observability import Telemetry


@dataclass(frozen=True, slots=True)
class App:
    settings: Settings
    services: Services
    telemetry: Telemetry
    session: boto3.session.Session

    @classmethod
    def create(cls, settings: Settings, session: boto3.session.Session | None = None) -> App:
        """``session`` lets tests observe every Secrets Manager and S3 call the app makes."""
        session = session or boto3.session.Session()
        secrets_client = session.client(
            "secretsmanager",
            region_name=settings.region,
            # No SDK retries and tight timeouts: secrets are cached, a failed read only makes that
            # backend secret_unavailable (fallback continues), and a read started near the deadline
            # must not outlive the invocation.
            config=Config(
                connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"}
            ),
        )
        # boto3 offers no public accessor for its botocore session; sharing it saves each PynamoDB
        # model a new botocore session at cold start (data/tables.py: _share_session).
        tables = build_tables(settings, botocore_session=session._session)
        services = Services(
            settings=settings,
            catalog=Catalog(tables, settings.backend_cache_ttl_seconds),
            credentials=CredentialStore(
                SecretsProvider(boto3_client=secrets_client), settings.secret_cache_ttl_seconds
            ),
            storage=StorageProviders(
                session,
                settings.s3_connect_timeout_seconds,
                settings.s3_read_timeout_seconds,
                settings.azure_authority_host,
            ),
            tables=tables,
            health=BackendHealth(tables, settings.failure_memory_seconds),
            verification_records=VerificationRecords(settings, tables),
        )
        return cls(settings, services, Telemetry(settings.service_name, settings.metrics_namespace), session)
