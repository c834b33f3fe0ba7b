"""The Backends and Mappings tables (names fixed by the spec), read through PynamoDB.

PynamoDB reads a model's ``Meta`` when the class is created, so the models are built by
:func:`build_tables` from the validated settings instead of at import time from the environment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from cas_download.config import Settings
from cas_download.domain import Backend, Mapping
from cas_download.errors import ServiceUnavailable

ORG_INDEX_NAME = "org_id-index"
_BATCH_GET_LIMIT = 100


@dataclass(frozen=True, slots=True)
class TableReader:
    """Reads the control plane's rows and turns them into domain values."""

    backend_model: Any
    mapping_model: Any

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

    def backends_by_id(self, backend_ids: Iterable[str]) -> dict[str, Backend]:
        ids = sorted(set(backend_ids))
        found: dict[str, Backend] = {}
        try:
            for start in range(0, len(ids), _BATCH_GET_LIMIT):
                for record in self.backend_model.batch_get(ids[start : start + _BATCH_GET_LIMIT]):
                    found[record.id] = _backend(record)
        except PynamoDBException as error:
            raise ServiceUnavailable("the backends table could not be read") from error
        return found

    def backends_of_org(self, org_id: str) -> list[Backend]:
        try:
            records = list(self.backend_model.org_index.query(org_id))
        except PynamoDBException as error:
            raise ServiceUnavailable("the backends table could not be read") from error
        return [_backend(record) for record in records]


def _backend(record: Any) -> Backend:
    return Backend(
        id=record.id,
        org_id=record.org_id,
        name=record.name or record.id,
        provider=record.provider or "",
        location=record.location or "",
        secret_name=record.secret_name or "",
        region=record.region or None,
        key_prefix=record.key_prefix or "",
        is_default=bool(record.is_default),
        is_fallback=bool(record.is_fallback),
        validation_status=record.validation_status or "OK",
        created_at=record.created_at or "",
        deleted=bool(record.deleted_at),
    )


def build_tables(settings: Settings) -> TableReader:
    """Model classes bound to the configured table names, region and timeouts."""

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

    class BackendRecord(Model):
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
        created_at = UnicodeAttribute(null=True)
        deleted_at = UnicodeAttribute(null=True)
        org_index = OrgIndex()

    class MappingRecord(Model):
        class Meta(_Meta):
            table_name = settings.mappings_table

        digest = UnicodeAttribute(hash_key=True)
        org_backend = UnicodeAttribute(range_key=True)
        org_id = UnicodeAttribute(null=True)
        backend_id = UnicodeAttribute(null=True)
        created_at = UnicodeAttribute(null=True)

    return TableReader(backend_model=BackendRecord, mapping_model=MappingRecord)
