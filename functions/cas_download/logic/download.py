"""The download use case: who may see the digest, 304 on a matching ETag, else serve with fallback."""

from __future__ import annotations

from concurrent.futures import Future, wait

from cas_download.domain import Artifact, Backend, DownloadRequest, NotModified, etag_for
from cas_download.errors import NotFound
from cas_download.logic.deadline import Deadline
from cas_download.logic.fallback import serve_with_fallback
from cas_download.logic.services import Services


def download(request: DownloadRequest, services: Services, deadline: Deadline) -> Artifact | NotModified:
    callers_orgs = set(request.orgs)
    rows_ahead = _read_org_rows_ahead(callers_orgs, services)
    try:
        mappings = [
            m for m in services.catalog.mappings_for_digest(request.digest) if m.org_id in callers_orgs
        ]
    finally:
        if rows_ahead is not None:
            # Whatever the answer, the read is over before it: Lambda freezes a container between
            # requests, and a read frozen in flight would hold up the next request's.
            wait([rows_ahead])
    if not mappings:
        # Same answer whether or not another org holds the digest; no secret or storage call is made.
        raise NotFound("no artifact with this digest in the caller's organizations")
    if request.if_none_match and _etag_matches(request.if_none_match, etag_for(request.digest)):
        return NotModified(request.digest)
    if rows_ahead is not None:
        # The rows the search plans from, now cached; a failed read fails the request as the search's
        # own read would have (503), rather than being retried once more.
        rows_ahead.result()
    return serve_with_fallback(request.digest, request.mode, mappings, deadline, services)


def _read_org_rows_ahead(orgs: set[str], services: Services) -> Future[tuple[Backend, ...]] | None:
    """The caller's org's backend rows read on the look-ahead worker while the mappings are read, when
    the caller has one org and the container does not hold its rows (a new container, or rows past
    their TTL): the search then plans without a second round trip. Only the caller's own org is read,
    and no secret or storage is touched; a digest the caller does not hold costs this one row read."""
    if services.look_ahead is None or len(orgs) != 1:
        return None
    (org,) = orgs
    if services.catalog.held_org_backends(org) is not None:
        return None
    return services.look_ahead.submit(lambda: services.catalog.org_backends(org))


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
