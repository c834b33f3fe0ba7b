"""cas-admin against the local stack, as a user runs it after ``eval "$(cas-local env)"``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cas_admin.artifacts import progress_bar
from cas_admin.chainloop_link import KEY_VARIABLE
from cas_admin.cli import build_parser
from cas_admin.cli import main as admin_main
from cas_download.filenames import decode_filename
from cas_local.seed import BACKEND_POLICY_NAME
from tests.local.conftest import Admin, RunningStack, http, new_org_with_backend, subprocess_env
from tests.support.chainloop_links import new_key_pair
from tests.support.hygiene import register as register_secret


def flags(rows: list[dict[str, object]]) -> dict[str, tuple[bool, bool]]:
    return {str(r["name"]): (bool(r.get("is_default")), bool(r.get("is_fallback"))) for r in rows}


def test_backend_lifecycle_keeps_one_default_and_one_fallback(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str]
) -> None:
    user, bucket = identity
    org, first = new_org_with_backend(admin, identity, "b1", "--json")
    assert first.json["is_default"] is True  # an org's first backend becomes its default
    assert first.json["validation_status"] == "OK"
    admin.ok(
        "backend", "add", "b2", "--org", org, "--location", bucket, "--new-key-for-user", user, "--fallback"
    )
    # A third backend, with keys given explicitly (IAM allows two keys per user: another user's key).
    other_user = f"{user}-x"
    iam = local_stack.client("iam", storage=True)
    iam.create_user(UserName=other_user)
    policy = iam.get_user_policy(UserName=user, PolicyName=BACKEND_POLICY_NAME)["PolicyDocument"]
    iam.put_user_policy(
        UserName=other_user,
        PolicyName=BACKEND_POLICY_NAME,
        PolicyDocument=policy if isinstance(policy, str) else json.dumps(policy),
    )
    key = iam.create_access_key(UserName=other_user)["AccessKey"]
    admin.ok(
        "backend", "add", "b3", "--org", org, "--location", bucket,
        "--access-key-id", key["AccessKeyId"], "--secret-access-key", key["SecretAccessKey"],
    )  # fmt: skip
    assert flags(admin.ok("backend", "list", "--org", org, "--json").json) == {
        "b1": (True, False),
        "b2": (False, True),
        "b3": (False, False),
    }

    admin.ok("backend", "set-default", "b3", "--org", org)
    assert flags(admin.ok("backend", "list", "--org", org, "--json").json) == {
        "b1": (False, False),
        "b2": (False, True),
        "b3": (True, False),
    }
    moved = admin.ok("backend", "set-default", "b2", "--org", org)  # the fallback becomes the default
    assert "no fallback now" in moved.err
    assert flags(admin.ok("backend", "list", "--org", org, "--json").json) == {
        "b1": (False, False),
        "b2": (True, False),
        "b3": (False, False),
    }

    both = admin("backend", "set-fallback", "b2", "--org", org)
    assert both.code == 1
    assert "never both default and fallback" in both.err
    admin.ok("backend", "set-fallback", "b1", "--org", org)
    admin.ok("backend", "set-fallback", "b3", "--org", org)
    rows = admin.ok("backend", "list", "--org", org, "--json").json
    assert [r["name"] for r in rows if r.get("is_default")] == ["b2"]
    assert [r["name"] for r in rows if r.get("is_fallback")] == ["b3"]

    table = admin.ok("backend", "list", "--org", org).out
    assert table.splitlines()[0].split()[:5] == ["NAME", "DEFAULT", "FALLBACK", "STATUS", "VALIDATED_AT"]

    admin.ok("backend", "delete", "b1", "--org", org)
    assert [r["name"] for r in admin.ok("backend", "list", "--org", org, "--json").json] == ["b2", "b3"]
    everything = admin.ok("backend", "list", "--org", org, "--all", "--json").json
    assert next(r for r in everything if r["name"] == "b1")["deleted_at"]

    # The rows and the secret are the spec's: the service's own table reader sees the same thing.
    secret = local_stack.client("secretsmanager").get_secret_value(SecretId=f"cas/{org}/b3")
    assert json.loads(secret["SecretString"]) == {
        "AccessKeyID": key["AccessKeyId"],
        "SecretAccessKey": key["SecretAccessKey"],
    }
    row = local_stack.client("dynamodb").get_item(
        TableName=local_stack.endpoints.function_env["BACKENDS_TABLE"],
        Key={"id": {"S": next(r["id"] for r in rows if r["name"] == "b3")}},
    )["Item"]
    assert row["is_fallback"] == {"BOOL": True}
    assert row["secret_name"] == {"S": f"cas/{org}/b3"}
    assert row["provider"] == {"S": "AWS-S3"}


def test_bad_input_gives_a_clear_error_and_an_exit_status(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str], tmp_path: Path
) -> None:
    user, bucket = identity
    org, _ = new_org_with_backend(admin, identity, "only")

    duplicate = admin(
        "backend", "add", "only", "--org", org, "--location", bucket, "--new-key-for-user", user
    )
    assert duplicate.code == 1
    assert f"org {org!r} already has a backend named 'only'" in duplicate.err

    unknown = admin("backend", "list", "--org", "org-nobody-knows")
    assert unknown.code == 1
    assert "unknown org 'org-nobody-knows'" in unknown.err
    assert admin("backend", "set-default", "only", "--org", "org-nobody-knows").code == 1
    assert admin("backend", "set-default", "nope", "--org", org).code == 1

    bad_digest = admin("artifact", "where", "sha256:xyz")
    assert bad_digest.code == 2
    assert "bad digest 'sha256:xyz'" in bad_digest.err
    assert admin("artifact", "get", "12ab", "--org", org).code == 2

    missing = admin("artifact", "put", str(tmp_path / "missing.bin"), "--org", org)
    assert missing.code == 2
    assert "no such file" in missing.err

    bad_location = admin(
        "backend", "add", "x", "--org", org, "--location", "ftp://h/b", "--new-key-for-user", user
    )
    assert (bad_location.code, "invalid location" in bad_location.err) == (2, True)
    no_keys = admin("backend", "add", "x", "--org", org, "--location", bucket)
    assert no_keys.code == 2
    wrong_keys = admin(
        "backend", "add", "x", "--org", org, "--location", bucket,
        "--access-key-id", "AKIANOBODYISSUEDTHIS", "--secret-access-key", "nope",
    )  # fmt: skip
    assert wrong_keys.code == 1
    assert "credentials_invalid" in wrong_keys.err
    assert "nothing was written" in wrong_keys.err

    usage = admin("backend", "list")
    assert usage.code == 2
    assert "--org" in usage.err


def test_put_get_where_and_rotate_tell_the_rotation_story(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str], tmp_path: Path
) -> None:
    _, bucket = identity
    org, _ = new_org_with_backend(admin, identity, "old")
    data = b"artifact bytes \x00\x01" * 1000
    source = tmp_path / "r\u00e9sum\u00e9.pdf"
    source.write_bytes(data)
    digest = admin.ok("artifact", "put", str(source), "--org", org).out.strip()
    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"

    head = local_stack.client("s3", storage=True).head_object(
        Bucket=bucket, Key=digest, ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert head["Metadata"]["filename"].isascii()  # one RFC 2047 encoded word
    assert decode_filename(head["Metadata"]["filename"]) == source.name
    again = admin.ok("artifact", "put", str(source), "--org", org, "--json").json
    assert (again["uploaded"], again["mapped"]) == (False, False)

    where = admin.ok("artifact", "where", digest, "--org", org, "--json").json
    assert where["serves"]["name"] == "old"
    assert where["fallback"] is False

    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    got = admin.ok("artifact", "get", digest, "--org", org, "-o", str(out_dir), "--json").json
    assert got["verified"] is True
    assert got["fallback"] is False
    assert Path(got["path"]).name == source.name  # from Content-Disposition
    assert Path(got["path"]).read_bytes() == data

    rotated = admin.ok(
        "backend", "rotate", "old", "--org", org, "--new-name", "new", "--revoke-old", "--json"
    ).json
    assert rotated["old_key_revoked"] is True
    assert rotated["new"]["is_default"] is True
    rows = {r["name"]: r for r in admin.ok("backend", "list", "--org", org, "--json").json}
    assert rows["old"].get("is_default") is not True
    assert rows["old"]["validation_status"] == "Invalid"

    target = tmp_path / "again.pdf"
    after = admin.ok("artifact", "get", digest, "--org", org, "-o", str(target), "--json").json
    assert (after["backend"], after["fallback"]) == ("new", True)
    assert target.read_bytes() == data
    assert admin("artifact", "get", digest, "--org", org, "-o", str(target)).code == 2  # exists: --force

    where = admin.ok("artifact", "where", digest, "--json").json
    assert where["serves"]["name"] == "new"
    assert where["fallback"] is True
    results = {line["backend"]["name"]: line["result"] for line in where["backends"]}
    assert results["old"] == "credentials_invalid"
    human = admin.ok("artifact", "where", digest, "--org", org).out
    assert "credentials_invalid" in human
    assert "X-Cas-Fallback: true" in human


def test_get_reports_api_errors(admin: Admin, local_stack: RunningStack) -> None:
    hello = local_stack.artifact("hello.txt")["digest"]
    not_mine = admin("artifact", "get", hello, "--org", "org-somebody-else", "-o", "-")
    assert not_mine.code == 1
    assert "404 not_found" in not_mine.err
    nobody = admin("artifact", "get", hello)
    assert nobody.code == 2
    assert "--org" in nobody.err

    to_stdout = admin.ok("artifact", "get", hello, "--org", local_stack.demo["org"], "-o", "-")
    assert to_stdout.out == "hello, cas\n"


def test_where_on_the_demo_shows_the_fallback(admin: Admin, local_stack: RunningStack) -> None:
    hello = local_stack.artifact("hello.txt")["digest"]
    old, new = local_stack.demo["old_backend"], local_stack.demo["new_backend"]
    report = admin.ok("artifact", "where", hello, "--org", local_stack.demo["org"], "--json").json
    # The old (mapped) backend comes first until a request marked it Invalid; then it comes last, after
    # the org's default (and its fallback, when the OCI demo runs)
    old_status = next(line["status"] for line in report["backends"] if line["backend"]["name"] == old)
    order = [line["backend"]["name"] for line in report["backends"] if line["order"] is not None]
    if old_status == "Invalid":
        assert (order[0], order[-1]) == (new, old)
    else:
        assert order[:2] == [old, new]
    assert report["serves"]["name"] == new
    assert report["fallback"] is True
    nowhere = admin("artifact", "where", "sha256:" + "0" * 64)
    assert nowhere.code == 1
    assert "not_found" in nowhere.err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [
        [],
        ["backend"],
        ["artifact"],
        *(["backend", c] for c in ("add", "list", "set-default", "set-fallback", "delete", "rotate")),
        *(["artifact", c] for c in ("put", "get", "where")),
        ["chainloop"],
        ["chainloop", "link"],
    ]
    for argv in commands:
        assert admin_main([*argv, "--help"]) == 0
        assert "usage: cas-admin" in capsys.readouterr().out
    assert build_parser().prog == "cas-admin"


def test_progress_bar_draws_on_a_stream() -> None:
    stream = io.StringIO()
    bar = progress_bar(4 * 1024 * 1024, "notes.txt", out=stream)
    for _ in range(4):
        bar.update(1024 * 1024)
    bar.close()
    assert "notes.txt: 100%" in stream.getvalue()
    assert "4.00M/4.00M" in stream.getvalue()


def test_console_scripts_are_installed() -> None:
    bin_dir = Path(sys.executable).parent
    for script in ("cas-admin", "cas-local"):
        path = shutil.which(script, path=str(bin_dir))
        assert path, f"{script} is not installed in {bin_dir}: pip install -e '.[dev]'"
        done = subprocess.run(
            [path, "--help"], capture_output=True, text=True, env=subprocess_env(), check=False
        )
        assert done.returncode == 0, done.stderr


def test_s3_compatible_location(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str], tmp_path: Path
) -> None:
    _, bucket = identity
    location = f"{local_stack.endpoints.gateway_url}/{bucket}"  # http(s)://host[:port]/bucket, path style
    org, answer = new_org_with_backend(
        admin, identity, "compat", "--key-prefix", "cas/", "--region", "eu-west-1", "--json",
        location=location,
    )  # fmt: skip
    added = answer.json
    assert (added["location"], added["key_prefix"], added["region"]) == (location, "cas/", "eu-west-1")
    source = tmp_path / "compat.bin"
    source.write_bytes(b"s3-compatible")
    digest = admin.ok("artifact", "put", str(source), "--org", org).out.strip()
    assert local_stack.client("s3", storage=True).get_object(Bucket=bucket, Key=f"cas/{digest}")[
        "Body"
    ].read() == (b"s3-compatible")
    got = admin.ok("artifact", "get", digest, "--org", org, "-o", str(tmp_path / "out.bin"), "--json").json
    assert (got["backend"], got["fallback"]) == ("compat", False)
    assert (tmp_path / "out.bin").read_bytes() == b"s3-compatible"


def test_put_writes_an_object_chainloops_cas_reads(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str], tmp_path: Path
) -> None:
    # Given an org with an S3 backend
    _, bucket = identity
    org, _ = new_org_with_backend(admin, identity, "cas")
    source = tmp_path / "sbom.json"
    source.write_bytes(b'{"sbom": true}')

    # When cas-admin uploads a file through it
    digest = admin.ok("artifact", "put", str(source), "--org", org).out.strip()

    # Then the object is what Chainloop's Describe accepts (pkg/blobmanager/s3/backend.go): its author
    # mark and filename, and a SHA-256 checksum, if any, that is the digest's
    head = local_stack.client("s3", storage=True).head_object(
        Bucket=bucket, Key=digest, ChecksumMode="ENABLED"
    )
    assert head["Metadata"] == {"author": "chainloop.dev", "filename": "sbom.json"}
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest.removeprefix("sha256:")


def link_token(link: str) -> str:
    """The ``t`` of a printed link, registered with the secret scan (a token is a credential)."""
    token = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))["t"]
    register_secret(token, "chainloop_cas_token")
    return token


def test_chainloop_link_mints_chainloops_token_and_the_local_api_serves_it(
    admin: Admin, local_stack: RunningStack
) -> None:
    # Given the demo's artifact mapped to the revoked primary-2024, and cas-admin pointed at the stack
    # (eval "$(cas-local env)": the stack's private key and API, no --key, no --download-url)
    demo = local_stack.demo
    hello = local_stack.artifact("hello.txt")["digest"]
    old = next(
        row
        for row in admin.ok("backend", "list", "--org", demo["org"], "--json").json
        if row["name"] == demo["old_backend"]
    )

    # When a link is minted for it, as Chainloop's control plane would
    before = time.time()
    printed = admin.ok("chainloop", "link", hello, "--org", demo["org"], "--backend", demo["old_backend"])
    after = time.time()

    # Then one line: the local API's /download route, the digest, and t=<token>
    link = printed.out.strip()
    assert printed.out.count("\n") == 1
    assert link.startswith(f"{local_stack.api_url}/download/{hello}?t=")
    token = link_token(link)

    # and the token is Chainloop's: ES512 with the stack's key, its claims, 30 s of life
    assert jwt.get_unverified_header(token) == {"alg": "ES512", "typ": "JWT"}
    claims = jwt.decode(
        token,
        local_stack.endpoints.function_env["CHAINLOOP_CAS_PUBLIC_KEYS"],
        algorithms=["ES512"],
        audience="artifact-cas.chainloop",
    )
    exp = claims.pop("exp")
    assert claims == {
        "iss": "cp.chainloop",
        "aud": ["artifact-cas.chainloop"],
        "role": "downloader",
        "secret-id": old["secret_name"],
        "backend": old["provider"],
        "maxbytes": 0,
        "org-id": demo["org"],
    }
    assert before + 29 <= exp <= after + 30

    # and the local API serves it: through the new default, with fallback, to the verified bytes
    redirect = http(link)
    assert redirect.status == 307
    assert (redirect.headers["x-cas-backend"], redirect.headers["x-cas-fallback"]) == (
        demo["new_backend"],
        "true",
    )
    assert http(redirect.headers["location"]).body == b"hello, cas\n"


def test_chainloop_link_bad_input_is_one_error_line_and_a_non_zero_exit(
    admin: Admin, local_stack: RunningStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    demo = local_stack.demo
    hello = local_stack.artifact("hello.txt")["digest"]
    base = ("chainloop", "link", hello)

    def refused(*argv: str, code: int, says: str) -> None:
        result = admin(*argv)
        assert result.code == code, result.err
        # one error line (cas-admin may add a hint line), never a traceback
        lines = result.err.strip().splitlines()
        assert [line for line in lines if line.startswith("cas-admin: error: ")] == lines[:1], result.err
        assert all(line.startswith(("cas-admin: error: ", "cas-admin: hint: ")) for line in lines)
        assert says in lines[0]
        assert result.out == ""

    # Unknown org, unknown backend: 1
    refused(*base, "--org", "org-nobody-knows", "--backend", "primary-2024", code=1, says="unknown org")
    refused(*base, "--org", demo["org"], "--backend", "nope", code=1, says="has no backend 'nope'")
    # A bad digest, a key file that is missing or is not an EC P-521 key: 2
    refused("chainloop", "link", "sha256:xyz", "--org", demo["org"], "--backend", "primary-2024", code=2,
            says="bad digest")  # fmt: skip
    backend = ("--org", demo["org"], "--backend", demo["old_backend"])
    refused(*base, *backend, "--key", str(tmp_path / "missing.pem"), code=2, says="cannot read")
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    refused(*base, *backend, "--key", str(not_a_key), code=2, says="not an EC P-521 private key")
    public = tmp_path / "public.pem"  # the service's half of the pair, not the control plane's
    public.write_text(new_key_pair().public_pem)
    refused(*base, *backend, "--key", str(public), code=2, says="not an EC P-521 private key")
    p256 = tmp_path / "p256.pem"
    p256.write_bytes(new_key_pair(ec.SECP256R1()).private_pem)
    refused(*base, *backend, "--key", str(p256), code=2, says="it is EC secp256r1")

    # No key at all (neither --key nor the stack's variable): 2, saying how to give one
    monkeypatch.delenv(KEY_VARIABLE)
    refused(*base, *backend, code=2, says=f"pass --key FILE or set {KEY_VARIABLE}")
