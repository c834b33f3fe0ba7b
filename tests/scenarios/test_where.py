"""``cas-admin artifact where`` and the API agree: one candidate planner for both."""

from __future__ import annotations

from cas_admin.artifacts import where_report
from cas_admin.store import AdminStore
from tests.scenarios.conftest import Service, assert_redirected_by
from tests.support.calls import CallRecorder
from tests.support.world import World

DATA = b"an artifact both tools must find\n" * 32


def test_where_names_the_backend_the_api_serves_when_another_orgs_mapping_names_the_default(
    world: World, service: Service, call_recorder: CallRecorder
) -> None:
    # Given org o1 holding the digest through "mapped" (which lacks the object), o1's default holding
    # it, and an inconsistent mapping of org o0 naming o1's default
    o0, o1 = world.org(), world.org()
    mapped = world.backend(o1, "mapped")
    default = world.backend(o1, "default", is_default=True)
    digest = world.put(default, DATA)
    world.map(digest, o0, default, created_at="2025-01-01T00:00:00Z")
    world.map(digest, o1, mapped, created_at="2025-02-01T00:00:00Z")

    # When a caller in both orgs asks the API, and an operator asks where
    response = service.get(digest, orgs=[o0, o1])
    report = where_report(
        AdminStore(world.tables.backends, world.tables.mappings, session=call_recorder.session),
        digest,
        set(),
    )

    # Then both name o1's default, a fallback from the mapped backend, tried in the same order
    assert_redirected_by(response, default, fallback=True)
    assert report["serves"] == {"id": default.id, "name": "default"}
    assert report["fallback"] is True
    ordered = [line["backend"]["name"] for line in report["backends"] if line["order"] is not None]
    assert ordered == ["mapped", "default"]
