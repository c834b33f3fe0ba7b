"""The dependencies layer keeps botocore's data for the services the functions call, and no other, with
their models' documentation emptied (layers/dependencies/slim_botocore.py)."""

from __future__ import annotations

import ast
import gzip
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import UnknownServiceError

ROOT = Path(__file__).resolve().parent.parent
LAYER_MAKEFILE = ROOT / "layers" / "dependencies" / "Makefile"
PACKAGE_DIR = ROOT / "functions" / "cas_download"
BOTOCORE_DATA = Path(botocore.__file__).parent / "data"
# PynamoDB makes its own DynamoDB client: no `.client("dynamodb")` in the package says so.
IMPLIED_BY_PYNAMODB = {"dynamodb"}


def kept_services() -> list[str]:
    text = LAYER_MAKEFILE.read_text(encoding="utf-8")
    match = re.search(r"^BOTOCORE_SERVICES\s*\??=\s*(.+)$", text, re.MULTILINE)
    assert match, "BOTOCORE_SERVICES is not set in layers/dependencies/Makefile"
    return sorted(match.group(1).split())


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


def slim_with_make(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-f", str(LAYER_MAKEFILE), "slim-botocore", f"BOTOCORE_DATA={data}"],
        capture_output=True,
        text=True,
        check=False,
    )


def copied(tmp_path: Path, services: list[str], name: str = "data") -> Path:
    """botocore's data as pip installs it: the shared files and ``services``."""
    data = tmp_path / name
    data.mkdir(parents=True)
    for item in BOTOCORE_DATA.iterdir():
        if item.is_file():
            shutil.copy(item, data / item.name)
        elif item.name in services:
            shutil.copytree(item, data / item.name)
    return data


def slimmed_copy(tmp_path: Path, services: list[str]) -> Path:
    """``copied``, slimmed by the layer's Makefile."""
    data = copied(tmp_path, services)
    done = slim_with_make(data)
    assert done.returncode == 0, done.stderr
    return data


def session_reading(data: Path) -> botocore.session.Session:
    session = botocore.session.Session()
    loader = botocore.loaders.Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
    session.register_component("data_loader", loader)
    return session


def read_model(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())


def differences(original: Any, slimmed: Any, where: str = "") -> Iterator[str]:
    """Every place the two JSON trees differ, by path."""
    if isinstance(original, dict) and isinstance(slimmed, dict):
        if original.keys() != slimmed.keys():
            yield f"{where}: keys {sorted(original.keys() ^ slimmed.keys())}"
        for key in original.keys() & slimmed.keys():
            yield from differences(original[key], slimmed[key], f"{where}/{key}")
    elif isinstance(original, list) and isinstance(slimmed, list) and len(original) == len(slimmed):
        for index, (a, b) in enumerate(zip(original, slimmed, strict=True)):
            yield from differences(a, b, f"{where}/{index}")
    elif original != slimmed:
        yield where


def test_the_layer_keeps_exactly_the_services_the_functions_make_clients_for() -> None:
    # Given the functions' code
    called = services_the_code_calls() | IMPLIED_BY_PYNAMODB
    # Then the layer's Makefile keeps botocore's data for exactly those services
    assert kept_services() == sorted(called)


def test_slimming_leaves_the_kept_services_and_the_shared_files(tmp_path: Path) -> None:
    # Given botocore's data with the kept services and two others
    kept = kept_services()
    # When the layer's Makefile slims it
    data = slimmed_copy(tmp_path, [*kept, "ec2", "sts"])
    # Then only the kept services' directories are left, and every shared file, unchanged but for the
    # other services' legacy endpoints
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == kept
    shared = sorted(p.name for p in BOTOCORE_DATA.iterdir() if p.is_file())
    assert "endpoints.json" in shared
    assert sorted(p.name for p in data.iterdir() if p.is_file()) == shared
    unchanged = [name for name in shared if name != "endpoints.json"]
    assert all((data / name).read_bytes() == (BOTOCORE_DATA / name).read_bytes() for name in unchanged)


def test_slimmed_endpoints_keep_every_partition_and_only_the_kept_services(tmp_path: Path) -> None:
    # Given botocore's endpoints.json, and the layer's
    original = read_model(BOTOCORE_DATA / "endpoints.json")
    slimmed = read_model(slimmed_copy(tmp_path, kept_services()) / "endpoints.json")
    # Then each partition keeps its regions and defaults, and the kept services' entries as they were
    assert [p["partition"] for p in slimmed["partitions"]] == [p["partition"] for p in original["partitions"]]
    for before, after in zip(original["partitions"], slimmed["partitions"], strict=True):
        assert {k: v for k, v in after.items() if k != "services"} == {
            k: v for k, v in before.items() if k != "services"
        }
        assert after["services"] == {k: v for k, v in before["services"].items() if k in kept_services()}
    assert sum(len(p["services"]) for p in slimmed["partitions"]) < sum(
        len(p["services"]) for p in original["partitions"]
    )


