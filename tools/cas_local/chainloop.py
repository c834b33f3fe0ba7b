"""Chainloop's ``organizations``, ``cas_backends`` and ``cas_mappings`` in PostgreSQL, written the way
Chainloop writes them: the one writer of the tests (through tests/support/postgres.py) and the sync
benchmark.

The DDL is ours; what it says is the final state Chainloop's migrations leave these three tables in
(app/controlplane/pkg/data/ent/migrate/migrations/, 20230706165452_init-schema.sql to
20260820221508.sql): every column in the order the migrations add it, with its type, nullability and
default, the primary keys, the one foreign key left (``cas_backends`` -> ``organizations``: the
mappings' were dropped by 20241126182209) and every index. Providers and statuses are ``character
varying`` (ent's enums are strings in PostgreSQL). tests/scenarios/test_chainloop_schema.py holds the
migrations' facts and compares them with this DDL.

The rows are those of Chainloop's ent layer (app/controlplane/pkg/data/{organization,casbackend,
casmapping}.go and biz/casbackend.go): an org comes with its ``default-inline`` INLINE backend
(the default until another is made so), a backend made default or fallback takes the flag from the
org's others in the same transaction, ``max_blob_size_bytes`` is 100 MiB (500 KiB for INLINE), times
are the writer's clock (ent sets them in Go, not through the column defaults), deletions are soft
(``deleted_at``) except ``CASBackendRepo.Delete``, which removes the row and leaves its mappings.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TABLE "organizations" (
    "id" uuid NOT NULL,
    "name" character varying NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "block_on_policy_violation" boolean NOT NULL DEFAULT false,
    "policies_allowed_hostnames" jsonb NULL,
    "updated_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deleted_at" timestamptz NULL,
    "prevent_implicit_workflow_creation" boolean NOT NULL DEFAULT false,
    "restrict_contract_creation_to_org_admins" boolean NOT NULL DEFAULT false,
    "api_token_inactivity_threshold_days" bigint NULL,
    "enable_ai_agent_collector" boolean NOT NULL DEFAULT false,
    "suspended" boolean NOT NULL DEFAULT false,
    "block_attestations_on_released_versions" boolean NOT NULL DEFAULT false,
    "skip_runner_env_vars" boolean NOT NULL DEFAULT false,
    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "organization_name" ON "organizations" ("name") WHERE (deleted_at IS NULL);
CREATE TABLE "cas_backends" (
    "id" uuid NOT NULL,
    "location" character varying NOT NULL,
    "secret_name" character varying NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "validation_status" character varying NOT NULL DEFAULT 'OK',
    "validated_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "organization_cas_backends" uuid NOT NULL,
    "provider" character varying NOT NULL,
    "default" boolean NOT NULL DEFAULT false,
    "description" character varying NULL,
    "deleted_at" timestamptz NULL,
    "fallback" boolean NOT NULL DEFAULT false,
    "name" character varying NOT NULL,
    "max_blob_size_bytes" bigint NOT NULL,
    "validation_error" character varying NULL,
    "updated_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "managed" boolean NOT NULL DEFAULT false,
    CONSTRAINT "cas_backends_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "cas_backends_organizations_cas_backends" FOREIGN KEY ("organization_cas_backends")
        REFERENCES "organizations" ("id") ON UPDATE NO ACTION ON DELETE CASCADE
);
CREATE UNIQUE INDEX "casbackend_name_organization_cas_backends" ON "cas_backends" ("name", "organization_cas_backends")
    WHERE (deleted_at IS NULL);
CREATE TABLE "cas_mappings" (
    "id" uuid NOT NULL,
    "digest" character varying NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "cas_mapping_cas_backend" uuid NOT NULL,
    "workflow_run_id" uuid NULL,
    "organization_id" uuid NOT NULL,
    "project_id" uuid NULL,
    "product_id" uuid NULL,
    CONSTRAINT "cas_mappings_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "casmapping_digest" ON "cas_mappings" ("digest");
CREATE INDEX "casmapping_organization_id" ON "cas_mappings" ("organization_id");
CREATE INDEX "casmapping_workflow_run_id" ON "cas_mappings" ("workflow_run_id");
"""

