"""The API's contract, openapi.yaml, against the events the tests send and the running service.

schemathesis generates requests from the document (valid and invalid digests, modes, If-None-Match
values) and sends them to ``cas-local run`` on loopback, as the demo org; every answer must be in the
document: status, content type, headers and body. A mismatch is a bug in the code or in the document.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import unsupported_method

from tests.local.conftest import RunningStack

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
EVENTS = sorted((ROOT / "events").glob("*.json"))


@cache
def document() -> dict[str, Any]:
    """openapi.yaml as plain data, read once (callers must not modify it)."""
    from cfnlint.decode.decode import decode  # noqa: PLC0415 - any YAML reader; cfn-lint's is the repo's

    loaded, problems = decode(str(ROOT / "openapi.yaml"))
    assert not problems
    return json.loads(json.dumps(loaded))


@pytest.mark.parametrize("path", [e for e in EVENTS if e.name != "env.json"], ids=lambda p: p.stem)
def test_every_event_is_a_request_the_document_describes(path: Path) -> None:
    # Given an event of events/ (the files sam local invoke and the tests send)
    event = json.loads(path.read_text())
    method, _, route = event["routeKey"].partition(" ")
    operations = document()["paths"]
    # Then its route and method are the document's
    assert route in operations
    assert method.lower() in operations[route]
    # and its mode is one the document names, unless the event is the invalid-mode case
    modes = next(p for p in operations[route]["parameters"] if p["$ref"].endswith("/Mode"))
    assert modes
    mode = (event.get("queryStringParameters") or {}).get("mode")
    allowed = document()["components"]["parameters"]["Mode"]["schema"]["enum"]
    assert mode is None or mode in allowed or path.stem == "get_invalid_mode"


def test_the_document_names_every_error_code_of_the_service() -> None:
    from cas_download import errors  # noqa: PLC0415

    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.CasError) and getattr(cls, "code", None)
    }
    documented = set(
        document()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    )
    assert codes <= documented, codes - documented


@SCHEMA.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_answer_of_the_running_service_is_in_the_document(case: Any, local_stack: RunningStack) -> None:
    case.call_and_validate(
        base_url=local_stack.api_url,
        headers={"Authorization": "Bearer local:org-example"},
        timeout=30,
        # API Gateway's HTTP API answers a method that has no route 404 {"message":"Not Found"}, not 405;
        # the local front end does the same (test_run: test_authentication_and_routes_like_api_gateway)
        excluded_checks=[unsupported_method],
    )
