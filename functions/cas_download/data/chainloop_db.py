"""Chainloop's PostgreSQL, read only: its ``organizations``, ``cas_backends`` and ``cas_mappings``
tables as it writes them.

psycopg (3) is imported here and nowhere else, so only the Chainloop sync pays for it: the download
and validator functions never import this module, and their package ships without the driver (it
lives in its own layer, layers/postgres/).

Mappings are read through a server-side cursor in ``created_at, id`` order, ``itersize`` rows per
round trip, so memory stays flat however many rows the table holds. A first import reads the whole
table; later runs read only what is recent, through Chainloop's own indexes (``_RECENT_MAPPINGS_SINCE``):
a quiet run on a large table reads a few rows, not all of them twice.

Before reading anything, a session checks that the columns it reads exist: an older Chainloop's
schema is refused in one line that names what is missing (``SchemaUnsupported``), never a driver
error half way through a run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from msgspec import Struct

if TYPE_CHECKING:
    import psycopg

# suspended came with v1.89.12: an older schema reads every org as not suspended (synced as before).
_ORGANIZATIONS_SQL = "SELECT id::text, deleted_at, {suspended} FROM organizations"

# Chainloop's enum columns are read as text, so a new provider value is copied, not refused.
_BACKENDS_SQL = """
SELECT id::text, organization_cas_backends::text, name, provider::text, location, secret_name,
       created_at, validation_status::text, validation_error, validated_at,
       "default", fallback, deleted_at
FROM cas_backends
ORDER BY created_at, id
"""

# Every mapping since a time: cas_mappings has no index on created_at, so this reads the whole table
# (a sequential scan). Only a first import, which copies everything anyway, reads it so.
_ALL_MAPPINGS_SINCE = """
SELECT id::text AS id, digest, created_at, cas_mapping_cas_backend::text, organization_id::text,
       workflow_run_id::text
FROM cas_mappings WHERE created_at >= %(since)s
"""

# An incremental run, through Chainloop's own indexes and no DDL of ours: the runs started since
# ``runs_since`` (workflowrun_created_at, a range scan of the recent runs), their mappings
# (casmapping_workflow_run_id, one index probe per run: LATERAL, fenced by OFFSET 0 so the planner
# cannot flatten it into a scan of the whole table, which it prefers while the table is small), and the mappings with no run (the
# same index's NULL entries). Chainloop records a run's mappings when its attestation is stored, and
# expires a run unfinished after an hour (cmd/main.go: ExpirationWindow), so a mapping never comes
# later than RUN_WINDOW (six times that) after its run started.
_RECENT_MAPPINGS_SINCE = """
SELECT m.id::text AS id, m.digest, m.created_at, m.cas_mapping_cas_backend::text,
       m.organization_id::text, m.workflow_run_id::text
FROM (SELECT id FROM workflow_runs WHERE created_at >= %(runs_since)s) AS run
CROSS JOIN LATERAL (
    SELECT * FROM cas_mappings WHERE workflow_run_id = run.id AND created_at >= %(since)s OFFSET 0
) AS m
UNION ALL
SELECT id::text AS id, digest, created_at, cas_mapping_cas_backend::text, organization_id::text,
       workflow_run_id::text
FROM cas_mappings
WHERE workflow_run_id IS NULL AND created_at >= %(since)s
"""
_ORDERED = "\nORDER BY created_at, id"
_COUNTED = ("SELECT count(*) FROM (", ") AS mappings")
RUN_WINDOW = dt.timedelta(hours=6)
# Before this, a run is a first import: every row is read (the recent plan would walk every run).
_FIRST_IMPORT_BEFORE = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)

# The columns read above that an older Chainloop lacks: the migration that brought each (renamed it,
# for organization_id: it was cas_mapping_organization), and the first release with it (the oldest tag
# of Chainloop's repository that contains the migration's commit). Every other column read is as old
# as Chainloop's CAS backends (2023-07).
_RECENT_COLUMNS = {
    ("cas_mappings", "organization_id"): ("20241123161902", "v0.123.0"),
    ("organizations", "deleted_at"): ("20250827093032", "v1.43.1"),
    ("cas_backends", "validation_error"): ("20250902095134", "v1.43.2"),
}
OLDEST_SUPPORTED_RELEASE = "v1.43.2"
# Read when present, never required: (migration, first release).
_OPTIONAL_COLUMNS = {("organizations", "suspended"): ("20260408122048", "v1.89.12")}
_READ_COLUMNS = {
    "organizations": ("id", "deleted_at"),
    "cas_backends": ("id", "organization_cas_backends", "name", "provider", "location", "secret_name",
                     "created_at", "validation_status", "validation_error", "validated_at", "default",
                     "fallback", "deleted_at"),
    "cas_mappings": ("id", "digest", "created_at", "cas_mapping_cas_backend", "organization_id",
                     "workflow_run_id"),
    "workflow_runs": ("id", "created_at"),
}  # fmt: skip
_COLUMNS_SQL = """
SELECT table_name::text, column_name::text FROM information_schema.columns
WHERE table_schema = ANY (current_schemas(false)) AND table_name = ANY (%(tables)s)
"""

CONNECT_TIMEOUT_SECONDS = 10


class SourceUnavailable(Exception):
    """Chainloop's database could not be reached or read; the message is one line, without secrets."""

    code = "source_unavailable"


