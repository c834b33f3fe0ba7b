"""`make run` end to end: the real handler over HTTP, the rotation story, the redirect followed
through the storage gateway, the printed curl commands, and Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cas_admin.chainloop_link import KEY_VARIABLE
from cas_download.config import Settings
from cas_local.stack import generate_chainloop_cas_keys, trust_public_key
from cas_local.template import REPO_ROOT, Template
from tests.local.conftest import (
    RunningStack,
    http,
    start_run,
    stop_run,
    subprocess_env,
    wait_for_state,
)
from tests.support.chainloop_links import claims_of
from tests.support.ci import require
from tests.support.hygiene import register as register_secret


def require_demo_part(local_stack: RunningStack, part: str, message: str) -> None:
    """A demo part whose server is missing fails under CI (never a silent skip), and skips locally."""
    require(local_stack.demo.get(part), message)


def bearer(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer local:{org}"}


def run_as_user(command: str, local_stack: RunningStack) -> subprocess.CompletedProcess[str]:
    """A command the banner printed, as a user runs it after ``eval "$(cas-local env)"`` in the
    repository's root (``.venv/bin/`` is this interpreter's scripts directory)."""
    command = command.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**subprocess_env(), **local_stack.endpoints.admin_env()},
        cwd=REPO_ROOT,
        check=False,
    )


def test_redirect_falls_back_and_following_it_gives_the_verified_bytes(local_stack: RunningStack) -> None:
    hello = local_stack.artifact("hello.txt")
    url = f"{local_stack.api_url}/v1/artifacts/{hello['digest']}"

    redirect = http(url, headers=bearer(local_stack.demo["org"]))
    assert redirect.status == 307
    assert redirect.headers["x-cas-fallback"] == "true"
    assert redirect.headers["x-cas-backend"] == local_stack.demo["new_backend"]
    assert redirect.headers["etag"] == f'"{hello["digest"]}"'
    assert redirect.headers["location"].startswith(local_stack.endpoints.gateway_url + "/")

    followed = http(url, headers=bearer(local_stack.demo["org"]), follow=True)
    assert followed.status == 200
    assert f"sha256:{hashlib.sha256(followed.body).hexdigest()}" == hello["digest"]
    assert followed.body == b"hello, cas\n"
    assert followed.headers["content-disposition"] == 'attachment; filename="hello.txt"'


def test_large_artifact_is_too_large_for_body_but_streams_through_the_redirect(
    local_stack: RunningStack,
) -> None:
    large = local_stack.artifact("large.bin")
    max_body = int(local_stack.endpoints.function_env["MAX_BODY_BYTES"])
    assert large["size"] > max_body
    url = f"{local_stack.api_url}/v1/artifacts/{large['digest']}"

    body = http(url + "?mode=body", headers=bearer(local_stack.demo["org"]))
    assert body.status == 413
    assert body.json["error"]["code"] == "too_large_for_body"

    followed = http(url, headers=bearer(local_stack.demo["org"]), follow=True)
    assert followed.status == 200
    assert len(followed.body) == large["size"]
    assert f"sha256:{hashlib.sha256(followed.body).hexdigest()}" == large["digest"]


def test_url_mode_and_non_ascii_filename(local_stack: RunningStack) -> None:
    resume = local_stack.artifact("résumé.txt")
    got = http(
        f"{local_stack.api_url}/v1/artifacts/{resume['digest']}?mode=url",
        headers=bearer(local_stack.demo["org"]),
    )
    assert got.status == 200
    document = got.json
    assert document["fallback"] is True
    assert document["filename"] == "résumé.txt"
    assert document["backend"]["name"] == local_stack.demo["new_backend"]

    fetched = http(document["url"])
    assert fetched.status == 200
    assert f"sha256:{hashlib.sha256(fetched.body).hexdigest()}" == resume["digest"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.txt" in fetched.headers["content-disposition"]


def test_head_body_and_no_fallback_for_the_new_backend(local_stack: RunningStack) -> None:
    notes = local_stack.artifact("notes-2025.txt")
    url = f"{local_stack.api_url}/v1/artifacts/{notes['digest']}"
    head = http(url, method="HEAD", headers=bearer(local_stack.demo["org"]))
    assert (head.status, head.body) == (307, b"")
    assert head.headers["x-cas-fallback"] == "false"

    body = http(url + "?mode=body", headers=bearer(local_stack.demo["org"]))
    assert body.status == 200
    assert f"sha256:{hashlib.sha256(body.body).hexdigest()}" == notes["digest"]
    assert body.headers["content-length"] == str(notes["size"])

    colon_encoded = http(url.replace("sha256:", "sha256%3A"), headers=bearer(local_stack.demo["org"]))
    assert colon_encoded.status == 307


def test_authentication_and_routes_like_api_gateway(local_stack: RunningStack) -> None:
    hello = local_stack.artifact("hello.txt")
    url = f"{local_stack.api_url}/v1/artifacts/{hello['digest']}"

    anonymous = http(url)
    assert (anonymous.status, anonymous.json) == (401, {"message": "Unauthorized"})
    assert http(url, headers={"Authorization": "Bearer eyJhbGciOi.jwt.sig"}).status == 401

    other = http(url, headers=bearer(local_stack.demo["other_org"]))
    assert other.status == 404
    assert other.json["error"]["code"] == "not_found"

    both = http(url, headers=bearer(f"{local_stack.demo['other_org']},{local_stack.demo['org']}"))
    assert both.status == 307

    assert http(f"{local_stack.api_url}/v1/other").json == {"message": "Not Found"}
    assert http(url, method="POST", headers=bearer(local_stack.demo["org"])).status == 404
    invalid = http(f"{local_stack.api_url}/v1/artifacts/sha256:nope", headers=bearer(local_stack.demo["org"]))
    assert (invalid.status, invalid.json["error"]["code"]) == (400, "invalid_digest")


def test_tampered_and_revoked_presigned_urls_are_refused_like_s3(local_stack: RunningStack) -> None:
    hello = local_stack.artifact("hello.txt")
    location = http(
        f"{local_stack.api_url}/v1/artifacts/{hello['digest']}", headers=bearer(local_stack.demo["org"])
    ).headers["location"]

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    signature = query["X-Amz-Signature"]
    tampered = location.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    refused = http(tampered)
    assert refused.status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in refused.body

    # The old backend's key: its secret is still stored, its access key is deleted in IAM.
    secrets = local_stack.client("secretsmanager")
    old = json.loads(
        secrets.get_secret_value(SecretId=f"cas/{local_stack.demo['org']}/{local_stack.demo['old_backend']}")[
            "SecretString"
        ]
    )
    s3_old = boto3.session.Session().client(
        "s3",
        endpoint_url=local_stack.endpoints.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=old["AccessKeyID"],
        aws_secret_access_key=old["SecretAccessKey"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    revoked_url = s3_old.generate_presigned_url(
        "get_object", Params={"Bucket": local_stack.demo["bucket"], "Key": hello["digest"]}, ExpiresIn=60
    )
    revoked = http(revoked_url)
    assert revoked.status == 403
    assert b"<Code>InvalidAccessKeyId</Code>" in revoked.body


def test_tables_come_from_the_template(local_stack: RunningStack) -> None:
    ddb = local_stack.client("dynamodb")
    for table in Template.load().tables():
        described = ddb.describe_table(TableName=table.name)["Table"]
        assert described["KeySchema"] == table.create_request["KeySchema"]
        assert sorted(described["AttributeDefinitions"], key=str) == sorted(
            table.create_request["AttributeDefinitions"], key=str
        )
        wanted_indexes = {i["IndexName"] for i in table.create_request.get("GlobalSecondaryIndexes", [])}
        assert {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])} == wanted_indexes
    env = local_stack.endpoints.function_env
    assert env["BACKENDS_TABLE"] == "cas-local-backends"
    assert env["MAPPINGS_TABLE"] == "cas-local-mappings"


def test_the_printed_curl_commands_work(local_stack: RunningStack) -> None:
    require(shutil.which("curl"), "curl is not installed")
    banner = local_stack.banner()
    commands = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl ")]
    assert len(commands) >= 6
    assert sum("chainloop link" in command for command in commands) == 2  # the link's curl commands
    outputs = []
    for command in commands:
        done = run_as_user(command, local_stack)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    text = "\n".join(outputs)
    assert "X-Cas-Fallback: true" in text
    assert "X-Cas-Fallback: false" in text
    assert "hello, cas" in text
    assert "too_large_for_body" in text
    assert "not_found" in text
    assert local_stack.artifact("large.bin")["digest"].removeprefix("sha256:") in text


def test_make_run_makes_a_p521_key_pair_and_the_function_trusts_its_public_key(
    local_stack: RunningStack,
) -> None:
    # Given the running stack
    endpoints = local_stack.endpoints

    # Then its private key is a SEC1 P-521 key under the stack's log dir, readable by its owner only
    assert endpoints.chainloop_cas_private_key_path
    private_path = Path(endpoints.chainloop_cas_private_key_path)
    assert private_path.is_relative_to(local_stack.state_file.parent / "logs")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    private_pem = private_path.read_bytes()
    assert private_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp521r1"

    # and the function's CHAINLOOP_CAS_PUBLIC_KEYS is its SPKI public key (public.pem beside it)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert endpoints.function_env["CHAINLOOP_CAS_PUBLIC_KEYS"] == public_pem.decode()
    assert (private_path.parent / "public.pem").read_bytes() == public_pem

    # and `cas-local env` exports the private key's path for cas-admin
    exported = subprocess.run(
        [sys.executable, "-m", "cas_local", "env", "--state-file", str(local_stack.state_file)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        check=True,
    ).stdout
    assert f"export {KEY_VARIABLE}='{private_path}'" in exported.splitlines()


def test_the_key_pair_is_what_openssl_makes_for_chainloop(tmp_path: Path) -> None:
    # Given openssl (Chainloop's docs make the control plane's key pair with it)
    require(shutil.which("openssl"), "openssl is not installed")

    # When the stack's key pair is written, over one a previous run left world-readable
    (tmp_path / "private.ec.key").write_text("old")
    (tmp_path / "private.ec.key").chmod(0o644)
    keys = generate_chainloop_cas_keys(tmp_path)

    # Then openssl reads the private key as a P-521 EC key and derives the same public key
    text = subprocess.run(
        ["openssl", "ec", "-in", str(keys.private_key_path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "NIST CURVE: P-521" in text or "secp521r1" in text
    derived = subprocess.run(
        ["openssl", "ec", "-in", str(keys.private_key_path), "-pubout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert derived == keys.public_pem == keys.public_key_path.read_text()
    assert stat.S_IMODE(keys.private_key_path.stat().st_mode) == 0o600


def test_the_stack_key_is_trusted_beside_a_key_the_env_vars_file_configures(tmp_path: Path) -> None:
    # Given a function environment whose env-vars file already names a control plane's public key
    configured = generate_chainloop_cas_keys(tmp_path / "configured").public_pem
    env = {"BACKENDS_TABLE": "b", "MAPPINGS_TABLE": "m", "CHAINLOOP_CAS_PUBLIC_KEYS": configured}

    # When the stack's own public key is added
    local = generate_chainloop_cas_keys(tmp_path / "local").public_pem
    trust_public_key(env, local)

    # Then the function trusts both (as while a rotation overlaps)
    assert Settings.from_env(env).chainloop_cas_public_keys == (configured, local)


def test_the_printed_chainloop_link_command_mints_a_link_that_falls_back(local_stack: RunningStack) -> None:
    # Given the banner's command that mints the demo's Chainloop download link
    link = local_stack.demo["link"]
    commands = [
        line.strip() for line in local_stack.banner().splitlines() if line.strip().startswith(".venv/bin/")
    ]
    mint = next(command for command in commands if " chainloop link " in command)
    assert f"{link['digest']} --org {link['org']} --backend {link['backend']}" in mint

    # When a user runs it (after eval "$(cas-local env)": no --key, no --download-url)
    done = run_as_user(mint, local_stack)

    # Then it prints one link: the local API's /download route, the digest, a token naming the revoked
    # backend's secret and provider
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert "\n" not in url
    route, _, query = url.partition("?")
    token = dict(urllib.parse.parse_qsl(query))["t"]
    register_secret(token, "chainloop_cas_token")
    assert route == f"{local_stack.api_url}/download/{link['digest']}"
    claims = claims_of(token)
    assert (claims["secret-id"], claims["backend"], claims["org-id"]) == (
        link["secret_id"],
        link["provider"],
        link["org"],
    )
    assert link["secret_id"] == f"cas/{link['org']}/{local_stack.demo['old_backend']}"

    # and the link, with no Authorization header, answers 307 through the new backend (fallback) ...
    redirect = http(url)
    assert redirect.status == 307
    assert redirect.headers["x-cas-fallback"] == "true"
    assert redirect.headers["x-cas-backend"] == link["served_by"] == local_stack.demo["new_backend"]

    # ... to a URL that serves the verified bytes
    served = http(redirect.headers["location"])
    assert served.status == 200
    assert f"sha256:{hashlib.sha256(served.body).hexdigest()}" == link["digest"]
    assert served.body == b"hello, cas\n"


def test_ctrl_c_stops_the_stack_and_its_moto_servers(tmp_path: Path) -> None:
    proc, state, _out, err = start_run(tmp_path, "--no-seed")
    endpoints = wait_for_state(proc, state, err)
    assert endpoints.moto_pids

    assert stop_run(proc) == 0
    for pid in endpoints.moto_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not state.exists()
    assert "stopped" in err.read_text()


def test_the_oci_demo_falls_back_across_providers_both_ways(local_stack: RunningStack) -> None:
    # Given the demo with its registry (make registry installs it; CI must have it)
    require_demo_part(local_stack, "registry", "the OCI demo needs CNCF distribution: run `make registry`")
    org = local_stack.demo["org"]
    chart, sbom = local_stack.artifact("chart.tgz"), local_stack.artifact("sbom.json")

    # When the chart (mapped to a registry whose login was changed) is asked for
    redirect = http(f"{local_stack.api_url}/v1/artifacts/{chart['digest']}", headers=bearer(org))

    # Then the bucket's copy serves it (OCI -> S3)
    assert redirect.status == 307
    assert redirect.headers["x-cas-backend"] == local_stack.demo["new_backend"]
    assert redirect.headers["x-cas-fallback"] == "true"

    # When the SBOM (mapped to the revoked S3 backend, held only by the org's fallback registry) is asked for
    body = http(f"{local_stack.api_url}/v1/artifacts/{sbom['digest']}?mode=body", headers=bearer(org))
    redirected = http(f"{local_stack.api_url}/v1/artifacts/{sbom['digest']}", headers=bearer(org))

    # Then the registry serves its proven bytes in body mode (S3 -> OCI); a redirect has no URL to give
    assert body.status == 200
    assert body.headers["x-cas-backend"] == "registry-ro"
    assert f"sha256:{hashlib.sha256(body.body).hexdigest()}" == sbom["digest"]
    assert redirected.status == 502
    attempts = [(a["backend"], a["reason"]) for a in json.loads(redirected.body)["error"]["attempts"]]
    assert ("registry-ro", "no_direct_url") in attempts


def test_the_azure_demo_redirects_to_a_sas_and_falls_back_to_the_bucket(local_stack: RunningStack) -> None:
    # Given the demo with Azurite (make azurite installs it; CI must have it)
    require_demo_part(local_stack, "azure", "the Azure demo needs Azurite: run `make azurite`")
    org = local_stack.demo["org"]
    notes, archive = local_stack.artifact("azure-notes.txt"), local_stack.artifact("archive.tgz")

    # When the notes (mapped to a working Azure backend) are asked for, and the SAS followed
    redirect = http(f"{local_stack.api_url}/v1/artifacts/{notes['digest']}", headers=bearer(org))
    sas = redirect.headers["location"]
    followed = http(sas)

    # Then the Location is a read-only SAS for that blob on Azurite, and it serves the verified bytes
    assert redirect.status == 307
    assert redirect.headers["x-cas-backend"] == "azure-2025"
    assert sas.startswith(local_stack.endpoints.azurite_url or "-")
    assert "sp=r" in sas
    assert followed.status == 200
    assert f"sha256:{hashlib.sha256(followed.body).hexdigest()}" == notes["digest"]

    # When the archive (mapped to an Azure backend whose key was rotated away) is asked for
    fallback = http(f"{local_stack.api_url}/v1/artifacts/{archive['digest']}", headers=bearer(org))

    # Then the bucket's copy serves it (Azure -> S3)
    assert fallback.status == 307
    assert fallback.headers["x-cas-backend"] == local_stack.demo["new_backend"]
    assert fallback.headers["x-cas-fallback"] == "true"


def test_a_second_run_in_the_same_checkout_starts_cleanly(tmp_path: Path) -> None:
    # Given a stack that ran with its demo (Azurite's and the registry's data written under logs/) and
    # was stopped with Ctrl-C
    first, state, _out, err = start_run(tmp_path)
    try:
        wait_for_state(first, state, err)
    finally:
        assert stop_run(first) == 0

    # When the same command runs again in the same place
    second, state, _out, err = start_run(tmp_path)
    try:
        endpoints = wait_for_state(second, state, err)

        # Then it starts, with its demo written anew, and serves it
        demo = endpoints.demo
        hello = next(a for a in demo["artifacts"] if a["name"] == "hello.txt")
        served = http(f"{endpoints.api_url}/v1/artifacts/{hello['digest']}", headers=bearer(demo["org"]))
        assert served.status == 307
    finally:
        assert stop_run(second) == 0
    assert "Traceback" not in err.read_text()
