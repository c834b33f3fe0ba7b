"""`make invoke` (cas-local invoke): the events/ files through the handler against the local stack,
and events/env.json, the env-vars file shared with `sam local invoke`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cas_local.cli import main as local_main
from cas_local.events import EXAMPLE_DATA
from cas_local.stack import ENV_JSON_PATH, LOCAL_OVERRIDES, env_json_document
from cas_local.template import REPO_ROOT, Template
from tests.local.conftest import RunningStack, subprocess_env

EVENTS = REPO_ROOT / "events"
EXPECTED_STATUS = {
    "get_redirect": 307,
    "get_url": 200,
    "get_body": 200,
    "head": 307,
    "get_if_none_match": 304,
    "get_lambda_authorizer": 307,
    "get_invalid_digest": 400,
    "get_invalid_mode": 400,
    "get_unauthenticated": 401,
    "get_not_found": 404,
    # Chainloop download links: the token (query t, or Authorization: Bearer) is signed anew with the
    # stack's key; it names the revoked primary-2024, so the answer falls back like the others
    "download_redirect": 307,
    "download_head": 307,
    "download_filename": 307,
    "download_bearer": 307,
    "download_no_token": 401,
    # the UI's CORS preflight: 204 (the local stack lists no origin, so it carries no CORS header)
    "preflight_download": 204,
}


def test_every_event_file_runs_against_the_running_stack(
    local_stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    event_files = sorted(p.stem for p in EVENTS.glob("*.json") if p.name != "env.json")
    assert set(event_files) == set(EXPECTED_STATUS), "every events/ file has an expected status here"
    for name in event_files:
        code = local_main(
            ["invoke", str(EVENTS / f"{name}.json"), "--state-file", str(local_stack.state_file)]
        )
        captured = capsys.readouterr()
        assert code == 0, captured.err
        response = json.loads(captured.out)
        assert response["statusCode"] == EXPECTED_STATUS[name], (name, response)
        if EXPECTED_STATUS[name] in (200, 307):
            assert response["headers"]["X-Cas-Fallback"] == "true", name  # the demo's rotation story
        assert "temporary" not in captured.err  # it used the running stack
        resigned = "signed anew with the local stack's key" in captured.err
        assert resigned == (name.startswith("download_") and name != "download_no_token"), name
    # the demo holds the bytes every events/ file asks for
    digest = json.loads((EVENTS / "get_redirect.json").read_text())["pathParameters"]["digest"]
    assert digest == f"sha256:{hashlib.sha256(EXAMPLE_DATA).hexdigest()}"


def test_invoke_without_a_running_stack_starts_a_temporary_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "cas_local", "invoke", str(EVENTS / "get_body.json"),
            "--state-file", str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert "starting a temporary one" in done.stderr
    assert "X-Cas-Fallback: true" in done.stderr


def test_invoke_reports_a_missing_event_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert local_main(["invoke", str(tmp_path / "nope.json"), "--state-file", str(tmp_path / "s.json")]) == 1
    assert "no such event file" in capsys.readouterr().err


def test_env_json_is_generated_from_the_template(capsys: pytest.CaptureFixture[str]) -> None:
    template = Template.load()
    document = json.loads(ENV_JSON_PATH.read_text())
    assert local_main(["env-json", "--check", str(ENV_JSON_PATH)]) == 0, capsys.readouterr().err
    assert document == env_json_document(template)

    logical_id, props = template.download_function()
    declared = set(props["Environment"]["Variables"])
    # sam local invoke passes only variables the template declares: anything else would be ignored
    assert set(document[logical_id]) <= declared
    tables = {t.name for t in template.tables()}
    assert {"BACKENDS_TABLE", "MAPPINGS_TABLE"} <= set(document[logical_id])
    assert {v for k, v in document[logical_id].items() if k not in LOCAL_OVERRIDES} <= tables


def test_env_json_check_fails_when_stale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stale = tmp_path / "env.json"
    stale.write_text('{"DownloadFunction": {}}\n')
    assert local_main(["env-json", "--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_env_prints_exports_for_the_running_stack(
    local_stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_main(["env", "--state-file", str(local_stack.state_file)]) == 0
    out = capsys.readouterr().out
    assert f"export AWS_ENDPOINT_URL_S3='{local_stack.endpoints.gateway_url}'" in out
    assert f"export CAS_API_URL='{local_stack.api_url}'" in out
    assert "export BACKENDS_TABLE='cas-local-backends'" in out
    assert "unset AWS_PROFILE" in out