class SchemaUnsupported(SourceUnavailable):
    """Chainloop's schema lacks a column the sync reads: a Chainloop older than the sync supports."""

    code = "schema_unsupported"


class ChainloopOrganization(Struct, frozen=True):
    """An ``organizations`` row: when Chainloop soft-deleted it (None: live), and whether it is
    suspended (Chainloop blocks every operation of a suspended org; False before v1.89.12)."""

    deleted_at: dt.datetime | None = None
    suspended: bool = False


class ChainloopBackend(Struct, frozen=True):
    """A ``cas_backends`` row, as Chainloop wrote it (PostgreSQL's types); the sync turns it into the
    service's ``domain.Backend`` (logic/chainloop_sync.py: ``backend_row``)."""

    id: str
    org_id: str
    name: str | None
    provider: str
    location: str | None
    secret_name: str | None
    created_at: dt.datetime
    validation_status: str | None
    validation_error: str | None
    validated_at: dt.datetime | None
    is_default: bool
    is_fallback: bool
    deleted_at: dt.datetime | None


class ChainloopMapping(Struct, frozen=True):
    """A ``cas_mappings`` row, as Chainloop wrote it (the digest not yet checked)."""

    id: str
    digest: str | None
    created_at: dt.datetime
    backend_id: str
    org_id: str | None
    workflow_run_id: str | None


class ChainloopDatabase:
    """A read-only session on Chainloop's database (``with ChainloopDatabase(dsn) as db: ...``)."""

    def __init__(self, dsn: str, *, itersize: int = 2000) -> None:
        self._dsn = dsn
        self._itersize = itersize
        self._connection: psycopg.Connection[Any] | None = None
        self._optional_present: set[tuple[str, str]] = set()

    def __enter__(self) -> ChainloopDatabase:
        import psycopg  # noqa: PLC0415 - the driver only on the sync's path

        try:
            self._connection = psycopg.connect(
                self._dsn,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                autocommit=False,
                application_name="cas-download-sync",
            )
            # Nothing here writes; a read-only transaction makes that a property of the session.
            self._connection.read_only = True
        except psycopg.Error as error:
            raise SourceUnavailable(f"cannot connect to Chainloop's database: {_one_line(error)}") from None
        try:
            self._check_schema()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _check_schema(self) -> None:
        rows = self._fetch_all(_COLUMNS_SQL, {"tables": list(_READ_COLUMNS)})
        present = {(table, column) for table, column in rows}
        self._optional_present = present & set(_OPTIONAL_COLUMNS)
        missing = [
            (table, column)
            for table, columns in _READ_COLUMNS.items()
            for column in columns
            if (table, column) not in present
        ]
        if missing:
            named = ", ".join(f"{table}.{column}" + _since(table, column) for table, column in missing)
            raise SchemaUnsupported(
                f"Chainloop's database lacks {named}: the sync needs Chainloop "
                f"{OLDEST_SUPPORTED_RELEASE} or later"
            )

    def organizations(self) -> dict[str, ChainloopOrganization]:
        """Every organization by id, soft-deleted ones included."""
        suspended = "suspended" if ("organizations", "suspended") in self._optional_present else "false"
        rows = self._fetch_all(_ORGANIZATIONS_SQL.format(suspended=suspended), {})
        return {row[0]: ChainloopOrganization(row[1], bool(row[2])) for row in rows}

    def backends(self) -> list[ChainloopBackend]:
        """Every backend row, soft-deleted ones included (there are few: a list is fine)."""
        rows = self._fetch_all(_BACKENDS_SQL, {})
        # _BACKENDS_SQL selects the Struct's fields in its order; the flags are PostgreSQL booleans
        return [ChainloopBackend(*(*row[:10], bool(row[10]), bool(row[11]), row[12])) for row in rows]

    def count_mappings(self, since: dt.datetime) -> int:
        sql, params = _mappings_query(since)
        rows = self._fetch_all(_COUNTED[0] + sql + _COUNTED[1], params)
        return int(rows[0][0])

    def mappings_since(self, since: dt.datetime) -> Iterator[ChainloopMapping]:
        """Mappings created at or after ``since``, oldest first, streamed from a server-side cursor."""
        import psycopg  # noqa: PLC0415

        sql, params = _mappings_query(since)
        connection = self._open()
        try:
            with connection.cursor(name="cas_download_mappings") as cursor:
                cursor.itersize = self._itersize
                cursor.execute(sql + _ORDERED, params)
                for row in cursor:  # the queries select the Struct's fields in its order
                    yield ChainloopMapping(*row)
            connection.commit()
        except psycopg.Error as error:
            raise SourceUnavailable(f"reading Chainloop's cas_mappings failed: {_one_line(error)}") from None

    def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        import psycopg  # noqa: PLC0415

        connection = self._open()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            connection.commit()
        except psycopg.Error as error:
            raise SourceUnavailable(f"reading Chainloop's database failed: {_one_line(error)}") from None
        return rows

    def _open(self) -> psycopg.Connection[Any]:
        if self._connection is None:
            raise RuntimeError("ChainloopDatabase is used outside its `with` block")
        return self._connection


