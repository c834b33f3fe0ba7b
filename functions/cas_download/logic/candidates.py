"""The candidate planner: which backends may serve a digest, and in which order (spec: "Resolution
and fallback", step 2). One implementation for the service, the validator and ``cas-admin``.

Pure functions over domain values, so the order can be tested without AWS:

1. the mapped backends, the org's default first, then the oldest mapping;
2. for each org holding a mapping (the oldest mapping's org first), its default then its fallback;
   one sharing a location with a mapped backend comes first (a mapped backend reached this phase
   only by failing or by being marked Invalid: the bytes are likely there, under other keys);
3. every backend marked Invalid after every backend not so marked, in the same order among
   themselves: the status defers a backend, never skips it.

Deleted and missing backends, and those of an org Chainloop suspended, are never candidates; a mapping
to one still proves its org holds the digest. Fallback never leaves the orgs that hold a mapping.

A Chainloop download link (spec "Chainloop download links") plans with :class:`TokenMapping`: the
token's backend goes before the mapped ones, default or not, and counts as the first mapped candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingOf

from msgspec import Struct

from cas_download.domain import Backend, Mapping


class TokenMapping(Mapping, frozen=True):
    """Not a Mappings row: the backend a Chainloop download token names, in the token's org. It comes
    before every mapped backend; like a mapping, it proves the org may be served even when its
    ``backend_id`` names no live row (not synced yet, or deleted), and then the org's default and
    fallback are the candidates."""


class CandidatePlan(Struct, frozen=True):
    order: tuple[Backend, ...]
    # The first mapped candidate in the order of step 1 (Invalid ones last): serving through any other
    # backend is a fallback.
    primary: Backend | None
    mapped_ids: frozenset[str]


def holding_orgs(mappings: Sequence[Mapping]) -> list[str]:
    """Orgs that hold a mapping, the one with the oldest mapping first."""
    first_seen: dict[str, str] = {}
    for mapping in sorted(mappings, key=lambda m: (m.created_at, m.org_id)):
        first_seen.setdefault(mapping.org_id, mapping.created_at)
    return list(first_seen)


def all_suspended(backends_by_org: MappingOf[str, Iterable[Backend]]) -> bool:
    """Whether every live backend of these orgs is of an org Chainloop suspended (and there is one):
    the spec's 403 org_suspended, before any secret or storage call."""
    live = [b for backends in backends_by_org.values() for b in backends if not b.deleted]
    return bool(live) and all(b.org_suspended for b in live)


def plan_candidates(
    mappings: Sequence[Mapping], backends_by_org: MappingOf[str, Iterable[Backend]]
) -> CandidatePlan:
    """The whole order, from the mappings and the rows of every holding org (``backends_by_org``)."""
    rows = {
        backend.id: backend
        for org, backends in backends_by_org.items()
        for backend in backends
        if backend.org_id == org and backend.usable
    }
    mapped = _mapped(mappings, rows)
    mapped_ids = {b.id for b in mapped}
    mapped_locations = {b.location for b in mapped}
    org_candidates: list[Backend] = []
    for org in holding_orgs(mappings):
        live = [b for b in rows.values() if b.org_id == org]
        for backend in _one_of(live, default=True) + _one_of(live, default=False):
            if backend.id not in mapped_ids and backend not in org_candidates:
                org_candidates.append(backend)
    org_candidates.sort(key=lambda b: b.location not in mapped_locations)  # stable: org order kept
    ordered = mapped + org_candidates
    healthy = [b for b in ordered if not b.is_invalid]
    invalid = [b for b in ordered if b.is_invalid]
    primary = next((b for b in mapped if not b.is_invalid), mapped[0] if mapped else None)
    return CandidatePlan(tuple(healthy + invalid), primary, frozenset(mapped_ids))


def _mapped(mappings: Sequence[Mapping], rows: MappingOf[str, Backend]) -> list[Backend]:
    """Mapped backends of the mapping's own org: the org's default first, then the oldest mapping."""
    oldest_mapping: dict[str, str] = {}
    for mapping in mappings:
        backend = rows.get(mapping.backend_id)
        if backend is None or backend.org_id != mapping.org_id:
            continue
        previous = oldest_mapping.get(backend.id)
        if previous is None or mapping.created_at < previous:
            oldest_mapping[backend.id] = mapping.created_at
    from_token = {m.backend_id for m in mappings if isinstance(m, TokenMapping)}
    return sorted(
        (rows[backend_id] for backend_id in oldest_mapping),
        key=lambda b: (b.id not in from_token, not b.is_default, oldest_mapping[b.id], b.id),
    )


def _one_of(backends: Sequence[Backend], *, default: bool) -> list[Backend]:
    # The spec allows at most one default and one fallback per org; if the data says otherwise,
    # the oldest wins, so the order stays deterministic.
    flagged = [b for b in backends if (b.is_default if default else b.is_fallback and not b.is_default)]
    return sorted(flagged, key=lambda b: (b.created_at, b.id))[:1]


def validation_order(backends: Iterable[Backend]) -> list[Backend]:
    """The validator's order: live defaults and fallbacks first (what fallback relies on), then the
    rest, each group by org and age."""
    live = [b for b in backends if b.usable]
    return sorted(live, key=lambda b: (not (b.is_default or b.is_fallback), b.org_id, b.created_at, b.id))
