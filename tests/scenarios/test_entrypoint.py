"""The Lambda entry point itself: configuration read once from the environment, one App per container."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pynamodb.connection.base as pynamodb_connection
import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import logger as powertools_logger
from aws_lambda_powertools.metrics.provider import cold_start

from cas_download.handlers import download as entrypoint
from tests.scenarios.conftest import Service
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext, load_event
from tests.support.world import World


@contextlib.contextmanager
def service_log_lines() -> Iterator[list[dict[str, Any]]]:
    """The download service's log lines while the block runs, as Powertools formats them."""
    Logger(service="cas-download")  # the logger and its formatter, shared by every Logger of the service
    lines: list[dict[str, Any]] = []
    service_logger = logging.getLogger("cas-download")
    formatter = service_logger.handlers[0].formatter
    assert formatter is not None

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    keep = Keep()
    service_logger.addHandler(keep)
    try:
        yield lines
    finally:
        service_logger.removeHandler(keep)


@pytest.fixture
def cold_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that has not built its App yet."""
    monkeypatch.setattr(entrypoint, "_app", None)


@pytest.mark.usefixtures("cold_container")
def test_a_misconfigured_function_answers_a_json_500_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a function deployed without its table names
    monkeypatch.delenv("BACKENDS_TABLE", raising=False)
    monkeypatch.delenv("MAPPINGS_TABLE", raising=False)

    # When it is invoked
    response = entrypoint.lambda_handler(load_event("get_redirect"), FakeLambdaContext())

    # Then the caller gets the spec's error shape, and the operator the missing variables
    assert response["statusCode"] == 500
    error = json.loads(response["body"])["error"]
    assert error["code"] == "internal_error"
    assert "BACKENDS_TABLE" in error["message"]
    assert entrypoint._app is None


@pytest.mark.usefixtures("cold_container")
def test_the_entry_point_builds_one_app_from_the_environment_and_reuses_it(
    world: World, app_env: dict[str, str]
) -> None:
    # Given an artifact and a function configured through its environment
    org = world.org()
    backend = world.backend(org, is_default=True)
    digest = world.put(backend, b"served through the real entry point\n")
    world.map(digest, org, backend)

    # When two requests arrive in the same container
    first = entrypoint.lambda_handler(
        load_event("get_redirect", digest=digest, orgs=org), FakeLambdaContext()
    )
    app = entrypoint._app
    second = entrypoint.lambda_handler(load_event("get_url", digest=digest, orgs=org), FakeLambdaContext())

    # Then both are served, by one App built once
    assert first["statusCode"] == 307
    assert second["statusCode"] == 200
    assert app is not None
    assert entrypoint._app is app
    assert app.settings.backends_table == app_env["BACKENDS_TABLE"]


@pytest.mark.usefixtures("cold_container", "app_env")
def test_every_log_line_of_a_request_carries_its_api_gateway_request_id_and_the_cold_start_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the function's log lines as Powertools formats them, and two requests of a new container
    # (Powertools keeps the logger's cold-start flag per process), each with its own API Gateway
    # request id
    monkeypatch.setattr(powertools_logger, "is_cold_start", True)
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    events = [load_event("get_not_found"), load_event("get_invalid_digest")]
    events[0]["requestContext"]["requestId"] = "req-one"
    events[1]["requestContext"]["requestId"] = "req-two"

    # When both are handled by the entry point
    with service_log_lines() as lines:
        for event in events:
            entrypoint.lambda_handler(event, FakeLambdaContext())

    # Then each line names its request and the Lambda context; the second is not a cold start
    logged = [line for line in lines if line["message"] == "download request"]
    assert [line["correlation_id"] for line in logged] == ["req-one", "req-two"]
    assert all("function_request_id" in line for line in logged)
    # the first invocation of the container is its cold start, the second is not
    assert [line["cold_start"] for line in logged] == [True, False]


def test_the_tables_use_the_app_session_instead_of_a_botocore_session_per_model(
    world: World,
    service: Service,
    call_recorder: CallRecorder,
    verifications_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a container whose three tables are configured, and a watch on the botocore session
    # PynamoDB would otherwise create for each model (each re-reads botocore's data files: slow cold starts)
    new_sessions: list[object] = []
    original = pynamodb_connection.get_session  # type: ignore[attr-defined]

    def watched_get_session(*args: Any, **kwargs: Any) -> Any:
        new_sessions.append(object())
        return original(*args, **kwargs)

    monkeypatch.setattr(pynamodb_connection, "get_session", watched_get_session)
    org = world.org()
    backend = world.backend(org, is_default=True)
    # (no stored checksum, so a redirect proves the bytes by hashing them and records that)
    digest = world.put(backend, b"first request of a container\n", checksum=False)
    world.map(digest, org, backend)
    service.configure(VERIFICATIONS_TABLE=verifications_table)

    # When the container serves its first redirect
    response = service.get(digest, org)

    # Then it is served, all three tables were used through the app's own session (the recorder
    # watches only that session), and PynamoDB created no botocore session of its own
    assert response.status == 307
    dynamodb_calls = {
        (call.operation, table)
        for call in call_recorder.calls
        if call.service == "dynamodb"
        for table in (call.params.get("TableName"), *call.params.get("RequestItems", {}))
        if table
    }
    assert dynamodb_calls >= {
        ("Query", world.tables.mappings),
        ("Query", world.tables.backends),
        ("GetItem", verifications_table),
        ("PutItem", verifications_table),
    }
    assert new_sessions == []


def _emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents among the lines the function printed."""
    documents = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            if "CloudWatchMetrics" in document["_aws"]:
                documents.append(document)
    return documents