def _mappings_query(since: dt.datetime) -> tuple[str, dict[str, Any]]:
    """The mappings created at or after ``since``: all of them for a first import, else the recent
    plan (reads what is new, not the table)."""
    if since < _FIRST_IMPORT_BEFORE:
        return _ALL_MAPPINGS_SINCE, {"since": since}
    return _RECENT_MAPPINGS_SINCE, {"since": since, "runs_since": since - RUN_WINDOW}


def _since(table: str, column: str) -> str:
    recent = _RECENT_COLUMNS.get((table, column))
    return f" (migration {recent[0]}, Chainloop {recent[1]})" if recent else ""


def _one_line(error: BaseException) -> str:
    """The driver's message on one line (it names host, port and user, never the password)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


# Secrets Manager's own format for an RDS / Aurora PostgreSQL secret, plus a plain connection string.
_DSN_KEYS = ("dsn", "url", "uri", "database_url")
_FIELD_KEYS = {"host": "host", "port": "port", "username": "user", "user": "user", "password": "password",
               "dbname": "dbname", "database": "dbname", "sslmode": "sslmode"}  # fmt: skip


def dsn_from_secret(secret_string: str, defaults: Mapping[str, str] | None = None) -> str:
    """A libpq connection string from the database secret: a JSON object with a ``dsn`` (or ``url``)
    key, or RDS's fields (``host``, ``port``, ``username``, ``password``, ``dbname``, optional
    ``sslmode``), or the connection string itself. Key names match case-insensitively.

    ``defaults`` (libpq parameters: ``host``, ``port``, ``dbname``, ``sslmode``; the template's
    ChainloopDatabase* parameters) fill in what the secret does not say, whatever its form: RDS's
    managed master secret (``rds!db-...``) holds only ``username`` and ``password``. A value in the
    secret wins."""
    import json  # noqa: PLC0415

    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    text = secret_string.strip()
    params: dict[str, str]
    if not text.startswith("{"):
        if not text:
            raise SourceUnavailable("the database secret is empty")
        params = _parsed(text)
    else:
        try:
            document = json.loads(text)
        except ValueError:
            raise SourceUnavailable(
                "the database secret is not a JSON object or a connection string"
            ) from None
        fields = {str(k).lower(): v for k, v in document.items()} if isinstance(document, dict) else {}
        dsn = next(
            (fields[k].strip() for k in _DSN_KEYS if isinstance(fields.get(k), str) and fields[k].strip()), ""
        )
        if dsn:
            params = _parsed(dsn)
        else:
            params = {
                _FIELD_KEYS[k]: str(v) for k, v in fields.items() if k in _FIELD_KEYS and v not in (None, "")
            }
    for key, value in (defaults or {}).items():
        if value and not params.get(key):
            params[key] = value
    if not (params.get("host") or params.get("hostaddr")):
        raise SourceUnavailable(
            "the database secret names no host (expected dsn, or host/port/username/...) and "
            "ChainloopDatabaseHost is not set"
        )
    return str(make_conninfo(**params))


def _parsed(dsn: str) -> dict[str, str]:
    """A connection string's parameters (URL or key=value form); its text is never in the error."""
    import psycopg  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        parsed = conninfo_to_dict(dsn)
    except psycopg.Error:  # its message would quote the string, password included
        raise SourceUnavailable("the database secret's connection string cannot be parsed") from None
    return {key: str(value) for key, value in parsed.items() if value is not None}
