"""The Backends and Mappings tables (names fixed by the spec) and the service's own Verifications
table, through PynamoDB.

PynamoDB reads a model's ``Meta`` when the class is created, so the models are built by
:func:`build_tables` from the validated settings instead of at import time from the environment.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from cas_download.config import Settings
from cas_download.domain import Backend, Mapping, ValidationStatus, VerificationRecord
from cas_download.errors import ServiceUnavailable

if TYPE_CHECKING:
    from botocore.session import Session as BotocoreSession

ORG_INDEX_NAME = "org_id-index"
SECRET_INDEX_NAME = "secret_name-index"  # noqa: S105 - an index's name, not a secret


class TableError(Exception):
    """A write, or a read the request can do without, failed after PynamoDB's retries. Its message
    names only the failure's kind, so callers above the data layer never handle PynamoDB's types."""


class StatusGuard(Enum):
    """Which conditional write records a backend's validation status (no lost updates)."""

    # The download path only flips a status it observed: OK -> Invalid, or Invalid -> OK.
    OK_TO_INVALID = "ok_to_invalid"
    INVALID_TO_OK = "invalid_to_ok"
    # The validator never overwrites a newer validation than its own.
    NOT_NEWER = "not_newer"


class Tables(Struct, frozen=True):
    """Reads the control plane's rows as domain values; writes only validation status and the
    service's own verification records."""

    backend_model: Any
    mapping_model: Any
    verification_model: Any | None = None
    # The verifier's asks in flight and objects it could not prove, in the Verifications table
    # (data/verifier_asks.py): the same table, other keys.
    ask_model: Any | None = None
    # The session the models' clients are made from (None: PynamoDB's own, one per thread).
    botocore_session: BotocoreSession | None = None

    def share_session_in_this_thread(self) -> None:
        """Let this thread, too, make the models' clients from the app's session: a worker thread that
        is first to use a model would otherwise pay for a new botocore session (_share_session)."""
        if self.botocore_session is None:
            return
        for model in (self.backend_model, self.mapping_model, self.verification_model, self.ask_model):
            if model is not None:
                _share_session(model, self.botocore_session)

    def _connections(self, *, with_asks: bool) -> list[Any]:
        models = [self.backend_model, self.mapping_model, self.verification_model]
        if with_asks:
            models.append(self.ask_model)
        return [model._get_connection().connection for model in models if model is not None]

    def connect(self) -> None:
        """Make the models' DynamoDB client now (SnapStart: before the snapshot), not on first use; an
        app's tables have one, made with them (_share_one_client). No request is sent. Without a shared
        client, the asks' stays lazy: most containers never ask."""
        for connection in self._connections(with_asks=False):
            _ = connection.client

    def close_connections(self) -> None:
        """Close the models' connection pools (a SnapStart restore); the clients reconnect on use."""
        for connection in self._connections(with_asks=True):
            if connection._client is not None:
                connection._client.close()

    def mappings_for_digest(self, digest: str) -> list[Mapping]:
        try:
            records = list(self.mapping_model.query(digest))
        except PynamoDBException as error:
            raise ServiceUnavailable("the mappings table could not be read") from error
        return [
            Mapping(
                digest=record.digest,
                org_id=record.org_id or record.org_backend.partition("#")[0],
                backend_id=record.backend_id or record.org_backend.partition("#")[2],
                created_at=record.created_at or "",
            )
            for record in records
        ]

    def backends_of_org(self, org_id: str) -> list[Backend]:
        try:
            records = list(self.backend_model.org_index.query(org_id))
        except PynamoDBException as error:
            raise ServiceUnavailable("the backends table could not be read") from error
        return [_backend(record) for record in records]

    def backends_with_secret(self, secret_name: str) -> list[Backend]:
        """Every org's rows whose ``secret_name`` is this one (the secret_name index: one Query)."""
        try:
            records = list(self.backend_model.secret_index.query(secret_name))
        except PynamoDBException as error:
            raise ServiceUnavailable("the backends table could not be read") from error
        return [_backend(record) for record in records]

    def all_backends(self) -> list[Backend]:
        try:
            return [_backend(record) for record in self.backend_model.scan()]
        except PynamoDBException as error:
            raise ServiceUnavailable("the backends table could not be read") from error

    def record_status(
        self, backend_id: str, status: ValidationStatus, error: str | None, at: str, guard: StatusGuard
    ) -> bool:
        """Write ``validation_status``/``validation_error``/``validated_at`` under ``guard``.

        Returns False when the condition did not hold (someone else already wrote, or a newer
        validation exists); raises :class:`TableError` on other failures.
        """
        model = self.backend_model
        actions = [model.validation_status.set(str(status)), model.validated_at.set(at)]
        actions.append(model.validation_error.set(error) if error else model.validation_error.remove())
        # Only the status attributes (and id) may be named: the IAM policy allows no other (SPEC
        # fields such as deleted_at stay the control plane's).
        condition = model.id.exists()
        if guard is StatusGuard.OK_TO_INVALID:
            condition &= model.validation_status.does_not_exist() | (
                model.validation_status == ValidationStatus.OK.value
            )
        elif guard is StatusGuard.INVALID_TO_OK:
            condition &= model.validation_status == ValidationStatus.INVALID.value
        else:
            condition &= model.validated_at.does_not_exist() | (model.validated_at <= at)
        try:
            # Model.update() would ask for ReturnValues=ALL_NEW, reading the whole row back; the
            # policy refuses that, so the table connection's update_item is used (ReturnValues NONE).
            model._get_connection().update_item(backend_id, actions=actions, condition=condition)
        except UpdateError as failure:
            if failure.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise TableError(f"status not written ({failure.cause_response_code or 'error'})") from None
        except PynamoDBException as failure:
            raise TableError(f"status not written ({type(failure).__name__})") from None
        return True

    def verification_record(self, object_id: str) -> VerificationRecord | None:
        if self.verification_model is None:
            return None
        try:
            record = self.verification_model.get(object_id)
        except self.verification_model.DoesNotExist:
            return None
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None
        return VerificationRecord(
            object_id=record.object_id,
            digest=record.digest,
            etag=record.etag,
            size=int(record.size),
            version_id=record.version_id,
            verified_at=record.verified_at,
        )

    def save_verification_record(self, record: VerificationRecord, expires_at: datetime) -> None:
        if self.verification_model is None:
            return
        record_item = self.verification_model(
            record.object_id,
            digest=record.digest,
            etag=record.etag,
            size=record.size,
            version_id=record.version_id,
            verified_at=record.verified_at,
            expires_at=expires_at,
        )
        try:
            record_item.save()
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None


