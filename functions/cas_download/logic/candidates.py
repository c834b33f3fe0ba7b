"""The order in which backends are tried (spec: "Resolution and fallback", step 2).

Pure functions over domain values, so the order can be tested without AWS.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from cas_download.domain import Backend, Mapping


def mapped_candidates(mappings: Sequence[Mapping], backends: dict[str, Backend]) -> list[Backend]:
    """Mapped backends that may be tried: OK before Invalid; among equals the org's default first,
    then the oldest mapping. Deleted or missing backends are never tried."""
    oldest_mapping: dict[str, str] = {}
    for mapping in mappings:
        backend = backends.get(mapping.backend_id)
        if backend is None or backend.deleted or backend.org_id != mapping.org_id:
            continue
        previous = oldest_mapping.get(backend.id)
        if previous is None or mapping.created_at < previous:
            oldest_mapping[backend.id] = mapping.created_at
    return sorted(
        (backends[backend_id] for backend_id in oldest_mapping),
        key=lambda b: (b.is_invalid, not b.is_default, oldest_mapping[b.id], b.id),
    )


def holding_orgs(mappings: Sequence[Mapping]) -> list[str]:
    """Orgs that hold a mapping, the one with the oldest mapping first."""
    first_seen: dict[str, str] = {}
    for mapping in sorted(mappings, key=lambda m: (m.created_at, m.org_id)):
        first_seen.setdefault(mapping.org_id, mapping.created_at)
    return list(first_seen)


def org_fallback_candidates(
    orgs: Iterable[str],
    backends_by_org: dict[str, Sequence[Backend]],
    already_tried: Collection[str],
    failed_locations: Collection[str],
) -> list[Backend]:
    """For each holding org, its default then its fallback backend; never a backend already tried,
    deleted, or of another org. OK before Invalid, then one sharing a location with a failed mapped
    backend (the bytes are likely there, under other keys) before one without."""
    ordered: list[Backend] = []
    seen = set(already_tried)
    for org in orgs:
        live = [b for b in backends_by_org.get(org, ()) if b.org_id == org and not b.deleted]
        for backend in _one_of(live, default=True) + _one_of(live, default=False):
            if backend.id not in seen:
                seen.add(backend.id)
                ordered.append(backend)
    return sorted(ordered, key=lambda b: (b.is_invalid, b.location not in failed_locations))


def _one_of(backends: Sequence[Backend], *, default: bool) -> list[Backend]:
    # The spec allows at most one default and one fallback per org; if the data says otherwise,
    # the oldest wins, so the order stays deterministic.
    flagged = [b for b in backends if (b.is_default if default else b.is_fallback and not b.is_default)]
    return sorted(flagged, key=lambda b: (b.created_at, b.id))[:1]
