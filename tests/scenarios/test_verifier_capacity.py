"""The verifier is shared by every org (spec: "Verifying ahead of requests", on demand): at most one
ask per object across all containers while one is in flight, at most ``VERIFY_ASKS_PER_ORG`` asks in
flight per org, and an object the verifier could not prove is not asked again within the hour.

Each container is its own App (its own memory); what they share is the Verifications table on moto's
DynamoDB, as Lambda's containers do. Asks go to a stand-in for Lambda's event queue; the verifier then
runs on the payload as Lambda would run it. The clock is the test's, shared by every container.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.scenarios.test_verifier import CORRUPT, DATA, chainloop_object, log_lines
from tests.support.events import FakeLambdaContext
from tests.support.faults import FaultServer, S3Fault
from tests.support.hostile_registry import HostileRegistry
from tests.support.moto_servers import AwsServers
from tests.support.verifier_stack import Stack
from tests.support.world import World, sha256_digest

# What a request may hash: none of these objects, so each one is asked for.
OVER_THE_LIMIT = {"MAX_HASH_BYTES": 1024, "VERIFY_BYTES_PER_SECOND": 1024 * 1024}


@pytest.fixture
def stack(world: World, verifications_table: str, lambda_context: FakeLambdaContext) -> Stack:
    return Stack(world, verifications_table, lambda_context)


def asked_digests(stack: Stack) -> list[str]:
    """The digest each asynchronous invocation asked to prove, in order."""
    return [payload["Records"][0]["dynamodb"]["NewImage"]["digest"]["S"] for payload in stack.queue.payloads]


def unproven_objects(world: World, org: str, count: int) -> Iterator[str]:
    """``count`` distinct unproven objects (Chainloop's layout, no checksum) in ``org``'s default."""
    backend = world.backend(org, f"default-{count}", is_default=True)
    for n in range(count):
        digest = world.put(backend, DATA + f"{org} object {n}\n".encode())
        world.map(digest, org, backend)
        yield digest


def test_one_object_asked_through_four_containers_invokes_the_verifier_once(
    world: World, stack: Stack
) -> None:
    # Given an unproven object over what a request may hash, and four containers of the function
    org, _, digest = chainloop_object(world)
    containers = [stack.container(**OVER_THE_LIMIT) for _ in range(4)]

    # When each container is asked for it
    answers = [stack.get(digest, org, container=container) for container in containers]

    # Then every one answers 503 verification_pending with a Retry-After, and the verifier was asked once
    assert [a.status for a in answers] == [503, 503, 503, 503]
    assert {a.error_code for a in answers} == {"verification_pending"}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    assert asked_digests(stack) == [digest]


def test_an_org_has_at_most_verify_asks_per_org_in_flight(world: World, stack: Stack) -> None:
    # Given three unproven objects of one org, and VERIFY_ASKS_PER_ORG=2
    org = world.org()
    first, second, third = unproven_objects(world, org, 3)
    container = stack.container(**OVER_THE_LIMIT, VERIFY_ASKS_PER_ORG=2)

    # When the three are requested
    answers = [stack.get(digest, org, container=container) for digest in (first, second, third)]

    # Then all three answer 503 verification_pending, and only the first two were asked for
    assert [a.status for a in answers] == [503, 503, 503]
    assert {a.error_code for a in answers} == {"verification_pending"}
    assert asked_digests(stack) == [first, second]

    # When the verifier has proven the first, and another container is asked for the third
    assert stack.verify(stack.queue.payloads[0]) == {"batchItemFailures": []}
    later = stack.get(third, org, container=stack.container(**OVER_THE_LIMIT, VERIFY_ASKS_PER_ORG=2))

    # Then the freed slot is the third's: it is asked for now
    assert later.status == 503
    assert asked_digests(stack) == [first, second, third]
    # and the first is served from its record
    assert stack.get(first, org, container=container).status == 307


def test_another_org_is_asked_for_while_one_org_has_its_share_in_flight(world: World, stack: Stack) -> None:
    # Given an org with its two asks in flight
    busy_org = world.org()
    digests = list(unproven_objects(world, busy_org, 3))
    container = stack.container(**OVER_THE_LIMIT, VERIFY_ASKS_PER_ORG=2)
    for digest in digests:
        stack.get(digest, busy_org, container=container)
    assert len(stack.queue.invocations) == 2

    # When another org's unproven object is requested through the same container
    other_org, _, other_digest = chainloop_object(world)
    answer = stack.get(other_digest, other_org, container=container)

    # Then that org's ask is made
    assert answer.status == 503
    assert asked_digests(stack)[-1] == other_digest


def test_an_ask_nobody_settles_lapses_after_lambdas_event_age_and_the_verifiers_timeout(
    world: World, stack: Stack
) -> None:
    # Given an ask whose invocation never ran (lost, or its container crashed)
    org, _, digest = chainloop_object(world)
    settings = {**OVER_THE_LIMIT, "VERIFY_ASK_MAX_EVENT_AGE_SECONDS": 600}
    stack.get(digest, org, container=stack.container(**settings))

    # When another container is asked for it within the event age plus the 900 s timeout, then after
    stack.clock.advance(600 + 900 - 1)
    stack.get(digest, org, container=stack.container(**settings))
    assert asked_digests(stack) == [digest]
    stack.clock.advance(2)
    stack.get(digest, org, container=stack.container(**settings))

    # Then it is asked for again only once the first ask is over for certain
    assert asked_digests(stack) == [digest, digest]


def test_an_object_the_verifier_could_not_prove_is_not_asked_again_within_the_hour(
    world: World, stack: Stack, aws_servers: AwsServers, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an unproven object whose storage resets the connection half way through its body
    org = world.org()
    with FaultServer(upstream=aws_servers.control_url) as faults:
        digest = sha256_digest(CORRUPT)
        location = faults.s3("reset-bucket", S3Fault.RESET_MID_BODY, {digest: CORRUPT})
        backend = world.backend(org, "flaky", location=location, is_default=True)
        world.map(digest, org, backend)
        assert stack.get(digest, org, container=stack.container(**OVER_THE_LIMIT)).status == 503

        # When the verifier runs on the ask and cannot hash the object
        response = stack.verify(stack.queue.payloads[0])

        # Then Lambda is not asked to retry it (a request's ask is never retried), and the ask is settled
        assert response == {"batchItemFailures": []}
        [deferred] = log_lines(caplog, "asked mapping not proven: not asked again within the hour")
        assert deferred["settled"] is True

        # When a new container is asked for it within the hour
        stack.clock.advance(3600 - 5)
        within = stack.get(digest, org, container=stack.container(**OVER_THE_LIMIT))

        # Then it answers 503 verification_pending until the hour is over, without asking
        assert within.status == 503
        assert within.error_code == "verification_pending"
        assert 1 <= int(within.headers["Retry-After"]) <= 5
        assert len(stack.queue.invocations) == 1

        # When a new container is asked for it after the hour
        stack.clock.advance(6)
        stack.get(digest, org, container=stack.container(**OVER_THE_LIMIT))

        # Then the verifier is asked again
        assert len(stack.queue.invocations) == 2


def test_an_object_no_record_can_keep_a_proof_of_is_never_asked_for(world: World, stack: Stack) -> None:
    # Given a registry whose blob storage answers without an ETag, so no record could keep a proof
    hostile = HostileRegistry(b"bytes behind a scripted registry\n" * 400).start()
    try:
        org = world.org()
        backend = world.oci_backend(org, "no-etag", hostile.location(), None, is_default=True)
        world.map(hostile.digest, org, backend)

        # When its object, over what a request may hash, is requested twice
        answers = [stack.get(hostile.digest, org, container=stack.container(**OVER_THE_LIMIT)) for _ in "ab"]
    finally:
        hostile.stop()

    # Then both answer 502 unverifiable, and the verifier, whose proof would be lost, is never asked
    assert [a.status for a in answers] == [502, 502]
    assert answers[0].attempts == [("no-etag", "unverifiable")]
    assert stack.queue.invocations == []


# ---------------------------------------------------------------------------------------------------
# load: one org asking for many objects from many containers


class OnDemandVerifier:
    """Lambda running the on-demand verifier function: events in the order they were queued, at most
    ``concurrency`` at once. The busy org's proofs are long (large objects): once started, each keeps
    its slot for the rest of the scenario; any other org's runs the real verifier at once."""

    def __init__(self, stack: Stack, concurrency: int, busy_org: str) -> None:
        self.stack = stack
        self.concurrency = concurrency
        self.busy_org = busy_org
        self.started = 0
        self.holding = 0  # slots held by the busy org's long proofs

    def run_queued(self) -> list[dict[str, Any]]:
        """Start what the free slots allow; the batch responses of the runs that finished."""
        finished: list[dict[str, Any]] = []
        payloads = self.stack.queue.payloads
        while self.started < len(payloads) and self.holding < self.concurrency:
            payload = payloads[self.started]
            self.started += 1
            org = payload["Records"][0]["dynamodb"]["NewImage"]["org_id"]["S"]
            if org == self.busy_org:
                self.holding += 1
            else:
                finished.append(self.stack.verify(payload))
        return finished


ON_DEMAND_CONCURRENCY = 5  # template: VerifierAskReservedConcurrency's default


@pytest.mark.timeout(900)  # 1,000 requests and their set-up: about a minute alone, several in a busy suite
def test_one_org_asking_for_many_objects_from_ten_containers_leaves_another_orgs_ask_proven_in_time(
    world: World, stack: Stack, request: pytest.FixtureRequest
) -> None:
    # Given an org with many distinct unproven objects over what a request may hash, asked for at
    # once from ten containers (ten threads), with the template's defaults
    count = int(request.config.getoption("--verifier-load-objects"))
    busy_org = world.org()
    digests = list(unproven_objects(world, busy_org, count))
    containers = [stack.container(**OVER_THE_LIMIT) for _ in range(10)]
    verifier = OnDemandVerifier(stack, ON_DEMAND_CONCURRENCY, busy_org)
    statuses: list[int] = []
    lock = threading.Lock()

    def ask_for(share: list[str], container: Any) -> None:
        for digest in share:
            status = stack.get(digest, busy_org, container=container).status
            with lock:
                statuses.append(status)

    started = time.monotonic()
    threads = [
        threading.Thread(target=ask_for, args=(digests[n::10], container))
        for n, container in enumerate(containers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_seconds = time.monotonic() - started
    verifier.run_queued()
    busy_invocations = len(stack.queue.invocations)

    # When another org's single unproven object is requested, while those asks still hold their slots
    other_org, _, other_digest = chainloop_object(world)
    first = stack.get(other_digest, other_org, container=containers[0])
    finished = verifier.run_queued()
    stack.clock.advance(int(first.headers["Retry-After"]))
    second = stack.get(other_digest, other_org, container=containers[1])

    # Then the busy org got 503s and its share of asks (VERIFY_ASKS_PER_ORG, default 2), no more
    assert statuses == [503] * count
    assert busy_invocations == 2
    # and the other org's ask was proven as soon as it was made, and served after its Retry-After
    assert first.status == 503
    assert first.error_code == "verification_pending"
    assert finished == [{"batchItemFailures": []}]
    assert second.status == 307
    print(  # the figures docs/reliability.md reports
        f"\nverifier load: {count} objects from 10 containers in {load_seconds:.1f} s "
        f"({load_seconds / count * 1000:.0f} ms per request, 10 at once); {busy_invocations} "
        f"invocations for the busy org; other org: Retry-After {first.headers['Retry-After']} s, "
        "proven by its own ask at once, then 307"
    )
