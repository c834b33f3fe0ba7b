"""Static checks: the template's least privilege on tables, secrets and keys.

The cfn-lint rule ``E9101`` (scripts/cfnlint_rules/least_privilege.py) runs in ``make security``; here
its checks are shown to pass the real template and to catch each kind of wildcard, and one real cfn-lint
run shows the rule is picked up the way the Makefile loads it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.decode.decode import decode

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "scripts" / "cfnlint_rules"
TEMPLATE = ROOT / "template.yaml"


def _load_rule() -> ModuleType:
    spec = importlib.util.spec_from_file_location("least_privilege", RULES_DIR / "least_privilege.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RULE = _load_rule()
PARAMETERS = {
    "SafePrefix": {"Type": "String", "MinLength": 1, "AllowedPattern": "^[A-Za-z0-9/_+=.@-]+$"},
    "OpenPrefix": {"Type": "String"},
    "MaybeEmpty": {"Type": "String", "AllowedPattern": "^[a-z/]*$"},
}
TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}
SECRETS_SUB = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"


def function_with(*policies: Any) -> dict[str, Any]:
    return {
        "Parameters": PARAMETERS,
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": list(policies)}}
        },
    }


def statement(actions: Any, resource: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Effect": "Allow", "Action": actions, **extra}
    if resource is not None:
        body["Resource"] = resource
    return {"Statement": [body]}


def test_the_template_grants_no_wildcard_on_tables_secrets_or_keys() -> None:
    template, errors = decode(str(TEMPLATE))
    assert not errors
    assert template is not None
    assert RULE.template_problems(template) == []


BROAD = {
    "resource-star": statement(["dynamodb:GetItem"], "*"),
    "table-star": statement("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/*"),
    "secret-star": statement("secretsmanager:GetSecretValue", {"Fn::Sub": SECRETS_SUB + "*"}),
    "secret-open-parameter": statement(
        "secretsmanager:GetSecretValue", {"Fn::Sub": SECRETS_SUB + "${OpenPrefix}*"}
    ),
    "secret-empty-parameter": statement(
        "secretsmanager:GetSecretValue", {"Fn::Sub": SECRETS_SUB + "${MaybeEmpty}*"}
    ),
    "kms-key-star": statement("kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/*"),
    "kms-alias-star": statement(["kms:Decrypt"], ["arn:aws:kms:us-east-1:123456789012:alias/*"]),
    "region-star": statement("dynamodb:GetItem", "arn:aws:dynamodb:*:123456789012:table/t"),
    "account-star": statement("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:*:table/t"),
    "service-action-star": statement("dynamodb:*", TABLE_ARN),
    "prefix-action-star": statement(["kms:Get*"], "arn:aws:kms:us-east-1:123456789012:key/abc"),
    "every-action": statement("*", TABLE_ARN),
    "not-resource": statement(
        "secretsmanager:GetSecretValue", NotResource="arn:aws:secretsmanager:x:y:secret:z"
    ),
    "not-action": {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]},
    "no-resource": statement("dynamodb:GetItem"),
    "sam-template-star": {"DynamoDBReadPolicy": {"TableName": "*"}},
    "sam-template-open-parameter": {
        "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "OpenPrefix"}}
    },
    "managed-dynamodb": "AmazonDynamoDBReadOnlyAccess",
    "managed-secrets": "arn:aws:iam::aws:policy/SecretsManagerReadWrite",
}


@pytest.mark.parametrize("policy", list(BROAD.values()), ids=list(BROAD))
def test_each_kind_of_broad_grant_is_refused(policy: Any) -> None:
    problems = RULE.template_problems(function_with(policy))
    assert problems, policy
    assert all(path[:4] == ["Resources", "Fn", "Properties", "Policies"] for path, _ in problems)


NARROW = {
    "table-getatt": statement(["dynamodb:GetItem", "dynamodb:Query"], [TABLE_ARN]),
    "table-index": statement("dynamodb:Query", {"Fn::Sub": "${Table.Arn}/index/*"}),
    "secret-literal-prefix": statement("secretsmanager:GetSecretValue", {"Fn::Sub": SECRETS_SUB + "cas/*"}),
    "secret-guarded-parameter": statement(
        "secretsmanager:GetSecretValue", {"Fn::Sub": SECRETS_SUB + "${SafePrefix}*"}
    ),
    "secret-exact": statement(
        "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:1:secret:cas/a-AbCdEf"
    ),
    "kms-key": statement("kms:Decrypt", {"Fn::GetAtt": ["Key", "Arn"]}),
    "logs-anywhere": statement(["logs:CreateLogStream", "logs:PutLogEvents"], "*"),
    "s3-anywhere": statement("s3:GetObject", "*"),
    "deny-everything": {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]},
    "sam-template-table": {"DynamoDBReadPolicy": {"TableName": {"Ref": "Table"}}},
    "managed-basic": "AWSLambdaBasicExecutionRole",
}


@pytest.mark.parametrize("policy", list(NARROW.values()), ids=list(NARROW))
def test_named_resources_and_unrelated_services_are_accepted(policy: Any) -> None:
    assert RULE.template_problems(function_with(policy)) == []


def test_an_optional_secret_parameter_is_named_only_where_its_condition_proves_it_given() -> None:
    # Given an optional secret ARN parameter (may be empty), granted by its Ref
    template = function_with(statement("secretsmanager:GetSecretValue", {"Ref": "MaybeEmpty"}))
    template["Conditions"] = {
        "HasSecret": {"Fn::Not": [{"Fn::Equals": [{"Ref": "MaybeEmpty"}, ""]}]},
        "Other": {"Fn::Equals": [{"Ref": "MaybeEmpty"}, "x"]},
    }
    # Then a function created in every case is refused, one created only when it is given is not
    assert [message for _, message in RULE.template_problems(template)] == [
        "parameter MaybeEmpty may be empty"
    ]
    template["Resources"]["Fn"]["Condition"] = "Other"
    assert RULE.template_problems(template) != []
    template["Resources"]["Fn"]["Condition"] = "HasSecret"
    assert RULE.template_problems(template) == []


def test_plain_iam_resources_are_checked_too() -> None:
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [{"PolicyName": "p", "PolicyDocument": statement("kms:Decrypt", "*")}]
                },
            },
            "Managed": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {"PolicyDocument": statement("dynamodb:Scan", "arn:aws:dynamodb:r:1:table/*")},
            },
        }
    }
    assert {path[1] for path, _ in RULE.template_problems(template)} == {"Role", "Managed"}


def test_cfn_lint_loads_the_rule_and_fails_a_template_with_a_wildcard_secret(tmp_path: Path) -> None:
    # Given the real template with its secrets statement widened to every secret
    text = TEMPLATE.read_text()
    widened = text.replace(":secret:${SecretNamePrefix}*", ":secret:*")
    assert widened != text
    broken = tmp_path / "template.yaml"
    broken.write_text(widened)

    # When cfn-lint runs with the project's rules, as `make security` runs it
    run = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(broken), "--append-rules", str(RULES_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it fails on E9101, naming the widened resource
    assert run.returncode != 0
    assert "E9101" in run.stdout
    assert "secret:*" in run.stdout
