"""The control plane's data as cas-admin reads and writes it: Backends and Mappings rows (SPEC.md
names), backend secrets in Secrets Manager, and S3 clients made from a backend's own credentials.

Every AWS client comes from one boto3 session: the standard credential chain, and the standard
endpoint variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ...) to reach a local stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cas_admin.errors import AdminError, UsageError
from cas_download.config import Settings
from cas_download.data.items import from_item, to_item
from cas_download.data.secrets import secret_fields
from cas_download.data.storage.oci import parse_location as parse_registry_location
from cas_download.data.storage.port import SecretFields
from cas_download.data.storage.providers import StorageProviders
from cas_download.data.storage.s3 import Credentials, credentials_from_secret, parse_location
from cas_download.data.tables import ORG_INDEX_NAME, StatusGuard, Tables, build_tables
from cas_download.domain import AttemptFailed, Backend, Provider, ValidationStatus
from cas_download.logic.health import utc_now_iso

_CONFIG = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def public(backend: Backend) -> dict[str, Any]:
    """A backend for --json output: its row with both flags spelled out (no secret values:
    ``secret_name`` only names the secret)."""
    row = {**backend.to_row(), "is_default": backend.is_default, "is_fallback": backend.is_fallback}
    return {name: value for name, value in row.items() if value is not None}


class AdminStore:
    def __init__(
        self,
        backends_table: str,
        mappings_table: str,
        session: boto3.session.Session | None = None,
        region: str | None = None,
    ) -> None:
        self.session = session or boto3.session.Session()
        self.region = region or self.session.region_name or "us-east-1"
        self.backends_table = backends_table
        self.mappings_table = mappings_table
        self._clients: dict[str, Any] = {}
        # The service's own provider adapters, with an operator's patience (longer timeouts).
        self.providers = StorageProviders(self.session, 5.0, 60.0)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service,  # type: ignore[call-overload]
                region_name=self.region,
                config=_CONFIG,
            )
        return self._clients[service]

    # ------------------------------------------------------------------ backends

    def backends_of_org(self, org: str, *, include_deleted: bool = True) -> list[Backend]:
        paginator = self.client("dynamodb").get_paginator("query")
        pages = paginator.paginate(
            TableName=self.backends_table,
            IndexName=ORG_INDEX_NAME,
            KeyConditionExpression="org_id = :org",
            ExpressionAttributeValues={":org": {"S": org}},
        )
        rows = [Backend.from_row(from_item(item)) for page in pages for item in page.get("Items", [])]
        rows = [r for r in rows if r.org_id == org and (include_deleted or not r.deleted)]
        return sorted(rows, key=lambda r: (r.created_at, r.name))

    def known_org(self, org: str) -> list[Backend]:
        """The org's backends (deleted included); an org with none is unknown."""
        rows = self.backends_of_org(org)
        if not rows:
            raise AdminError(
                f"unknown org {org!r}: it has no backends",
                hint="cas-admin backend add NAME --org ORG --location BUCKET ... registers its first one",
            )
        return rows

    def find_backend(self, org: str, name_or_id: str, *, live: bool = True) -> Backend:
        rows = self.known_org(org)
        matches = [r for r in rows if name_or_id in (r.name, r.id)]
        live_matches = [r for r in matches if not r.deleted]
        if live_matches:
            return live_matches[0]
        if matches and not live:
            return matches[0]
        if matches:
            raise AdminError(
                f"backend {name_or_id!r} of org {org!r} is deleted (since {matches[0].deleted_at})"
            )
        names = ", ".join(r.name for r in rows if not r.deleted) or "none"
        raise AdminError(f"org {org!r} has no backend {name_or_id!r} (live backends: {names})")

    def get_backend(self, backend_id: str) -> Backend | None:
        item = (
            self.client("dynamodb")
            .get_item(TableName=self.backends_table, Key={"id": {"S": backend_id}}, ConsistentRead=True)
            .get("Item")
        )
        return Backend.from_row(from_item(item)) if item else None

    def write_backend(self, row: Backend, *, unset_flags_of: Iterable[tuple[Backend, str]] = ()) -> None:
        """Put a new row (it must not exist) and, in the same transaction, clear ``is_default`` or
        ``is_fallback`` (the str) on other rows that still have it."""
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.backends_table,
                    "Item": to_item(row.to_row()),
                    "ConditionExpression": "attribute_not_exists(id)",
                }
            }
        ]
        items += [self._unset(other, flag) for other, flag in unset_flags_of]
        self._transact(items)

    def set_flag(self, row: Backend, flag: str, *, clear: Iterable[tuple[Backend, str]] = ()) -> None:
        """Set ``flag`` on ``row`` (live, same org), clearing it (or others) elsewhere, atomically."""
        condition = "attribute_exists(id) AND org_id = :org AND attribute_not_exists(deleted_at)"
        values: dict[str, Any] = {":true": {"BOOL": True}, ":org": {"S": row.org_id}}
        if flag == "is_default":
            expression = "SET is_default = :true REMOVE is_fallback"  # never both on one backend
        else:
            expression = "SET is_fallback = :true"
            condition += " AND (attribute_not_exists(is_default) OR is_default = :false)"
            values[":false"] = {"BOOL": False}
        update: dict[str, Any] = {
            "TableName": self.backends_table,
            "Key": {"id": {"S": row.id}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        self._transact([{"Update": update}, *(self._unset(o, f) for o, f in clear)])

    def clear_flags(self, rows: Iterable[tuple[Backend, str]]) -> None:
        items = [self._unset(row, flag) for row, flag in rows]
        if items:
            self._transact(items)

    def soft_delete(self, row: Backend) -> str:
        at = utc_now_iso()
        self._transact(
            [
                {
                    "Update": {
                        "TableName": self.backends_table,
                        "Key": {"id": {"S": row.id}},
                        "UpdateExpression": "SET deleted_at = :at REMOVE is_default, is_fallback",
                        "ConditionExpression": "attribute_exists(id) AND attribute_not_exists(deleted_at)",
                        "ExpressionAttributeValues": {":at": {"S": at}},
                    }
                }
            ]
        )
        return at

    @cached_property
    def tables(self) -> Tables:
        """The service's own table access (PynamoDB, as the Lambda reads and writes them)."""
        return build_tables(
            Settings(
                backends_table=self.backends_table, mappings_table=self.mappings_table, region=self.region
            )
        )

    def record_validation(self, row: Backend, status: ValidationStatus, error: str | None) -> None:
        """The same conditional status write as the service's (never over a newer validation)."""
        self.tables.record_status(row.id, status, error, utc_now_iso(), StatusGuard.NOT_NEWER)

    def _unset(self, row: Backend, flag: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.backends_table,
                "Key": {"id": {"S": row.id}},
                "UpdateExpression": f"REMOVE {flag}",
                "ConditionExpression": "attribute_exists(id)",
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            self.client("dynamodb").transact_write_items(TransactItems=items)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise AdminError(
                    "the backends changed meanwhile (or the backend was deleted): nothing was written; "
                    "look with `cas-admin backend list` and try again"
                ) from None
            raise

    # ------------------------------------------------------------------ mappings

    def put_mapping(self, digest: str, org: str, backend_id: str, workflow_run_id: str | None) -> bool:
        """Write the mapping unless it exists; True when written."""
        row = {
            "digest": digest,
            "org_backend": f"{org}#{backend_id}",
            "org_id": org,
            "backend_id": backend_id,
            "created_at": utc_now_iso(),
            "workflow_run_id": workflow_run_id,
        }
        try:
            self.client("dynamodb").put_item(
                TableName=self.mappings_table,
                Item=to_item(row),
                ConditionExpression="attribute_not_exists(digest)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ------------------------------------------------------------------ secrets and storage

    def create_secret(self, name: str, secret_value: Mapping[str, str], region: str | None) -> str:
        """Store a backend's secret (the spec's JSON form for its provider); returns the secret's ARN."""
        value = dict(secret_value)
        if region:
            value["Region"] = region
        try:
            response = self.client("secretsmanager").create_secret(
                Name=name,
                SecretString=json.dumps(value),
                Description="cas-download backend credentials (written by cas-admin)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceExistsException":
                raise AdminError(
                    f"secret {name!r} already exists", hint="pass another --secret-prefix or backend name"
                ) from None
            raise
        return str(response["ARN"])

    def read_secret(self, secret_name: str) -> SecretFields:
        try:
            value = self.client("secretsmanager").get_secret_value(SecretId=secret_name)
            return secret_fields(json.loads(value.get("SecretString") or ""))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise AdminError(f"secret {secret_name!r} could not be read ({code})") from None
        except (ValueError, AttemptFailed) as error:
            raise AdminError(f"secret {secret_name!r} is not usable: {error}") from None

    def read_credentials(self, secret_name: str) -> Credentials:
        """An S3 backend's keys from its secret."""
        try:
            return credentials_from_secret(self.read_secret(secret_name))
        except AttemptFailed as error:
            raise AdminError(f"secret {secret_name!r} is not usable: {error}") from None

    def s3_for(self, credentials: Credentials, location: str, region: str | None) -> tuple[Any, str]:
        """An S3 client signing with ``credentials`` for a backend ``location``, and its bucket."""
        parsed = parse_location_or_fail(location)
        client = self.providers.s3_clients.client(
            credentials, region or credentials.region or self.region, parsed.endpoint_url
        )
        return client, parsed.bucket


def parse_location_or_fail(location: str, provider: str = Provider.S3) -> Any:
    try:
        if provider == Provider.OCI:
            return parse_registry_location(location)
        if provider == Provider.AZURE_BLOB:
            from cas_download.data.storage import azure  # noqa: PLC0415 - the Azure SDK only when needed

            return azure.parse_location(location)
        return parse_location(location)
    except AttemptFailed:
        if provider == Provider.AZURE_BLOB:
            raise UsageError(
                f"invalid location {location!r}: use ACCOUNT/CONTAINER, SUFFIX/ACCOUNT/CONTAINER "
                "or http(s)://host[:port]/ACCOUNT/CONTAINER"
            ) from None
        if provider == Provider.OCI:
            raise UsageError(
                f"invalid location {location!r}: use a repository, host[:port]/path, without tag or digest"
            ) from None
        raise UsageError(
            f"invalid location {location!r}: use a bucket name or http(s)://host[:port]/bucket"
        ) from None
