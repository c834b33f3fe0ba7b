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
import time
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
CREATE TABLE "workflow_runs" (
    "id" uuid NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" timestamptz NULL,
    "state" character varying NOT NULL DEFAULT 'initialized',
    "reason" text NULL,
    "run_url" character varying NULL,
    "runner_type" character varying NULL,
    "attestation" jsonb NULL,
    "workflow_id" uuid NOT NULL,
    "workflow_run_contract_version" uuid NULL,
    "attestation_digest" character varying NULL,
    "attestation_state" bytea NULL,
    "contract_revision_used" bigint NOT NULL,
    "contract_revision_latest" bigint NOT NULL,
    "version_id" uuid NOT NULL,
    "has_policy_violations" boolean NULL,
    "policy_status" character varying NULL,
    "policy_evaluations_total" integer NULL,
    "policy_evaluations_passed" integer NULL,
    "policy_evaluations_skipped" integer NULL,
    "policy_violations_count" integer NULL,
    "policy_has_gates" boolean NULL,
    "policy_violations_suppressed" integer NULL,
    "organization_id" uuid NOT NULL,
    CONSTRAINT "workflow_runs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "workflow_runs_organizations_workflowruns" FOREIGN KEY ("organization_id")
        REFERENCES "organizations" ("id") ON UPDATE NO ACTION ON DELETE CASCADE
);
CREATE INDEX "workflowrun_attestation_digest" ON "workflow_runs" ("attestation_digest");
CREATE INDEX "workflowrun_created_at" ON "workflow_runs" ("created_at" DESC);
CREATE INDEX "workflowrun_organization_id_created_at" ON "workflow_runs" ("organization_id", "created_at" DESC);
CREATE INDEX "workflowrun_policy_has_gates" ON "workflow_runs" ("policy_has_gates") WHERE (policy_has_gates = true);
CREATE INDEX "workflowrun_policy_status" ON "workflow_runs" ("policy_status");
CREATE INDEX "workflowrun_state_created_at" ON "workflow_runs" ("state", "created_at");
CREATE INDEX "workflowrun_state_finished_at" ON "workflow_runs" ("state", "finished_at");
CREATE INDEX "workflowrun_version_id_workflow_id" ON "workflow_runs" ("version_id", "workflow_id");
CREATE INDEX "workflowrun_workflow_id" ON "workflow_runs" ("workflow_id");
CREATE INDEX "workflowrun_workflow_id_created_at" ON "workflow_runs" ("workflow_id", "created_at" DESC);
CREATE INDEX "workflowrun_workflow_id_state_created_at" ON "workflow_runs" ("workflow_id", "state", "created_at" DESC);
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

# A run's mappings are recorded when its attestation is stored, after its artifacts were uploaded:
# the generated history puts them a few minutes after the run starts, MAPPINGS_PER_RUN to a run.
RUN_TO_MAPPING = dt.timedelta(minutes=3)
MAPPINGS_PER_RUN = 5

INLINE = "INLINE"
INLINE_BACKEND_NAME = "default-inline"
INLINE_DESCRIPTION = "Embed artifacts content in the attestation (fallback)"
INLINE_MAX_BLOB_SIZE_BYTES = 500 * 1024  # biz.CASBackendInlineDefaultMaxBytes
DEFAULT_MAX_BLOB_SIZE_BYTES = 100 * 1024 * 1024  # the control plane's default entry max size


