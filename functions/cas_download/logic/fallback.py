"""Fallback: try candidate backends in the spec's order until one serves verified bytes.

Phase 1 is the mapped backends; phase 2, only if phase 1 failed, each holding org's default and
fallback backends. Backends that this container saw fail moments ago with rejected credentials or an
unreadable secret are deferred to the very end (phase 3), so a rotated-away backend costs no round
trip in steady state. Any failure moves on (a digest mismatch too: another copy may be good); the
request's deadline ends the search.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cas_download.data.storage import StorageFailure
from cas_download.domain import Artifact, Attempt, AttemptReason, Backend, Mapping, Mode
from cas_download.errors import (
    BackendsUnavailable,
    CasError,
    ContentMissing,
    DeadlineExceeded,
    IntegrityFailure,
    TooLargeForBody,
)
from cas_download.logic.backend_attempt import serve_through
from cas_download.logic.candidates import holding_orgs, mapped_candidates, org_fallback_candidates
from cas_download.logic.deadline import Deadline
from cas_download.logic.services import Services


@dataclass(slots=True)
class _Search:
    digest: str
    mode: Mode
    deadline: Deadline
    services: Services
    attempts: list[Attempt] = field(default_factory=list)
    too_large: TooLargeForBody | None = None

    def try_in_order(self, candidates: Sequence[Backend]) -> Artifact | None:
        for index, backend in enumerate(candidates):
            if self.deadline.expired():
                raise DeadlineExceeded("the time budget ran out before any backend succeeded", self.attempts)
            started = time.monotonic()
            try:
                artifact = serve_through(backend, self.digest, self.mode, self.deadline, self.services)
            except StorageFailure as failure:
                elapsed = (time.monotonic() - started) * 1000.0
                self.attempts.append(Attempt(backend, failure.reason, elapsed))
                self.services.health.observe_failure(backend, failure.reason)
                continue
            except TooLargeForBody as error:
                # Only final if no other copy serves: an unverified copy's size may be a corrupt one's.
                self.too_large = self.too_large or error
                continue
            self.services.health.observe_success(backend)
            artifact.attempts = self.attempts + [
                Attempt(skipped, AttemptReason.SKIPPED_INVALID)
                for skipped in candidates[index + 1 :]
                if skipped.is_invalid
            ]
            return artifact
        return None


def serve_with_fallback(
    digest: str, mode: Mode, mappings: Sequence[Mapping], deadline: Deadline, services: Services
) -> Artifact:
    catalog = services.catalog
    search = _Search(digest, mode, deadline, services)

    mapped = mapped_candidates(mappings, catalog.backends({m.backend_id for m in mappings}))
    primary = mapped[0] if mapped else None
    mapped_now, mapped_deferred = _defer_recent_failures(mapped, services)
    artifact = search.try_in_order(mapped_now)

    if artifact is None:
        orgs = holding_orgs(mappings)
        failed_locations = {a.backend.location for a in search.attempts} | {
            b.location for b in mapped_deferred
        }
        fallbacks = org_fallback_candidates(
            orgs,
            {org: catalog.org_backends(org) for org in orgs},
            # Mapped candidates were tried (or deferred); deleted ones are filtered out by the org query.
            # A backend that only an inconsistent mapping of another org names is still its own
            # org's default or fallback.
            already_tried={b.id for b in mapped},
            failed_locations=failed_locations,
        )
        fallbacks_now, fallbacks_deferred = _defer_recent_failures(fallbacks, services)
        artifact = search.try_in_order(fallbacks_now)
        if artifact is None:
            artifact = search.try_in_order(mapped_deferred + fallbacks_deferred)

    if artifact is None and search.too_large is not None:
        search.too_large.attempts = search.attempts
        raise search.too_large
    if artifact is None:
        raise _final_error(search.attempts, deadline)
    artifact.fallback = primary is None or artifact.backend.id != primary.id
    return artifact


def _defer_recent_failures(
    candidates: list[Backend], services: Services
) -> tuple[list[Backend], list[Backend]]:
    # One look per backend: the memory expires with time, and two looks could disagree and put a
    # backend in neither list (never tried).
    now: list[Backend] = []
    deferred: list[Backend] = []
    for backend in candidates:
        (deferred if services.health.recently_failed(backend.id) else now).append(backend)
    return now, deferred


def _final_error(attempts: list[Attempt], deadline: Deadline) -> CasError:
    if deadline.expired():
        return DeadlineExceeded("the time budget ran out before any backend succeeded", attempts)
    reasons = {a.reason for a in attempts} - {AttemptReason.UNSUPPORTED_PROVIDER}
    if AttemptReason.DIGEST_MISMATCH in reasons and reasons <= {
        AttemptReason.DIGEST_MISMATCH,
        AttemptReason.NOT_FOUND,
    }:
        return IntegrityFailure("the only bytes found failed digest verification", attempts)
    if reasons == {AttemptReason.NOT_FOUND}:
        return ContentMissing("every backend tried answered that the object is absent", attempts)
    if not attempts:
        return BackendsUnavailable("no usable backend holds this artifact", attempts)
    return BackendsUnavailable("no backend could serve verified bytes", attempts)
