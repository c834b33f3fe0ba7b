"""Candidate order (spec: Resolution and fallback, step 2), as pure functions."""

from cas_download.domain import Backend, Mapping
from cas_download.logic.candidates import holding_orgs, mapped_candidates, org_fallback_candidates


def backend(bid: str, org: str = "o1", **kw: object) -> Backend:
    fields: dict = {"provider": "AWS-S3", "location": f"bucket-{bid}", "secret_name": f"s/{bid}"}
    fields.update(kw)
    return Backend(id=bid, org_id=org, name=bid, **fields)


def mapping(bid: str, org: str = "o1", created: str = "2026-01-01") -> Mapping:
    return Mapping(digest="sha256:x", org_id=org, backend_id=bid, created_at=created)


def test_ok_mapped_backends_come_before_invalid_ones() -> None:
    backends = {"a": backend("a", validation_status="Invalid"), "b": backend("b")}
    order = mapped_candidates([mapping("a", created="2020"), mapping("b", created="2025")], backends)
    assert [b.id for b in order] == ["b", "a"]


def test_among_equals_the_default_first_then_the_oldest_mapping() -> None:
    backends = {"a": backend("a"), "b": backend("b"), "c": backend("c", is_default=True)}
    maps = [mapping("a", created="2024"), mapping("b", created="2023"), mapping("c", created="2025")]
    assert [b.id for b in mapped_candidates(maps, backends)] == ["c", "b", "a"]


def test_deleted_missing_and_foreign_mapped_backends_are_never_candidates() -> None:
    backends = {"a": backend("a", deleted=True), "b": backend("b", org="other")}
    assert mapped_candidates([mapping("a"), mapping("b"), mapping("gone")], backends) == []


def test_each_mapped_backend_appears_once() -> None:
    backends = {"a": backend("a")}
    assert len(mapped_candidates([mapping("a", created="1"), mapping("a", created="2")], backends)) == 1


def test_orgs_are_ordered_by_their_oldest_mapping() -> None:
    maps = [mapping("a", org="o2", created="2025"), mapping("b", org="o1", created="2024")]
    assert holding_orgs(maps) == ["o1", "o2"]


def test_fallback_is_default_then_fallback_per_org_never_repeating_a_tried_backend() -> None:
    org_backends = {
        "o1": [backend("d1", is_default=True), backend("f1", is_fallback=True), backend("x1")],
        "o2": [backend("d2", org="o2", is_default=True)],
    }
    order = org_fallback_candidates(["o1", "o2"], org_backends, already_tried={"d1"}, failed_locations=set())
    assert [b.id for b in order] == ["f1", "d2"]


def test_fallback_never_leaves_the_holding_orgs() -> None:
    org_backends = {"o1": [backend("d1", is_default=True)], "o2": [backend("d2", org="o2", is_default=True)]}
    order = org_fallback_candidates(["o1"], org_backends, already_tried=set(), failed_locations=set())
    assert [b.id for b in order] == ["d1"]


def test_same_location_as_a_failed_mapped_backend_comes_first_and_invalid_last() -> None:
    org_backends = {
        "o1": [
            backend("d1", is_default=True, validation_status="Invalid", location="shared"),
            backend("f1", is_fallback=True, location="elsewhere"),
        ],
        "o2": [backend("d2", org="o2", is_default=True, location="shared")],
    }
    order = org_fallback_candidates(
        ["o1", "o2"], org_backends, already_tried=set(), failed_locations={"shared"}
    )
    assert [b.id for b in order] == ["d2", "f1", "d1"]


def test_deleted_defaults_are_skipped() -> None:
    org_backends = {"o1": [backend("d1", is_default=True, deleted=True), backend("f1", is_fallback=True)]}
    order = org_fallback_candidates(["o1"], org_backends, already_tried=set(), failed_locations=set())
    assert [b.id for b in order] == ["f1"]
