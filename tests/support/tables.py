"""The tables of SPEC.md and the service's own, created on the moto control server exactly as
template.yaml declares their keys: for the tests' fixtures and the benchmarks."""

from __future__ import annotations

from tests.support.moto_servers import AwsServers
from tests.support.world import Tables


def create_tables(servers: AwsServers, suffix: str) -> Tables:
    """The two tables exactly as SPEC.md names their keys, on the control server."""
    tables = Tables(backends=f"cas-backends-{suffix}", mappings=f"cas-mappings-{suffix}")
    ddb = servers.control_client("dynamodb")
    ddb.create_table(
        TableName=tables.backends,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "org_id", "AttributeType": "S"},
            {"AttributeName": "secret_name", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "org_id-index",
                "KeySchema": [{"AttributeName": "org_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "secret_name-index",
                "KeySchema": [{"AttributeName": "secret_name", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    )
    ddb.create_table(
        TableName=tables.mappings,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "digest", "AttributeType": "S"},
            {"AttributeName": "org_backend", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "digest", "KeyType": "HASH"},
            {"AttributeName": "org_backend", "KeyType": "RANGE"},
        ],
    )
    waiter = ddb.get_waiter("table_exists")
    for name in (tables.backends, tables.mappings):
        waiter.wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return tables


def create_verifications_table(servers: AwsServers, suffix: str) -> str:
    """The service's own Verifications table (template: VerificationsTable), on the control server."""
    name = f"cas-verifications-{suffix}"
    ddb = servers.control_client("dynamodb")
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
    )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return name
