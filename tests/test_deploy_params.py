"""make deploy asks only what has no default (issue 27: --guided asked all 56 parameters with no
description), once, and writes answers SAM parses back as given."""

from __future__ import annotations

import shutil
from pathlib import Path

from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig
from scripts.deploy_params import ask_and_write, required_parameters

from cas_local.template import load_template

ROOT = Path(__file__).resolve().parents[1]


def test_only_the_parameters_without_a_default_are_required() -> None:
    assert list(required_parameters(load_template())) == ["JwtIssuer", "JwtAudience"]


def test_the_first_deploy_asks_them_once_and_sam_reads_the_answers_back(tmp_path: Path) -> None:
    # Given the repository's samconfig.toml, whose default environment sets no parameter yet
    shutil.copy(ROOT / "samconfig.toml", tmp_path / "samconfig.toml")
    answers = iter(["https://issuer.example/realms/ci", 'an "audience" with spaces'])
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    # When make deploy runs its prompt, and runs it again
    first = ask_and_write(tmp_path / "samconfig.toml", "default", load_template(), ask)
    second = ask_and_write(tmp_path / "samconfig.toml", "default", load_template(), ask)

    # Then only those two were asked, the first time only
    assert first == ["JwtIssuer", "JwtAudience"]
    assert second == []
    assert asked == ["JwtIssuer: ", "JwtAudience: "]
    # and SAM CLI reads back exactly the answers, the rest of the file unchanged
    written = SamConfig(str(tmp_path)).get_all(["deploy"], "parameters", env="default")
    parsed = CfnParameterOverridesType().convert([str(e) for e in written["parameter_overrides"]], None, None)
    assert parsed == {
        "JwtIssuer": "https://issuer.example/realms/ci",
        "JwtAudience": 'an "audience" with spaces',
    }
    assert written["capabilities"] == "CAPABILITY_IAM"


def test_the_chainloop_environment_asks_nothing(tmp_path: Path) -> None:
    # Given the Chainloop environment, which sets both (placeholders the template's patterns refuse)
    shutil.copy(ROOT / "samconfig.toml", tmp_path / "samconfig.toml")

    def ask(prompt: str) -> str:
        raise AssertionError(f"asked {prompt}")

    # Then nothing is asked
    assert ask_and_write(tmp_path / "samconfig.toml", "chainloop", load_template(), ask) == []