def test_a_slimmed_model_differs_from_botocores_only_in_emptied_documentation(tmp_path: Path) -> None:
    # Given the kept services' models as botocore ships them, and as the layer slims them
    data = slimmed_copy(tmp_path, kept_services())
    models = sorted(data.glob("*/*/service-2.json*")) + sorted(data.glob("*/*/endpoint-rule-set-1.json*"))
    assert sorted({path.relative_to(data).parts[0] for path in models}) == kept_services()
    for slimmed_path in models:
        original = read_model(BOTOCORE_DATA / slimmed_path.relative_to(data))
        slimmed = read_model(slimmed_path)
        # Then every difference is a documentation text, now empty, and every other key and value stays
        changed = list(differences(original, slimmed))
        assert changed, f"{slimmed_path} was not slimmed"
        for where in changed:
            key = where.rsplit("/", 1)[-1]
            assert key in ("documentation", "documentationUrl"), f"{slimmed_path}: {where} changed"
        assert slimmed_path.stat().st_size < (BOTOCORE_DATA / slimmed_path.relative_to(data)).stat().st_size


def test_botocore_makes_every_kept_client_from_the_slimmed_data_and_no_other(tmp_path: Path) -> None:
    # Given botocore reading only the slimmed data
    session = session_reading(slimmed_copy(tmp_path, [*kept_services(), "ec2"]))
    # When it makes each client the functions use
    for service in kept_services():
        client = session.create_client(
            service, region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
        )
        model = client.meta.service_model
        own = botocore.session.Session().get_service_model(service)
        # Then the client is the service's, with all of its operations and client context parameters
        assert model.service_name == service
        assert model.operation_names == own.operation_names
        assert [(p.name, p.type) for p in model.client_context_parameters] == [
            (p.name, p.type) for p in own.client_context_parameters
        ]
    # and a service the layer does not keep is unknown, not silently another
    with pytest.raises(UnknownServiceError):
        session.create_client("ec2", region_name="eu-west-1")


def test_a_slimmed_s3_client_resolves_and_signs_as_botocores_own(tmp_path: Path) -> None:
    # Given an S3 client from botocore's data and one from the slimmed data, each read the same way,
    # configured as the app's
    sessions = [
        session_reading(copied(tmp_path, ["s3"], "as-shipped")),
        session_reading(slimmed_copy(tmp_path, kept_services())),
    ]
    clients = [
        session.create_client(
            "s3",
            region_name="eu-west-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="s",
            config=Config(signature_version="s3v4", ignore_configured_endpoint_urls=True),
        )
        for session in sessions
    ]
    # When each presigns the same GET (the endpoint rules and the S3 model at work; nothing is sent)
    params = {"Bucket": "cas-bucket", "Key": "sha256:abc", "ResponseContentDisposition": "attachment"}
    urls = [urlsplit(c.generate_presigned_url("get_object", Params=params, ExpiresIn=60)) for c in clients]
    # Then both resolve the same endpoint and path, and sign with the same parameters
    assert urls[0].netloc == urls[1].netloc
    assert urls[1].netloc.startswith("cas-bucket.s3.")
    assert urls[0].path == urls[1].path == "/sha256%3Aabc"
    names = [sorted(name for name, _ in parse_qsl(url.query)) for url in urls]
    assert names[0] == names[1]
    assert "X-Amz-Signature" in names[1]


def test_slimming_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    # Given botocore's data slimmed twice, a second apart (a gzip header holds a time unless told not to)
    first = slimmed_copy(tmp_path / "one", kept_services())
    time.sleep(1.1)
    second = slimmed_copy(tmp_path / "two", kept_services())
    # Then every file is the same, byte for byte: a rebuilt layer is the same layer
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_slimming_refuses_a_kept_service_botocore_does_not_have(tmp_path: Path) -> None:
    # Given botocore's data without one of the kept services
    data = tmp_path / "data"
    (data / "s3").mkdir(parents=True)
    # When the Makefile slims it
    done = slim_with_make(data)
    # Then the build stops and names the missing service; nothing is removed
    assert done.returncode != 0
    assert "botocore has no data for" in done.stderr
    assert (data / "s3").is_dir()


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "ap-southeast-7"]
)
def test_every_kept_client_resolves_the_endpoint_botocores_own_data_gives(
    tmp_path: Path, region: str
) -> None:
    # Given botocore reading its data as shipped, and as the layer slims it
    sessions = [
        session_reading(copied(tmp_path, kept_services(), "as-shipped")),
        session_reading(slimmed_copy(tmp_path, kept_services())),
    ]
    config = Config(ignore_configured_endpoint_urls=True)
    for service in kept_services():
        # When each makes the service's client for the region
        clients = [s.create_client(service, region_name=region, config=config) for s in sessions]
        # Then both reach the same endpoint and sign for the same region
        assert clients[0].meta.endpoint_url == clients[1].meta.endpoint_url
        assert clients[0].meta.region_name == clients[1].meta.region_name == region