INLINE = "INLINE"
INLINE_BACKEND_NAME = "default-inline"
INLINE_DESCRIPTION = "Embed artifacts content in the attestation (fallback)"
INLINE_MAX_BLOB_SIZE_BYTES = 500 * 1024  # biz.CASBackendInlineDefaultMaxBytes
DEFAULT_MAX_BLOB_SIZE_BYTES = 100 * 1024 * 1024  # the control plane's default entry max size


@dataclass(frozen=True)
class ChainloopOrg:
    id: str
    name: str
    inline_backend: str | None


@dataclass
class ChainloopRows:
    """Writes rows into a Chainloop database (``dsn``); every method commits."""

    dsn: str
    _connection: Any = field(default=None, init=False, repr=False)

    def connection(self) -> Any:
        if self._connection is None:
            import psycopg  # noqa: PLC0415

            self._connection = psycopg.connect(self.dsn, autocommit=True)
        return self._connection

    def create_schema(self) -> None:
        self.connection().execute(SCHEMA.encode())

    def add_org(
        self, name: str | None = None, *, inline: bool = True, org_id: str | None = None
    ) -> ChainloopOrg:
        """An organization as Chainloop's API creates one: the row, then its INLINE default backend."""
        org_id = org_id or str(uuid.uuid4())
        name = name or f"org-{org_id[:8]}"
        now = dt.datetime.now(dt.UTC)
        self.connection().execute(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES (%s, %s, %s, %s)",
            (org_id, name, now, now),
        )
        inline_backend = None
        if inline:
            inline_backend = self.add_backend(
                org_id,
                INLINE_BACKEND_NAME,
                provider=INLINE,
                default=True,
                description=INLINE_DESCRIPTION,
            )
        return ChainloopOrg(org_id, name, inline_backend)

    def delete_org(self, org: str) -> None:
        """OrganizationRepo.Delete: a soft delete of the org row alone (its backends are untouched)."""
        now = dt.datetime.now(dt.UTC)
        self.connection().execute(
            "UPDATE organizations SET deleted_at = %s, updated_at = %s WHERE id = %s AND deleted_at IS NULL",
            (now, now, org),
        )

    def set_suspended(self, org: str, suspended: bool) -> None:
        """OrganizationRepo.SetSuspended (v1.89.12): the flag and updated_at, on a live org only."""
        self.connection().execute(
            "UPDATE organizations SET suspended = %s, updated_at = %s WHERE id = %s AND deleted_at IS NULL",
            (suspended, dt.datetime.now(dt.UTC), org),
        )

    def add_backend(
        self,
        org: str,
        name: str,
        *,
        provider: str = "AWS-S3",
        location: str = "",
        secret_name: str = "",
        description: str | None = None,
        default: bool = False,
        fallback: bool = False,
        status: str = "OK",
        validation_error: str | None = None,
        validated_at: dt.datetime | None = None,
        created_at: dt.datetime | None = None,
        backend_id: str | None = None,
        max_blob_size_bytes: int | None = None,
    ) -> str:
        """CASBackendRepo.Create: in one transaction, the org's other default (fallback) loses the flag
        when this one takes it, then the row. A status other than the column's default is what
        UpdateValidationStatus would write next."""
        backend_id = backend_id or str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        if max_blob_size_bytes is None:
            max_blob_size_bytes = (
                INLINE_MAX_BLOB_SIZE_BYTES if provider == INLINE else DEFAULT_MAX_BLOB_SIZE_BYTES
            )
        connection = self.connection()
        with connection.transaction():
            for flag, wanted in (("default", default), ("fallback", fallback)):
                if wanted:
                    connection.execute(
                        f'UPDATE cas_backends SET "{flag}" = false, updated_at = %s '  # noqa: S608 - our two column names
                        f'WHERE organization_cas_backends = %s AND "{flag}"',
                        (now, org),
                    )
            connection.execute(
                """INSERT INTO cas_backends (id, location, secret_name, created_at, validation_status,
                       validated_at, organization_cas_backends, provider, "default", description, fallback,
                       name, max_blob_size_bytes, validation_error, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    backend_id,
                    location,
                    secret_name,
                    created_at or now,
                    status,
                    validated_at or now,
                    org,
                    provider,
                    default,
                    description,
                    fallback,
                    name,
                    max_blob_size_bytes,
                    validation_error,
                    now,
                ),
            )
        return backend_id

    def update_backend(self, backend_id: str, **columns: Any) -> None:
        """Set columns (``default`` and the others by their Chainloop names) and bump ``updated_at``."""
        from psycopg import sql  # noqa: PLC0415

        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in columns)
        statement = sql.SQL("UPDATE cas_backends SET {}, updated_at = now() WHERE id = %s").format(
            assignments
        )
        self.connection().execute(statement, (*columns.values(), backend_id))

    def make_default(self, org: str, backend_id: str) -> None:
        """What Chainloop does when an org picks a new default: one transaction, one default."""
        connection = self.connection()
        with connection.transaction():
            connection.execute(
                'UPDATE cas_backends SET "default" = false, updated_at = now() '
                'WHERE organization_cas_backends = %s AND "default"',
                (org,),
            )
            connection.execute(
                'UPDATE cas_backends SET "default" = true, fallback = false, updated_at = now() WHERE id = %s',
                (backend_id,),
            )

    def remove_backend(self, backend_id: str) -> None:
        """CASBackendRepo.Delete: the row goes; its mappings stay (no foreign key holds them)."""
        self.connection().execute("DELETE FROM cas_backends WHERE id = %s", (backend_id,))

    def add_mapping(
        self,
        digest: str,
        org: str,
        backend_id: str,
        *,
        created_at: dt.datetime | None = None,
        workflow_run_id: str | None = None,
    ) -> str:
        mapping_id = str(uuid.uuid4())
        self.connection().execute(
            """INSERT INTO cas_mappings (id, digest, created_at, cas_mapping_cas_backend, workflow_run_id,
                   organization_id) VALUES (%s, %s, %s, %s, %s, %s)""",
            (
                mapping_id,
                digest,
                created_at or dt.datetime.now(dt.UTC),
                backend_id,
                workflow_run_id or str(uuid.uuid4()),
                org,
            ),
        )
        return mapping_id

    def add_generated_mappings(
        self, count: int, backend_ids: list[str], orgs: list[str], *, start: int = 0, spacing: float = 0.001
    ) -> None:
        """``count`` mappings with distinct digests, spread over the backends; ``orgs[i]`` owns
        ``backend_ids[i]``; ``spacing`` seconds apart, the last one now. Generated by the server:
        100,000 rows take a second."""
        self.connection().execute(
            """INSERT INTO cas_mappings (id, digest, created_at, cas_mapping_cas_backend, organization_id)
               SELECT gen_random_uuid(),
                      'sha256:' || encode(sha256(convert_to('cas-' || i::text, 'UTF8')), 'hex'),
                      now() - make_interval(secs => (%(end)s - i) * %(spacing)s),
                      (%(backends)s::uuid[])[1 + i %% cardinality(%(backends)s::uuid[])],
                      (%(orgs)s::uuid[])[1 + i %% cardinality(%(backends)s::uuid[])]
               FROM generate_series(%(start)s, %(end)s - 1) AS i""",
            {"start": start, "end": start + count, "backends": backend_ids, "orgs": orgs, "spacing": spacing},
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
