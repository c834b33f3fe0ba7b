"""Verifying ahead of requests (spec: "Verifying ahead of requests"): prove a new mapping's object as a
request would, so that its first download costs what a hundredth does.

The candidates are the request's (Resolution, step 2) for this one mapping: the mapped backend, then
its org's default and fallback; never another org's. Each is tried through
:func:`~cas_download.logic.backend_attempt.prove_ahead` until one proves the bytes: the same port,
proofs and verification records as a request.

A stream record that is not a mapping is :class:`NotAMapping` (skipped, never retried); a mapping
whose candidates failed for a reason that may pass (storage unreachable, a timeout, credentials) is
:class:`RetryLater` (the stream retries it, then sends it to the on-failure destination); a mapping
whose candidates answered for good (absent, bytes that hash elsewhere, too large) is a finished
:class:`Verification` with outcome ``failed``.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingOf
from enum import StrEnum
from typing import Any

from msgspec import Struct, field

from cas_download.data.tables import TableError
from cas_download.data.verifier_asks import AskLedger, ask_key
from cas_download.digests import parse_digest
from cas_download.domain import Attempt, AttemptFailed, AttemptReason, Backend, Mapping, VerificationMethod
from cas_download.errors import InvalidDigest
from cas_download.logic.backend_attempt import prove_ahead
from cas_download.logic.candidates import plan_candidates
from cas_download.logic.deadline import Deadline
from cas_download.logic.services import Services

# Failures that may pass by themselves: the stream retries the mapping.
TRANSIENT_REASONS = frozenset(
    {
        AttemptReason.UNREACHABLE,
        AttemptReason.TIMEOUT,
        AttemptReason.CREDENTIALS_INVALID,
        AttemptReason.ACCESS_DENIED,
        AttemptReason.SECRET_UNAVAILABLE,
    }
)


class Outcome(StrEnum):
    PROVEN = "proven"  # hashed now, record written
    ALREADY_PROVEN = "already_proven"  # the provider's checksum or a record: one describe, no read
    FAILED = "failed"  # every candidate answered for good (reasons in the attempts)


class NotAMapping(ValueError):
    """A stream record that names no mapping (the sync's watermark item, a malformed digest, an
    org_backend without both parts): skipped with a log line, never retried."""


class RetryLater(Exception):
    """No candidate proved the object, and at least one failed for a reason that may pass."""

    def __init__(self, attempts: list[Attempt]) -> None:
        reasons = ", ".join(f"{a.backend.name}: {a.reason.value}" for a in attempts)
        super().__init__(f"not proven yet ({reasons})")
        self.attempts = attempts


class Verification(Struct):
    mapping: Mapping
    outcome: Outcome
    backend: Backend | None = None
    method: VerificationMethod | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [a.reason.value for a in self.attempts]


def mapping_from_image(image: MappingOf[str, Any]) -> Mapping:
    """The mapping a Mappings table item (a stream record's ``NewImage``, plain values) names."""
    digest = image.get("digest")
    org_backend = image.get("org_backend")
    if not isinstance(digest, str) or not isinstance(org_backend, str):
        raise NotAMapping("no digest or org_backend")
    try:
        canonical = parse_digest(digest)
    except InvalidDigest:
        canonical = None
    if canonical != digest:  # the table holds the canonical form only
        raise NotAMapping("the digest is not sha256:<64 lowercase hex>")
    org_id, _, backend_id = org_backend.partition("#")
    org_id = str(image.get("org_id") or org_id)
    backend_id = str(image.get("backend_id") or backend_id)
    if not org_id or not backend_id:
        raise NotAMapping("org_backend is not {org_id}#{backend_id}")
    return Mapping(
        digest=digest, org_id=org_id, backend_id=backend_id, created_at=str(image.get("created_at") or "")
    )


def verify_mapping(mapping: Mapping, services: Services, deadline: Deadline) -> Verification:
    """Prove ``mapping``'s object through the first of its org's candidates that can.

    Raises :class:`NotAMapping` for an org with no backends, :class:`RetryLater` when a candidate
    may yet serve.
    """
    backends = services.catalog.org_backends(mapping.org_id)
    if not backends:
        raise NotAMapping("unknown org: it has no backends")
    plan = plan_candidates([mapping], {mapping.org_id: backends})
    attempts: list[Attempt] = []
    for backend in plan.order:
        try:
            method = prove_ahead(backend, mapping.digest, deadline, services)
        except AttemptFailed as failure:
            attempts.append(Attempt(backend, failure.reason))  # the report names reasons, not times
            continue
        outcome = Outcome.PROVEN if method is VerificationMethod.STREAM_HASH else Outcome.ALREADY_PROVEN
        return Verification(mapping, outcome, backend, method, attempts=attempts)
    if any(a.reason in TRANSIENT_REASONS for a in attempts) or deadline.expired():
        raise RetryLater(attempts)
    return Verification(mapping, Outcome.FAILED, attempts=attempts)


def settle_ask(asks: AskLedger | None, mapping: Mapping, unproven: RetryLater | None = None) -> bool:
    """A request's ask of ``mapping`` is done: free the org's slot for it and, when it could not be
    proven for a reason that may pass, keep it from being asked again within the hour. False when
    the table could not be written (the ask then lapses by time)."""
    if asks is None:
        return True
    key = ask_key(mapping.digest, mapping.backend_id)
    try:
        if unproven is not None:
            asks.remember_unproven(key, ", ".join(sorted({a.reason.value for a in unproven.attempts})))
        asks.release(mapping.org_id, key)
    except TableError:
        return False
    return True
