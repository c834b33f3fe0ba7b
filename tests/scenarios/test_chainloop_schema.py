"""The schema the sync's tests write Chainloop's rows into (cas_local.chainloop.SCHEMA) is the one
Chainloop's migrations leave: ``organizations``, ``cas_backends``, ``cas_mappings`` and
``workflow_runs``, every column (in order, with type, nullability and default), every index and every
constraint (but workflow_runs' foreign keys to tables the sync never reads).

The facts below are read from app/controlplane/pkg/data/ent/migrate/migrations/ in Chainloop's
repository, applied in order (20230706165452_init-schema.sql to 20260820221508.sql); each line names
the migration that last shaped it. They are compared with what PostgreSQL reports for the DDL the
tests use, so a column left out, a type (``character varying``, not an enum), a default or an index
that differs fails here.
"""

from __future__ import annotations

from typing import Any

from tests.support.postgres import ChainloopRows

TIMESTAMPTZ = "timestamp with time zone"
VARCHAR = "character varying"
NOW = "CURRENT_TIMESTAMP"

# (column, data type, nullable, default), in the order the migrations add the columns
COLUMNS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "organizations": [
        ("id", "uuid", False, None),  # 20230706165452_init-schema
        ("name", VARCHAR, False, None),  # init-schema; DROP DEFAULT 'default': 20240218095416
        ("created_at", TIMESTAMPTZ, False, NOW),  # init-schema
        ("block_on_policy_violation", "boolean", False, "false"),  # 20250102214939
        ("policies_allowed_hostnames", "jsonb", True, None),  # 20250806210344
        ("updated_at", TIMESTAMPTZ, False, NOW),  # 20250808165202
        ("deleted_at", TIMESTAMPTZ, True, None),  # 20250827093032
        ("prevent_implicit_workflow_creation", "boolean", False, "false"),  # 20251111162946
        ("restrict_contract_creation_to_org_admins", "boolean", False, "false"),  # 20251212115308
        ("api_token_inactivity_threshold_days", "bigint", True, None),  # 20260211225609
        ("enable_ai_agent_collector", "boolean", False, "false"),  # 20260318160301
        ("suspended", "boolean", False, "false"),  # 20260408122048
        ("block_attestations_on_released_versions", "boolean", False, "false"),  # 20260608210839
        ("skip_runner_env_vars", "boolean", False, "false"),  # 20260609111546
    ],
    "cas_backends": [  # init-schema's oci_repositories, renamed by 20230710111950-cas-backend
        ("id", "uuid", False, None),
        ("location", VARCHAR, False, None),  # repo -> name (20230710111950) -> location (20230713112216)
        ("secret_name", VARCHAR, False, None),
        ("created_at", TIMESTAMPTZ, False, NOW),
        ("validation_status", VARCHAR, False, f"'OK'::{VARCHAR}"),
        ("validated_at", TIMESTAMPTZ, False, NOW),
        ("organization_cas_backends", "uuid", False, None),  # renamed: 20230710111950
        ("provider", VARCHAR, False, None),  # 20230710111950
        ("default", "boolean", False, "false"),  # 20230710111950
        ("description", VARCHAR, True, None),  # 20230713112216-description
        ("deleted_at", TIMESTAMPTZ, True, None),  # 20230714085240-deleted-at
        ("fallback", "boolean", False, "false"),  # 20230718102904
        ("name", VARCHAR, False, None),  # 20240409133222
        ("max_blob_size_bytes", "bigint", False, None),  # 20240619193218 (backfilled, no default)
        ("validation_error", VARCHAR, True, None),  # 20250902095134
        ("updated_at", TIMESTAMPTZ, False, NOW),  # 20251010104841
        ("managed", "boolean", False, "false"),  # 20260504100323
    ],
    "cas_mappings": [  # 20230904113722
        ("id", "uuid", False, None),
        ("digest", VARCHAR, False, None),
        ("created_at", TIMESTAMPTZ, False, NOW),
        ("cas_mapping_cas_backend", "uuid", False, None),
        # renamed from cas_mapping_workflow_run (20241123161902); NOT NULL 20241123163942, dropped 20250326110627
        ("workflow_run_id", "uuid", True, None),
        ("organization_id", "uuid", False, None),  # renamed from cas_mapping_organization: 20241123161902
        ("project_id", "uuid", True, None),  # 20250625150654
        ("product_id", "uuid", True, None),  # 20260820221508
    ],
    # What the sync reads of it: id and created_at, through workflowrun_created_at (20250519183708)
    "workflow_runs": [  # 20230706165452_init-schema
        ("id", "uuid", False, None),
        ("created_at", TIMESTAMPTZ, False, NOW),
        ("finished_at", TIMESTAMPTZ, True, None),
        ("state", VARCHAR, False, f"'initialized'::{VARCHAR}"),
        ("reason", "text", True, None),
        ("run_url", VARCHAR, True, None),
        ("runner_type", VARCHAR, True, None),
        ("attestation", "jsonb", True, None),
        # init-schema's workflow_workflowruns, renamed and NOT NULL by 20241123163942
        ("workflow_id", "uuid", False, None),
        ("workflow_run_contract_version", "uuid", True, None),  # init-schema
        ("attestation_digest", VARCHAR, True, None),
        ("attestation_state", "bytea", True, None),
        ("contract_revision_used", "bigint", False, None),
        ("contract_revision_latest", "bigint", False, None),
        ("version_id", "uuid", False, None),
        ("has_policy_violations", "boolean", True, None),  # 20251114174059
        ("policy_status", VARCHAR, True, None),  # 20260418100730
        ("policy_evaluations_total", "integer", True, None),
        ("policy_evaluations_passed", "integer", True, None),
        ("policy_evaluations_skipped", "integer", True, None),
        ("policy_violations_count", "integer", True, None),
        ("policy_has_gates", "boolean", True, None),
        ("policy_violations_suppressed", "integer", True, None),  # 20260511202105
        ("organization_id", "uuid", False, None),  # 20260516210119
    ],
}

