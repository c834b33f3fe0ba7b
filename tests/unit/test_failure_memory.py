"""Failure memory in the fallback search: a backend that failed moments ago is tried last, never lost."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from cas_download.domain import Artifact, AttemptReason, Backend, Mapping, Mode, ObjectInfo
from cas_download.logic import fallback as fallback_module
from cas_download.logic.deadline import Deadline
from cas_download.logic.fallback import serve_with_fallback
from cas_download.logic.health import BackendHealth

DIGEST = "sha256:" + "ab" * 32
MEMORY_SECONDS = 10.0


def test_a_backend_whose_failure_memory_expires_during_the_search_is_still_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the org's only backend failed with an unreadable secret at t=0 (remembered for 10 s),
    # and the clock crosses the end of that memory between two looks at it
    backend = Backend(
        id="only", org_id="o1", name="only", provider="AWS-S3", location="bucket", secret_name="s/only"
    )
    clock = itertools.chain([0.0, MEMORY_SECONDS - 0.001], itertools.repeat(MEMORY_SECONDS))
    # (no Tables: a secret failure writes no status)
    health = BackendHealth(tables=None, memory_seconds=MEMORY_SECONDS, clock=lambda: next(clock))  # type: ignore[arg-type]
    health.observe_failure(backend, AttemptReason.SECRET_UNAVAILABLE)
    tried: list[str] = []

    def serve_through(
        candidate: Backend, digest: str, mode: Mode, deadline: Deadline, services: Any, lookup: Any = None
    ) -> Artifact:
        tried.append(candidate.id)
        return Artifact(digest, candidate, False, ObjectInfo(size=1), None, url="https://example.invalid/x")

    monkeypatch.setattr(fallback_module, "serve_through", serve_through)
    catalog = SimpleNamespace(
        org_backends=lambda org: (backend,),
        reread_org_backends=lambda org, since: None,
        now=lambda: 0.0,
    )
    services: Any = SimpleNamespace(catalog=catalog, health=health)
    mapping = Mapping(digest=DIGEST, org_id="o1", backend_id=backend.id, created_at="2026-01-01")

    # When the digest is requested
    artifact = serve_with_fallback(DIGEST, Mode.REDIRECT, [mapping], Deadline(60.0), services)

    # Then the backend is tried exactly once and serves it
    assert tried == ["only"]
    assert artifact.backend.id == "only"
    assert artifact.fallback is False
