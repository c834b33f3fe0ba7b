"""Chainloop download links (spec "Chainloop download links"): what a verified token grants, served
with the same fallback and proof as ``/v1/artifacts``.

The control plane minted the token after its own authorization, for one backend of one org and any
digest of it. So the org is the token's alone, no mapping row is needed (the sync may lag an upload),
and fallback never leaves that org: the candidates are the token's backend, then the org's mapped
backends of the digest, then its default and fallback (``logic/candidates.py``, :class:`TokenMapping`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from msgspec import Struct
from msgspec.structs import replace

from cas_download.data.storage.port import (
    BackendStore,
    DirectUrl,
    ObjectDescription,
    ObjectStream,
    RecordNamer,
    SecretFields,
)
from cas_download.data.storage.providers import StorageProviders
from cas_download.domain import (
    Artifact,
    Attempt,
    AttemptFailed,
    AttemptReason,
    Backend,
    Mapping,
    Mode,
    NotModified,
    etag_for,
)
from cas_download.errors import CasError, NotFound, TooLargeForBody, Unauthenticated
from cas_download.logic.backend_attempt import look_ahead, serve_through
from cas_download.logic.candidates import TokenMapping, plan_candidates
from cas_download.logic.deadline import Deadline
from cas_download.logic.fallback import first_candidate, first_whatever_follows, serve_with_fallback
from cas_download.logic.services import Services

if TYPE_CHECKING:  # the token verifier is imported only when a /download request arrives (handlers/links.py)
    from cas_download.link_tokens import LinkGrant


class LinkRequest(Struct, frozen=True):
    digest: str  # canonical sha256:<hex>
    token: str | None
    mode: Mode
    filename: str | None = None  # the query's override, already made safe (filenames.decode_filename)
    if_none_match: str | None = None


def org_of_grant(grant: LinkGrant, services: Services) -> str:
    """The token's org; for an older Chainloop token without ``org-id``, the org of the one live row
    holding its secret (Chainloop's secret names hold the org id, so there is one)."""
    if grant.org_id:
        return grant.org_id
    orgs = {b.org_id for b in services.catalog.live_backends_with_secret(grant.secret_id)}
    if len(orgs) != 1:
        found = "no backend" if not orgs else "backends of several organizations"
        raise Unauthenticated(f"the token names no org-id, and {found} hold its secret-id")
    return orgs.pop()


def download_by_link(
    request: LinkRequest, grant: LinkGrant, org: str, services: Services, deadline: Deadline
) -> Artifact | NotModified:
    live = [b for b in services.catalog.org_backends(org) if not b.deleted]
    if not live:
        raise NotFound("the token's organization has no backend")
    if request.if_none_match and _etag_matches(request.if_none_match, etag_for(request.digest)):
        return NotModified(request.digest)
    token_backends = [b for b in live if b.secret_name == grant.secret_id and b.provider == grant.backend]
    # No live row holds the secret (not synced yet, or deleted): a token mapping to no row still
    # names the org, whose default and fallback are then the candidates.
    token_mappings = [TokenMapping(request.digest, org, b.id) for b in token_backends] or [
        TokenMapping(request.digest, org, "")
    ]
    link_services = _naming(services, request.filename)

    def mapped() -> list[Mapping]:
        return [m for m in services.catalog.mappings_for_digest(request.digest) if m.org_id == org]

    mappings: list[Mapping] = list(token_mappings)
    later: Callable[[], list[Mapping]] | None = mapped
    lookup = None
    first = first_candidate(token_mappings, link_services)
    if first is None or not first_whatever_follows(first, token_mappings):
        # A mapped backend may come first: the mappings are read now, and the backend that most
        # likely serves is asked meanwhile (logic/look_ahead.py; body mode reads bytes whole, never ahead).
        if first is not None and request.mode is not Mode.BODY:
            lookup = look_ahead(first, request.digest, deadline, link_services)
        try:
            mappings, later = [*token_mappings, *mapped()], None
        except BaseException:
            if lookup is not None:
                lookup.drop()
            raise
    # The first mapped candidate as planned now: the attempts may mark a backend Invalid, and a plan
    # made after them would name another (a body served instead is a fallback against this one). The
    # token's backend counts as the first mapped candidate, so mappings read later do not change it.
    primary = plan_candidates(mappings, {org: services.catalog.org_backends(org)}).primary
    try:
        artifact = serve_with_fallback(
            request.digest, request.mode, mappings, deadline, link_services, lookup, later_mappings=later
        )
    except CasError as error:
        if request.mode is Mode.BODY or not _no_direct_url(error.attempts):
            raise
        artifact = _serve_body_instead(request, primary, error, deadline, link_services)
    if request.filename:
        artifact.info = replace(artifact.info, filename=request.filename)
    return artifact


def _serve_body_instead(
    request: LinkRequest, primary: Backend | None, error: CasError, deadline: Deadline, services: Services
) -> Artifact:
    """Nothing served a URL, and some backends hold the bytes with no credential-free URL to hand out:
    a link then answers with the verified body, as Chainloop's own CAS does (within the body limit)."""
    attempts = list(error.attempts)
    too_large: TooLargeForBody | None = None
    for backend in [a.backend for a in error.attempts if a.reason is AttemptReason.NO_DIRECT_URL]:
        if deadline.expired():
            break
        try:
            artifact = serve_through(backend, request.digest, Mode.BODY, deadline, services)
        except AttemptFailed as failure:
            attempts.append(Attempt(backend, failure.reason))
            continue
        except TooLargeForBody as refused:
            too_large = too_large or refused
            continue
        services.health.observe_success(backend)
        artifact.fallback = primary is None or backend.id != primary.id
        artifact.attempts = attempts
        return artifact
    if too_large is not None:
        too_large.attempts = attempts
        raise too_large
    error.attempts = attempts
    raise error


def _no_direct_url(attempts: Sequence[Attempt]) -> bool:
    return any(a.reason is AttemptReason.NO_DIRECT_URL for a in attempts)


def _etag_matches(header: str, etag: str) -> bool:
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _naming(services: Services, filename: str | None) -> Services:
    """``services`` whose stores describe every object under ``filename`` (the link's ``filename``
    query), so the credential-free URL carries it as its Content-Disposition too, as Chainloop's CAS
    lets the query override the stored name."""
    if not filename:
        return services
    return replace(services, storage=_NamingProviders(services.storage, filename))


class _NamingProviders(StorageProviders):
    """The container's providers, with each opened store naming objects ``filename``. Delegates
    everything else to them (their clients and caches stay the container's)."""

    def __init__(self, providers: StorageProviders, filename: str) -> None:
        self._providers = providers
        self._filename = filename

    def __getattr__(self, name: str) -> object:
        return getattr(self._providers, name)

    def open(self, backend: Backend, secret: SecretFields, time_left: float | None = None) -> BackendStore:
        return _NamingStore(self._providers.open(backend, secret, time_left), self._filename)


class _NamingStore:
    def __init__(self, store: BackendStore, filename: str) -> None:
        self._store = store
        self._filename = filename

    def describe(self, digest: str) -> ObjectDescription:
        description = self._store.describe(digest)
        return replace(description, info=replace(description.info, filename=self._filename))

    def record_key(self, digest: str) -> str | None:
        return self._store.record_key(digest) if isinstance(self._store, RecordNamer) else None

    def open(
        self, digest: str, description: ObjectDescription | None = None, via: DirectUrl | None = None
    ) -> ObjectStream:
        return self._store.open(digest, description, via)

    def direct_url(
        self, digest: str, description: ObjectDescription, ttl_seconds: int, disposition: str | None
    ) -> DirectUrl:
        return self._store.direct_url(digest, description, ttl_seconds, disposition)

    def probe(self, key_prefix: str) -> AttemptReason | None:
        return self._store.probe(key_prefix)
