"""Hardening harness: the scenario ``service`` (real handler, moto servers), a fault-injecting endpoint,
the app's structured log records, the hypothesis profile, and the figures summary.

Hypothesis runs derandomized (the same examples on every run, so CI is reproducible) with no example
database; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples instead, for local bug hunting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from hypothesis import HealthCheck, settings

from tests.hardening.figures import summary_lines
from tests.scenarios.conftest import HttpResult, Service, azurite, hosted_registry  # noqa: F401 - fixtures of the isolation worlds
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext
from tests.support.faults import ClientSettingsRecorder, FaultServer
from tests.support.moto_servers import AwsServers
from tests.support.world import World

settings.register_profile(
    "ci",
    database=None,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The Powertools logger of the download function (one "download request" record per request).
SERVICE_LOGGER = "cas-download"


@pytest.fixture
def service(world: World, call_recorder: CallRecorder, lambda_context: FakeLambdaContext) -> Service:
    return Service(world, call_recorder, lambda_context)


@pytest.fixture(scope="session")
def fault_server(aws_servers: AwsServers) -> Iterator[FaultServer]:
    server = FaultServer(upstream=aws_servers.control_url, stall_seconds=10.0, slow_seconds=3.0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def faults(fault_server: FaultServer) -> FaultServer:
    """The fault-injecting endpoint, nothing armed: DynamoDB and Secrets Manager requests it is not told
    to break go to the control moto server; S3 buckets answer as configured (unique names per test)."""
    fault_server.reset()
    return fault_server


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore's retry backoff a constant 10 ms instead of up to ``2**attempt`` seconds of jitter.

    Whether and how often a call is retried is untouched (that is what the tests assert); only the sleep
    between attempts shrinks, so a test of "retried, then 503" takes milliseconds, not up to 7 s.
    """
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


@pytest.fixture
def client_settings(call_recorder: CallRecorder) -> ClientSettingsRecorder:
    """The timeouts and attempts of the app's AWS calls (request it before ``service.configure``)."""
    return ClientSettingsRecorder(call_recorder)


class RecordList(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def requests(self) -> list[logging.LogRecord]:
        """The "download request" records, one per request, oldest first."""
        return [r for r in self.records if r.getMessage() == "download request"]

    def last_attempts(self) -> list[tuple[str, str]]:
        """``(backend name, reason)`` of every attempt of the last request, as logged."""
        attempts: list[dict[str, Any]] = getattr(self.requests()[-1], "attempts", [])
        return [(a["backend_name"], a["reason"]) for a in attempts]


@pytest.fixture
def app_log() -> Iterator[RecordList]:
    """The records the app's Powertools logger emits during the test."""
    handler = RecordList()
    logger = logging.getLogger(SERVICE_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def served_bytes(world: World, response: HttpResult, mode: str) -> bytes:
    """The bytes a client ends up with: the body, or what the presigned URL serves."""
    if mode == "body":
        return response.body
    url = response.headers["Location"] if mode == "redirect" else response.json["url"]
    fetched = world.fetch_presigned(url)
    assert fetched.status == 200, fetched.error_code
    return fetched.body


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("hardening figures")
        for line in lines:
            terminalreporter.write_line(line)