def _backend(record: Any) -> Backend:
    return Backend.from_row(record.attribute_values)


def build_tables(settings: Settings, botocore_session: BotocoreSession | None = None) -> Tables:
    """Model classes bound to the configured table names, region and timeouts.

    With ``botocore_session``, the models' DynamoDB clients are created from it (see
    :func:`_share_session`) instead of from a new botocore session per model.
    """

    class _Meta:
        region = settings.region
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        # Throttling and transient errors are retried with backoff before the request gives up with 503.
        max_retry_attempts = 3

    class OrgIndex(GlobalSecondaryIndex["BackendRecord"]):  # type: ignore[no-untyped-call]
        class Meta:
            index_name = ORG_INDEX_NAME
            projection = AllProjection()

        org_id = UnicodeAttribute(hash_key=True)

    class SecretIndex(GlobalSecondaryIndex["BackendRecord"]):  # type: ignore[no-untyped-call]
        class Meta:
            index_name = SECRET_INDEX_NAME
            projection = AllProjection()

        secret_name = UnicodeAttribute(hash_key=True)

    class BackendRecord(Model):
        """The Backends table's schema as PynamoDB reads it; the service works on ``domain.Backend``."""

        class Meta(_Meta):
            table_name = settings.backends_table

        id = UnicodeAttribute(hash_key=True)
        org_id = UnicodeAttribute()
        name = UnicodeAttribute(null=True)
        provider = UnicodeAttribute(null=True)
        location = UnicodeAttribute(null=True)
        secret_name = UnicodeAttribute(null=True)
        region = UnicodeAttribute(null=True)
        key_prefix = UnicodeAttribute(null=True)
        is_default = BooleanAttribute(null=True)
        is_fallback = BooleanAttribute(null=True)
        validation_status = UnicodeAttribute(null=True)
        validation_error = UnicodeAttribute(null=True)
        validated_at = UnicodeAttribute(null=True)
        created_at = UnicodeAttribute(null=True)
        deleted_at = UnicodeAttribute(null=True)
        org_suspended = BooleanAttribute(null=True)
        org_index = OrgIndex()
        secret_index = SecretIndex()

    class MappingRecord(Model):
        class Meta(_Meta):
            table_name = settings.mappings_table

        digest = UnicodeAttribute(hash_key=True)
        org_backend = UnicodeAttribute(range_key=True)
        org_id = UnicodeAttribute(null=True)
        backend_id = UnicodeAttribute(null=True)
        created_at = UnicodeAttribute(null=True)

    verification_model = None
    ask_model = None
    if settings.verifications_table:

        class VerificationRecordModel(Model):
            class Meta(_Meta):
                table_name = settings.verifications_table

            object_id = UnicodeAttribute(hash_key=True)
            digest = UnicodeAttribute()
            etag = UnicodeAttribute()
            size = NumberAttribute()
            version_id = UnicodeAttribute(null=True)
            verified_at = UnicodeAttribute()
            expires_at = TTLAttribute()

        verification_model = VerificationRecordModel

        class VerifierAskModel(Model):
            class Meta(_Meta):
                table_name = settings.verifications_table

            object_id = UnicodeAttribute(hash_key=True)
            # an org's asks in flight: JSON {ask: [expected done, in flight until]} (epoch seconds)
            leases = UnicodeAttribute(null=True)
            # an object the verifier could not prove for a reason that may pass: not asked until then
            memo_until = NumberAttribute(null=True)
            memo_reason = UnicodeAttribute(null=True)
            # optimistic locking: each save is conditional on the version it read
            version = VersionAttribute()
            expires_at = TTLAttribute(null=True)

        ask_model = VerifierAskModel

    if botocore_session is not None:
        models = (BackendRecord, MappingRecord, verification_model, ask_model)
        _share_one_client([model for model in models if model is not None], botocore_session)
    return Tables(
        backend_model=BackendRecord,
        mapping_model=MappingRecord,
        verification_model=verification_model,
        ask_model=ask_model,
        botocore_session=botocore_session,
    )


