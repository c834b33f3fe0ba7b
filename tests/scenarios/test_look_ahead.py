"""A link reads what it needs and no more, and reads it side by side: a token's backend that no mapping
can displace serves without the mappings; otherwise a warm container asks the backend most likely to
serve while the mappings are read (logic/look_ahead.py), and uses the answer only when the search
reaches that backend with the same credentials. Every attempt reads the record while it describes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.scenarios.conftest import HttpResult, Service, assert_redirected_by
from tests.scenarios.test_chainloop_links import DATA, KEY, follow, token_for
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext, load_event
from tests.support.world import BackendRef, World

HELD_SECONDS = 5.0


@dataclass
class Container:
    """One Lambda container following links: its service, its context and the AWS calls it makes.

    The service is configured (its clients made) on first use, in the test's body: after every hook a
    fixture registered on the session, since a client only sees the handlers its session had when it
    was made (the app makes its DynamoDB client as it is built)."""

    unconfigured: Service
    env: dict[str, object]
    context: FakeLambdaContext
    calls: CallRecorder
    _configured: bool = False

    @property
    def service(self) -> Service:
        if not self._configured:
            self.unconfigured.configure(**self.env)
            self._configured = True
        return self.unconfigured

    def follow(self, digest: str, token: str, **request: Any) -> HttpResult:
        return follow(self.service, self.context, digest, token, **request)

    @property
    def looked_ahead(self) -> Any:
        """The container's look-ahead tally (``started``, ``used``, ``dropped``)."""
        return self.service.app.services.look_ahead.tally  # type: ignore[union-attr]


@pytest.fixture
def container(
    service: Service, verifications_table: str, lambda_context: FakeLambdaContext, call_recorder: CallRecorder
) -> Container:
    env: dict[str, object] = {
        "CHAINLOOP_CAS_PUBLIC_KEYS": KEY.public_pem,
        "VERIFICATIONS_TABLE": verifications_table,
    }
    return Container(service, env, lambda_context, call_recorder)


class HeldUntil:
    """Once armed, holds one call (up to HELD_SECONDS, in botocore's before-parameter-build) until
    another has been sent: a request that makes the second only after the first answered waits the
    whole time, one that overlaps them does not. ``held`` and ``until``: (event name, table or None)."""

    def __init__(
        self, recorder: CallRecorder, held: tuple[str, str | None], until: tuple[str, str | None]
    ) -> None:
        self.sent = threading.Event()
        self.waited_for_it: bool | None = None
        self._armed = False
        self._seconds = HELD_SECONDS
        self._held, self._until = held, until
        self._events = recorder.session.events
        self._events.register(f"before-parameter-build.{until[0]}", self._other, unique_id="held-until")
        self._events.register(f"before-parameter-build.{held[0]}", self._hold, unique_id="held-call")

    def arm(self, seconds: float = HELD_SECONDS) -> None:
        self._seconds = seconds
        self.sent.clear()
        self.waited_for_it = None
        self._armed = True

    @staticmethod
    def _names(table: str | None, params: dict[str, Any]) -> bool:
        return table is None or params.get("TableName") == table

    def _other(self, params: dict[str, Any], **_: Any) -> None:
        if self._names(self._until[1], params):
            self.sent.set()

    def _hold(self, params: dict[str, Any], **_: Any) -> None:
        if self._armed and self._names(self._held[1], params):
            self._armed = False
            self.waited_for_it = self.sent.wait(self._seconds)

    def release(self) -> None:
        self._events.unregister(f"before-parameter-build.{self._until[0]}", unique_id="held-until")
        self._events.unregister(f"before-parameter-build.{self._held[0]}", unique_id="held-call")


@pytest.fixture
def held_mappings(world: World, call_recorder: CallRecorder) -> Iterator[HeldUntil]:
    """The Mappings Query, held until storage is asked."""
    hold = HeldUntil(call_recorder, held=("dynamodb.Query", world.tables.mappings), until=("s3", None))
    yield hold
    hold.release()


