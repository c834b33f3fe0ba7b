"""The stack's CloudWatch dashboard plots only metrics the code emits.

The dashboard body is read from template.yaml and rendered as CloudFormation would render it (with and
without the optional Chainloop sync). What the code emits is collected by RUNNING each function in
process, as Lambda runs it (its Powertools wrappers, its environment from the template), and parsing the
embedded-metric-format documents it prints. Every metric a widget plots must then be one of them: same
namespace, name and dimension names, and the same dimension values where they are fixed (``service``).
Values that vary are checked against what the code can emit: ``Reason`` an attempt reason, ``Mode`` a
mode, ``Route`` a route of the API, ``function_name`` a function of the stack running that service. A
renamed metric or dimension fails here instead of drawing an empty graph.

AWS's own metrics (Lambda, API Gateway, SQS) are checked for their dimension names and for naming
resources of the template that exist whether or not the sync is deployed. And the runbook links each
alarm to a widget that exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics.provider import cold_start

from cas_download.app import App
from cas_download.config import Settings, SyncSettings
from cas_download.domain import AttemptReason, Mode
from cas_download.handlers import chainloop_sync
from cas_download.handlers import download as entrypoint
from cas_download.handlers.validator import instrumented_handler as validator_handler
from cas_download.handlers.verifier import instrumented_handler as verifier_handler
from cas_local.template import function_properties, load_template
from tests.support.events import FakeLambdaContext, load_event
from tests.support.postgres import ChainloopRows
from tests.support.stream_events import mapping_image, stream_event
from tests.support.world import World, sha256_digest

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"
DATA = b"an artifact the dashboard's metrics are about\n" * 64
CORRUPT = b"bytes that are not the artifact\n" * 64
FUNCTIONS = ("DownloadFunction", "VerifierFunction", "ValidatorFunction", "ChainloopSyncFunction")

# A metric as CloudWatch stores it: namespace, name, dimensions (name -> value).
Metric = tuple[str, str, tuple[tuple[str, str], ...]]

# AWS's own metrics the dashboard may plot: namespace -> (dimension names, resource type they name,
# metric names).
AWS_METRICS: dict[str, tuple[tuple[str, ...], str, set[str]]] = {
    "AWS/Lambda": (
        ("FunctionName",),
        "AWS::Serverless::Function",
        {
            "Duration",
            "Errors",
            "Throttles",
            "Invocations",
            "IteratorAge",
            "ConcurrentExecutions",
            "AsyncEventsDropped",
        },
    ),
    "AWS/ApiGateway": (
        ("ApiId",),
        "AWS::Serverless::HttpApi",
        {"Count", "4xx", "5xx", "Latency", "IntegrationLatency"},
    ),
    "AWS/SQS": (
        ("QueueName",),
        "AWS::SQS::Queue",
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent"},
    ),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --- rendering the dashboard as CloudFormation does ------------------------------------------------


def _render(value: Any, conditions: dict[str, bool]) -> str:
    """A DashboardBody value as text: ``Fn::Join``, ``Fn::If`` and ``Fn::Sub`` evaluated, every
    ``${Resource}`` or ``${Resource.Attribute}`` left as ``<Resource>`` / ``<Resource.Attribute>``."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Fn::Join":
        delimiter, parts = argument
        return str(delimiter).join(_render(part, conditions) for part in parts)
    if function == "Fn::If":
        condition, when_true, when_false = argument
        return _render(when_true if conditions[condition] else when_false, conditions)
    if function == "Fn::Sub":
        assert isinstance(argument, str), "a dashboard Sub needs no variables of its own"
        return re.sub(r"\$\{([^}]+)\}", lambda m: _placeholder(m.group(1)), argument)
    raise AssertionError(f"{function} is not expected in a dashboard body")


def _placeholder(name: str) -> str:
    return {"AWS::Region": "us-east-1", "AWS::StackName": "cas-download"}.get(name, f"<{name}>")


def _body(template: dict[str, Any], with_sync: bool) -> dict[str, Any]:
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    conditions = {"HasChainloopSync": with_sync}
    body: dict[str, Any] = json.loads(_render(dashboard["Properties"]["DashboardBody"], conditions))
    return body


