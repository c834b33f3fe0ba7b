"""template.yaml and the layer build agree with the code and with the spec (tables, routes, IAM)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cas_download.config import ENV_VARS, REQUIRED_ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAYER_DIR = ROOT / "layers" / "dependencies"

ALLOWED_ACTIONS = {
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "secretsmanager:GetSecretValue",
}
HTTP_API_INTEGRATION_LIMIT_SECONDS = 30
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (!Ref, !GetAtt, !Sub...) as plain data."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    with TEMPLATE.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=CfnLoader)
    return loaded


def _resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["DownloadFunction"]["Properties"]
    return {**template.get("Globals", {}).get("Function", {}), **props}


@pytest.fixture(scope="module")
def layer(template: dict[str, Any]) -> dict[str, Any]:
    layer_props: dict[str, Any] = template["Resources"]["DependenciesLayer"]["Properties"]
    return layer_props


@pytest.fixture(scope="module")
def statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in function.get("Policies", []):
        assert isinstance(policy, dict), f"only inline statements are allowed, got {policy!r}"
        assert set(policy) == {"Statement"}, f"only inline statements are allowed, got {sorted(policy)}"
        found += policy["Statement"]
    return found


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


# --- handler and environment ---------------------------------------------------------------------


def test_handler_resolves_to_an_importable_callable(function: dict[str, Any]) -> None:
    # given the function's Handler, relative to its CodeUri
    module_name, _, attribute = function["Handler"].rpartition(".")
    assert function["CodeUri"].rstrip("/") == "functions"
    # when the module is imported the way the Lambda runtime does
    module = importlib.import_module(module_name)
    # then it comes from functions/ and the handler is a callable
    assert Path(module.__file__ or "").resolve().is_relative_to(ROOT / "functions")
    assert callable(getattr(module, attribute))


def test_every_required_env_var_is_set(function: dict[str, Any]) -> None:
    # given the function's environment
    variables = function["Environment"]["Variables"]
    # then every variable the code requires is there
    assert set(REQUIRED_ENV_VARS) <= set(variables)


def test_every_env_var_set_is_read_by_the_code(function: dict[str, Any]) -> None:
    # given the function's environment
    variables = function["Environment"]["Variables"]
    # then the code reads each of them: no dead or misspelt configuration
    assert set(variables) - set(ENV_VARS) == set()


def test_table_env_vars_point_at_the_stack_tables(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    assert variables["BACKENDS_TABLE"] == {"Ref": "BackendsTable"}
    assert variables["MAPPINGS_TABLE"] == {"Ref": "MappingsTable"}


# --- tables ------------------------------------------------------------------------------------


def test_backends_table_matches_the_spec(template: dict[str, Any]) -> None:
    # given the Backends table
    table = template["Resources"]["BackendsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    # then its key, attribute types and org index are the contract's
    assert _key_schema(props["KeySchema"]) == [("id", "HASH")]
    assert _attribute_types(table) == {"id": "S", "org_id": "S"}
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "org_id-index"
    assert _key_schema(index["KeySchema"]) == [("org_id", "HASH")]
    assert index["Projection"] == {"ProjectionType": "ALL"}


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


# --- IAM ---------------------------------------------------------------------------------------


def test_function_role_is_built_only_from_inline_statements(function: dict[str, Any]) -> None:
    # given the function's permissions
    # then no external role, no managed policy and no SAM policy template widens them
    assert "Role" not in function
    for policy in function["Policies"]:
        assert isinstance(policy, dict)
        assert set(policy) == {"Statement"}


def test_iam_statements_allow_only_the_needed_actions(statements: list[dict[str, Any]]) -> None:
    # given every statement of the function's policies
    actions = {action for statement in statements for action in _as_list(statement["Action"])}
    # then they allow reading the tables and the secrets and nothing else
    assert actions == ALLOWED_ACTIONS
    assert all(statement["Effect"] == "Allow" for statement in statements)
    assert all("NotAction" not in s and "NotResource" not in s for s in statements)


def test_iam_statements_have_no_wildcard_resource(statements: list[dict[str, Any]]) -> None:
    # given every resource the statements name
    resources = [_text(r) for statement in statements for r in _as_list(statement["Resource"])]
    # then none is "*" and the only wildcard is the trailing one of the secret-name prefix
    assert resources
    for resource in resources:
        assert resource != "*"
        if "*" in resource:
            assert resource.endswith(":secret:${SecretNamePrefix}*"), resource
            assert resource.count("*") == 1, resource


def test_dynamodb_actions_target_only_the_two_tables_and_the_org_index(
    statements: list[dict[str, Any]],
) -> None:
    resources = {
        _text(r)
        for statement in statements
        if any(a.startswith("dynamodb:") for a in _as_list(statement["Action"]))
        for r in _as_list(statement["Resource"])
    }
    assert resources == {
        "${BackendsTable.Arn}",
        "${BackendsTable.Arn}/index/org_id-index",
        "${MappingsTable.Arn}",
    }


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
    # then exactly GET and HEAD of the artifact route, payload 2.0, on the stack's API
    assert sorted((e["Method"].upper(), e["Path"]) for e in events) == [
        ("GET", "/v1/artifacts/{digest}"),
        ("HEAD", "/v1/artifacts/{digest}"),
    ]
    assert all(e.get("PayloadFormatVersion", "2.0") == "2.0" for e in events)
    apis = _resources_of_type(template, "AWS::Serverless::HttpApi")
    assert all(e["ApiId"]["Ref"] in apis for e in events)


def test_api_requires_a_jwt_from_the_configured_issuer(template: dict[str, Any]) -> None:
    (api,) = _resources_of_type(template, "AWS::Serverless::HttpApi").values()
    auth = api["Properties"]["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["JwtConfiguration"]["issuer"] == {"Ref": "JwtIssuer"}
    assert authorizer["JwtConfiguration"]["audience"] == {"Ref": "JwtAudience"}


# --- runtime, packaging and timing ---------------------------------------------------------------


def test_runtime_is_a_current_python(function: dict[str, Any]) -> None:
    match = re.fullmatch(r"python3\.(\d+)", function["Runtime"])
    assert match, function["Runtime"]
    assert int(match.group(1)) >= 12


def test_layer_is_built_for_the_function_runtime_and_architecture(
    function: dict[str, Any], layer: dict[str, Any]
) -> None:
    # given the function's runtime and architecture
    runtime, (architecture,) = function["Runtime"], function["Architectures"]
    # then the layer declares them and its Makefile installs wheels for exactly them
    assert layer["CompatibleRuntimes"] == [runtime]
    assert layer["CompatibleArchitectures"] == [architecture]
    assert f"python{_makefile_variable('LAMBDA_PYTHON_VERSION')}" == runtime
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
    assert _makefile_variable("PIP_PLATFORM").endswith(f"_{machine}")


def test_function_uses_the_dependencies_layer(function: dict[str, Any]) -> None:
    assert {"Ref": "DependenciesLayer"} in function["Layers"]


def test_layer_requirements_are_all_pinned_exactly() -> None:
    # given the layer's requirements, comments and blank lines aside
    lines = [
        line.split("#", 1)[0].strip()
        for line in (LAYER_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    requirements = [line for line in lines if line]
    # then each one is name==version, and the direct dependencies are among them
    assert requirements
    assert [r for r in requirements if not PIN.fullmatch(r)] == []
    names = {r.split("==")[0].lower().replace("_", "-") for r in requirements}
    assert {"aws-lambda-powertools", "boto3", "botocore", "pynamodb"} <= names


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