def served_once(
    world: World, container: Container, filename: str | None = None
) -> tuple[BackendRef, str, str]:
    """A link this container served once (it holds the org's rows, the secret and the record), the calls
    so far forgotten: its backend, digest and token."""
    _org, backend, digest = world.artifact(DATA, filename=filename)
    token = token_for(backend)
    assert container.follow(digest, token).status == 307
    container.calls.clear()
    return backend, digest, token


def test_a_link_whose_tokens_backend_serves_reads_no_mapping(world: World, container: Container) -> None:
    # Given a link served once by this container (it holds the org's rows, the secret, the record)
    backend, digest, token = served_once(world, container, filename="sbom.json")
    # When it is followed again
    response = container.follow(digest, token)
    # Then the token's backend serves it with one HEAD: no mapping can put a backend before it
    assert_redirected_by(response, backend, fallback=False)
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert sorted(container.calls.counts.items()) == [(("s3", "HeadObject"), 1)]


def test_the_mappings_are_read_once_the_tokens_backend_fails(world: World, container: Container) -> None:
    # Given the token's backend, which lacks the object, and another backend of the org holding the
    # mapping (not the default)
    org = world.org()
    token_backend = world.backend(org, "token's", is_default=True)
    holder = world.backend(org, "holder")
    digest = world.put(holder, DATA)
    world.map(digest, org, holder)
    # When the link is followed
    response = container.follow(digest, token_for(token_backend))
    # Then the token's backend was tried first, then the mappings read, and the mapped backend serves
    assert_redirected_by(response, holder, fallback=True)
    operations = [(c.service, c.operation) for c in container.calls.calls]
    first_head = operations.index(("s3", "HeadObject"))
    mappings_query = [
        i
        for i, c in enumerate(container.calls.calls)
        if c.operation == "Query" and c.params.get("TableName") == world.tables.mappings
    ]
    assert len(mappings_query) == 1
    assert first_head < mappings_query[0]


def test_when_the_tokens_backend_failed_lately_the_default_is_asked_while_the_mappings_are_read(
    world: World, container: Container, held_mappings: HeldUntil
) -> None:
    # Given a link minted for a backend whose keys were revoked, and the org's new default on the same
    # bucket, followed once by this container (the old backend failed: it remembers; the new one served)
    _org, old, new, digest = world.rotated(DATA)
    token = token_for(old)
    assert_redirected_by(container.follow(digest, token), new, fallback=True)
    container.calls.clear()
    # When it is followed again, with the mappings' Query held until storage is asked
    held_mappings.arm()
    response = container.follow(digest, token)
    # Then the new default's storage was asked while the Query waited, and that answer served
    assert held_mappings.waited_for_it is True
    assert_redirected_by(response, new, fallback=True)
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert sorted(container.calls.counts.items()) == [(("dynamodb", "Query"), 1), (("s3", "HeadObject"), 1)]
    tally = container.looked_ahead
    assert (tally.started, tally.used, tally.dropped) == (1, 1, 0)


def test_a_tokens_backend_marked_invalid_waits_for_the_mappings_and_goes_after_them(
    world: World, container: Container
) -> None:
    # Given a token naming a backend marked Invalid (the org has no default), and the digest mapped to
    # another backend of the org; both hold the bytes
    _org, marked, holder, digest = world.side_by_side(
        DATA, "marked", "holder", status="Invalid", second_is_default=False, mapped="second"
    )
    # When the link is followed, Then the mapped backend serves: a status defers the token's backend
    # after every backend not so marked, mapped ones included, so the mappings were read first
    assert_redirected_by(container.follow(digest, token_for(marked)), holder, fallback=False)