def _plotted(body: dict[str, Any]) -> list[tuple[str, Metric]]:
    """(widget title, metric) of every metric the body plots; math expressions are left out (their
    inputs are metrics of the same widget, listed on their own rows)."""
    found = []
    for widget in body["widgets"]:
        properties = widget["properties"]
        previous: list[Any] = []
        for row in properties.get("metrics", []):
            fields = [f for f in row if not isinstance(f, dict)]
            if not fields:
                continue  # an expression
            # CloudWatch's shorthand: "." repeats the previous row's value at that position
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
            previous = fields
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, row
            dimensions = tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))
            found.append((properties["title"], (namespace, name, dimensions)))
    return found


def _widget_titles(body: dict[str, Any]) -> set[str]:
    return {widget["properties"]["title"] for widget in body["widgets"]}


# --- what the functions emit -------------------------------------------------------------------------


def _emitted(stdout: str) -> set[Metric]:
    """Every metric of the EMF documents among the printed lines, with its dimensions' values."""
    found = set()
    for line in stdout.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        document = json.loads(line)
        for directive in document["_aws"].get("CloudWatchMetrics", []):
            for dimension_set in directive["Dimensions"]:
                dimensions = tuple(sorted((name, str(document[name])) for name in dimension_set))
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dimensions))
    return found