def _share_session(model: Any, botocore_session: BotocoreSession) -> None:
    """Make ``model``'s PynamoDB connection create its client from ``botocore_session``.

    Why: PynamoDB 6 has no option for this. Each model's connection calls
    ``botocore.session.get_session()`` and a new session re-reads botocore's data files (endpoints,
    the DynamoDB model) before its first client: about 48 ms per model at cold start, against 2 to
    10 ms from the app's session, which has read them already (BENCHMARKS.md, cold start).
    How: the connection keeps that session in a thread-local (botocore client creation is not
    thread safe), so this sets it for the calling thread only, the one building the app; any other
    thread keeps PynamoDB's default. ``pynamodb`` is pinned exactly in the layer, and a test fails if
    the models stop using the session they are given.
    """
    model._get_connection().connection._local.session = botocore_session


def _share_one_client(models: list[Any], botocore_session: BotocoreSession) -> None:
    """Give every model's PynamoDB connection one DynamoDB client, made now from ``botocore_session``.

    Why: each model has a connection of its own, and each would make its own client: a cold start
    paid one client creation per table (3 to 5 ms each after the first) and opened one connection
    to DynamoDB per table (on AWS, a TLS handshake each). The models share ``_Meta`` (region,
    timeouts, retries), so the first connection's client is configured as each would make it.
    How: the first model's connection makes the client (PynamoDB's own configuration and hooks);
    the others are handed it. A test fails if the models stop sharing it.
    """
    for model in models:
        _share_session(model, botocore_session)
    connections = [model._get_connection().connection for model in models]
    client = connections[0].client
    for connection in connections[1:]:
        connection._client = client
