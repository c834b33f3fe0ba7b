"""``GET``/``HEAD /download/{digest}``: a Chainloop download link (spec "Chainloop download links").

Imported by :mod:`cas_download.handlers.download` when such a request arrives, never before: this is
where ``cryptography`` (the tokens' ES512) is loaded, so the ``/v1`` route's cold start does not pay for them.
"""

from __future__ import annotations

from functools import cache

from cas_download.config import ConfigError, Settings
from cas_download.domain import Artifact, NotModified
from cas_download.errors import CasError, NotFound, Unauthenticated
from cas_download.link_tokens import LinkTokenVerifier
from cas_download.logic.deadline import Deadline
from cas_download.logic.links import LinkRequest, download_by_link, org_of_grant
from cas_download.logic.services import Services
from cas_download.observability import RequestRecord


def serve_link(
    request: LinkRequest, services: Services, deadline: Deadline, record: RequestRecord
) -> Artifact | NotModified:
    settings = services.settings
    if not settings.chainloop_cas_public_keys:
        # Not configured: the route does not exist, as API Gateway answers an unknown route.
        raise NotFound("no such route: Chainloop download links are not configured")
    if request.token is None:
        raise Unauthenticated(
            "no token: a link carries it in the query parameter t, or send Authorization: Bearer"
        )
    try:
        checker = verifier(settings)
    except ConfigError as error:
        raise CasError(f"service misconfigured: {error}") from None
    grant = checker.verify(request.token)
    org = org_of_grant(grant, services)
    record.orgs = (org,)
    return download_by_link(request, grant, org, services, deadline)


def verifier(settings: Settings) -> LinkTokenVerifier:
    """The container's verifier: the keys are parsed once (a bad key is a ConfigError, answered
    ``500 service misconfigured``)."""
    return _verifier(
        settings.chainloop_cas_public_keys,
        settings.chainloop_cas_issuer,
        settings.chainloop_link_max_lifetime_seconds,
    )


@cache
def _verifier(
    public_keys: tuple[str, ...], issuer: str | None, max_lifetime_seconds: int
) -> LinkTokenVerifier:
    return LinkTokenVerifier(public_keys, issuer, max_lifetime_seconds)