def _metric_names(document: dict[str, Any]) -> set[str]:
    return {m["Name"] for block in document["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}


@pytest.mark.usefixtures("cold_container", "app_env")
def test_each_invocation_flushes_its_metrics_once_and_only_the_first_counts_a_cold_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a new container (Powertools keeps the cold-start flag per process)
    monkeypatch.setattr(cold_start, "is_cold_start", True)

    # When two requests reach it, one answered 404 and one 400
    entrypoint.lambda_handler(load_event("get_not_found"), FakeLambdaContext())
    first = _emf_documents(capsys.readouterr().out)
    entrypoint.lambda_handler(load_event("get_invalid_digest"), FakeLambdaContext())
    second = _emf_documents(capsys.readouterr().out)

    # Then the first invocation adds a ColdStart metric, named by function and service
    cold = [d for d in first if "ColdStart" in _metric_names(d)]
    assert len(cold) == 1
    assert cold[0]["ColdStart"] == [1.0]
    assert cold[0]["function_name"] == FakeLambdaContext().function_name
    assert cold[0]["service"] == "cas-download"
    # and each invocation flushes the request's metrics exactly once, in the service's namespace
    for documents in (first, second):
        requests = [d for d in documents if "Requests" in _metric_names(d)]
        assert len(requests) == 1
        assert requests[0]["Requests"] == [1.0]
        namespace = requests[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"]
        assert entrypoint._app is not None
        assert namespace == entrypoint._app.settings.metrics_namespace
    # and the second is no cold start
    assert not [d for d in second if "ColdStart" in _metric_names(d)]


@pytest.mark.usefixtures("cold_container", "app_env")
def test_with_tracing_active_every_log_line_carries_the_x_ray_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Lambda's own X-Ray segment (Tracing: Active), whose id the runtime puts in the environment
    trace_id = "1-6745f1a0-3c8a1e2b9d4f5a6b7c8d9e0f"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={trace_id};Parent=53995c3f42cd8ad8;Sampled=1")

    # When a request is handled
    with service_log_lines() as lines:
        entrypoint.lambda_handler(load_event("get_not_found"), FakeLambdaContext())

    # Then its lines lead from CloudWatch Logs to the trace
    assert lines
    assert all(line["xray_trace_id"] == trace_id for line in lines)


def test_an_internal_error_is_counted_for_the_version_that_answered_it(
    world: World, service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given version 7 of the function, whose download logic fails unexpectedly (a bug of that version)
    org = world.org()
    context = FakeLambdaContext()
    context._function_version = "7"

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(entrypoint, "download", broken)
    service.configure()
    capsys.readouterr()

    # When a request arrives
    response = service.invoke(load_event("get_redirect", orgs=org), context)

    # Then it answers 500 internal_error, and InternalErrors is emitted with that version as a dimension
    # (the deploy's rollback alarm reads the new version's alone)
    assert response.status == 500
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"InternalErrors"' in line
    ]
    assert [(d["InternalErrors"], d["FunctionVersion"]) for d in documents] == [([1.0], "7")]
    (directive,) = documents[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["FunctionVersion", "service"]] or directive["Dimensions"] == [
        ["service", "FunctionVersion"]
    ]


def test_every_table_of_a_container_uses_one_dynamodb_client(
    service: Service, verifications_table: str
) -> None:
    # Given a container whose four tables (backends, mappings, records, asks) are configured
    app = service.configure(VERIFICATIONS_TABLE=verifications_table)

    # When its tables are built
    tables = app.services.tables
    models = (tables.backend_model, tables.mapping_model, tables.verification_model, tables.ask_model)
    clients = {id(model._get_connection().connection._client) for model in models if model is not None}

    # Then one DynamoDB client serves them all (one creation, one connection pool), made from the app's
    # session and already there before the first request
    assert len(clients) == 1
    assert tables.mapping_model._get_connection().connection._client is not None
    assert tables.mapping_model._get_connection().connection._local.session is app.session._session
