"""The dependencies layer keeps botocore's data for the services the functions call, and no other."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError

ROOT = Path(__file__).resolve().parent.parent
LAYER_MAKEFILE = ROOT / "layers" / "dependencies" / "Makefile"
PACKAGE_DIR = ROOT / "functions" / "cas_download"
# PynamoDB makes its own DynamoDB client: no `.client("dynamodb")` in the package says so.
IMPLIED_BY_PYNAMODB = {"dynamodb"}


def kept_services() -> set[str]:
    text = LAYER_MAKEFILE.read_text(encoding="utf-8")
    match = re.search(r"^BOTOCORE_SERVICES\s*\??=\s*(.+)$", text, re.MULTILINE)
    assert match, "BOTOCORE_SERVICES is not set in layers/dependencies/Makefile"
    return set(match.group(1).split())


def services_the_code_calls() -> set[str]:
    """The first argument of every ``<x>.client("...")`` / ``create_client("...")`` in the package."""
    found: set[str] = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("client", "create_client")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def trimmed_copy(tmp_path: Path, services: list[str]) -> Path:
    """botocore's data as pip installs it (the shared files and ``services``), trimmed by the Makefile."""
    source = Path(botocore.__file__).parent / "data"
    data = tmp_path / "data"
    data.mkdir()
    for item in source.iterdir():
        if item.is_file():
            shutil.copy(item, data / item.name)
        elif item.name in services:
            shutil.copytree(item, data / item.name)
    subprocess.run(
        ["make", "-s", "-f", str(LAYER_MAKEFILE), "trim-botocore", f"BOTOCORE_DATA={data}"],
        check=True,
        capture_output=True,
    )
    return data


def session_reading(data: Path) -> botocore.session.Session:
    session = botocore.session.Session()
    loader = botocore.loaders.Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
    session.register_component("data_loader", loader)
    return session


def test_the_layer_keeps_exactly_the_services_the_functions_make_clients_for() -> None:
    # Given the functions' code
    called = services_the_code_calls() | IMPLIED_BY_PYNAMODB
    # Then the layer's Makefile keeps botocore's data for exactly those services
    assert kept_services() == called


def test_trimming_leaves_the_kept_services_and_the_shared_files(tmp_path: Path) -> None:
    # Given botocore's data with the kept services and two others
    kept = sorted(kept_services())
    # When the layer's Makefile trims it
    data = trimmed_copy(tmp_path, [*kept, "ec2", "sts"])
    # Then only the kept services' directories are left, and every shared file
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == kept
    shared = sorted(p.name for p in (Path(botocore.__file__).parent / "data").iterdir() if p.is_file())
    assert shared
    assert sorted(p.name for p in data.iterdir() if p.is_file()) == shared


def test_botocore_makes_every_kept_client_from_the_trimmed_data_and_no_other(tmp_path: Path) -> None:
    # Given botocore reading only the trimmed data
    session = session_reading(trimmed_copy(tmp_path, [*kept_services(), "ec2"]))
    # When it makes each client the functions use
    for service in sorted(kept_services()):
        client = session.create_client(
            service, region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
        )
        # Then the client is the service's, with its operations
        assert client.meta.service_model.service_name == service
        assert client.meta.service_model.operation_names
    # and a service the layer does not keep is unknown, not silently another
    with pytest.raises(UnknownServiceError):
        session.create_client("ec2", region_name="eu-west-1")


def test_trimming_refuses_a_kept_service_botocore_does_not_have(tmp_path: Path) -> None:
    # Given botocore's data without one of the kept services
    data = tmp_path / "data"
    (data / "s3").mkdir(parents=True)
    # When the Makefile trims it
    done = subprocess.run(
        ["make", "-s", "-f", str(LAYER_MAKEFILE), "trim-botocore", f"BOTOCORE_DATA={data}"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Then the build stops and names the missing service; nothing is removed
    assert done.returncode != 0
    assert "botocore has no data for" in done.stderr
    assert (data / "s3").is_dir()