INDEXES = {
    (
        "organizations",
        "organizations_pkey",
    ): "UNIQUE INDEX organizations_pkey ON public.organizations USING btree (id)",
    # organizations_name_key (20240218095416) replaced by 20250827093032
    ("organizations", "organization_name"): (
        "UNIQUE INDEX organization_name ON public.organizations USING btree (name) WHERE (deleted_at IS NULL)"
    ),
    (
        "cas_backends",
        "cas_backends_pkey",
    ): "UNIQUE INDEX cas_backends_pkey ON public.cas_backends USING btree (id)",
    ("cas_backends", "casbackend_name_organization_cas_backends"): (  # 20240409133222
        "UNIQUE INDEX casbackend_name_organization_cas_backends ON public.cas_backends "
        "USING btree (name, organization_cas_backends) WHERE (deleted_at IS NULL)"
    ),
    (
        "cas_mappings",
        "cas_mappings_pkey",
    ): "UNIQUE INDEX cas_mappings_pkey ON public.cas_mappings USING btree (id)",
    ("cas_mappings", "casmapping_digest"): (  # 20230904113722
        "INDEX casmapping_digest ON public.cas_mappings USING btree (digest)"
    ),
    ("cas_mappings", "casmapping_organization_id"): (  # 20241123163942
        "INDEX casmapping_organization_id ON public.cas_mappings USING btree (organization_id)"
    ),
    ("cas_mappings", "casmapping_workflow_run_id"): (  # 20241123163942
        "INDEX casmapping_workflow_run_id ON public.cas_mappings USING btree (workflow_run_id)"
    ),
    # workflow_runs' indexes as the migrations leave them (created, dropped and renamed up to 20260516210119)
    (
        "workflow_runs",
        "workflow_runs_pkey",
    ): "UNIQUE INDEX workflow_runs_pkey ON public.workflow_runs USING btree (id)",
    ("workflow_runs", "workflowrun_attestation_digest"): (
        "INDEX workflowrun_attestation_digest ON public.workflow_runs USING btree (attestation_digest)"
    ),
    ("workflow_runs", "workflowrun_created_at"): (  # 20250519183708: the sync's
        "INDEX workflowrun_created_at ON public.workflow_runs USING btree (created_at DESC)"
    ),
    ("workflow_runs", "workflowrun_organization_id_created_at"): (
        "INDEX workflowrun_organization_id_created_at ON public.workflow_runs "
        "USING btree (organization_id, created_at DESC)"
    ),
    ("workflow_runs", "workflowrun_policy_has_gates"): (
        "INDEX workflowrun_policy_has_gates ON public.workflow_runs USING btree (policy_has_gates) "
        "WHERE (policy_has_gates = true)"
    ),
    ("workflow_runs", "workflowrun_policy_status"): (
        "INDEX workflowrun_policy_status ON public.workflow_runs USING btree (policy_status)"
    ),
    ("workflow_runs", "workflowrun_state_created_at"): (
        "INDEX workflowrun_state_created_at ON public.workflow_runs USING btree (state, created_at)"
    ),
    ("workflow_runs", "workflowrun_state_finished_at"): (
        "INDEX workflowrun_state_finished_at ON public.workflow_runs USING btree (state, finished_at)"
    ),
    ("workflow_runs", "workflowrun_version_id_workflow_id"): (
        "INDEX workflowrun_version_id_workflow_id ON public.workflow_runs USING btree (version_id, workflow_id)"
    ),
    ("workflow_runs", "workflowrun_workflow_id"): (
        "INDEX workflowrun_workflow_id ON public.workflow_runs USING btree (workflow_id)"
    ),
    ("workflow_runs", "workflowrun_workflow_id_created_at"): (
        "INDEX workflowrun_workflow_id_created_at ON public.workflow_runs USING btree (workflow_id, created_at DESC)"
    ),
    ("workflow_runs", "workflowrun_workflow_id_state_created_at"): (
        "INDEX workflowrun_workflow_id_state_created_at ON public.workflow_runs "
        "USING btree (workflow_id, state, created_at DESC)"
    ),
}