def _environment(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    """The literal variables the template gives a function (service name, namespace, ...)."""
    variables = function_properties(template, logical_id)["Environment"]["Variables"]
    return {name: value for name, value in variables.items() if isinstance(value, str)}


class Functions:
    """Each function of the stack run in this process as Lambda runs it, with its template environment."""

    def __init__(self, template: dict[str, Any], world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.template = template
        self.world = world
        self.monkeypatch = monkeypatch
        self.context = FakeLambdaContext(timeout_ms=60_000)

    def new_container(self, logical_id: str, **env: object) -> dict[str, str]:
        """The function's environment in the process (Powertools reads the service from it) and a
        cold start to come; returns the settings' environment."""
        settings_env = self.world.settings_env(**_environment(self.template, logical_id), **env)
        for name, value in settings_env.items():
            self.monkeypatch.setenv(name, value)
        self.monkeypatch.setattr(cold_start, "is_cold_start", True)
        return settings_env

    def download(self, requests: list[dict[str, Any]]) -> None:
        self.new_container("DownloadFunction")
        self.monkeypatch.setattr(entrypoint, "_app", None)
        for event in requests:
            entrypoint.lambda_handler(event, self.context)

    def verifier(self, event: dict[str, Any], verifications_table: str) -> None:
        env = self.new_container("VerifierFunction", VERIFICATIONS_TABLE=verifications_table)
        verifier_handler(App.create(Settings.from_env(env)))(event, self.context)

    def validator(self) -> None:
        env = self.new_container("ValidatorFunction")
        validator_handler(App.create(Settings.from_env(env)))({"id": "scheduled-run"}, self.context)

    def sync(self, database_secret: dict[str, Any]) -> None:
        arn = self.world.secrets.create_secret(
            Name=f"chainloop-db-{uuid.uuid4().hex}", SecretString=json.dumps(database_secret)
        )["ARN"]
        env = self.new_container("ChainloopSyncFunction", CHAINLOOP_DATABASE_SECRET_ARN=arn)
        handler = chainloop_sync.instrumented_handler(chainloop_sync.build(SyncSettings.from_env(env)))
        with contextlib.suppress(chainloop_sync.SyncFailed):  # a failed run is counted too (SyncFailed)
            handler({"id": "scheduled-run"}, self.context)


@pytest.fixture(scope="module")
def service_loggers(template: dict[str, Any]) -> None:
    """Each function's Powertools logger, made before any test captures stdout: a logger binds its
    handler to the sys.stdout of its first creation, and one bound to this module's capsys would write
    to a closed stream in the tests that come after."""
    for logical_id in FUNCTIONS:
        Logger(service=_environment(template, logical_id)["POWERTOOLS_SERVICE_NAME"])


@pytest.fixture
def emitted(
    service_loggers: None,
    template: dict[str, Any],
    isolated_world: World,
    verifications_table: str,
    chainloop: ChainloopRows,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> set[Metric]:
    """What the four functions print as metrics, over runs that make each of them count something."""
    world = isolated_world
    functions = Functions(template, world, monkeypatch)
    capsys.readouterr()

    # The download function: a fallback past corrupt bytes (digest_mismatch), each mode, a 502, a link
    org = world.org()
    corrupt = world.backend(org, "corrupt")
    good = world.backend(org, "good", is_default=True)
    digest = world.put(good, DATA)
    world.put_corrupt(corrupt, digest, CORRUPT)
    world.map(digest, org, corrupt)
    revoked = world.backend(org, "revoked")
    world.revoke(revoked)
    lost = world.put(revoked, b"only behind revoked keys\n")
    world.map(lost, org, revoked)
    functions.download(
        [
            load_event("get_redirect", digest=digest, orgs=org),
            load_event("get_url", digest=digest, orgs=org),
            load_event("get_body", digest=digest, orgs=org),
            load_event("get_redirect", digest=lost, orgs=org),
            load_event("download_no_token", digest=digest),
        ]
    )

    # The verifier: a mapping proven, one whose bytes fail the proof, one retried (revoked keys)
    other = world.org()
    proven_backend = world.backend(other, "proven", is_default=True)
    proven = world.put(proven_backend, DATA + b"verifier\n")
    world.map(proven, other, proven_backend)
    bad = sha256_digest(b"what the digest names\n")
    world.put_corrupt(proven_backend, bad, CORRUPT)
    world.map(bad, other, proven_backend)
    retried = world.put(revoked, b"the verifier cannot read this yet\n")
    images = [mapping_image(proven, other, proven_backend.id), mapping_image(bad, other, proven_backend.id),
              mapping_image(retried, org, revoked.id)]  # fmt: skip
    functions.verifier(stream_event(*images), verifications_table)

    # The validator: one backend invalidated (revoked), the others valid
    functions.validator()

    # The Chainloop sync: one run that copies rows, one that cannot reach its database
    chainloop_org = chainloop.add_org().id
    chainloop_backend = chainloop.add_backend(
        chainloop_org, "b", location="bucket", secret_name="s", default=True
    )
    chainloop.add_mapping("sha256:" + hashlib.sha256(b"synced").hexdigest(), chainloop_org, chainloop_backend)
    functions.sync({"dsn": chainloop.dsn})
    functions.sync({"dsn": "postgresql://u:p@127.0.0.1:9/x"})

    return _emitted(capsys.readouterr().out)


# --- the checks ----------------------------------------------------------------------------------------


def _varying_values(template: dict[str, Any]) -> dict[str, Callable[[str, dict[str, str]], bool]]:
    """Dimensions whose value the code computes: whether a plotted value is one it can emit."""
    routes = {
        event["Properties"]["Path"]
        for event in function_properties(template, "DownloadFunction")["Events"].values()
        if event["Type"] == "HttpApi"
    }
    reasons = {reason.value for reason in AttemptReason} - {AttemptReason.SKIPPED_INVALID.value}

    def function_of_service(value: str, dimensions: dict[str, str]) -> bool:
        # the function's name is a reference to a function of the stack that runs that service
        match = re.fullmatch(r"<(\w+)>", value)
        if (
            not match
            or template["Resources"].get(match.group(1), {}).get("Type") != "AWS::Serverless::Function"
        ):
            return False
        service = _environment(template, match.group(1)).get("POWERTOOLS_SERVICE_NAME")
        return service == dimensions.get("service")

    return {
        "Reason": lambda value, _: value in reasons,
        "Mode": lambda value, _: value in {mode.value for mode in Mode},
        "Route": lambda value, _: value in routes,
        "function_name": function_of_service,
    }


def _matches(
    plotted: Metric, emitted: Metric, varying: dict[str, Callable[[str, dict[str, str]], bool]]
) -> bool:
    namespace, name, dimensions = plotted
    if (namespace, name) != emitted[:2] or [d for d, _ in dimensions] != [d for d, _ in emitted[2]]:
        return False
    wanted = dict(dimensions)
    for (dimension, value), (_, emitted_value) in zip(dimensions, emitted[2], strict=True):
        if dimension in varying:
            if not varying[dimension](value, wanted):
                return False
        elif value != emitted_value:
            return False
    return True


@pytest.mark.parametrize("with_sync", [True, False], ids=["with-sync", "without-sync"])
def test_every_metric_the_dashboard_plots_is_one_the_code_emits(
    template: dict[str, Any], emitted: set[Metric], with_sync: bool
) -> None:
    # Given the dashboard as CloudFormation renders it, and what the functions printed when run
    body = _body(template, with_sync)
    plotted = [(title, metric) for title, metric in _plotted(body) if not metric[0].startswith("AWS/")]
    varying = _varying_values(template)
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert plotted

    # Then each metric it plots is one of them: namespace, name, dimension names, fixed values
    unknown = [
        (title, metric) for title, metric in plotted if not any(_matches(metric, e, varying) for e in emitted)
    ]
    assert unknown == [], f"plotted but never emitted: {unknown}"
    assert {metric[0] for _, metric in plotted} == {namespace}


def test_the_dashboard_covers_every_metric_dimensioned_by_a_value_the_code_emits(
    template: dict[str, Any], emitted: set[Metric]
) -> None:
    # Given what the run emitted with a computed dimension (Reason, Mode, Route)
    plotted = {metric for _, metric in _plotted(_body(template, with_sync=True))}
    computed = {m for m in emitted if {d for d, _ in m[2]} & {"Reason", "Mode", "Route"}}
    assert computed
    # Then each of them (e.g. AttemptFailures{Reason=digest_mismatch}) has its line on the dashboard,
    # so that the checks above compare against real dimension values, not only the enums
    assert computed - plotted == set()


@pytest.mark.parametrize("with_sync", [True, False], ids=["with-sync", "without-sync"])
def test_aws_metrics_name_resources_of_the_stack(template: dict[str, Any], with_sync: bool) -> None:
    # Given the dashboard's AWS metrics (Lambda, API Gateway, SQS)
    plotted = [metric for _, metric in _plotted(_body(template, with_sync)) if metric[0].startswith("AWS/")]
    assert {metric[0] for metric in plotted} == set(AWS_METRICS)
    for namespace, name, dimensions in plotted:
        names, resource_type, metric_names = AWS_METRICS[namespace]
        # Then each has the dimensions AWS publishes it with, naming a resource of the template of the
        # right type that exists with or without the sync
        assert name in metric_names, (namespace, name)
        assert tuple(d for d, _ in dimensions) == names, (namespace, name, dimensions)
        for _, value in dimensions:
            match = re.fullmatch(r"<(\w+)(?:\.(\w+))?>", value)
            assert match, value
            resource = template["Resources"][match.group(1)]
            assert resource["Type"] == resource_type, value
            assert "Condition" not in resource, value
            assert match.group(2) in (None, "QueueName"), value


def test_the_dashboard_is_named_after_the_stack_and_deploys_without_the_sync(
    template: dict[str, Any],
) -> None:
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert dashboard["Properties"]["DashboardName"] == {"Ref": "AWS::StackName"}
    assert "Condition" not in dashboard
    # Without the sync, the body names none of its resources (CloudFormation would refuse it)
    optional = {name for name, r in template["Resources"].items() if r.get("Condition") == "HasChainloopSync"}
    text = json.dumps(_body(template, with_sync=False))
    assert not [name for name in optional if f"<{name}" in text]


@pytest.mark.parametrize("with_sync", [True, False], ids=["with-sync", "without-sync"])
def test_the_alarm_widget_shows_every_alarm_of_the_stack(template: dict[str, Any], with_sync: bool) -> None:
    alarms = {
        name
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and (with_sync or r.get("Condition") != "HasChainloopSync")
    }
    (widget,) = [w for w in _body(template, with_sync)["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"<{name}.Arn>" for name in alarms)


def test_the_runbook_links_each_alarm_to_its_widget(template: dict[str, Any]) -> None:
    # Given the runbook's table of alarms: | `Alarm` | ... | widget | ... |
    titles = _widget_titles(_body(template, with_sync=True))
    alarms = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    table = re.findall(r"^\| `(\w+Alarm)` \|(.*)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    # Then every alarm has a row, and the row names the dashboard widget to look at (widget *Title*)
    assert {alarm for alarm, _ in table} == alarms
    for alarm, rest in table:
        named = set(re.findall(r"widget \*([^*]+)\*", rest))
        assert named, f"{alarm}: no widget named"
        assert named <= titles, f"{alarm}: {named - titles} is no widget of the dashboard"
