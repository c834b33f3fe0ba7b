"""Observability (spec: "Observability"): one structured "download request" line per request, and never
a secret value, an access key id, a session token or a presigned URL's signature in any log output.

Every request of a story (healthy redirect, url and body modes, rotation with a revoked key, a malformed
secret, temporary credentials refused, rotation in place, everything revoked) runs with everything
captured: stdout and stderr (Powertools writes JSON lines and EMF metrics to stdout) through ``capsys``,
and every log record of every logger at DEBUG through ``caplog``.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.scenarios.conftest import HttpResult, Service
from tests.support.world import BackendRef, World

DATA = b"sbom.spdx.json contents\n" * 50
# Looks like an STS session token; S3 refuses it (InvalidToken), so it only ever travels in a signed request.
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQD" + uuid.uuid4().hex + "Zm9yZ2VkLXRva2Vu"
TEMPORARY_SECRET = {
    "AccessKeyID": "{access_key_id}",
    "SecretAccessKey": "{secret_access_key}",
    "SessionToken": SESSION_TOKEN,
}

# The service's own loggers: everything they emit, at any level, must be clean.
SERVICE_LOGGERS = ("cas-download", "cas_download", "aws_lambda_powertools")
ATTEMPT_FIELDS = {"backend_id", "backend_name", "provider", "reason", "ms"}


# ---------------------------------------------------------------------------------------------------
# capture


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at the moment (capsys's, during a test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@dataclass
class Captured:
    """What one request left in the logs."""

    label: str
    stdout: str
    stderr: str
    records: list[logging.LogRecord]

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def download_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line.get("message") == "download request"]


def _record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print for ``record``: message, args, every extra attribute, trace."""
    text = f"{record.name} {record.getMessage()} {vars(record)!r}"
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text


def _is_service_record(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] in SERVICE_LOGGERS


@dataclass
class LogCapture:
    """Runs requests with all log output captured, one :class:`Captured` per request."""

    capsys: pytest.CaptureFixture[str]
    caplog: pytest.LogCaptureFixture
    requests: list[Captured] = field(default_factory=list)

    def get(self, service: Service, label: str, digest: str, org: str, mode: str | None = None) -> HttpResult:
        self.capsys.readouterr()
        self.caplog.clear()
        response = service.get(digest, orgs=org, mode=mode)
        out = self.capsys.readouterr()
        self.requests.append(Captured(label, out.out, out.err, list(self.caplog.records)))
        return response

    def service_output(self) -> str:
        """stdout, stderr, every record of the service's loggers and every record at INFO or above."""
        parts: list[str] = []
        for captured in self.requests:
            parts += [captured.stdout, captured.stderr]
            parts += [
                _record_text(r)
                for r in captured.records
                if _is_service_record(r) or r.levelno >= logging.INFO
            ]
        return "\n".join(parts)

    def all_output(self) -> str:
        """stdout, stderr and every record of every logger, DEBUG included (botocore's wire traces)."""
        parts: list[str] = []
        for captured in self.requests:
            parts += [captured.stdout, captured.stderr, *(_record_text(r) for r in captured.records)]
        return "\n".join(parts)


