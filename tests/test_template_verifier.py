"""template.yaml's verifier (spec: "Verifying ahead of requests") agrees with the code: the Mappings
stream feeds it, its batches report partial failures and end in an on-failure queue, its role grants
exactly what it does, the download function may ask it and nothing else of Lambda, and its alarms
watch what the runbook names."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from cas_download.config import ENV_VARS, VERIFY_BUDGET_SECONDS
from cas_local.template import function_properties, load_template

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretNamePrefix}*"
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def verifier(template: dict[str, Any]) -> dict[str, Any]:
    return function_properties(template, "VerifierFunction")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_mappings_table_streams_new_images(template: dict[str, Any]) -> None:
    table = template["Resources"]["MappingsTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_the_verifier_handler_is_the_package_s(verifier: dict[str, Any]) -> None:
    module_name, _, attribute = verifier["Handler"].rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))
    assert module_name == "cas_download.handlers.verifier"


def test_the_stream_feeds_the_verifier_with_partial_failures_tunables_and_an_on_failure_queue(
    verifier: dict[str, Any],
) -> None:
    # Given the verifier's one event source
    [event] = verifier["Events"].values()
    props = event["Properties"]
    # Then it is the Mappings stream, new mappings only, its batch failures reported per record
    assert event["Type"] == "DynamoDB"
    assert props["Stream"] == {"Fn::GetAtt": ["MappingsTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["FilterCriteria"] == {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]}
    # and its batch size, window, bisection and retries are the stack's parameters
    assert props["BatchSize"] == {"Ref": "VerifierBatchSize"}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "VerifierMaximumBatchingWindowSeconds"}
    assert props["BisectBatchOnFunctionError"] == {"Ref": "VerifierBisectBatchOnError"}
    assert props["MaximumRetryAttempts"] == {"Ref": "VerifierMaximumRetryAttempts"}
    # and what keeps failing goes to the queue
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["VerifierFailureQueue", "Arn"]
    }
    assert verifier["ReservedConcurrentExecutions"] == {"Ref": "VerifierReservedConcurrency"}


def test_its_timeout_is_the_hashing_budget_plus_the_minute_kept_back(verifier: dict[str, Any]) -> None:
    assert verifier["Timeout"] == 900
    assert verifier["Timeout"] - 60 == VERIFY_BUDGET_SECONDS


def test_every_variable_it_is_given_is_read_by_the_code(verifier: dict[str, Any]) -> None:
    variables = verifier["Environment"]["Variables"]
    assert set(variables) - set(ENV_VARS) == set()
    assert variables["VERIFICATIONS_TABLE"] == {"Ref": "VerificationsTable"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "cas-download-verifier"
    assert "VERIFIER_FUNCTION_NAME" not in variables  # it never asks itself


def test_it_has_a_role_of_its_own(template: dict[str, Any], verifier: dict[str, Any]) -> None:
    # Given the verifier's own role (not SAM's, which would allow every stream of the account)
    assert verifier["Role"] == {"Fn::GetAtt": ["VerifierFunctionRole", "Arn"]}
    assert "Policies" not in verifier
    # Then it is the template's; what it allows is checked against the calls the verifier really
    # makes (tests/scenarios/test_verifier_roles.py)
    assert template["Resources"]["VerifierFunctionRole"]["Type"] == "AWS::IAM::Role"


def test_the_download_function_may_ask_the_verifier_and_nothing_else_of_lambda(
    template: dict[str, Any],
) -> None:
    download = function_properties(template, "DownloadFunction")
    assert download["Environment"]["Variables"]["VERIFIER_FUNCTION_NAME"] == {"Ref": "VerifierAskFunction"}
    lambda_grants = [
        s
        for policy in download["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for s in policy["Statement"]
        if any(str(a).startswith("lambda:") for a in _as_list(s["Action"]))
    ]
    assert lambda_grants == [
        {
            "Sid": "AskVerifier",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": {"Fn::GetAtt": ["VerifierAskFunction", "Arn"]},
        }
    ]


# --- requests' asks: the verifier's code with capacity of its own (issue 28) ---------------------


def test_requests_asks_run_in_a_function_of_their_own_with_their_own_capacity(
    template: dict[str, Any], verifier: dict[str, Any]
) -> None:
    # Given the function a request asks (VERIFIER_FUNCTION_NAME) and the stream's verifier
    asks = function_properties(template, "VerifierAskFunction")

    # Then it runs the verifier's handler, with a reserved concurrency of its own parameter
    assert asks["Handler"] == verifier["Handler"]
    assert asks["Timeout"] == verifier["Timeout"]
    assert asks["ReservedConcurrentExecutions"] == {"Ref": "VerifierAskReservedConcurrency"}
    assert verifier["ReservedConcurrentExecutions"] == {"Ref": "VerifierReservedConcurrency"}
    # and takes no stream: a bulk import of new mappings never queues in front of an ask
    assert "Events" not in asks
    # and its default capacity is above one org's share, so one org never fills it
    parameters = template["Parameters"]
    assert parameters["VerifierAskReservedConcurrency"]["Default"] > parameters["VerifyAsksPerOrg"]["Default"]


def test_an_ask_waits_at_most_its_event_age_and_is_never_retried_by_lambda(template: dict[str, Any]) -> None:
    asks = function_properties(template, "VerifierAskFunction")
    assert asks["EventInvokeConfig"] == {
        "MaximumEventAgeInSeconds": {"Ref": "VerifierAskMaximumEventAgeSeconds"},
        "MaximumRetryAttempts": 0,
    }
    # and the download function computes how long an ask may hold its org's slot from the same value
    variables = function_properties(template, "DownloadFunction")["Environment"]["Variables"]
    assert variables["VERIFY_ASK_MAX_EVENT_AGE_SECONDS"] == {"Ref": "VerifierAskMaximumEventAgeSeconds"}
    assert variables["VERIFY_ASKS_PER_ORG"] == {"Ref": "VerifyAsksPerOrg"}
    # Lambda's defaults (6 h, two retries) are what this replaces
    assert template["Parameters"]["VerifierAskMaximumEventAgeSeconds"]["Default"] < 6 * 3600


def test_the_ask_functions_role_grants_the_verifiers_reads_and_writes_and_no_stream_or_queue(
    template: dict[str, Any],
) -> None:
    asks = function_properties(template, "VerifierAskFunction")
    assert asks["Role"] == {"Fn::GetAtt": ["VerifierAskFunctionRole", "Arn"]}
    role = template["Resources"]["VerifierAskFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    grants = {action: s["Resource"] for s in statements for action in _as_list(s["Action"])}
    assert grants == {
        "dynamodb:Query": [{"Fn::Sub": "${BackendsTable.Arn}/index/org_id-index"}],
        "dynamodb:GetItem": {"Fn::GetAtt": ["VerificationsTable", "Arn"]},
        "dynamodb:PutItem": {"Fn::GetAtt": ["VerificationsTable", "Arn"]},
        "secretsmanager:GetSecretValue": SECRETS,
    }


@pytest.mark.parametrize(
    ("alarm", "namespace", "metric"),
    [
        ("VerifierErrorsAlarm", "AWS/Lambda", "Errors"),
        ("VerifierAskErrorsAlarm", "AWS/Lambda", "Errors"),
        ("VerifierFailuresAlarm", "AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("VerifierIntegrityFailuresAlarm", "CasDownload", "IntegrityFailures"),
    ],
)
def test_the_runbook_alarms_watch_the_verifier(
    template: dict[str, Any], alarm: str, namespace: str, metric: str
) -> None:
    props = template["Resources"][alarm]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (namespace, metric)
    assert props["Threshold"] == 1
    assert props["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_the_iterator_age_alarm_compares_seconds_with_its_parameter(template: dict[str, Any]) -> None:
    props = template["Resources"]["VerifierIteratorAgeAlarm"]["Properties"]
    [watched] = [m for m in props["Metrics"] if "MetricStat" in m]
    assert watched["MetricStat"]["Metric"]["MetricName"] == "IteratorAge"
    assert watched["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "VerifierFunction"}}
    ]
    assert props["Threshold"] == {"Ref": "VerifierIteratorAgeThresholdSeconds"}
