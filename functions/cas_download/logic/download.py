"""The download use case: who may see the digest, 304 on a matching ETag, else serve with fallback."""

from __future__ import annotations

from cas_download.domain import Artifact, DownloadRequest, NotModified, etag_for
from cas_download.errors import NotFound
from cas_download.logic.deadline import Deadline
from cas_download.logic.fallback import serve_with_fallback
from cas_download.logic.services import Services


def download(request: DownloadRequest, services: Services, deadline: Deadline) -> Artifact | NotModified:
    callers_orgs = set(request.orgs)
    mappings = [m for m in services.catalog.mappings_for_digest(request.digest) if m.org_id in callers_orgs]
    if not mappings:
        # Same answer whether or not another org holds the digest; no secret or storage call is made.
        raise NotFound("no artifact with this digest in the caller's organizations")
    if request.if_none_match and _etag_matches(request.if_none_match, etag_for(request.digest)):
        return NotModified(request.digest)
    return serve_with_fallback(request.digest, request.mode, mappings, deadline, services)


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
