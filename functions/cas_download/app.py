"""The per-container object graph: settings, AWS clients, caches, telemetry. Built once, reused."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore import UNSIGNED
from botocore.config import Config
from msgspec import Struct

from cas_download.config import Settings
from cas_download.data.catalog import Catalog
from cas_download.data.secrets import CredentialStore
from cas_download.data.storage.providers import StorageProviders
from cas_download.data.tables import build_tables
from cas_download.data.verifier_asks import AskLedger
from cas_download.data.verifier_invocations import VerifierInvocations
from cas_download.logic.health import BackendHealth
from cas_download.logic.look_ahead import LookAhead
from cas_download.logic.services import Services
from cas_download.logic.verification import VerificationRecords
from cas_download.observability import Telemetry


class App(Struct, frozen=True):
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
        asks = (
            AskLedger(tables, settings.verify_asks_per_org, settings.verify_ask_max_event_age_seconds)
            if tables.ask_model is not None
            else None
        )
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
            verifier=_verifier_invocations(settings, session, asks),
            asks=asks,
            look_ahead=LookAhead(thread_setup=tables.share_session_in_this_thread),
        )
        telemetry = Telemetry(settings.service_name, settings.metrics_namespace)
        return cls(settings, services, telemetry, session)

    def connect(self) -> None:
        """Make the clients a request needs now rather than on first use (SnapStart: before the
        snapshot): the DynamoDB clients, and the S3 service model loaded into the session. Reads no
        secret and no row, and sends nothing."""
        self.services.tables.connect()
        # An unsigned client loads S3's model into the session, so the first backend's client after a
        # restore is built from memory. It holds no credentials, is never used, and is dropped.
        self.session.client("s3", region_name=self.settings.region, config=Config(signature_version=UNSIGNED))

    def forget_state(self) -> None:
        """Everything a SnapStart restore must not inherit: cached rows, secrets, verification records
        and backend health; every backend client (they hold credentials) and registry token; every open
        connection. The clients themselves stay, and reconnect on use."""
        services = self.services
        services.catalog.forget_all()
        services.credentials.forget_all()
        services.storage.forget_all()
        services.health.forget_all()
        services.verification_records.forget_all()
        if services.verifier is not None:
            services.verifier.forget_all()
        if services.look_ahead is not None:
            services.look_ahead.forget_all()
        services.tables.close_connections()


def _verifier_invocations(
    settings: Settings, session: boto3.session.Session, asks: AskLedger | None
) -> VerifierInvocations | None:
    """The verifier a request asks to prove what it may not hash itself (VERIFIER_FUNCTION_NAME)."""
    name = settings.verifier_function_name
    if name is None:
        return None

    def client() -> Any:
        # An asynchronous invoke is queued by Lambda at once: a short timeout, one try (the request
        # answers unverifiable rather than wait).
        config = Config(
            connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"}
        )
        return session.client("lambda", region_name=settings.region, config=config)

    return VerifierInvocations(name, client, asks)
