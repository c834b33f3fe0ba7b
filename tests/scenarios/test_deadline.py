"""Time budgets (spec: "Resolution and fallback", step 3): tight per-call timeouts, a request deadline,
and Lambda's remaining time, against a storage endpoint that accepts connections and never answers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.scenarios.conftest import Service
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext
from tests.support.faults import CallSettings, ClientSettingsRecorder
from tests.support.world import BackendRef, World

DATA = b"nightly.tar.zst contents\n" * 200

# Per-call timeouts: small, so a stuck endpoint costs well under a second.
FAST_TIMEOUTS = {"S3_CONNECT_TIMEOUT_SECONDS": 0.5, "S3_READ_TIMEOUT_SECONDS": 0.5}
# Near the deadline a call's timeouts are the time left rounded up to this step (data/storage/port.py).
TIMEOUT_STEP = 0.25
# What Lambda's remaining time leaves for the search (the handler keeps 1.5 s for the response).
LAMBDA_REMAINING_MS = 2500
LAMBDA_BUDGET = 1.0
STUCK_BUCKET = "stuck-bucket"


def stuck_backend(world: World, org: str, name: str, **flags: bool) -> BackendRef:
    """A backend with valid credentials whose storage endpoint is the black hole."""
    return world.backend(org, name, location=world.black_hole_location(STUCK_BUCKET), **flags)


def stuck_calls(settings: ClientSettingsRecorder) -> list[CallSettings]:
    """The storage calls into the black hole (every S3 call of these tests but the healthy one)."""
    return [call for call in settings.of("s3") if call.target == STUCK_BUCKET]


def assert_calls_fit_the_budget(calls: list[CallSettings], budget: float) -> None:
    """A stuck call lasts its read timeout (the black hole accepts at once, then never answers): the
    calls' read timeouts, added up, are the time they cost. Each call's timeouts are cut to the time
    left, rounded up to a quarter second, so together they overrun the budget by less than a step."""
    assert calls, "no call reached the stuck endpoint"
    assert {call.max_attempts for call in calls} == {1}
    assert sum(call.read_timeout for call in calls) <= budget + TIMEOUT_STEP, calls


def three_stuck_candidates(world: World) -> tuple[str, str]:
    """An org whose mapped backend, default and fallback all point into the black hole; its digest."""
    org = world.org()
    mapped = stuck_backend(world, org, "stuck-mapped")
    stuck_backend(world, org, "stuck-default", is_default=True)
    stuck_backend(world, org, "stuck-fallback", is_fallback=True)
    digest = world.put(world.bucket(), DATA)  # the bytes exist, just not anywhere reachable
    world.map(digest, org, mapped)
    return org, digest


def download_log_line(output: str) -> dict[str, Any]:
    """The one "download request" line among the JSON lines the service printed."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [record] = [line for line in lines if line.get("message") == "download request"]
    return record


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at the moment (capsys's, during a test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def service_log(service: Service, capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """capsys, with the app's log lines in it. Powertools attaches one stream handler per process, bound
    to the ``sys.stdout`` of the moment the first App was built (maybe an earlier test's capture): make
    it write to the current ``sys.stdout`` for this test, and put it back afterwards. The App is built
    outside capsys, so a handler made now never keeps this test's (soon closed) capture."""
    with capsys.disabled():
        handler = service.app.telemetry.logger.logger_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.stream
    handler.stream = _CurrentStdout()
    try:
        yield capsys
    finally:
        handler.stream = previous


def test_stuck_mapped_backend_times_out_and_the_org_default_serves(
    world: World,
    service: Service,
    call_recorder: CallRecorder,
    service_log: pytest.CaptureFixture[str],
) -> None:
    # Given the mapped backend's endpoint accepts connections and never answers
    org = world.org()
    stuck = stuck_backend(world, org, "stuck")
    healthy = world.backend(org, "healthy", is_default=True)
    digest = world.put(healthy, DATA)
    world.map(digest, org, stuck)
    # and 0.5 s connect/read timeouts per storage call
    client_settings = ClientSettingsRecorder(call_recorder)
    service.configure(**FAST_TIMEOUTS)

    # When the caller asks for the artifact
    response = service.get(digest, orgs=org)

    # Then the org default serves it, as a fallback, and its URL serves the bytes
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "healthy"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    # after one HEAD through each, the stuck backend first, given up for a timeout
    heads = call_recorder.of("s3", "HeadObject")
    assert [call.access_key_id for call in heads] == [stuck.access_key_id, healthy.access_key_id]
    attempts = download_log_line(service_log.readouterr().out)["attempts"]
    assert [(a["backend_name"], a["reason"]) for a in attempts] == [("stuck", "timeout")]
    # and the stuck call cost one attempt of the configured 0.5 s timeouts, no more
    [stuck_head] = stuck_calls(client_settings)
    assert (stuck_head.operation, stuck_head.connect_timeout, stuck_head.read_timeout) == (
        "HeadObject",
        0.5,
        0.5,
    )
    assert stuck_head.max_attempts == 1


def test_request_deadline_ends_the_search_with_504(
    world: World,
    service: Service,
    call_recorder: CallRecorder,
) -> None:
    # Given the mapped backend, the org default and the org fallback all stuck
    org, digest = three_stuck_candidates(world)
    # and a 1 s request deadline, shorter than three 0.6 s read timeouts
    client_settings = ClientSettingsRecorder(call_recorder)
    service.configure(REQUEST_DEADLINE_SECONDS=1, S3_CONNECT_TIMEOUT_SECONDS=0.5, S3_READ_TIMEOUT_SECONDS=0.6)

    # When the caller asks for the artifact
    response = service.get(digest, orgs=org)

    # Then the service answers 504 deadline_exceeded (an answer, not an exception turned into a 500)
    assert response.status == 504
    assert response.error_code == "deadline_exceeded"
    assert response.headers["Content-Type"] == "application/json"
    # listing what it tried, in order, each a timeout; the last candidate was never tried
    assert response.attempts[0] == ("stuck-mapped", "timeout")
    assert {reason for _, reason in response.attempts} == {"timeout"}
    assert "stuck-fallback" not in [name for name, _ in response.attempts]
    assert call_recorder.count("s3", "HeadObject") == len(response.attempts) < 3
    # and the stuck calls, together, lasted the 1 s deadline (plus less than a timeout step)
    calls = stuck_calls(client_settings)
    assert len(calls) == len(response.attempts)
    assert max(call.read_timeout for call in calls) <= 0.6
    assert_calls_fit_the_budget(calls, budget=1.0)


def test_lambda_remaining_time_caps_the_budget(world: World, call_recorder: CallRecorder) -> None:
    # Given the mapped backend, the org default and the org fallback all stuck, 0.5 s timeouts, and
    # the default 20 s request deadline
    org, digest = three_stuck_candidates(world)
    # and an invocation with 2.5 s left (the handler keeps 1.5 s back: a 1 s budget)
    context = FakeLambdaContext(timeout_ms=LAMBDA_REMAINING_MS)
    service = Service(world, call_recorder, context)
    client_settings = ClientSettingsRecorder(call_recorder)
    service.configure(**FAST_TIMEOUTS)

    # When the caller asks for the artifact
    response = service.get(digest, orgs=org)

    # Then the search stops when Lambda's time (not the 20 s deadline) says so: 504, not 502 after
    # trying all three candidates
    assert response.status == 504
    assert response.error_code == "deadline_exceeded"
    assert "stuck-fallback" not in [name for name, _ in response.attempts]
    assert call_recorder.count("s3", "HeadObject") < 3
    # and the stuck calls, together, lasted Lambda's 1 s budget (plus less than a timeout step)
    assert_calls_fit_the_budget(stuck_calls(client_settings), budget=LAMBDA_BUDGET)


def test_a_stuck_call_never_outlives_the_lambda_invocation(world: World, call_recorder: CallRecorder) -> None:
    # Given one stuck backend and a read timeout (3 s, within the allowed range) longer than the budget
    org = world.org()
    stuck = stuck_backend(world, org, "stuck", is_default=True)
    digest = world.put(world.bucket(), DATA)
    world.map(digest, org, stuck)
    # and an invocation with 2.5 s left (a 1 s budget after the handler's 1.5 s reserve)
    context = FakeLambdaContext(timeout_ms=LAMBDA_REMAINING_MS)
    service = Service(world, call_recorder, context)
    client_settings = ClientSettingsRecorder(call_recorder)
    service.configure(S3_CONNECT_TIMEOUT_SECONDS=0.5, S3_READ_TIMEOUT_SECONDS=3)

    # When the caller asks for the artifact
    response = service.get(digest, orgs=org)

    # Then the service still answers 504
    assert response.status == 504
    assert response.error_code == "deadline_exceeded"
    # because the stuck call was cut off: made with its read timeout cut to the 1 s budget, not the
    # configured 3 s that would outlive the invocation
    [stuck_head] = stuck_calls(client_settings)
    assert stuck_head.read_timeout <= LAMBDA_BUDGET
    assert_calls_fit_the_budget([stuck_head], budget=LAMBDA_BUDGET)
