"""Fallback: try the planned candidates (:mod:`cas_download.logic.candidates`) until one serves
verified bytes.

Backends that this container saw fail moments ago with rejected credentials or an unreadable secret
are deferred to the very end, so a rotated-away backend costs no round trip in steady state. Any
failure moves on (a digest mismatch too: another copy may be good); the request's deadline ends the
search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from msgspec import Struct, field

from cas_download.domain import Artifact, Attempt, AttemptFailed, AttemptReason, Backend, Mapping, Mode
from cas_download.errors import (
    BackendsUnavailable,
    CasError,
    ContentMissing,
    DeadlineExceeded,
    IntegrityFailure,
    OrgSuspended,
    TooLargeForBody,
    VerificationPending,
)
from cas_download.logic.backend_attempt import PendingProof, serve_through
from cas_download.logic.candidates import (
    CandidatePlan,
    TokenMapping,
    all_suspended,
    holding_orgs,
    plan_candidates,
)
from cas_download.logic.deadline import Deadline
from cas_download.logic.look_ahead import Lookup
from cas_download.logic.services import Services


class _Search(Struct):
    digest: str
    mode: Mode
    deadline: Deadline
    services: Services
    attempts: list[Attempt] = field(default_factory=list)
    too_large: TooLargeForBody | None = None
    # Set when the verifier was asked to prove a candidate: 503 verification_pending unless another
    # candidate serves first, retried after the longest such proof should take.
    retry_after_seconds: int | None = None
    lookup: Lookup | None = None

    def try_in_order(self, candidates: Sequence[Backend]) -> Artifact | None:
        for index, backend in enumerate(candidates):
            if self.deadline.expired():
                raise DeadlineExceeded("the time budget ran out before any backend succeeded", self.attempts)
            started = time.monotonic()
            try:
                artifact = serve_through(
                    backend, self.digest, self.mode, self.deadline, self.services, self.lookup
                )
            except AttemptFailed as failure:
                elapsed = (time.monotonic() - started) * 1000.0
                self.attempts.append(Attempt(backend, failure.reason, elapsed))
                self.services.health.observe_failure(backend, failure.reason)
                if isinstance(failure, PendingProof):
                    self.retry_after_seconds = max(self.retry_after_seconds or 0, failure.retry_after_seconds)
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
    digest: str,
    mode: Mode,
    mappings: Sequence[Mapping],
    deadline: Deadline,
    services: Services,
    lookup: Lookup | None = None,
    later_mappings: Callable[[], Sequence[Mapping]] | None = None,
) -> Artifact:
    """``lookup``: a look ahead started before the mappings were read (logic/look_ahead.py), used if
    the search reaches its backend, dropped otherwise. ``later_mappings``: more mappings, read only
    when the first candidate of ``mappings`` fails, or first if a mapping read later could come
    before it (:func:`first_whatever_follows`)."""
    try:
        return _serve_with_fallback(digest, mode, mappings, deadline, services, lookup, later_mappings)
    finally:
        if lookup is not None:
            lookup.drop()


def first_whatever_follows(candidate: Backend, mappings: Sequence[Mapping]) -> bool:
    """Whether no mapping read later can put a candidate before ``candidate``: a token's backend
    (a :class:`TokenMapping` goes before every mapped backend, default or not) not marked Invalid."""
    return not candidate.is_invalid and any(
        isinstance(m, TokenMapping) and m.backend_id == candidate.id for m in mappings
    )


def first_candidate(mappings: Sequence[Mapping], services: Services) -> Backend | None:
    """The backend a search of ``mappings`` would try first, from the rows the container holds (no read:
    None when it holds none of an org's rows)."""
    rows: dict[str, tuple[Backend, ...]] = {}
    for org in holding_orgs(mappings):
        held = services.catalog.held_org_backends(org)
        if held is None:
            return None
        rows[org] = held
    order = _defer_recent_failures(plan_candidates(mappings, rows).order, services)
    return order[0] if order else None


def _serve_with_fallback(
    digest: str,
    mode: Mode,
    mappings: Sequence[Mapping],
    deadline: Deadline,
    services: Services,
    lookup: Lookup | None,
    later_mappings: Callable[[], Sequence[Mapping]] | None,
) -> Artifact:
    started = services.catalog.now()
    orgs, rows, plan = _planned(mappings, services)
    if all_suspended(rows):
        raise OrgSuspended("the organization holding this artifact is suspended in Chainloop")
    search = _Search(digest, mode, deadline, services, lookup=lookup)
    order = _defer_recent_failures(plan.order, services)
    if later_mappings is not None:
        tried: set[str] = set()
        if order and first_whatever_follows(order[0], mappings):
            # The spec's own rule: while a candidate that cannot be displaced may serve, nothing else
            # is read. A link whose token's backend serves reads no mapping.
            artifact = search.try_in_order(order[:1])
            if artifact is not None:
                artifact.fallback = plan.primary is None or artifact.backend.id != plan.primary.id
                return artifact
            tried.add(order[0].id)
        mappings = [*mappings, *later_mappings()]
        orgs, rows, plan = _planned(mappings, services)
        order = [b for b in _defer_recent_failures(plan.order, services) if b.id not in tried]
    artifact = search.try_in_order(order)
    if artifact is None and not deadline.expired():
        # Every candidate of the cached rows failed: a rotation may have made a new default since they
        # were read. Read them again (unless this request read them) and try what is new.
        artifact = _try_newer_candidates(mappings, orgs, plan.order, search, services, started)
    if artifact is None and search.too_large is not None:
        search.too_large.attempts = search.attempts
        raise search.too_large
    if artifact is None and search.retry_after_seconds is not None:
        raise VerificationPending(
            "no proof yet and too large to hash within this request: the verifier was asked to prove it",
            search.attempts,
            search.retry_after_seconds,
        )
    if artifact is None:
        raise _final_error(search.attempts, deadline)
    artifact.fallback = plan.primary is None or artifact.backend.id != plan.primary.id
    return artifact


def _planned(
    mappings: Sequence[Mapping], services: Services
) -> tuple[list[str], dict[str, tuple[Backend, ...]], CandidatePlan]:
    """The orgs holding ``mappings``, their backend rows and the candidates planned from them. One
    org-index query per holding org (cached per container) gives the mapped rows and the orgs'
    defaults and fallbacks together: no separate read of the mapped rows."""
    orgs = holding_orgs(mappings)
    rows = {org: services.catalog.org_backends(org) for org in orgs}
    return orgs, rows, plan_candidates(mappings, rows)


def _try_newer_candidates(
    mappings: Sequence[Mapping],
    orgs: Sequence[str],
    tried: Sequence[Backend],
    search: _Search,
    services: Services,
    since: float,
) -> Artifact | None:
    reread = {org: services.catalog.reread_org_backends(org, since) for org in orgs}
    if all(rows is None for rows in reread.values()):
        return None
    rows = {
        org: rows if rows is not None else services.catalog.org_backends(org) for org, rows in reread.items()
    }
    tried_ids = {b.id for b in tried}
    newer = [b for b in plan_candidates(mappings, rows).order if b.id not in tried_ids]
    return search.try_in_order(_defer_recent_failures(newer, services)) if newer else None


def _defer_recent_failures(candidates: Sequence[Backend], services: Services) -> list[Backend]:
    # One look per backend: the memory expires with time, and two looks could disagree and put a
    # backend in neither list (never tried).
    now: list[Backend] = []
    deferred: list[Backend] = []
    for backend in candidates:
        (deferred if services.health.recently_failed(backend.id) else now).append(backend)
    return now + deferred


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