# Primary keys and foreign keys (NOT NULL is in COLUMNS). cas_mappings' three foreign keys are gone:
# to workflow_runs by 20241123163942, to cas_backends and organizations by 20241126182209.
CONSTRAINTS = {
    ("organizations", "organizations_pkey"): "PRIMARY KEY (id)",
    ("cas_backends", "cas_backends_pkey"): "PRIMARY KEY (id)",
    ("cas_backends", "cas_backends_organizations_cas_backends"): (  # 20230710111950
        "FOREIGN KEY (organization_cas_backends) REFERENCES organizations(id) ON DELETE CASCADE"
    ),
    ("cas_mappings", "cas_mappings_pkey"): "PRIMARY KEY (id)",
    # workflow_runs also has foreign keys to workflows, workflow_contract_versions and project_versions,
    # tables the sync never reads: they are left out with those tables.
    ("workflow_runs", "workflow_runs_pkey"): "PRIMARY KEY (id)",
    ("workflow_runs", "workflow_runs_organizations_workflowruns"): (  # 20260516210119
        "FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE"
    ),
}


def query(chainloop: ChainloopRows, sql: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = (
        chainloop.connection().execute(sql.encode(), {"tables": list(COLUMNS)}).fetchall()
    )
    return rows


def test_the_test_schema_has_every_column_of_chainloops_migrations_as_they_leave_it(
    chainloop: ChainloopRows,
) -> None:
    rows = query(
        chainloop,
        """SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'YES', column_default
           FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = ANY (%(tables)s)
           ORDER BY table_name, ordinal_position""",
    )
    actual: dict[str, list[tuple[str, str, bool, str | None]]] = {}
    for table, column, data_type, nullable, default in rows:
        actual.setdefault(table, []).append((column, data_type, nullable, default))
    assert actual == COLUMNS


def test_the_test_schema_has_chainloops_indexes(chainloop: ChainloopRows) -> None:
    rows = query(
        chainloop,
        """SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
           WHERE schemaname = 'public' AND tablename = ANY (%(tables)s)""",
    )
    assert {(table, name): definition.removeprefix("CREATE ") for table, name, definition in rows} == INDEXES


def test_the_test_schema_has_chainloops_keys_and_no_other_constraint(chainloop: ChainloopRows) -> None:
    rows = query(
        chainloop,
        """SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid)
           FROM pg_constraint c
           WHERE c.conrelid::regclass::text = ANY (%(tables)s) AND c.contype <> 'n'""",
    )
    assert {(table, name): definition for table, name, definition in rows} == CONSTRAINTS
