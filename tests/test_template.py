"""template.yaml and the builds agree with the code and with the spec (tables, routes, IAM, alarms)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from scripts.layer_requirements import pinned

from cas_download.config import ENV_VARS, REQUIRED_ENV_VARS, Settings
from cas_local.template import function_properties, load_template
from tests.support.ci import require

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAYER_DIR = ROOT / "layers" / "dependencies"
PACKAGE_DIR = ROOT / "functions" / "cas_download"

FUNCTIONS = ("DownloadFunction", "ValidatorFunction", "ChainloopSyncFunction")

SECRETS = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretNamePrefix}*"
BACKENDS = "${BackendsTable.Arn}"
ORG_INDEX = "${BackendsTable.Arn}/index/org_id-index"
SECRET_INDEX = "${BackendsTable.Arn}/index/secret_name-index"
MAPPINGS = "${MappingsTable.Arn}"
VERIFICATIONS = "${VerificationsTable.Arn}"
# Customer managed keys of secrets (SecretsKmsKeyArns): decrypt only, through Secrets Manager only
SECRET_KEYS = "${SecretsKmsKeyArns}"

# Every action each function may perform, and on what: nothing more, nothing less.
GRANTS = {
    "DownloadFunction": {
        # secret_name-index: a Chainloop link token of an older release (no org-id) names only its
        # secret; the org is that of the row holding it, found without a Scan of every org's rows
        "dynamodb:Query": {BACKENDS, ORG_INDEX, SECRET_INDEX, MAPPINGS},
        "dynamodb:GetItem": {BACKENDS, ORG_INDEX, SECRET_INDEX, MAPPINGS, VERIFICATIONS},
        "dynamodb:UpdateItem": {BACKENDS},
        "dynamodb:PutItem": {VERIFICATIONS},
        "secretsmanager:GetSecretValue": {SECRETS},
        "kms:Decrypt": {SECRET_KEYS},
        # on demand: ask the verifier to prove an object too large to hash within the request
        "lambda:InvokeFunction": {"${VerifierAskFunction.Arn}"},
    },
    "ValidatorFunction": {
        "dynamodb:Scan": {BACKENDS},
        "dynamodb:UpdateItem": {BACKENDS},
        "secretsmanager:GetSecretValue": {SECRETS},
        "kms:Decrypt": {SECRET_KEYS},
    },
    # Reads to learn what exists; backend rows updated whole (Chainloop owns them); mappings only added.
    "ChainloopSyncFunction": {
        "dynamodb:BatchGetItem": {BACKENDS, MAPPINGS},
        "dynamodb:GetItem": {BACKENDS, MAPPINGS},
        "dynamodb:UpdateItem": {BACKENDS},
        "dynamodb:BatchWriteItem": {MAPPINGS},
        "dynamodb:PutItem": {MAPPINGS},
        "secretsmanager:GetSecretValue": {"${ChainloopDatabaseSecretArn}"},
        "kms:Decrypt": {SECRET_KEYS},
    },
}
# The only attributes of a control-plane row the service may write (or test in a write's condition).
STATUS_ATTRIBUTES = {"id", "validation_status", "validation_error", "validated_at"}
# ReturnValues that read no attribute beyond those written (ALL_OLD / ALL_NEW would read the whole row).
NARROW_RETURN_VALUES = {"NONE", "UPDATED_OLD", "UPDATED_NEW"}

# Alarm -> (function whose metrics it watches, metric names, threshold: parameter name or fixed value)
ALARMS: dict[str, tuple[str, set[str], str | int]] = {
    "FallbackRateAlarm": ("DownloadFunction", {"Fallbacks", "Requests"}, "FallbackRateThresholdPercent"),
    "ServerErrorRateAlarm": (
        "DownloadFunction",
        {"ServerErrors", "Requests"},
        "ServerErrorRateThresholdPercent",
    ),
    # One integrity failure is a security incident, one crashed validator run a stale status table:
    # their thresholds are not tunables.
    "IntegrityFailuresAlarm": ("DownloadFunction", {"IntegrityFailures"}, 1),
    "ValidatorErrorsAlarm": ("ValidatorFunction", {"Errors"}, 1),
    "ValidationErrorsAlarm": ("ValidatorFunction", {"ValidationErrors"}, "ValidatorErrorThreshold"),
    "ChainloopSyncErrorsAlarm": ("ChainloopSyncFunction", {"Errors"}, 1),
    "VerifierErrorsAlarm": ("VerifierFunction", {"Errors"}, 1),
    "VerifierAskErrorsAlarm": ("VerifierAskFunction", {"Errors"}, 1),
    "VerifierIntegrityFailuresAlarm": ("VerifierFunction", {"IntegrityFailures"}, 1),
    "VerifierIteratorAgeAlarm": ("VerifierFunction", {"IteratorAge"}, "VerifierIteratorAgeThresholdSeconds"),
    # Lambda's own view of the download function: crashes and timeouts, refused invocations
    "DownloadErrorsAlarm": ("DownloadFunction", {"Errors"}, "FunctionErrorsThreshold"),
    "DownloadThrottlesAlarm": ("DownloadFunction", {"Throttles"}, "FunctionThrottlesThreshold"),
    # Runs out of time in each of three hours in a row: a backlog that does not shrink
    "ChainloopSyncIncompleteAlarm": ("ChainloopSyncFunction", {"SyncIncomplete"}, 1),
}
# Alarms on metrics no function emits: the verifier's on-failure queue (AWS/SQS).
QUEUE_ALARMS = {"VerifierFailuresAlarm"}
# Alarms on the HTTP API as callers see it (AWS/ApiGateway): metric names and threshold parameter.
API_ALARMS = {
    "ApiServerErrorRateAlarm": ({"5xx", "Count"}, "ServerErrorRateThresholdPercent"),
    "ApiLatencyAlarm": ({"Latency"}, "ApiLatencyThresholdMilliseconds"),
}
# No completed sync run in a window: silence is the failure (missing data breaches).
LAG_ALARM = "ChainloopSyncLagAlarm"
SYNC_ALARMS = {"ChainloopSyncErrorsAlarm", "ChainloopSyncIncompleteAlarm", LAG_ALARM}
# A deploy's rollback alarm: what the new version does wrong (issue 28), nothing a tenant can cause
ROLLBACK_ALARMS = {"NewVersionErrorsAlarm"}
# What a tenant's own storage or data can trip (a revoked backend's 502s, a tampered object): pages only
TENANT_TRIPPABLE_ALARMS = {
    "ServerErrorRateAlarm",
    "ApiServerErrorRateAlarm",
    "IntegrityFailuresAlarm",
    "FallbackRateAlarm",
    "DownloadErrorsAlarm",
}
THRESHOLD_DEFAULTS = {
    "FallbackRateThresholdPercent": 20,
    "ServerErrorRateThresholdPercent": 5,
    "ValidatorErrorThreshold": 1,
    "VerifierIteratorAgeThresholdSeconds": 900,
    "FunctionErrorsThreshold": 1,
    "FunctionThrottlesThreshold": 1,
    "ApiLatencyThresholdMilliseconds": 5000,
}
CONDITIONAL_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}

HTTP_API_INTEGRATION_LIMIT_SECONDS = 30
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _function_props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props = function_properties(template, logical_id)
    # the template's own managed policies, resolved to their statements (what the role will hold)
    props["Policies"] = [_resolved_policy(template, policy) for policy in props.get("Policies", [])]
    return props


def _resolved_policy(template: dict[str, Any], policy: Any) -> dict[str, Any]:
    if isinstance(policy, dict) and set(policy) == {"Fn::If"}:
        # an optional managed policy of this template (present under its condition): what it grants then
        condition, given, absent = policy["Fn::If"]
        assert absent == {"Ref": "AWS::NoValue"}, policy
        assert template["Resources"][given["Ref"]].get("Condition") == condition, policy
        return _resolved_policy(template, given)
    if isinstance(policy, dict) and set(policy) == {"Ref"}:
        resource = template["Resources"].get(policy["Ref"], {})
        assert resource.get("Type") == "AWS::IAM::ManagedPolicy", f"{policy!r} is not this template's"
        return {"Statement": resource["Properties"]["PolicyDocument"]["Statement"]}
    assert isinstance(policy, dict), f"only inline statements are allowed, got {policy!r}"
    return dict(policy)


def _statements(props: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in props.get("Policies", []):
        assert isinstance(policy, dict), f"only inline statements are allowed, got {policy!r}"
        assert set(policy) == {"Statement"}, f"only inline statements are allowed, got {sorted(policy)}"
        found += policy["Statement"]
    return found


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    """The download function's properties (Globals merged)."""
    return _function_props(template, "DownloadFunction")


