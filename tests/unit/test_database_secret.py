"""The Chainloop database's connection string, from its secret and the stack's parameters: RDS's managed
master secret (``rds!db-...``) holds only username and password, so host, port, database name and
sslmode come from ChainloopDatabaseHost/Port/Name/SslMode, each used only where the secret is silent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from cas_download.config import ConfigError, DatabaseDefaults, SyncSettings
from cas_download.data.chainloop_db import SourceUnavailable, dsn_from_secret
from cas_download.handlers import chainloop_sync
from cas_download.observability import Telemetry

PASSWORD = "s3cr3t-Pa55word"
MANAGED_SECRET = json.dumps({"username": "chainloop_sync", "password": PASSWORD})
STACK_DEFAULTS = {"host": "chainloop.abc123.eu-west-1.rds.amazonaws.com", "port": "5432",
                  "dbname": "chainloop", "sslmode": "require"}  # fmt: skip
REQUIRED_ENV = {"BACKENDS_TABLE": "b", "MAPPINGS_TABLE": "m", "CHAINLOOP_DATABASE_SECRET_ARN": "arn"}


def connection(dsn: str) -> dict[str, Any]:
    return dict(conninfo_to_dict(dsn))


# --- dsn_from_secret --------------------------------------------------------------------------------


def test_rds_s_managed_master_secret_is_completed_by_the_stack_s_parameters() -> None:
    # Given RDS's managed master secret: username and password, nothing else
    # When the connection string is built with the stack's parameters
    dsn = dsn_from_secret(MANAGED_SECRET, STACK_DEFAULTS)
    # Then it has the secret's credentials and the parameters' host, port, database and sslmode
    assert connection(dsn) == {"user": "chainloop_sync", "password": PASSWORD, **STACK_DEFAULTS}


def test_without_the_parameters_a_managed_secret_names_no_host_and_says_what_to_set() -> None:
    with pytest.raises(SourceUnavailable) as raised:
        dsn_from_secret(MANAGED_SECRET)
    assert "ChainloopDatabaseHost" in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_what_the_secret_says_wins_over_the_parameters() -> None:
    # Given RDS's full secret format, naming its own host, port, database and sslmode
    secret = {"engine": "postgres", "host": "db.internal", "port": 6432, "username": "u", "password": "p",
              "dbname": "cp", "sslmode": "verify-full"}  # fmt: skip
    # When the stack's parameters say otherwise
    dsn = dsn_from_secret(json.dumps(secret), STACK_DEFAULTS)
    # Then the secret's values are kept
    assert connection(dsn) == {"host": "db.internal", "port": "6432", "user": "u", "password": "p",
                               "dbname": "cp", "sslmode": "verify-full"}  # fmt: skip


@pytest.mark.parametrize(
    "secret",
    [
        "postgresql://u:p@db.internal/cp",
        "host=db.internal user=u password=p dbname=cp",
        json.dumps({"dsn": "postgresql://u:p@db.internal/cp"}),
    ],
    ids=["url", "key-value", "json-dsn"],
)
def test_a_connection_string_gets_the_sslmode_it_lacks_and_keeps_the_rest(secret: str) -> None:
    dsn = dsn_from_secret(secret, {"host": "other", "port": "5432", "sslmode": "require"})
    parsed = connection(dsn)
    assert (parsed["host"], parsed["user"], parsed["dbname"]) == ("db.internal", "u", "cp")
    assert (parsed["sslmode"], parsed["port"]) == ("require", "5432")


def test_a_connection_string_s_own_sslmode_is_kept() -> None:
    dsn = dsn_from_secret("postgresql://u:p@db.internal/cp?sslmode=disable", {"sslmode": "require"})
    assert connection(dsn)["sslmode"] == "disable"


def test_without_parameters_a_connection_string_is_used_as_it_is() -> None:
    # (libpq's own defaults then apply: sslmode prefer)
    assert connection(dsn_from_secret("postgresql://u:p@db.internal:5433/cp")) == {
        "user": "u", "password": "p", "host": "db.internal", "port": "5433", "dbname": "cp"
    }  # fmt: skip


def test_an_unparseable_connection_string_is_refused_without_quoting_it() -> None:
    with pytest.raises(SourceUnavailable) as raised:
        dsn_from_secret(f"host=db password={PASSWORD} 'unterminated")
    assert "cannot be parsed" in str(raised.value)
    assert PASSWORD not in str(raised.value)


# --- SyncSettings -------------------------------------------------------------------------------------


def test_the_sync_reads_the_database_parameters_from_its_environment() -> None:
    settings = SyncSettings.from_env(
        {
            **REQUIRED_ENV,
            "CHAINLOOP_DATABASE_HOST": " db.internal ",
            "CHAINLOOP_DATABASE_PORT": "6432",
            "CHAINLOOP_DATABASE_NAME": "chainloop",
            "CHAINLOOP_DATABASE_SSLMODE": "verify-full",
        }
    )
    assert settings.database_defaults == DatabaseDefaults("db.internal", 6432, "chainloop", "verify-full")
    assert settings.database_defaults.as_conninfo() == {
        "host": "db.internal", "port": "6432", "dbname": "chainloop", "sslmode": "verify-full"
    }  # fmt: skip


def test_unset_database_parameters_leave_libpq_s_defaults() -> None:
    # (the template always sets them; a hand-run function without them behaves as before)
    settings = SyncSettings.from_env({**REQUIRED_ENV, "CHAINLOOP_DATABASE_HOST": ""})
    assert settings.database_defaults == DatabaseDefaults()
    assert settings.database_defaults.as_conninfo() == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAINLOOP_DATABASE_SSLMODE", "required"),
        ("CHAINLOOP_DATABASE_PORT", "0"),
        ("CHAINLOOP_DATABASE_PORT", "postgres"),
    ],
)
def test_an_invalid_database_parameter_is_a_configuration_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SyncSettings.from_env({**REQUIRED_ENV, name: value})


# --- the scheduled function -------------------------------------------------------------------------


class _Secrets:
    def __init__(self, secret_string: str) -> None:
        self.secret_string = secret_string

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        return {"SecretString": self.secret_string}


def test_the_scheduled_function_connects_with_the_managed_secret_and_its_parameters(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # Given the function deployed with host, port, database and sslmode, its secret RDS's managed one
    settings = SyncSettings.from_env(
        {
            **REQUIRED_ENV,
            **{
                f"CHAINLOOP_DATABASE_{k.upper().replace('DBNAME', 'NAME')}": v
                for k, v in STACK_DEFAULTS.items()
            },
        }
    )
    seen: list[str] = []

    class Database:  # stands in for ChainloopDatabase: records the connection string, then refuses
        def __init__(self, dsn: str) -> None:
            seen.append(dsn)

        def __enter__(self) -> None:
            raise SourceUnavailable("cannot connect to Chainloop's database: stand-in")

        def __exit__(self, *args: object) -> None:
            return None

    monkeypatch.setattr(chainloop_sync, "ChainloopDatabase", Database)
    container = chainloop_sync.Container(
        settings=settings, target=None, secrets=_Secrets(MANAGED_SECRET),  # type: ignore[arg-type]
        telemetry=Telemetry(settings.service_name, settings.metrics_namespace),
    )  # fmt: skip

    # When it runs
    with pytest.raises(chainloop_sync.SyncFailed):
        chainloop_sync.run(container, lambda_context)

    # Then it connected to the parameters' database with the secret's credentials
    (dsn,) = seen
    assert connection(dsn) == {"user": "chainloop_sync", "password": PASSWORD, **STACK_DEFAULTS}
