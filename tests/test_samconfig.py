"""samconfig.toml works as written (issue 27): read with SAM CLI's own config reader and parameter
parser, every parameter it sets, and the documented form of the one it leaves for the operator to add,
parse to what the file says. Unquoted, a value with a space is cut at it: the PEM keys became
``-----BEGIN`` and the sync's schedule ``rate(15``."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig

from cas_download.config import Settings
from cas_local.template import load_template

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = ROOT / "samconfig.toml"
ENVIRONMENTS = ("default", "chainloop")


def parsed_overrides(entries: list[str]) -> dict[str, str]:
    """``parameter_overrides`` entries as ``sam deploy`` turns them into CloudFormation parameters."""
    parsed: dict[str, str] = CfnParameterOverridesType().convert(entries, None, None)
    return parsed


def written_overrides(environment: str) -> list[str]:
    parameters = SamConfig(str(ROOT)).get_all(["deploy"], "parameters", env=environment)
    return [str(entry) for entry in parameters.get("parameter_overrides", [])]


def as_written(entry: str) -> tuple[str, str]:
    """What an entry means to whoever reads the file: ``Key=value``, with the quotes that keep a value
    whole taken off."""
    key, _, value = entry.partition("=")
    return key, value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_parameter_override_parses_to_what_the_file_says(environment: str) -> None:
    # Given the parameters an environment of samconfig.toml sets
    written = written_overrides(environment)

    # When SAM CLI parses them as sam deploy does
    parsed = parsed_overrides(written)

    # Then each is a parameter of the template, with the whole value the file gives it
    parameters = load_template()["Parameters"]
    assert dict(as_written(entry) for entry in written) == parsed
    assert set(parsed) <= set(parameters)


def test_the_chainloop_schedule_keeps_its_space() -> None:
    assert parsed_overrides(written_overrides("chainloop"))["ChainloopSyncSchedule"] == "rate(15 minutes)"


def test_the_documented_form_of_the_link_keys_gives_the_function_the_whole_key() -> None:
    # Given the commented example of ChainloopCasPublicKeys, with a real P-521 key's body in it
    (example,) = re.findall(
        r'^\s*#\s+("ChainloopCasPublicKeys=.*",)\s*$', SAMCONFIG.read_text(), re.MULTILINE
    )
    key = ec.generate_private_key(ec.SECP521R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = base64.b64encode(der).decode()
    begin, end = "-----BEGIN PUBLIC KEY-----\\\\n", "\\\\n-----END PUBLIC KEY-----"
    real = example[: example.index(begin) + len(begin)] + body + example[example.index(end) :]
    assert real != example
    entry: Any = tomlkit.parse(f"overrides = [{real}]")["overrides"][0]

    # When SAM CLI parses it, and the function reads the parameter from its environment
    value = parsed_overrides([str(entry)])["ChainloopCasPublicKeys"]
    settings = Settings.from_env(
        {"BACKENDS_TABLE": "b", "MAPPINGS_TABLE": "m", "CHAINLOOP_CAS_PUBLIC_KEYS": value}
    )

    # Then the function holds that whole key
    (pem,) = settings.chainloop_cas_public_keys
    assert serialization.load_pem_public_key(pem.encode()) == key
