"""Secret hygiene.

* The test-wide capture (``tests/conftest.py`` + ``tests/support/hygiene.py``) finds registered secrets
  wherever they sit in captured output, fails the test that leaked one and redacts it from the report:
  proven here on the registry itself and on a real pytest run of leaking tests.
* Presigned URL lifetimes are bounded: never past temporary credentials' ``Expiration`` (and credentials
  about to expire are not used at all), never above ``PRESIGN_TTL_SECONDS``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from cas_local.presign import verify_presigned
from tests.hardening.conftest import RecordList
from tests.scenarios.conftest import Service, presigned_key_id
from tests.support.hygiene import SecretRegistry
from tests.support.hygiene import register as register_secret
from tests.support.moto_servers import AwsServers
from tests.support.world import World, iso, read_policy

ROOT = Path(__file__).resolve().parents[2]
DATA = b"provenance.intoto.jsonl contents\n" * 40
KEY_ID = "AKIAZZZZZZZZTESTKEY1"
SECRET = "kP3+7/qZfakefakeFAKEfake0123456789abcdXY"  # the shape of an IAM secret key (40 chars, + and /)
TOKEN = "IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQD/fake+token=="


# ---------------------------------------------------------------------------------------------------
# the registry and the capture


@pytest.fixture
def registry() -> SecretRegistry:
    registry = SecretRegistry()
    registry.register(KEY_ID, "access_key_id")
    registry.register(SECRET, "secret_access_key")
    registry.register(TOKEN, "session_token")
    return registry


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"AccessKeyID": "AKIAZZZZZZZZTESTKEY1"}', "access_key_id"),
        ("X-Amz-Credential=AKIAZZZZZZZZTESTKEY1%2F20250101%2Fus-east-1%2Fs3%2Faws4_request", "access_key_id"),
        ("Credential=AKIAZZZZZZZZTESTKEY1/20250101/us-east-1/s3/aws4_request", "access_key_id"),
        ("keyAKIAZZZZZZZZTESTKEY1suffix", "access_key_id"),
        ("secret=kP3+7/qZfakefakeFAKEfake0123456789abcdXY;", "secret_access_key"),
        ("token: IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQD/fake+token==", "session_token"),
        ("https://h/b/k?X-Amz-Signature=" + "0f" * 32, "url_signature"),
        ("https://h/b/k?x-amz-security-token=abcdefgh12345678", "session_token"),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=" + "ab" * 32,
            "request_signature",
        ),
        (
            "https://acct.blob.core.windows.net/c/b?sv=2024-08-04&sp=r&sig=Zm9vYmFyYmF6cXV4%2Bq%3D",
            "sas_signature",
        ),
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl", "bearer_token"),
        ("Authorization: Basic dXNlci0xMjM0OnBhc3N3b3JkLTU2Nzg=", "basic_credentials"),
    ],
)
def test_registered_and_recognisable_secrets_are_found_wherever_they_sit(
    registry: SecretRegistry, text: str, kind: str
) -> None:
    leaks = registry.find(f"INFO something happened {text} and more\n")
    assert kind in {leak.kind for leak in leaks}


def test_output_without_secrets_is_clean(registry: SecretRegistry) -> None:
    text = (
        '{"level":"INFO","message":"download request","digest":"sha256:' + "ab" * 32 + '",'
        '"attempts":[{"backend_id":"1a83fe63-240d-4145-9f9a-8956ee095f48","reason":"credentials_invalid"}],'
        '"served_by":{"name":"AKIAZZZZZZZZ-lookalike"}} X-Amz-Expires=300 AKIAZZZZZZZZTESTKEY2'
        ' WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry"'
        " Authorization: Bearer local:org-a,org-b sp=r&se=2026-01-01"
    )
    assert registry.find(text) == []


def test_a_leak_fails_the_report_and_is_redacted_from_it(registry: SecretRegistry) -> None:
    report = SimpleNamespace(
        nodeid="tests/x.py::test_x",
        outcome="passed",
        longrepr=None,
        sections=[("Captured stdout call", f"creds {KEY_ID} / {SECRET}\n"), ("Captured log call", "clean\n")],
    )
    leaks = registry.enforce(report)
    assert {leak.kind for leak in leaks} == {"access_key_id", "secret_access_key"}
    assert report.outcome == "failed"
    assert "secret hygiene" in str(report.longrepr)
    captured = "".join(content for _, content in report.sections)
    assert KEY_ID not in captured
    assert SECRET not in captured
    assert SECRET not in str(report.longrepr)
    assert "<redacted:secret_access_key>" in captured


def test_the_suite_wide_capture_fails_a_leaking_test_and_only_it(tmp_path: Path) -> None:
    # Given a test run that uses this suite's hook, with one test printing a registered secret, one
    # logging a presigned URL, and one clean
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"
    )
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            f"""
            import logging
            from tests.support.hygiene import register

            def test_prints_a_registered_secret():
                register({SECRET!r}, "secret_access_key")
                print("loaded", {{"SecretAccessKey": {SECRET!r}}})

            def test_logs_a_presigned_url():
                logging.getLogger("app").warning("redirect to https://b/k?X-Amz-Signature=" + "0f" * 32)

            def test_clean():
                print("nothing secret here")
            """
        )
    )

    # When it runs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then the two leaking tests fail on secret hygiene, the clean one passes, and the report shows
    # neither the secret nor the signature
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "2 failed, 1 passed" in output, output
    assert "secret hygiene" in output
    assert SECRET not in output
    assert "0f" * 32 not in output
    assert "<redacted:secret_access_key>" in output


# ---------------------------------------------------------------------------------------------------
# presigned URL lifetimes


def signed_lifetime(url: str) -> tuple[dt.datetime, int]:
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    signed_at = dt.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return signed_at, int(query["X-Amz-Expires"])


def temporary_secret(expiration: dt.datetime) -> dict[str, str]:
    """A backend secret as temporary credentials carry it: the backend's own key (filled in by
    ``world.backend``) and the ``Expiration`` after which it is no longer valid."""
    return {
        "AccessKeyID": "{access_key_id}",
        "SecretAccessKey": "{secret_access_key}",
        "Expiration": iso(expiration),
    }


@pytest.mark.parametrize(
    ("ttl", "credentials_left"),
    [(300, 200), (3600, 1000), (3600, 7200), (120, 90_000)],
    ids=["ttl300-creds200s", "ttl3600-creds1000s", "ttl3600-creds2h", "ttl120-creds25h"],
)
@pytest.mark.parametrize("mode", ["redirect", "url"])
def test_presigned_url_never_outlives_the_setting_or_temporary_credentials(
    world: World, service: Service, ttl: int, credentials_left: int, mode: str
) -> None:
    # Given the only backend of an org, whose secret carries temporary credentials' Expiration
    expiration = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=credentials_left)
    org = world.org()
    backend = world.backend(org, "temporary", is_default=True, secret=temporary_secret(expiration))
    digest = world.put(backend, DATA)
    world.map(digest, org, backend)

    # When the caller asks for a URL, with PRESIGN_TTL_SECONDS set
    service.configure(PRESIGN_TTL_SECONDS=ttl)
    response = service.get(digest, orgs=org, mode=mode)

    # Then the URL is signed for at most the setting, and expires no later than the credentials
    assert response.status == (307 if mode == "redirect" else 200)
    url = response.headers["Location"] if mode == "redirect" else response.json["url"]
    signed_at, lifetime = signed_lifetime(url)
    assert lifetime <= ttl
    assert signed_at + dt.timedelta(seconds=lifetime) <= expiration
    # and is not cut shorter than the credentials require, at the moment it was signed (its X-Amz-Date:
    # whole seconds, hence the one second) rather than when this test began, however long that took
    assert lifetime >= min(ttl, int((expiration - signed_at).total_seconds()) - 1)
    if mode == "url":
        expires_at = dt.datetime.fromisoformat(response.json["expires_at"])
        assert expires_at <= expiration
        assert abs(expires_at - (signed_at + dt.timedelta(seconds=lifetime))) <= dt.timedelta(seconds=2)
    assert world.fetch_presigned(url).body == DATA


@pytest.mark.parametrize("credentials_left", [10, -60], ids=["expiring-in-10s", "expired"])
def test_temporary_credentials_about_to_expire_are_not_used(
    world: World, service: Service, app_log: RecordList, credentials_left: int
) -> None:
    # Given an artifact mapped to a backend whose temporary credentials end within 30 s (or ended),
    # and the org default with long-lived keys
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=credentials_left)
    org = world.org()
    bucket = world.bucket()
    mapped = world.backend(org, "temporary", bucket=bucket, secret=temporary_secret(expiration))
    default = world.backend(org, "default", bucket=bucket, is_default=True)
    digest = world.put(mapped, DATA)
    world.map(digest, org, mapped)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then no URL is signed with the expiring keys: the default serves, the mapped one counts as
    # credentials_invalid
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "default"
    assert presigned_key_id(response.headers["Location"]) == default.access_key_id
    assert app_log.last_attempts() == [("temporary", "credentials_invalid")]


def temporary_credentials(world: World, aws_servers: AwsServers, bucket: str) -> dict[str, str]:
    """Credentials of an assumed role that may read ``bucket``: key id, secret and session token (moto
    checks the token of every request signed with them, as S3 does)."""
    role = f"cas-temporary-{uuid.uuid4().hex[:10]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role_arn = world.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    world.iam.put_role_policy(
        RoleName=role, PolicyName="cas-read", PolicyDocument=json.dumps(read_policy([bucket]))
    )
    credentials = aws_servers.storage_client("sts").assume_role(RoleArn=role_arn, RoleSessionName="cas")[
        "Credentials"
    ]
    fields = {
        "AccessKeyID": credentials["AccessKeyId"],
        "SecretAccessKey": credentials["SecretAccessKey"],
        "SessionToken": credentials["SessionToken"],
    }
    register_secret(fields["AccessKeyID"], "access_key_id")
    register_secret(fields["SecretAccessKey"], "secret_access_key")
    register_secret(fields["SessionToken"], "session_token")
    return fields


def test_session_token_of_temporary_credentials_rides_only_in_the_url(
    world: World, service: Service, aws_servers: AwsServers, app_log: RecordList
) -> None:
    # Given the only backend of an org whose secret holds temporary credentials (an assumed role's
    # key, secret and session token; storage refuses any request without that token)
    org = world.org()
    bucket = world.bucket()
    temporary = temporary_credentials(world, aws_servers, bucket)
    backend = world.backend(org, "with-token", bucket, is_default=True, secret=temporary)
    digest = world.put(bucket, DATA)
    world.map(digest, org, backend)

    # When the caller asks for it
    response = service.get(digest, orgs=org)

    # Then storage accepted the token (the HEAD that proved the object was signed with it: moto refuses
    # an assumed role's key without its token), and the redirect is a URL signed with the temporary key
    # whose signature covers the session token
    assert response.status == 307, response.raw
    location = response.headers["Location"]
    assert presigned_key_id(location) == temporary["AccessKeyID"]
    assert parse_qs(urlsplit(location).query)["X-Amz-Security-Token"] == [temporary["SessionToken"]]
    signed = verify_presigned(location, lambda key_id: temporary["SecretAccessKey"])
    assert signed.ok, signed.error_code
    # and the token is nowhere else in the answer
    other_headers = {name: value for name, value in response.headers.items() if name != "Location"}
    assert temporary["SessionToken"] not in json.dumps(other_headers)
    assert temporary["SessionToken"].encode() not in response.body
    # and no log record of the request carries the token, key id or secret (the suite-wide capture
    # checks the printed lines too)
    assert app_log.requests()
    for record in app_log.records:
        text = str(record.__dict__)
        for value in temporary.values():
            assert value not in text