def test_a_cold_container_reads_no_secret_ahead_of_the_mappings(
    world: World, container: Container, held_mappings: HeldUntil
) -> None:
    # Given a container that holds no secret yet, and a token naming a backend marked Invalid (so a
    # mapped backend may come before it: the mappings must be read first), beside the mapped default
    _org, marked, default, digest = world.side_by_side(DATA, "marked", status="Invalid", mapped="second")
    # When the link is followed, with the mappings' Query held a while for storage to be asked
    held_mappings.arm(seconds=0.5)
    response = container.follow(digest, token_for(marked))
    # Then the mapped default serves (the first mapped candidate, the marked one going last), but
    # nothing was asked before the mappings were read (the Query waited in vain)
    assert_redirected_by(response, default, fallback=False)
    assert held_mappings.waited_for_it is False
    operations = [c.operation for c in container.calls.calls]
    assert operations.index("GetSecretValue") > operations.index("Query", 1)
    assert container.looked_ahead.started == 0


def test_a_matching_if_none_match_is_answered_304_without_looking_ahead(
    world: World, container: Container
) -> None:
    # Given a warm container
    _backend, digest, token = served_once(world, container)
    # When the link is followed with the artifact's ETag
    response = container.follow(digest, token, headers={"if-none-match": f'"{digest}"'})
    # Then 304, and storage was never asked, not even ahead
    assert response.status == 304
    assert container.calls.storage_calls() == []
    assert container.looked_ahead.started == 0


def test_body_mode_never_looks_ahead(world: World, container: Container) -> None:
    # Given a warm container
    _backend, digest, token = served_once(world, container)
    # When the link asks for the body
    response = container.follow(digest, token, query={"mode": "body"})
    # Then the body is read once, whole and hashed, and nothing was asked ahead
    assert response.status == 200
    assert [c.operation for c in container.calls.storage_calls()] == ["GetObject"]
    assert container.looked_ahead.started == 0


def test_v1_never_looks_ahead_before_the_mapping_proves_the_caller_holds_the_digest(
    world: World, container: Container
) -> None:
    # Given a caller whose org's backend served one digest, and another digest it does not hold
    org, _backend, digest = world.artifact(DATA)
    assert container.service.get(digest, org).status == 307
    container.calls.clear()
    # When the caller asks for a digest of no mapping of theirs
    elsewhere = world.artifact(b"another org's bytes").digest
    response = container.service.invoke(
        load_event("get_redirect", digest=elsewhere, orgs=org), container.context
    )
    # Then 404 with no storage call, ahead or not
    assert response.status == 404
    assert container.calls.storage_calls() == []


@pytest.fixture
def held_for_rows(world: World, call_recorder: CallRecorder) -> Iterator[HeldUntil]:
    """The Mappings Query, held until the Backends table is asked for an org's rows."""
    hold = HeldUntil(
        call_recorder,
        held=("dynamodb.Query", world.tables.mappings),
        until=("dynamodb.Query", world.tables.backends),
    )
    yield hold
    hold.release()


def _row_reads(world: World, calls: CallRecorder) -> list[str]:
    """The orgs whose backend rows were read (one per Query of the Backends table's org index)."""
    return [
        str(call.params["ExpressionAttributeValues"])
        for call in calls.of("dynamodb", "Query")
        if call.params["TableName"] == world.tables.backends
    ]


def test_v1_on_a_new_container_reads_the_callers_org_rows_while_it_reads_the_mappings(
    world: World, service: Service, call_recorder: CallRecorder, held_for_rows: HeldUntil
) -> None:
    # Given a caller of one org whose default backend holds a digest, and a container holding no rows
    org, _backend, digest = world.artifact(DATA)
    # When the caller asks for it, the Mappings Query held until the org's rows are asked for
    held_for_rows.arm()
    response = service.get(digest, org)
    # Then the rows were asked for while the mappings were, and the search planned from them
    assert held_for_rows.waited_for_it is True
    assert response.status == 307
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    # and only the caller's own org's rows were read, once
    reads = _row_reads(world, call_recorder)
    assert len(reads) == 1
    assert org in reads[0]


