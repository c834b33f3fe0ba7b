"""The candidate planner (spec: Resolution and fallback, step 2), as pure functions."""

from collections.abc import Iterable

from cas_download.domain import Backend, Mapping, ValidationStatus
from cas_download.logic.candidates import (
    CandidatePlan,
    all_suspended,
    holding_orgs,
    plan_candidates,
    validation_order,
)

INVALID = ValidationStatus.INVALID


def backend(bid: str, org: str = "o1", **kw: object) -> Backend:
    fields: dict = {"provider": "AWS-S3", "location": f"bucket-{bid}", "secret_name": f"s/{bid}"}
    fields.update(kw)
    if fields.pop("deleted", False):
        fields["deleted_at"] = "2025-06-01T00:00:00.000000Z"
    return Backend(id=bid, org_id=org, name=bid, **fields)


def mapping(bid: str, org: str = "o1", created: str = "2026-01-01") -> Mapping:
    return Mapping(digest="sha256:x", org_id=org, backend_id=bid, created_at=created)


def plan(mappings: list[Mapping], backends: Iterable[Backend]) -> CandidatePlan:
    rows = list(backends)
    return plan_candidates(
        mappings, {org: [b for b in rows if b.org_id == org] for org in holding_orgs(mappings)}
    )


def order(mappings: list[Mapping], backends: Iterable[Backend]) -> list[str]:
    return [b.id for b in plan(mappings, backends).order]


def test_among_mapped_backends_the_default_first_then_the_oldest_mapping() -> None:
    backends = [backend("a"), backend("b"), backend("c", is_default=True)]
    maps = [mapping("a", created="2024"), mapping("b", created="2023"), mapping("c", created="2025")]
    assert order(maps, backends) == ["c", "b", "a"]


def test_an_invalid_mapped_backend_goes_after_the_orgs_ok_default() -> None:
    # Given the rotation story: the mapped backend is marked Invalid, the org's new default is OK
    backends = [backend("old", validation_status=INVALID), backend("new", is_default=True)]
    # Then the default is tried first and the mapped one last; the mapped one stays the primary
    result = plan([mapping("old")], backends)
    assert [b.id for b in result.order] == ["new", "old"]
    assert result.primary is not None
    assert result.primary.id == "old"


def test_invalid_backends_keep_their_order_among_themselves_after_every_ok_one() -> None:
    backends = [
        backend("m1", validation_status=INVALID, created_at="1"),
        backend("m2", created_at="2"),
        backend("d", is_default=True, validation_status=INVALID),
        backend("f", is_fallback=True),
    ]
    maps = [mapping("m1", created="2020"), mapping("m2", created="2021")]
    assert order(maps, backends) == ["m2", "f", "m1", "d"]


def test_an_ok_mapped_backend_is_the_primary_even_when_an_invalid_one_is_older() -> None:
    backends = [backend("a", validation_status=INVALID), backend("b")]
    result = plan([mapping("a", created="2020"), mapping("b", created="2025")], backends)
    assert [b.id for b in result.order] == ["b", "a"]
    assert result.primary is not None
    assert result.primary.id == "b"


def test_deleted_missing_and_foreign_mapped_backends_are_never_candidates() -> None:
    backends = [backend("a", deleted=True), backend("b", org="other")]
    result = plan([mapping("a"), mapping("b"), mapping("gone")], backends)
    assert result.order == ()
    assert result.primary is None


def test_each_backend_appears_once() -> None:
    backends = [backend("a", is_default=True)]
    assert order([mapping("a", created="1"), mapping("a", created="2")], backends) == ["a"]


def test_orgs_are_ordered_by_their_oldest_mapping() -> None:
    maps = [mapping("a", org="o2", created="2025"), mapping("b", org="o1", created="2024")]
    assert holding_orgs(maps) == ["o1", "o2"]


def test_each_holding_org_gives_its_default_then_its_fallback() -> None:
    backends = [
        backend("m"),
        backend("d1", is_default=True),
        backend("f1", is_fallback=True),
        backend("d2", org="o2", is_default=True),
        backend("other", org="o3", is_default=True),
    ]
    maps = [mapping("m", created="1"), mapping("x", org="o2", created="2")]
    assert order(maps, backends) == ["m", "d1", "f1", "d2"]


def test_an_org_candidate_on_a_mapped_backends_location_comes_first() -> None:
    backends = [
        backend("m", location="shared"),
        backend("d1", is_default=True),
        backend("f1", is_fallback=True, location="shared"),
    ]
    assert order([mapping("m")], backends) == ["m", "f1", "d1"]


def test_an_orgs_default_named_by_another_orgs_mapping_is_still_its_default() -> None:
    # Given o0's inconsistent mapping to o1's default, and o1's own mapping
    backends = [backend("m"), backend("d", is_default=True)]
    maps = [mapping("d", org="o0", created="1"), mapping("m", org="o1", created="2")]
    # Then o1's default is a candidate (as o1's default, not as o0's mapped backend)
    assert order(maps, backends) == ["m", "d"]


def test_the_oldest_of_two_defaults_wins_and_a_deleted_one_never_counts() -> None:
    backends = [
        backend("m"),
        backend("d-old", is_default=True, created_at="1", deleted=True),
        backend("d-new", is_default=True, created_at="3"),
        backend("d-mid", is_default=True, created_at="2"),
    ]
    assert order([mapping("m")], backends) == ["m", "d-mid"]


def test_a_suspended_orgs_backends_are_never_candidates_and_another_orgs_still_are() -> None:
    # Given two orgs holding the digest, the first suspended by Chainloop (the sync flagged its rows)
    backends = [
        backend("s-default", org="o1", is_default=True, org_suspended=True),
        backend("s-mapped", org="o1", org_suspended=True),
        backend("live", org="o2", is_default=True),
    ]
    maps = [mapping("s-mapped", org="o1", created="2020"), mapping("live", org="o2", created="2021")]
    # Then only the live org's backend is a candidate
    assert order(maps, backends) == ["live"]


def test_all_suspended_needs_every_live_backend_of_the_holding_orgs_suspended() -> None:
    suspended = backend("s", org="o1", org_suspended=True)
    assert all_suspended({"o1": [suspended]})
    assert all_suspended({"o1": [suspended, backend("gone", org="o1", deleted=True)]})
    assert not all_suspended({"o1": [suspended], "o2": [backend("live", org="o2")]})
    assert not all_suspended({"o1": []})  # no rows at all: not_found's business, not suspension's


def test_the_validator_never_probes_a_suspended_orgs_backends() -> None:
    rows = [backend("s", org_suspended=True, is_default=True), backend("live"), backend("d", deleted=True)]
    assert [b.id for b in validation_order(rows)] == ["live"]
