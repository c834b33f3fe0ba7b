"""Chainloop's two CAS tables in PostgreSQL, written the way Chainloop writes them: for the tests, the
sync benchmark and the local stack. The schema is ours, from the column names of Chainloop's
migrations (enum types, ``"default"`` quoted, soft delete by ``deleted_at``)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TYPE cas_backend_provider AS ENUM ('OCI', 'AWS-S3', 'AzureBlob', 'INLINE', 'AWS-S3-ACCESS-POINT');
CREATE TYPE cas_backend_validation_status AS ENUM ('OK', 'Invalid');
CREATE TABLE cas_backends (
    id uuid PRIMARY KEY,
    location text NOT NULL,
    name text NOT NULL,
    provider cas_backend_provider NOT NULL,
    description text NULL,
    secret_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    validation_status cas_backend_validation_status NOT NULL DEFAULT 'OK',
    validation_error text NULL,
    validated_at timestamptz NOT NULL DEFAULT now(),
    "default" boolean NOT NULL DEFAULT false,
    fallback boolean NOT NULL DEFAULT false,
    deleted_at timestamptz NULL,
    managed boolean NOT NULL DEFAULT false,
    max_blob_size_bytes bigint NOT NULL DEFAULT 104857600,
    organization_cas_backends uuid NOT NULL
);
CREATE TABLE cas_mappings (
    id uuid PRIMARY KEY,
    digest text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    cas_mapping_cas_backend uuid NOT NULL,
    workflow_run_id uuid NULL,
    organization_id uuid NOT NULL,
    project_id uuid NULL,
    product_id uuid NULL
);
CREATE INDEX cas_mappings_digest ON cas_mappings (digest);
"""


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

    def add_backend(
        self,
        org: str,
        name: str,
        *,
        provider: str = "AWS-S3",
        location: str = "",
        secret_name: str = "",
        default: bool = False,
        fallback: bool = False,
        status: str = "OK",
        validation_error: str | None = None,
        validated_at: dt.datetime | None = None,
        created_at: dt.datetime | None = None,
        backend_id: str | None = None,
    ) -> str:
        backend_id = backend_id or str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        self.connection().execute(
            """INSERT INTO cas_backends (id, location, name, provider, secret_name, created_at, updated_at,
                   validation_status, validation_error, validated_at, "default", fallback,
                   organization_cas_backends)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                backend_id,
                location,
                name,
                provider,
                secret_name,
                created_at or now,
                now,
                status,
                validation_error,
                validated_at or now,
                default,
                fallback,
                org,
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