def test_v1_reads_no_rows_ahead_for_a_caller_of_two_orgs(
    world: World, service: Service, call_recorder: CallRecorder, held_for_rows: HeldUntil
) -> None:
    # Given a caller of two orgs, one of which holds the digest
    org, _backend, digest = world.artifact(DATA)
    other_org = world.org()
    # When the caller asks for it
    held_for_rows.arm(seconds=0.5)
    response = service.get(digest, [org, other_org])
    # Then the mappings were read before any row (which org holds the digest is not known before them),
    # and only the holding org's rows were read
    assert held_for_rows.waited_for_it is False
    assert response.status == 307
    reads = _row_reads(world, call_recorder)
    assert len(reads) == 1
    assert org in reads[0]


def test_v1_reads_no_rows_ahead_when_the_container_holds_them(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a container that served a digest of the caller's org (its rows held)
    org, backend, digest = world.artifact(DATA)
    assert service.get(digest, org).status == 307
    other = world.put(backend, b"another object of the org\n")
    world.map(other, org, backend)
    call_recorder.clear()
    # When the caller asks for another digest of the org
    response = service.get(other, org)
    # Then no row is read again
    assert response.status == 307
    assert _row_reads(world, call_recorder) == []


def test_v1_not_found_on_a_new_container_costs_one_read_of_the_callers_own_rows_and_no_storage_call(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given a digest held by another org only, and a caller of one org with a backend of its own
    _owner, _backend, digest = world.artifact(DATA)
    caller = world.org()
    world.backend(caller, "caller-default", is_default=True)
    # When the caller asks for it on a new container, the read of its rows slowed by half a second
    slow_rows = HeldUntil(call_recorder, held=("dynamodb.Query", world.tables.backends), until=("s3", None))
    slow_rows.arm(seconds=0.5)
    try:
        response = service.get(digest, caller)
    finally:
        slow_rows.release()
    # Then 404, having read only the caller's own rows (once), no secret and no storage
    assert response.status == 404
    reads = _row_reads(world, call_recorder)
    assert len(reads) == 1
    assert caller in reads[0]
    assert call_recorder.count("secretsmanager") == 0
    assert call_recorder.storage_calls() == []
    # and that read was over when the answer came: nothing stays in flight into a frozen container
    assert service.app.services.catalog.held_org_backends(caller) is not None


def test_v1_reads_the_record_while_it_describes_the_object(
    world: World,
    service: Service,
    lambda_context: FakeLambdaContext,
    call_recorder: CallRecorder,
    verifications_table: str,
) -> None:
    # Given an object proven by another container (its record in the table), and this container warm
    # with the org's rows and secret (it served another object of the org)
    org, backend, digest = world.artifact(DATA)
    warm = world.put(backend, b"another object of the org\n")
    world.map(warm, org, backend)
    prover = Service(world, CallRecorder(), lambda_context)
    prover.configure(VERIFICATIONS_TABLE=verifications_table)
    assert prover.get(digest, org).status == 307
    # (a client sees the handlers its session had when it was made: the hold goes first)
    hold = HeldUntil(
        call_recorder, held=("s3.HeadObject", None), until=("dynamodb.GetItem", verifications_table)
    )
    service.configure(VERIFICATIONS_TABLE=verifications_table)
    assert service.get(warm, org).status == 307
    call_recorder.clear()
    # When the proven object is asked for, the HEAD held until the record read is sent
    hold.arm()
    try:
        response = service.get(digest, org)
    finally:
        hold.release()
    # Then the record was read while the object was described, and it proved the bytes: no GET
    assert hold.waited_for_it is True
    assert response.status == 307
    assert world.fetch_presigned(response.headers["Location"]).body == DATA
    assert sorted(call_recorder.counts.items()) == [
        (("dynamodb", "GetItem"), 1),
        (("dynamodb", "Query"), 1),
        (("s3", "HeadObject"), 1),
    ]
