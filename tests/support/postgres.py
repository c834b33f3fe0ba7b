"""The tests' PostgreSQL (cas_local.postgres) with what pytest adds: missing server binaries fail under
CI (never a silent skip), and each test gets a database of its own with Chainloop's schema.

Chainloop's schema and rows are written by cas_local.chainloop (``SCHEMA``, ``ChainloopRows``): the
one writer, kept with the local tools (which ship; the tests do not) so the sync benchmark uses it too.
tests/scenarios/test_chainloop_schema.py checks that schema against Chainloop's migrations."""

from __future__ import annotations

import uuid

from cas_local.chainloop import ChainloopOrg, ChainloopRows
from cas_local.postgres import INSTALL_HINT, Postgres, find_install
from cas_local.postgres import start_postgres as _start_postgres

from .ci import require
from .hygiene import register as register_secret

__all__ = ["ChainloopOrg", "ChainloopRows", "Postgres", "chainloop_database", "start_postgres"]


def start_postgres() -> Postgres:
    require(find_install(), INSTALL_HINT)
    server = _start_postgres(password=f"pg-{uuid.uuid4().hex}")
    register_secret(server.password, "postgres_password")
    return server


def chainloop_database(server: Postgres) -> ChainloopRows:
    """A new database on ``server`` with Chainloop's ``organizations``, ``cas_backends`` and
    ``cas_mappings`` as its migrations leave them."""
    rows = ChainloopRows(server.create_database(f"chainloop_{uuid.uuid4().hex[:12]}"))
    rows.create_schema()
    return rows