@pytest.fixture(scope="module")
def validator(template: dict[str, Any]) -> dict[str, Any]:
    return _function_props(template, "ValidatorFunction")


@pytest.fixture(scope="module", params=FUNCTIONS)
def any_function(request: pytest.FixtureRequest, template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Each function of the stack in turn: (logical id, properties)."""
    logical_id: str = request.param
    return logical_id, _function_props(template, logical_id)


@pytest.fixture(scope="module")
def layer(template: dict[str, Any]) -> dict[str, Any]:
    layer_props: dict[str, Any] = template["Resources"]["DependenciesLayer"]["Properties"]
    return layer_props


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """A resource ARN as written, whatever intrinsic wraps it (the pattern, not the deployed value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), *_ = value.items()
        if key == "Fn::GetAtt":
            return f"${{{'.'.join(inner)}}}"
        if key == "Ref":
            return f"${{{inner}}}"
        if key == "Fn::Sub":
            return inner if isinstance(inner, str) else inner[0]
    return repr(value)


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for statement in statements:
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, set()).update(_text(r) for r in _as_list(statement["Resource"]))
    return granted


def _all_statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM statement anywhere in the template (function policies, roles, managed policies)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement" and isinstance(value, list):
                found += [s for s in value if isinstance(s, dict)]
            else:
                found += _all_statements(value)
    elif isinstance(node, list):
        for item in node:
            found += _all_statements(item)
    return found