@dataclass(frozen=True)
class TableReads:
    """pg_stat_user_tables' read counters of one table (cumulative: subtract two readings)."""

    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    idx_tup_fetch: int
    live_rows: int = 0

    def __sub__(self, before: TableReads) -> TableReads:
        return TableReads(
            self.seq_scan - before.seq_scan,
            self.seq_tup_read - before.seq_tup_read,
            self.idx_scan - before.idx_scan,
            self.idx_tup_fetch - before.idx_tup_fetch,
            self.live_rows,
        )

    @property
    def rows_read(self) -> int:
        return self.seq_tup_read + self.idx_tup_fetch


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

    def add_run(self, org: str, *, created_at: dt.datetime | None = None) -> str:
        """A workflow run as Chainloop records one: created at ``chainloop attestation init``
        (WorkflowRunRepo.Create: state initialized, the contract's revisions, its workflow and
        project version), finished when its attestation is stored (success). The workflow and the
        version are ids only: their tables are not Chainloop's CAS, so they are not modelled here."""
        run_id = str(uuid.uuid4())
        started = created_at or dt.datetime.now(dt.UTC)
        self.connection().execute(
            """INSERT INTO workflow_runs (id, created_at, finished_at, state, runner_type,
                   contract_revision_used, contract_revision_latest, workflow_id, version_id,
                   organization_id)
               VALUES (%s, %s, %s, 'success', 'GITHUB_ACTION', 1, 1, %s, %s, %s)""",
            (run_id, started, started + RUN_TO_MAPPING, str(uuid.uuid4()), str(uuid.uuid4()), org),
        )
        return run_id

    def add_mapping(
        self,
        digest: str,
        org: str,
        backend_id: str,
        *,
        created_at: dt.datetime | None = None,
        workflow_run_id: str | None = None,
        without_run: bool = False,
    ) -> str:
        """A mapping as attestation.go's Store records it: with the workflow run it belongs to (one made
        here, started a little before, unless given); ``without_run``: none, as older data has."""
        mapping_id = str(uuid.uuid4())
        created_at = created_at or dt.datetime.now(dt.UTC)
        if workflow_run_id is None and not without_run:
            workflow_run_id = self.add_run(org, created_at=created_at - RUN_TO_MAPPING)
        self.connection().execute(
            """INSERT INTO cas_mappings (id, digest, created_at, cas_mapping_cas_backend, workflow_run_id,
                   organization_id) VALUES (%s, %s, %s, %s, %s, %s)""",
            (mapping_id, digest, created_at, backend_id, workflow_run_id, org),
        )
        return mapping_id

    def add_generated_mappings(
        self, count: int, backend_ids: list[str], orgs: list[str], *, start: int = 0, spacing: float = 0.001
    ) -> None:
        """``count`` mappings with distinct digests, spread over the backends; ``orgs[i]`` owns
        ``backend_ids[i]``; ``spacing`` seconds apart, the last one now; each with its workflow run
        (one run per ``MAPPINGS_PER_RUN`` mappings, of one backend and its org, started
        ``RUN_TO_MAPPING`` before its first mapping).
        Generated by the server: 100,000 rows take a few seconds."""
        params = {
            "start": start,
            "end": start + count,
            "backends": backend_ids,
            "orgs": orgs,
            "spacing": spacing,
            "per_run": MAPPINGS_PER_RUN,
            "run_lead": RUN_TO_MAPPING.total_seconds(),
        }
        connection = self.connection()
        # a run's id follows from its number (md5 of it, as a uuid), so its mappings can name it
        connection.execute(
            """INSERT INTO workflow_runs (id, created_at, finished_at, state, runner_type,
                   contract_revision_used, contract_revision_latest, workflow_id, version_id,
                   organization_id)
               SELECT md5('run-' || r::text)::uuid,
                      now() - make_interval(secs => (%(end)s - r * %(per_run)s) * %(spacing)s + %(run_lead)s),
                      now() - make_interval(secs => (%(end)s - r * %(per_run)s) * %(spacing)s),
                      'success', 'GITHUB_ACTION', 1, 1, gen_random_uuid(), gen_random_uuid(),
                      (%(orgs)s::uuid[])[1 + r %% cardinality(%(backends)s::uuid[])]
               FROM generate_series(%(start)s / %(per_run)s, (%(end)s - 1) / %(per_run)s) AS r
               ON CONFLICT (id) DO NOTHING""",
            params,
        )
        connection.execute(
            """INSERT INTO cas_mappings (id, digest, created_at, cas_mapping_cas_backend, workflow_run_id,
                   organization_id)
               SELECT gen_random_uuid(),
                      'sha256:' || encode(sha256(convert_to('cas-' || i::text, 'UTF8')), 'hex'),
                      now() - make_interval(secs => (%(end)s - i) * %(spacing)s),
                      (%(backends)s::uuid[])[1 + (i / %(per_run)s) %% cardinality(%(backends)s::uuid[])],
                      md5('run-' || (i / %(per_run)s)::text)::uuid,
                      (%(orgs)s::uuid[])[1 + (i / %(per_run)s) %% cardinality(%(backends)s::uuid[])]
               FROM generate_series(%(start)s, %(end)s - 1) AS i""",
            params,
        )

    def analyze(self) -> None:
        """What autovacuum does on a live database after many inserts: fresh planner statistics."""
        self.connection().execute("ANALYZE organizations, cas_backends, workflow_runs, cas_mappings")

    def table_reads(self) -> dict[str, TableReads]:
        """PostgreSQL's cumulative counters of reads (pg_stat_user_tables) of the tables the sync reads."""
        connection = self.connection()
        connection.execute("SELECT pg_stat_clear_snapshot()")
        rows = connection.execute(
            """SELECT relname::text, seq_scan, seq_tup_read, coalesce(idx_scan, 0),
                      coalesce(idx_tup_fetch, 0), n_live_tup
               FROM pg_stat_user_tables
               WHERE relname IN ('organizations', 'cas_backends', 'workflow_runs', 'cas_mappings')"""
        ).fetchall()
        return {row[0]: TableReads(*(int(value) for value in row[1:])) for row in rows}

    def reads_since(
        self, before: dict[str, TableReads], *, settle_seconds: float = 10.0
    ) -> dict[str, TableReads]:
        """The reads since ``before``, once PostgreSQL has counted a finished session's: a session
        flushes its counters as it ends, a moment after its client closed it. Waits (a tenth of a
        second at a time, at most ``settle_seconds``) until some index scan of the tables shows."""
        deadline = time.monotonic() + settle_seconds
        while True:
            now = self.table_reads()
            delta = {table: now[table] - before[table] for table in before}
            if (
                any(reads.idx_scan or reads.seq_scan for reads in delta.values())
                or time.monotonic() > deadline
            ):
                return delta
            time.sleep(0.1)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
