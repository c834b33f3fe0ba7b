"""The tables of SPEC.md and the service's own, created on the moto control server exactly as
template.yaml declares their keys: for the tests' fixtures and the benchmarks."""

from __future__ import annotations

from typing import Any

from tests.support.moto_servers import AwsServers
from tests.support.world import Tables


def create_tables(servers: AwsServers, suffix: str) -> Tables:
    """The two tables exactly as SPEC.md names their keys, on the control server."""
    tables = Tables(backends=f"cas-backends-{suffix}", mappings=f"cas-mappings-{suffix}")
    ddb = servers.control_client("dynamodb")
    _create_table(ddb, tables.backends, key=("id",), indexes=("org_id", "secret_name"))
    _create_table(ddb, tables.mappings, key=("digest", "org_backend"))
    _wait_for(ddb, tables.backends, tables.mappings)
    return tables


def create_verifications_table(servers: AwsServers, suffix: str) -> str:
    """The service's own Verifications table (template: VerificationsTable), on the control server."""
    name = f"cas-verifications-{suffix}"
    ddb = servers.control_client("dynamodb")
    _create_table(ddb, name, key=("object_id",))
    _wait_for(ddb, name)
    return name


def _create_table(ddb: Any, name: str, *, key: tuple[str, ...], indexes: tuple[str, ...] = ()) -> None:
    """An on-demand table of string attributes: ``key`` is (hash,) or (hash, range); each of ``indexes``
    is a global secondary index ``{attribute}-index`` hashed on that attribute, projecting all."""
    create: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in (*key, *indexes)],
        "KeySchema": [
            {"AttributeName": a, "KeyType": kind} for a, kind in zip(key, ("HASH", "RANGE"), strict=False)
        ],
    }
    if indexes:
        create["GlobalSecondaryIndexes"] = [
            {
                "IndexName": f"{a}-index",
                "KeySchema": [{"AttributeName": a, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for a in indexes
        ]
    ddb.create_table(**create)


def _wait_for(ddb: Any, *names: str) -> None:
    waiter = ddb.get_waiter("table_exists")
    for name in names:
        waiter.wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