def _parameter_default(template: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _makefile_variable(name: str) -> str:
    text = (LAYER_DIR / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name}\s*\??=\s*(\S+)\s*$", text, re.MULTILINE)
    assert match, f"{name} is not set in layers/dependencies/Makefile"
    return match.group(1)


def _attribute_types(table: dict[str, Any]) -> dict[str, str]:
    return {a["AttributeName"]: a["AttributeType"] for a in table["Properties"]["AttributeDefinitions"]}


def _key_schema(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def _package_source() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(PACKAGE_DIR.rglob("*.py")))


# --- handler and environment ---------------------------------------------------------------------


def test_handler_resolves_to_an_importable_callable(any_function: tuple[str, dict[str, Any]]) -> None:
    # given the function's Handler, relative to its CodeUri
    _, props = any_function
    module_name, _, attribute = props["Handler"].rpartition(".")
    assert props["CodeUri"].rstrip("/") == "functions"
    # when the module is imported the way the Lambda runtime does
    module = importlib.import_module(module_name)
    # then it comes from functions/ and the handler is a callable
    assert Path(module.__file__ or "").resolve().is_relative_to(ROOT / "functions")
    assert callable(getattr(module, attribute))


def test_every_required_env_var_is_set(any_function: tuple[str, dict[str, Any]]) -> None:
    # given the function's environment
    variables = any_function[1]["Environment"]["Variables"]
    # then every variable the code requires is there
    assert set(REQUIRED_ENV_VARS) <= set(variables)


def test_every_env_var_set_is_read_by_the_code(any_function: tuple[str, dict[str, Any]]) -> None:
    # given the function's environment
    variables = any_function[1]["Environment"]["Variables"]
    # then the code reads each of them: no dead or misspelt configuration
    assert set(variables) - set(ENV_VARS) == set()


def test_table_env_vars_point_at_the_stack_tables(any_function: tuple[str, dict[str, Any]]) -> None:
    variables = any_function[1]["Environment"]["Variables"]
    assert variables["BACKENDS_TABLE"] == {"Ref": "BackendsTable"}
    assert variables["MAPPINGS_TABLE"] == {"Ref": "MappingsTable"}


def test_download_function_is_given_its_verification_and_health_settings(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    assert variables["VERIFICATIONS_TABLE"] == {"Ref": "VerificationsTable"}
    assert variables["VERIFICATION_RECORD_TTL_DAYS"] == {"Ref": "VerificationRecordTtlDays"}
    assert variables["FAILURE_MEMORY_SECONDS"] == {"Ref": "FailureMemorySeconds"}


def test_validator_is_given_its_settings(template: dict[str, Any], validator: dict[str, Any]) -> None:
    variables = validator["Environment"]["Variables"]
    assert variables["VALIDATOR_CONCURRENCY"] == {"Ref": "ValidatorConcurrency"}
    assert template["Parameters"]["ValidatorConcurrency"]["Default"] == 8
    assert variables["S3_CONNECT_TIMEOUT_SECONDS"] == {"Ref": "S3ConnectTimeoutSeconds"}
    assert variables["S3_READ_TIMEOUT_SECONDS"] == {"Ref": "S3ReadTimeoutSeconds"}
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_the_chainloop_sync_exists_only_with_its_database_secret(template: dict[str, Any]) -> None:
    # given everything the sync brings
    optional = [
        "ChainloopSyncFunction",
        "ChainloopSyncFunctionLogGroup",
        "PostgresLayer",
        *sorted(SYNC_ALARMS),
    ]
    # then each is created only when the database secret is given
    assert template["Conditions"]["HasChainloopSync"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ChainloopDatabaseSecretArn"}, ""]}]
    }
    assert {name: template["Resources"][name].get("Condition") for name in optional} == dict.fromkeys(
        optional, "HasChainloopSync"
    )
    assert template["Parameters"]["ChainloopDatabaseSecretArn"]["Default"] == ""


def test_the_chainloop_sync_runs_in_the_given_vpc_on_its_schedule(template: dict[str, Any]) -> None:
    props = _function_props(template, "ChainloopSyncFunction")
    condition, in_vpc, outside = props["VpcConfig"]["Fn::If"]
    assert condition == "HasChainloopVpc"
    assert in_vpc == {
        "SubnetIds": {"Ref": "ChainloopSubnetIds"},
        "SecurityGroupIds": {"Ref": "ChainloopSecurityGroupIds"},
    }
    assert outside == {"Ref": "AWS::NoValue"}
    (event,) = props["Events"].values()
    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", {"Ref": "ChainloopSyncSchedule"})
    assert props["Environment"]["Variables"]["CHAINLOOP_DATABASE_SECRET_ARN"] == {
        "Ref": "ChainloopDatabaseSecretArn"
    }


def test_only_the_chainloop_sync_carries_the_postgres_layer(template: dict[str, Any]) -> None:
    carriers = {
        logical_id
        for logical_id in FUNCTIONS
        if {"Ref": "PostgresLayer"} in _function_props(template, logical_id)["Layers"]
    }
    assert carriers == {"ChainloopSyncFunction"}


def test_each_function_has_its_own_metrics_service(
    function: dict[str, Any], validator: dict[str, Any]
) -> None:
    download_env = function["Environment"]["Variables"]
    validator_env = validator["Environment"]["Variables"]
    assert download_env["POWERTOOLS_SERVICE_NAME"] == "cas-download"
    assert validator_env["POWERTOOLS_SERVICE_NAME"] == "cas-download-validator"
    assert download_env["POWERTOOLS_METRICS_NAMESPACE"] == "CasDownload"
    assert validator_env["POWERTOOLS_METRICS_NAMESPACE"] == "CasDownload"


# --- tables ------------------------------------------------------------------------------------


def test_backends_table_matches_the_spec(template: dict[str, Any]) -> None:
    # given the Backends table
    table = template["Resources"]["BackendsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    # then its key, attribute types and org index are the contract's
    assert _key_schema(props["KeySchema"]) == [("id", "HASH")]
    assert _attribute_types(table) == {"id": "S", "org_id": "S", "secret_name": "S"}
    by_org, by_secret = props["GlobalSecondaryIndexes"]
    assert by_org["IndexName"] == "org_id-index"
    assert _key_schema(by_org["KeySchema"]) == [("org_id", "HASH")]
    assert by_org["Projection"] == {"ProjectionType": "ALL"}
    # and the service's own index finds the org of a link token that names only its secret (no Scan)
    assert by_secret["IndexName"] == "secret_name-index"
    assert _key_schema(by_secret["KeySchema"]) == [("secret_name", "HASH")]
    assert by_secret["Projection"] == {"ProjectionType": "ALL"}


def test_mappings_table_matches_the_spec(template: dict[str, Any]) -> None:
    # given the Mappings table
    table = template["Resources"]["MappingsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    # then it is keyed by digest and org_backend, both strings, with no index
    assert _key_schema(props["KeySchema"]) == [("digest", "HASH"), ("org_backend", "RANGE")]
    assert _attribute_types(table) == {"digest": "S", "org_backend": "S"}
    assert "GlobalSecondaryIndexes" not in props
    assert "LocalSecondaryIndexes" not in props


@pytest.mark.parametrize("logical_id", ["BackendsTable", "MappingsTable"])
def test_tables_are_on_demand_with_point_in_time_recovery(template: dict[str, Any], logical_id: str) -> None:
    props = template["Resources"][logical_id]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_verifications_table_is_keyed_by_object_and_expires_by_ttl(template: dict[str, Any]) -> None:
    # given the service's own table of proofs
    table = template["Resources"]["VerificationsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    # then one item per stored object, expired by DynamoDB TTL on expires_at, on demand and encrypted
    assert _key_schema(props["KeySchema"]) == [("object_id", "HASH")]
    assert _attribute_types(table) == {"object_id": "S"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "GlobalSecondaryIndexes" not in props
    # and its name is an output (env VERIFICATIONS_TABLE of the download function)
    assert template["Outputs"]["VerificationsTableName"]["Value"] == {"Ref": "VerificationsTable"}


def test_verification_model_matches_the_table() -> None:
    # given the code's model of a verification record (imported here: a rename fails this test only)
    tables_module = importlib.import_module("cas_download.data.tables")
    tables = tables_module.build_tables(
        Settings(backends_table="b", mappings_table="m", verifications_table="v")
    )
    model = tables.verification_model
    assert model is not None
    attributes = model.get_attributes()
    # then its hash key and TTL attribute are the table's
    hash_keys = [attribute.attr_name for attribute in attributes.values() if attribute.is_hash_key]
    assert hash_keys == ["object_id"]
    assert type(attributes["expires_at"]).__name__ == "TTLAttribute"
    assert attributes["expires_at"].attr_name == "expires_at"


# --- IAM ---------------------------------------------------------------------------------------


def test_function_role_is_built_only_from_statements_in_this_template(
    template: dict[str, Any], any_function: tuple[str, dict[str, Any]]
) -> None:
    # given the function's permissions as written
    logical_id, _ = any_function
    written = function_properties(template, logical_id)
    # then no external role, no AWS managed policy and no SAM policy template widens them: each
    # policy is inline, or a managed policy this template defines
    assert "Role" not in written
    for entry in written["Policies"]:
        assert isinstance(entry, dict)
        # an optional policy of this template is checked as the one it names (_resolved_policy checks it)
        policy = entry["Fn::If"][1] if set(entry) == {"Fn::If"} else entry
        if set(policy) == {"Ref"}:
            assert template["Resources"][policy["Ref"]]["Type"] == "AWS::IAM::ManagedPolicy"
        else:
            assert set(policy) == {"Statement"}


def test_what_every_function_shares_is_said_once_in_globals(template: dict[str, Any]) -> None:
    # given the Globals section, in the SAM starters' style
    shared = template["Globals"]["Function"]
    assert {"Runtime", "Architectures", "Layers", "Tracing", "CodeUri", "Environment"} <= set(shared)
    assert {"POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(shared["Environment"]["Variables"])
    for logical_id in FUNCTIONS:
        written = template["Resources"][logical_id]["Properties"]
        # then no function restates a shared value: one place to change the runtime or a variable
        for key in ("Runtime", "Architectures", "Tracing", "CodeUri"):
            assert key not in written, f"{logical_id} restates {key}"
        own_variables = written.get("Environment", {}).get("Variables", {})
        assert not set(own_variables) & set(shared["Environment"]["Variables"]), logical_id
        assert not [layer for layer in written.get("Layers", []) if layer in shared["Layers"]], logical_id
        # and each still deploys with them, with Lambda's own X-Ray segment
        merged = function_properties(template, logical_id)
        assert merged["Tracing"] == "Active"
        assert merged["Layers"][0] == {"Ref": "DependenciesLayer"}
        assert merged["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"].startswith("cas-download")


def test_the_status_write_grant_is_written_once_and_shared(template: dict[str, Any]) -> None:
    # given every statement of the template that allows UpdateItem on Backends with an attribute limit
    status_grants = [
        statement
        for statement in _all_statements(template["Resources"])
        if "dynamodb:Attributes" in json.dumps(statement.get("Condition", {}))
    ]
    # then there is exactly one, in one managed policy, attached to both service functions
    assert len(status_grants) == 1
    (policy_id,) = [
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
        and status_grants[0] in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    for logical_id in ("DownloadFunction", "ValidatorFunction"):
        assert {"Ref": policy_id} in template["Resources"][logical_id]["Properties"]["Policies"]
    assert {"Ref": policy_id} not in template["Resources"]["ChainloopSyncFunction"]["Properties"]["Policies"]


def test_each_function_is_granted_exactly_its_actions_on_exactly_its_resources(
    any_function: tuple[str, dict[str, Any]],
) -> None:
    # given every statement of the function's policies
    logical_id, props = any_function
    statements = _statements(props)
    # then they allow what the code does, on the resources it does it to, and nothing else
    assert _grants(statements) == GRANTS[logical_id]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    assert all("NotAction" not in s and "NotResource" not in s for s in statements)


def test_validator_may_only_scan_update_status_and_read_secrets(validator: dict[str, Any]) -> None:
    actions = {a for statement in _statements(validator) for a in _as_list(statement["Action"])}
    assert actions == {"dynamodb:Scan", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue", "kms:Decrypt"}


def test_no_iam_statement_anywhere_has_a_wildcard_resource(template: dict[str, Any]) -> None:
    # given every IAM statement in the template
    statements = _all_statements(template["Resources"])
    resources = [_text(r) for statement in statements for r in _as_list(statement.get("Resource", []))]
    # then none is "*" and the only wildcard is the trailing one of the secret-name prefix
    assert resources
    assert all("NotResource" not in statement for statement in statements)
    for resource in resources:
        assert resource != "*"
        if "*" in resource:
            assert resource == SECRETS, resource


@pytest.mark.parametrize("logical_id", ["DownloadFunction", "ValidatorFunction"])
def test_status_writes_are_restricted_to_the_status_attributes(
    template: dict[str, Any], logical_id: str
) -> None:
    # given every statement of the service's functions that allows UpdateItem (their only write to a
    # control-plane table; the Chainloop sync is the control plane's copier and writes whole rows)
    props = _function_props(template, logical_id)
    updates = [s for s in _statements(props) if "dynamodb:UpdateItem" in _as_list(s["Action"])]
    assert updates, "the function records backend status"
    for statement in updates:
        # then it is UpdateItem alone, on the Backends table alone
        assert _as_list(statement["Action"]) == ["dynamodb:UpdateItem"]
        assert [_text(r) for r in _as_list(statement["Resource"])] == [BACKENDS]
        # limited to the key and the status attributes: every attribute the request names (set,
        # removed or tested in its condition) must be one of them, hence ForAllValues
        condition = statement["Condition"]
        assert set(condition) == {"ForAllValues:StringEquals", "StringEqualsIfExists"}
        assert set(condition["ForAllValues:StringEquals"]) == {"dynamodb:Attributes"}
        assert set(condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == STATUS_ATTRIBUTES
        # and it cannot read the rest of the row back through ReturnValues ALL_OLD / ALL_NEW
        assert set(condition["StringEqualsIfExists"]) == {"dynamodb:ReturnValues"}
        assert set(condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]) == NARROW_RETURN_VALUES


_EXPRESSION_WORDS = {
    "SET",
    "REMOVE",
    "ADD",
    "DELETE",
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
    "if_not_exists",
    "list_append",
}


def _attribute_names(request: dict[str, Any]) -> set[str]:
    """Top-level attribute names an UpdateItem request touches: key, update and condition."""
    names = set(request.get("Key", {}))
    placeholders = request.get("ExpressionAttributeNames", {})
    for field in ("UpdateExpression", "ConditionExpression"):
        expression = request.get(field) or ""
        expression = re.sub(r":[A-Za-z0-9_]+", " ", expression)  # values
        for token in re.findall(r"#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*", expression):
            if token.startswith("#"):
                names.add(placeholders[token].split(".")[0])
            elif token not in _EXPRESSION_WORDS:
                names.add(token)
    assert not request.get("AttributeUpdates"), "legacy parameter: use UpdateExpression"
    assert not request.get("Expected"), "legacy parameter: use ConditionExpression"
    return names


def test_the_code_s_status_writes_fit_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the code's status write (download path and validator), caught before it leaves botocore
    tables_module = importlib.import_module("cas_download.data.tables")
    sent: list[dict[str, Any]] = []

    def fake_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> dict[str, Any]:
        assert operation_name == "UpdateItem", f"unexpected {operation_name}"
        sent.append(api_params)
        # enough of an answer for any ReturnValues (PynamoDB's Model.update reads Attributes back)
        return {"Attributes": dict(api_params.get("Key", {}))}

    monkeypatch.setattr(BaseClient, "_make_api_call", fake_call)
    tables = tables_module.build_tables(Settings(backends_table="backends", mappings_table="mappings"))
    # when every kind of status write is made, with and without an error message
    guards = list(tables_module.StatusGuard)
    for guard in guards:
        for status, error in (("Invalid", "credentials_invalid: rejected"), ("OK", None)):
            tables.record_status("backend-1", status, error, "2025-01-01T00:00:00.000000Z", guard)
    # then each request names only the attributes the policy allows and reads nothing back
    assert len(sent) == 2 * len(guards)
    for request in sent:
        assert _attribute_names(request) <= STATUS_ATTRIBUTES, request
        assert request.get("ReturnValues", "NONE") in NARROW_RETURN_VALUES, request
        assert request.get("ConditionExpression"), "status writes are conditional"


def test_secret_prefix_parameter_cannot_be_empty_or_a_wildcard(template: dict[str, Any]) -> None:
    # an empty prefix would turn "secret:${SecretNamePrefix}*" into every secret of the account
    parameter = template["Parameters"]["SecretNamePrefix"]
    assert parameter["MinLength"] >= 1
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("cas/")
    assert not pattern.fullmatch("*")
    assert not pattern.fullmatch("")


# --- API ---------------------------------------------------------------------------------------


def test_get_and_head_artifact_routes_reach_the_function(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # given the function's HTTP API events
    events = [e["Properties"] for e in function["Events"].values() if e["Type"] == "HttpApi"]
    # then exactly GET and HEAD of the artifact route and of Chainloop's link route, and the link
    # route's CORS preflight (OPTIONS, for Chainloop's UI), payload 2.0, on the stack's API
    assert sorted((e["Method"].upper(), e["Path"]) for e in events) == [
        ("GET", "/download/{digest}"),
        ("GET", "/v1/artifacts/{digest}"),
        ("HEAD", "/download/{digest}"),
        ("HEAD", "/v1/artifacts/{digest}"),
        ("OPTIONS", "/download/{digest}"),
    ]
    assert all(e.get("PayloadFormatVersion", "2.0") == "2.0" for e in events)
    apis = _resources_of_type(template, "AWS::Serverless::HttpApi")
    assert all(e["ApiId"]["Ref"] in apis for e in events)


def test_only_the_chainloop_link_routes_are_outside_the_jwt_authorizer(function: dict[str, Any]) -> None:
    # Given the function's HTTP API events
    events = [e["Properties"] for e in function["Events"].values() if e["Type"] == "HttpApi"]
    # Then the artifact routes keep the API's default (JWT) authorizer, and the link routes, whose
    # token is verified in the function, have none
    assert {e["Path"]: e.get("Auth", {}).get("Authorizer") for e in events} == {
        "/v1/artifacts/{digest}": None,
        "/download/{digest}": "NONE",
    }


def test_the_functions_link_settings_come_from_their_parameters(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    env = function["Environment"]["Variables"]
    assert env["CHAINLOOP_CAS_PUBLIC_KEYS"] == {"Ref": "ChainloopCasPublicKeys"}
    assert env["CHAINLOOP_CAS_ISSUER"] == {"Ref": "ChainloopCasIssuer"}
    # and both are optional: without keys the route answers 404
    assert template["Parameters"]["ChainloopCasPublicKeys"]["Default"] == ""
    assert template["Parameters"]["ChainloopCasIssuer"]["Default"] == "cp.chainloop"


def test_the_access_log_never_records_a_query_string_or_header(template: dict[str, Any]) -> None:
    # Given the HTTP API's access log format
    (api,) = _resources_of_type(template, "AWS::Serverless::HttpApi").values()
    log_format = api["Properties"]["AccessLogSettings"]["Format"]
    variables = set(re.findall(r"\$[A-Za-z.]+", log_format))
    # Then it names the route by its key, and no variable that could carry a link's ?t=<token> or an
    # Authorization header: no query string, no raw path or URL, no request header
    assert "$context.routeKey" in variables
    assert not [v for v in variables if re.search(r"(?i)querystring|\$request\.|header|uri|url", v)]
    assert "$context.path" not in variables


def test_api_requires_a_jwt_from_the_configured_issuer(template: dict[str, Any]) -> None:
    (api,) = _resources_of_type(template, "AWS::Serverless::HttpApi").values()
    auth = api["Properties"]["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["JwtConfiguration"]["issuer"] == {"Ref": "JwtIssuer"}
    assert authorizer["JwtConfiguration"]["audience"] == {"Ref": "JwtAudience"}


# --- validator schedule ----------------------------------------------------------------------------


def test_validator_runs_on_the_configured_schedule(
    template: dict[str, Any], validator: dict[str, Any]
) -> None:
    # given the validator's events
    events = list(validator["Events"].values())
    # then one EventBridge schedule, its expression a parameter defaulting to every 30 minutes
    assert [e["Type"] for e in events] == ["Schedule"]
    assert events[0]["Properties"]["Schedule"] == {"Ref": "ValidationSchedule"}
    parameter = template["Parameters"]["ValidationSchedule"]
    assert parameter["Default"] == "rate(30 minutes)"
    pattern = re.compile(parameter["AllowedPattern"])
    for accepted in ("rate(30 minutes)", "rate(1 hour)", "rate(2 days)", "cron(0/30 * * * ? *)"):
        assert pattern.fullmatch(accepted), accepted
    for refused in ("", "30 minutes", "rate(0 minutes)", "rate(30 minutes) ", "every(1 hour)"):
        assert not pattern.fullmatch(refused), refused


def test_validator_timeout_and_memory(validator: dict[str, Any]) -> None:
    assert validator["Timeout"] == 120
    assert validator["MemorySize"] == 256
    assert "Events" in validator
    assert all(e["Type"] != "HttpApi" for e in validator["Events"].values())


def test_every_function_has_a_log_group_with_retention(template: dict[str, Any]) -> None:
    groups = _resources_of_type(template, "AWS::Logs::LogGroup")
    names = {_text(group["Properties"].get("LogGroupName", "")) for group in groups.values()}
    for logical_id in FUNCTIONS:
        assert f"/aws/lambda/${{{logical_id}}}" in names, logical_id
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


# --- alarms ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: res["Properties"]
        for name, res in _resources_of_type(template, "AWS::CloudWatch::Alarm").items()
    }


def _watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its metric-math query."""
    if "MetricName" in alarm:
        return [{k: alarm.get(k) for k in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def test_the_alarms_exist_with_their_thresholds(template: dict[str, Any], alarms: dict[str, Any]) -> None:
    assert set(alarms) == set(ALARMS) | QUEUE_ALARMS | set(API_ALARMS) | {LAG_ALARM} | ROLLBACK_ALARMS
    thresholds = {**{name: threshold for name, (_, _, threshold) in ALARMS.items()},
                  **{name: threshold for name, (_, threshold) in API_ALARMS.items()},
                  "NewVersionErrorsAlarm": "FunctionErrorsThreshold"}  # fmt: skip
    for name, threshold in thresholds.items():
        alarm = alarms[name]
        if isinstance(threshold, str):
            assert alarm["Threshold"] == {"Ref": threshold}, name
            assert template["Parameters"][threshold]["Default"] == THRESHOLD_DEFAULTS[threshold]
        else:
            assert alarm["Threshold"] == threshold, name
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name


def test_alarms_watch_the_metrics_the_functions_emit(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    source = _package_source()
    for name, (logical_id, metric_names, _) in ALARMS.items():
        env = _function_props(template, logical_id)["Environment"]["Variables"]
        watched = _watched(alarms[name])
        assert {m["MetricName"] for m in watched} == metric_names, name
        for metric in watched:
            if metric["Namespace"] == "AWS/Lambda":
                assert metric["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]
                continue
            # Powertools EMF: the function's namespace, the single dimension service
            assert metric["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"], name
            assert metric["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
            # and the code does emit a metric of that name
            assert f'"{metric["MetricName"]}"' in source, metric["MetricName"]


@pytest.mark.parametrize(
    ("name", "requests_metric"),
    [
        ("FallbackRateAlarm", "Requests"),
        ("ServerErrorRateAlarm", "Requests"),
        ("ApiServerErrorRateAlarm", "Count"),
    ],
)
def test_rate_alarms_divide_by_requests_over_five_minutes(
    alarms: dict[str, dict[str, Any]], name: str, requests_metric: str
) -> None:
    # Given the rate alarm's metric math
    queries = {q["Id"]: q for q in alarms[name]["Metrics"]}
    (returned,) = [q for q in queries.values() if q.get("ReturnData", True)]
    expression = _text(returned["Expression"])
    # Then it is a percentage of the window's requests, judged only over AlarmMinimumRequests of them
    assert "100 *" in expression, expression
    assert "/ requests" in expression, expression
    assert "${AlarmMinimumRequests}" in expression, expression
    assert queries["requests"]["MetricStat"]["Metric"]["MetricName"] == requests_metric
    assert all(q["MetricStat"]["Period"] == 300 for q in queries.values() if "MetricStat" in q)
    assert alarms[name]["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_api_alarms_watch_the_stack_s_http_api(alarms: dict[str, dict[str, Any]]) -> None:
    # Given the alarms on the API as callers see it
    for name, (metric_names, _) in API_ALARMS.items():
        # (the function's own VerificationPending, which the 5xx rate subtracts, is checked below)
        watched = [m for m in _watched(alarms[name]) if m["MetricName"] != "VerificationPending"]
        # Then they read API Gateway's metrics of this stack's HTTP API (ApiId, no stage: all of it)
        assert {m["MetricName"] for m in watched} == metric_names, name
        for metric in watched:
            assert metric["Namespace"] == "AWS/ApiGateway", name
            assert metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "CasHttpApi"}}], name
    # and latency is judged at p99, over three windows in a row (a burst of cold starts does not page)
    latency = alarms["ApiLatencyAlarm"]
    assert (latency["ExtendedStatistic"], latency["Period"]) == ("p99", 300)
    assert latency["EvaluationPeriods"] == latency["DatapointsToAlarm"] == 3
    assert latency["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_sync_incomplete_alarm_waits_for_three_hours_of_incomplete_runs(
    alarms: dict[str, dict[str, Any]],
) -> None:
    alarm = alarms["ChainloopSyncIncompleteAlarm"]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 3600)
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 3


def test_the_sync_lag_alarm_fires_when_no_run_completed_within_its_window(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    # Given the lag alarm's metric math over the sync's SyncIncomplete (0: complete, 1: out of time)
    alarm = alarms[LAG_ALARM]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    (returned,) = [q for q in queries.values() if q.get("ReturnData", True)]
    stats = {q["Id"]: q["MetricStat"] for q in queries.values() if "MetricStat" in q}
    sync_env = _function_props(template, "ChainloopSyncFunction")["Environment"]["Variables"]
    # Then completed runs = runs that reported (SampleCount) - incomplete ones (Sum) ...
    assert returned["Expression"] == "runs - FILL(incomplete, 0)"
    assert {i: s["Stat"] for i, s in stats.items()} == {"runs": "SampleCount", "incomplete": "Sum"}
    for stat in stats.values():
        assert stat["Metric"]["MetricName"] == "SyncIncomplete"
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "service", "Value": sync_env["POWERTOOLS_SERVICE_NAME"]}
        ]
        # ... over the window the parameter names
        assert stat["Period"] == {"Ref": "ChainloopSyncLagThresholdSeconds"}
    # and fewer than one completed run, or none reported at all (missing data), fires it
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"
    # a window CloudWatch accepts as an alarm period (a multiple of 60 s, at most a day)
    window = template["Parameters"]["ChainloopSyncLagThresholdSeconds"]
    assert window["Default"] == 3600
    assert all(value % 60 == 0 and 0 < value <= 86400 for value in window["AllowedValues"])


# --- safe deploys ----------------------------------------------------------------------------------


def test_a_deploy_shifts_traffic_through_an_alias_and_rolls_back_on_the_service_s_alarms(
    template: dict[str, Any], function: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    # Given the download function's deployment settings
    preference = function["DeploymentPreference"]
    # Then each deploy publishes a version behind an alias, shifted by the parameter's type
    assert function["AutoPublishAlias"] == "live"
    assert preference["Type"] == {"Ref": "DeploymentPreferenceType"}
    parameter = template["Parameters"]["DeploymentPreferenceType"]
    assert "AllAtOnce" in parameter["AllowedValues"]
    assert parameter["Default"] in parameter["AllowedValues"]
    assert all(re.fullmatch(r"(Canary|Linear)10Percent\w+|AllAtOnce", v) for v in parameter["AllowedValues"])
    # and the rollback alarm is the new version's, an unconditional alarm of this stack
    assert {alarm["Ref"] for alarm in preference["Alarms"]} == ROLLBACK_ALARMS
    assert set(alarms) >= ROLLBACK_ALARMS
    assert not [name for name in ROLLBACK_ALARMS if template["Resources"][name].get("Condition")]


def test_no_alarm_a_tenant_can_trip_rolls_a_deploy_back_and_each_still_pages(
    function: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    # Given the alarms a tenant's revoked backend, tampered object or fallbacks fire
    rollback = {alarm["Ref"] for alarm in function["DeploymentPreference"]["Alarms"]}

    # Then none of them is a rollback alarm, and each still notifies the operator
    assert rollback & TENANT_TRIPPABLE_ALARMS == set()
    for name in TENANT_TRIPPABLE_ALARMS:
        assert alarms[name]["AlarmActions"] == CONDITIONAL_ACTIONS, name


def test_the_rollback_alarm_reads_only_the_version_being_deployed_as_sam_resolves_it(
    alarms: dict[str, dict[str, Any]],
) -> None:
    # Given the template as SAM transforms it (the alias's version gets a generated logical id)
    translated = sam_translated()
    version_ids = [k for k, r in translated["Resources"].items() if r["Type"] == "AWS::Lambda::Version"]
    (download_version,) = [v for v in version_ids if v.startswith("DownloadFunctionVersion")]

    # Then every metric the rollback alarm reads has a version dimension naming that version
    for name in ROLLBACK_ALARMS:
        metrics = [m["MetricStat"]["Metric"] for m in translated["Resources"][name]["Properties"]["Metrics"]
                   if "MetricStat" in m]  # fmt: skip
        assert metrics
        for metric in metrics:
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            version = dimensions.get("ExecutedVersion", dimensions.get("FunctionVersion"))
            assert version == {"Fn::GetAtt": [download_version, "Version"]}, (name, metric)
    # and it reads the Lambda errors of that version and the function's own internal errors of it
    read = {(m["Namespace"], m["MetricName"]) for m in _watched(alarms["NewVersionErrorsAlarm"])}
    assert read == {("AWS/Lambda", "Errors"), ("CasDownload", "InternalErrors")}
    assert '"InternalErrors"' in _package_source()


def test_the_api_5xx_rate_leaves_out_verification_pending_as_the_functions_own_does(
    alarms: dict[str, dict[str, Any]],
) -> None:
    # Given the API's 5xx rate alarm
    alarm = alarms["ApiServerErrorRateAlarm"]
    by_id = {m["Id"]: m for m in alarm["Metrics"]}

    # Then it subtracts the function's 503 verification_pending count from API Gateway's 5xx
    assert by_id["pending"]["MetricStat"]["Metric"]["MetricName"] == "VerificationPending"
    expression = by_id["rate"]["Expression"]["Fn::Sub"]
    assert "FILL(errors, 0) - FILL(pending, 0)" in expression


def sam_translated() -> dict[str, Any]:
    """template.yaml as SAM's own translator (the one `sam deploy` runs) turns it into CloudFormation;
    code locations replaced by placeholders, which is all the translator needs of them."""
    from samtranslator.translator.transform import transform  # noqa: PLC0415 - these tests only

    written = json.loads(json.dumps(load_template(), default=str))
    written["Globals"]["Function"]["CodeUri"] = "s3://placeholder/code.zip"
    for resource in written["Resources"].values():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://placeholder/layer.zip"
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"].pop("CodeUri", None)

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    # the translator asks boto3 for a region (for pseudo parameters), and any will do
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        translated: dict[str, Any] = transform(written, {}, NoManagedPolicies())
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION")
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved
    return translated


# --- secrets under customer managed keys -----------------------------------------------------------


def _secret_readers(template: dict[str, Any]) -> dict[str, list[Any]]:
    """Each function (or its own role) that may read a secret, with the policies it is given."""
    readers: dict[str, list[Any]] = {}
    for logical_id in FUNCTIONS:
        written = function_properties(template, logical_id)
        readers[logical_id] = list(written["Policies"])
    role = template["Resources"]["VerifierFunctionRole"]["Properties"]
    readers["VerifierFunctionRole"] = list(role["ManagedPolicyArns"])
    return readers


def test_every_secret_reader_may_decrypt_with_the_given_keys_only_through_secrets_manager(
    template: dict[str, Any],
) -> None:
    # Given the optional grant for customer managed keys on backend or database secrets
    policy = template["Resources"]["SecretsKeysDecryptPolicy"]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    # Then it exists only when keys are given ...
    assert policy["Condition"] == "HasSecretsKmsKeys"
    assert template["Conditions"]["HasSecretsKmsKeys"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SecretsKmsKeyArns"}]}, ""]}]
    }
    # ... allows kms:Decrypt alone, on those keys alone, only as Secrets Manager uses them
    assert statement["Effect"] == "Allow"
    assert _as_list(statement["Action"]) == ["kms:Decrypt"]
    assert statement["Resource"] == {"Ref": "SecretsKmsKeyArns"}
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"}}
    }
    # and every function that reads a secret (the verifier through its own role) is given it
    optional = {"Fn::If": ["HasSecretsKmsKeys", {"Ref": "SecretsKeysDecryptPolicy"}, {"Ref": "AWS::NoValue"}]}
    readers = _secret_readers(template)
    assert set(readers) == {*FUNCTIONS, "VerifierFunctionRole"}
    for reader, policies in readers.items():
        assert optional in policies, reader


def test_the_secret_keys_parameter_takes_key_arns_only(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["SecretsKmsKeyArns"]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "")
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    for refused in ("*", "arn:aws:kms:eu-west-1:123456789012:key/*", "arn:aws:kms:*:123456789012:key/k",
                    "arn:aws:kms:eu-west-1:123456789012:alias/cas"):  # fmt: skip
        assert not pattern.fullmatch(refused), refused


# --- the Chainloop database ------------------------------------------------------------------------


def test_the_database_secret_may_be_rds_s_managed_master_secret(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["ChainloopDatabaseSecretArn"]["AllowedPattern"])
    # RDS names the master secret it manages rds!db-<uuid> (rds!cluster-<uuid> for Aurora)
    assert pattern.fullmatch(
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-0b3f8d2e-6c1a-4b7e-9f00-1a2b3c4d5e6f-AbCdEf"
    )
    assert pattern.fullmatch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:chainloop/db-AbCdEf")
    assert pattern.fullmatch("")
    for refused in ("rds!db-x", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*"):
        assert not pattern.fullmatch(refused), refused


def test_the_sync_is_given_what_the_managed_secret_lacks(template: dict[str, Any]) -> None:
    # Given the sync's environment
    variables = _function_props(template, "ChainloopSyncFunction")["Environment"]["Variables"]
    # Then host, port, database name and sslmode come from parameters (used when the secret has none)
    expected = {
        "CHAINLOOP_DATABASE_HOST": "ChainloopDatabaseHost",
        "CHAINLOOP_DATABASE_PORT": "ChainloopDatabasePort",
        "CHAINLOOP_DATABASE_NAME": "ChainloopDatabaseName",
        "CHAINLOOP_DATABASE_SSLMODE": "ChainloopDatabaseSslMode",
    }
    assert {name: variables[name] for name in expected} == {n: {"Ref": p} for n, p in expected.items()}
    parameters = template["Parameters"]
    assert (
        parameters["ChainloopDatabaseHost"]["Default"],
        parameters["ChainloopDatabasePort"]["Default"],
    ) == (
        "",
        5432,
    )
    # encrypted by default; every libpq sslmode may be chosen
    assert parameters["ChainloopDatabaseSslMode"]["Default"] == "require"
    assert set(parameters["ChainloopDatabaseSslMode"]["AllowedValues"]) == {
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    }  # fmt: skip


def test_alarm_actions_go_to_the_topic_only_when_one_is_given(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    pattern = re.compile(template["Parameters"]["AlarmTopicArn"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("arn:aws:sns:eu-west-1:123456789012:ops-alerts")
    assert not pattern.fullmatch("ops-alerts")
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == CONDITIONAL_ACTIONS, name
        assert alarm["OKActions"] == CONDITIONAL_ACTIONS, name
        # silence is normal for every alarm but the sync's lag, where silence is the failure
        assert alarm["TreatMissingData"] == ("breaching" if name == LAG_ALARM else "notBreaching"), name


# --- runtime, packaging and timing ---------------------------------------------------------------


def test_runtime_is_a_current_python(any_function: tuple[str, dict[str, Any]]) -> None:
    runtime = any_function[1]["Runtime"]
    match = re.fullmatch(r"python3\.(\d+)", runtime)
    assert match, runtime
    assert int(match.group(1)) >= 12


def test_functions_share_code_runtime_and_architecture(template: dict[str, Any]) -> None:
    shapes = {
        (
            props["CodeUri"],
            props["Runtime"],
            tuple(props["Architectures"]),
            template["Resources"][logical_id]["Metadata"]["BuildMethod"],
        )
        for logical_id in FUNCTIONS
        for props in [_function_props(template, logical_id)]
    }
    assert len(shapes) == 1, shapes


def test_functions_makefile_builds_every_function(template: dict[str, Any], tmp_path: Path) -> None:
    # Given sam build's contract: `make build-<LogicalId>` in the CodeUri, ARTIFACTS_DIR per function;
    # and a copy of the CodeUri whose package holds what a developer's tree may hold besides the source
    make = shutil.which("make")
    require(make, "make is not installed")
    assert make is not None
    code_uri = tmp_path / "functions"
    shutil.copytree(ROOT / "functions", code_uri, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
    source_files = _shipped_sources(code_uri / "cas_download")
    assert "__init__.py" in source_files
    (code_uri / "cas_download" / "__pycache__").mkdir()
    (code_uri / "cas_download" / "__pycache__" / "app.cpython-313.pyc").write_bytes(b"byte code")
    (code_uri / "cas_download" / "test_app.py").write_text("def test_x(): pass\n")
    (code_uri / "cas_download" / "conftest.py").write_text("")
    for logical_id in FUNCTIONS:
        assert template["Resources"][logical_id]["Metadata"]["BuildMethod"] == "makefile"
        artifacts = tmp_path / "build" / logical_id
        artifacts.mkdir(parents=True)
        # When each function is built for real
        result = subprocess.run(
            [make, "-C", str(code_uri), f"build-{logical_id}", f"ARTIFACTS_DIR={artifacts}"],
            capture_output=True,
            text=True,
            check=False,
        )
        # Then its artifact is exactly the package's source: no byte code, tests or test configuration
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in artifacts.iterdir()) == ["cas_download"]
        built = artifacts / "cas_download"
        assert _shipped_sources(built) == source_files
        assert not [p for p in built.rglob("*") if p.name == "__pycache__" or p.suffix in {".pyc", ".pyo"}]
        for relative in source_files:
            assert (built / relative).read_bytes() == (PACKAGE_DIR / relative).read_bytes(), relative
        # and the Handler the template names is a module in it
        handler_module = _function_props(template, logical_id)["Handler"].rsplit(".", 1)[0]
        assert (artifacts / (handler_module.replace(".", "/") + ".py")).is_file(), handler_module


def _shipped_sources(package: Path) -> set[str]:
    """The package's files, relative, without byte code and caches (what the build must ship)."""
    return {
        str(path.relative_to(package))
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }


def test_layer_is_built_for_the_function_runtime_and_architecture(
    any_function: tuple[str, dict[str, Any]], layer: dict[str, Any]
) -> None:
    # given the function's runtime and architecture
    _, props = any_function
    runtime, (architecture,) = props["Runtime"], props["Architectures"]
    # then the layer declares them and its Makefile installs wheels for exactly them
    assert layer["CompatibleRuntimes"] == [runtime]
    assert layer["CompatibleArchitectures"] == [architecture]
    assert f"python{_makefile_variable('LAMBDA_PYTHON_VERSION')}" == runtime
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
    assert _makefile_variable("PIP_PLATFORM").endswith(f"_{machine}")


def test_function_uses_the_dependencies_layer(any_function: tuple[str, dict[str, Any]]) -> None:
    assert {"Ref": "DependenciesLayer"} in any_function[1]["Layers"]


@pytest.mark.parametrize(
    ("requirements_file", "direct"),
    [
        ("requirements.txt", {"aws-lambda-powertools", "boto3", "botocore", "pynamodb"}),
        ("requirements-postgres.txt", {"psycopg", "psycopg-binary"}),
    ],
)
def test_layer_requirements_are_all_pinned_exactly_with_hashes(
    requirements_file: str, direct: set[str]
) -> None:
    # Given the layer's requirements
    text = (LAYER_DIR / requirements_file).read_text(encoding="utf-8")
    pins = pinned(LAYER_DIR / requirements_file)

    # Then each one is name==version with at least one hash, and the direct dependencies are among them
    assert pins
    assert [f"{n}=={v}" for n, v in pins.items() if not PIN.fullmatch(f"{n}=={v}")] == []
    assert text.count("==") == len(pins)
    assert text.count("--hash=sha256:") >= len(pins)
    assert direct <= pins.keys()


def test_the_layers_agree_with_the_lock() -> None:
    # When the layers' requirements are derived from uv.lock again
    derived = subprocess.run(
        [sys.executable, "-m", "scripts.layer_requirements", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    # Then they are what the repository holds: nothing ships that the lock (and so the tests) did not pick
    assert derived.returncode == 0, derived.stderr


def test_the_postgres_layer_adds_nothing_the_dependencies_layer_pins_differently() -> None:
    shared = (
        pinned(LAYER_DIR / "requirements.txt").keys() & pinned(LAYER_DIR / "requirements-postgres.txt").keys()
    )
    assert shared == set()


def test_timeout_fits_between_the_request_deadline_and_the_api_limit(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # given the deadline the function is configured with (default, and highest value it may be given)
    deadline = function["Environment"]["Variables"]["REQUEST_DEADLINE_SECONDS"]
    default = float(_parameter_default(template, deadline))
    highest = float(template["Parameters"].get(deadline.get("Ref", ""), {}).get("MaxValue", default))
    # then the Lambda timeout exceeds it and stays under the HTTP API's 30 s integration limit
    timeout = function["Timeout"]
    assert timeout < HTTP_API_INTEGRATION_LIMIT_SECONDS
    assert timeout > default
    assert timeout > highest


# --- security scan decisions -------------------------------------------------------------------


def test_every_log_group_and_table_takes_the_optional_kms_keys(template: dict[str, Any]) -> None:
    def optional(condition: str, parameter: str) -> dict[str, Any]:
        return {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}

    groups = _resources_of_type(template, "AWS::Logs::LogGroup")
    tables = _resources_of_type(template, "AWS::DynamoDB::Table")
    assert len(groups) == 6
    assert len(tables) == 3
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == optional("HasLogsKmsKey", "LogsKmsKeyArn")
    for table in tables.values():
        sse = table["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True
        assert sse["KMSMasterKeyId"] == optional("HasTablesKmsKey", "TablesKmsKeyArn")


def test_every_checkov_skip_says_why(template: dict[str, Any]) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
        assert len(skip.get("comment", "").split()) >= 8, (name, skip)