@pytest.fixture
def logs(
    service: Service, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[LogCapture]:
    """All log output at DEBUG, for every logger. Powertools attaches one stream handler per process,
    bound to the ``sys.stdout`` of the moment the first App was built (maybe an earlier test's
    capture): for this test it writes to the current ``sys.stdout`` (capsys's), then it is put back.
    The App is built outside capsys, so a handler made now never keeps this test's capture."""
    with capsys.disabled():
        handler = service.app.telemetry.logger.logger_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.stream
    handler.stream = _CurrentStdout()
    caplog.set_level(logging.DEBUG)
    try:
        yield LogCapture(capsys, caplog)
    finally:
        handler.stream = previous


# ---------------------------------------------------------------------------------------------------
# the story


@dataclass
class Story:
    """Every credential the story's backends ever had, and every presigned URL the service handed out."""

    key_ids: set[str] = field(default_factory=set)
    secret_keys: set[str] = field(default_factory=set)
    urls: list[str] = field(default_factory=list)

    def remember(self, *backends: BackendRef) -> None:
        for backend in backends:
            self.key_ids.add(backend.access_key_id)
            self.key_ids.update(backend.old_access_key_ids)
            self.secret_keys.add(backend.secret_access_key)

    @property
    def signatures(self) -> set[str]:
        return {parse_qs(urlsplit(url).query)["X-Amz-Signature"][0] for url in self.urls}


def run_story(world: World, service: Service, logs: LogCapture) -> Story:
    """Each scenario with its own org; asserts only what makes each request the scenario it claims."""
    story = Story()

    # healthy: redirect, url, body
    org = world.org()
    healthy = world.backend(org, "healthy", is_default=True)
    digest = world.put(healthy, DATA, filename="sbom.json", checksum=True)
    world.map(digest, org, healthy)
    redirect = logs.get(service, "healthy redirect", digest, org)
    assert redirect.status == 307
    url = logs.get(service, "url mode", digest, org, mode="url")
    assert url.status == 200
    body = logs.get(service, "body mode", digest, org, mode="body")
    assert body.status == 200
    assert body.body == DATA
    story.urls += [redirect.headers["Location"], url.json["url"]]
    story.remember(healthy)

    # rotation: the mapped backend's key is revoked, the new default on the same bucket serves
    org = world.org()
    old = world.backend(org, "old", created_at="2025-01-01T00:00:00Z")
    new = world.backend(org, "new", bucket=old.bucket, is_default=True)
    digest = world.put(old, DATA)
    world.map(digest, org, old)
    world.revoke(old)
    rotated = logs.get(service, "rotation fallback", digest, org)
    assert rotated.status == 307
    assert rotated.headers["X-Cas-Backend"] == "new"
    story.urls.append(rotated.headers["Location"])
    story.remember(old, new)

    # a malformed secret (its text holds the key id), and temporary credentials S3 refuses
    org = world.org()
    malformed = world.backend(org, "malformed", secret="malformed")
    temporary = world.backend(org, "temporary", bucket=malformed.bucket, secret=TEMPORARY_SECRET)
    default = world.backend(org, "default", bucket=malformed.bucket, is_default=True)
    digest = world.put(default, DATA)
    world.map(digest, org, malformed, "2025-01-01T00:00:00Z")
    world.map(digest, org, temporary, "2025-01-02T00:00:00Z")
    broken = logs.get(service, "secret malformed, token refused", digest, org)
    assert broken.status == 307
    assert broken.headers["X-Cas-Backend"] == "default"
    story.urls.append(broken.headers["Location"])
    story.remember(malformed, temporary, default)

    # rotation in place: new keys in the same secret, the old key deleted
    org, in_place, digest = world.artifact(DATA, "in-place")
    story.remember(in_place)
    before = logs.get(service, "before rotation in place", digest, org)
    assert before.status == 307
    world.rotate_secret_in_place(in_place)
    after = logs.get(service, "after rotation in place", digest, org)
    assert after.status == 307
    story.urls += [before.headers["Location"], after.headers["Location"]]
    story.remember(in_place)

    # everything revoked
    org = world.org()
    revoked = [
        world.backend(org, "revoked-mapped"),
        world.backend(org, "revoked-default", is_default=True),
        world.backend(org, "revoked-fallback", is_fallback=True),
    ]
    digest = world.put(revoked[0], DATA)
    world.map(digest, org, revoked[0])
    for backend in revoked:
        world.revoke(backend)
    nothing = logs.get(service, "everything revoked", digest, org)
    assert nothing.status == 502
    story.remember(*revoked)

    assert len(story.urls) == 6
    return story


def _leaks(output: str, story: Story) -> dict[str, list[str]]:
    """Which of the story's secrets appear in ``output``, by kind (shortened, for the failure message)."""
    kinds = {
        "secret access key": story.secret_keys,
        "access key id": story.key_ids,
        "session token": {SESSION_TOKEN},
        "presigned url": set(story.urls),
        "url signature": story.signatures,
    }
    return {
        kind: [value[:12] + "..." for value in values if value in output]
        for kind, values in kinds.items()
        if any(value in output for value in values)
    }


# ---------------------------------------------------------------------------------------------------
# tests


def test_no_secret_key_id_token_or_signature_in_the_service_log_output(
    world: World, service: Service, logs: LogCapture
) -> None:
    # Given the story's requests, run with stdout, stderr and every log record captured
    story = run_story(world, service, logs)
    output = logs.service_output()
    assert "download request" in output  # the capture really holds the service's lines

    # Then no credential of any backend (revoked and rotated-away ones included), no session token and
    # no presigned URL or signature appears in what the service printed or logged
    assert _leaks(output, story) == {}


def test_no_secret_reaches_any_logger_even_at_debug(world: World, service: Service, logs: LogCapture) -> None:
    # Given the story's requests, run with every logger of the process at DEBUG
    story = run_story(world, service, logs)

    # Then not even a third-party DEBUG record carries a secret, a key id, a token or a signature
    assert _leaks(logs.all_output(), story) == {}


def test_each_request_logs_exactly_one_structured_download_line(
    world: World, service: Service, logs: LogCapture
) -> None:
    # Given the story's requests
    run_story(world, service, logs)

    # Then each request printed exactly one "download request" line (and logged one record)
    assert [len(c.download_lines()) for c in logs.requests] == [1] * len(logs.requests)
    assert [sum(r.getMessage() == "download request" for r in c.records) for c in logs.requests] == [1] * len(
        logs.requests
    )
    for captured in logs.requests:
        [line] = captured.download_lines()
        # carrying the digest, the caller's orgs, each attempt (backend id and name, reason, ms), total ms
        assert str(line["digest"]).startswith("sha256:"), captured.label
        assert line["caller_orgs"], captured.label
        assert all(str(org).startswith("org-") for org in line["caller_orgs"]), captured.label
        assert isinstance(line["total_ms"], int | float), captured.label
        assert line["total_ms"] >= 0
        for attempt in line["attempts"]:
            assert set(attempt) >= ATTEMPT_FIELDS, captured.label
            assert isinstance(attempt["ms"], int | float), captured.label
        # and, when something was served, the serving backend, fallback yes/no and the verification
        # method (a failed request has none: Powertools leaves null fields out of the line)
        if line["status"] < 400:
            assert set(line["served_by"]) == {"id", "name"}, captured.label
            assert isinstance(line["fallback"], bool), captured.label
            assert line["verification"] in {"checksum_sha256", "stream_hash", "verification_record"}
        else:
            assert line.get("served_by") is None, captured.label
            assert line["error_code"], captured.label


def test_download_lines_describe_what_happened(world: World, service: Service, logs: LogCapture) -> None:
    # Given the story's requests
    run_story(world, service, logs)
    lines = {c.label: c.download_lines()[0] for c in logs.requests}

    def attempts(label: str) -> list[tuple[str, str]]:
        return [(a["backend_name"], a["reason"]) for a in lines[label]["attempts"]]

    def served(label: str) -> tuple[object, object, object]:
        line = lines[label]
        name = line["served_by"]["name"] if line.get("served_by") else None
        return name, line.get("fallback"), line.get("verification")

    # Then a healthy request served at once, proven by S3's checksum (body mode: by hashing); the
    # objects written as Chainloop writes them (no SHA-256 checksum) proven by hashing them
    assert attempts("healthy redirect") == []
    assert served("healthy redirect") == ("healthy", False, "checksum_sha256")
    assert served("url mode") == ("healthy", False, "checksum_sha256")
    assert served("body mode") == ("healthy", False, "stream_hash")
    # the revoked key is an attempt with credentials_invalid, then the new default served as a fallback
    assert attempts("rotation fallback") == [("old", "credentials_invalid")]
    assert served("rotation fallback") == ("new", True, "stream_hash")
    # the malformed secret is secret_unavailable
    assert attempts("secret malformed, token refused")[0] == ("malformed", "secret_unavailable")
    assert served("secret malformed, token refused") == ("default", True, "stream_hash")
    # rotation in place served through the same backend
    assert served("after rotation in place") == ("in-place", False, "stream_hash")
    # everything revoked: three attempts in order, nothing served
    assert attempts("everything revoked") == [
        ("revoked-mapped", "credentials_invalid"),
        ("revoked-default", "credentials_invalid"),
        ("revoked-fallback", "credentials_invalid"),
    ]
    assert served("everything revoked") == (None, None, None)
    assert lines["everything revoked"]["digest"] == lines["everything revoked"]["digest"].lower()


def test_a_refused_session_token_is_logged_as_credentials_invalid(
    world: World, service: Service, logs: LogCapture
) -> None:
    # Given a mapped backend whose secret holds temporary credentials S3 refuses (InvalidToken)
    org = world.org()
    temporary = world.backend(org, "temporary", secret=TEMPORARY_SECRET)
    default = world.backend(org, "default", bucket=temporary.bucket, is_default=True)
    digest = world.put(default, DATA)
    world.map(digest, org, temporary)

    # When the caller asks for a redirect
    response = logs.get(service, "token refused", digest, org)

    # Then the default serves, and the line says why the temporary backend did not
    assert response.status == 307
    [line] = logs.requests[0].download_lines()
    assert [(a["backend_name"], a["reason"]) for a in line["attempts"]] == [
        ("temporary", "credentials_invalid")
    ]
