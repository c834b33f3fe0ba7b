"""The bench measures what the template deploys: every container it builds is configured with the
download function's environment as template.yaml sets it, the scenario's stated variations aside."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from benchmarks.scenarios import NO_CACHE, Scenarios

from cas_download.config import Settings
from cas_local.template import function_properties, load_template

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "BACKENDS_TABLE": "bench-backends",
    "MAPPINGS_TABLE": "bench-mappings",
    "VERIFICATIONS_TABLE": "bench-v",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def deployed(template: dict[str, Any]) -> dict[str, Any]:
    """DownloadFunction's variables, Globals included, as CloudFormation would set them: a parameter at
    its default; a resource (a table, the verifier) by its logical id."""
    variables = function_properties(template, "DownloadFunction")["Environment"]["Variables"]
    parameters = template["Parameters"]
    resolved: dict[str, Any] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and "Ref" in value:
            target = value["Ref"]
            resolved[name] = (
                str(parameters[target]["Default"]) if target in parameters else ("resource", target)
            )
        else:
            resolved[name] = str(value)
    return resolved


@pytest.fixture
def scenarios() -> Scenarios:
    world = SimpleNamespace(
        tables=SimpleNamespace(backends=TABLES["BACKENDS_TABLE"], mappings=TABLES["MAPPINGS_TABLE"])
    )
    return Scenarios(world, counter=None, verifications_table=TABLES["VERIFICATIONS_TABLE"])  # type: ignore[arg-type]


def test_the_bench_sets_every_variable_the_template_sets_and_no_other(
    deployed: dict[str, Any], scenarios: Scenarios
) -> None:
    assert set(scenarios.function_env) == set(deployed)


def test_each_parameter_is_at_the_templates_default(deployed: dict[str, Any], scenarios: Scenarios) -> None:
    parameters = {name: value for name, value in deployed.items() if not isinstance(value, tuple)}
    assert {name: scenarios.function_env[name] for name in parameters} == parameters


def test_the_tables_are_the_benchs_own_the_verifications_table_included(
    deployed: dict[str, Any], scenarios: Scenarios
) -> None:
    assert deployed["VERIFICATIONS_TABLE"] == ("resource", "VerificationsTable")
    assert {name: scenarios.function_env[name] for name in TABLES} == TABLES


def test_a_scenario_varies_only_what_it_names(scenarios: Scenarios) -> None:
    varied = scenarios.settings_env(**NO_CACHE)
    assert {k: v for k, v in varied.items() if k not in NO_CACHE} == {
        k: v for k, v in scenarios.function_env.items() if k not in NO_CACHE
    }
    assert {k: varied[k] for k in NO_CACHE} == {k: str(v) for k, v in NO_CACHE.items()}


def test_its_settings_are_the_deployed_functions(scenarios: Scenarios) -> None:
    settings = Settings.from_env(scenarios.settings_env())
    assert settings.verifications_table == TABLES["VERIFICATIONS_TABLE"]
    assert settings.verifier_function_name == "VerifierAskFunction"
