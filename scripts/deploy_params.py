"""Before ``make deploy``: ask only for the parameters that have no safe default, once.

    python -m scripts.deploy_params [--config-env ENV] [other sam deploy arguments, ignored]

``sam deploy --guided`` asks every one of template.yaml's parameters (56), most of which have a default
that suits nearly everyone. This asks only those without a default (``JwtIssuer``, ``JwtAudience``), and
only when samconfig.toml's environment does not set them yet, then writes them into that environment's
``parameter_overrides``, quoted as SAM parses them (``tests/test_samconfig.py``). Every other parameter
keeps its default: docs/deploying.md's parameter table says what each does, and a line of
``parameter_overrides`` changes one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from samcli.cli.types import CfnParameterOverridesType  # type: ignore[import-untyped]

from cas_local.template import load_template

ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = ROOT / "samconfig.toml"


def required_parameters(template: dict[str, Any]) -> dict[str, str]:
    """The template's parameters with no default, and their descriptions."""
    return {
        name: " ".join(str(spec.get("Description", "")).split())
        for name, spec in template["Parameters"].items()
        if "Default" not in spec
    }


def entry(name: str, value: str) -> str:
    """One ``parameter_overrides`` entry that SAM parses back to exactly ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def missing_parameters(document: Any, environment: str, required: dict[str, str]) -> list[str]:
    deploy = document.get(environment, {}).get("deploy", {}).get("parameters", {})
    written = [str(item) for item in deploy.get("parameter_overrides", [])]
    present = CfnParameterOverridesType().convert(written, None, None) if written else {}
    return [name for name in required if not str(present.get(name, "")).strip()]


def ask_and_write(
    path: Path, environment: str, template: dict[str, Any], ask: Callable[[str], str] = input
) -> list[str]:
    """Ask for each required parameter the environment lacks; write the answers. The names asked."""
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    required = required_parameters(template)
    missing = missing_parameters(document, environment, required)
    if not missing:
        return []
    answers = {}
    for name in missing:
        print(f"{name}: {required[name]}")
        value = ""
        while not value:
            value = ask(f"{name}: ").strip()
        answers[name] = value
    parameters = document.setdefault(environment, tomlkit.table()).setdefault("deploy", tomlkit.table())
    parameters = parameters.setdefault("parameters", tomlkit.table())
    overrides = parameters.setdefault("parameter_overrides", tomlkit.array())
    for name, value in answers.items():
        overrides.append(entry(name, value))
    overrides.multiline(True)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-env", default="default", help="samconfig.toml's environment")
    args, _ = parser.parse_known_args(argv)  # make deploy passes DEPLOY_ARGS, meant for sam deploy
    asked = ask_and_write(SAMCONFIG, args.config_env, load_template())
    if asked:
        print(f"saved {', '.join(asked)} to samconfig.toml [{args.config_env}.deploy.parameters].")
    print("Every other parameter keeps its default: docs/deploying.md#parameters says what each does.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
