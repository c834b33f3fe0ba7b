"""The AzureBlob adapter's rules that Azurite cannot show: a user delegation SAS (Azurite serves
delegation keys only to OAuth over HTTPS) and the classification of Azure's own error codes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import UserDelegationKey

from cas_download.data.storage import azure
from cas_download.data.storage.port import ObjectDescription
from cas_download.domain import AttemptFailed, AttemptReason, ObjectInfo

DIGEST = "sha256:" + "ab" * 32


class DelegatingService:
    """The service client as direct_url uses it: it hands out user delegation keys and counts them."""

    def __init__(self) -> None:
        self.keys_asked = 0

    def get_user_delegation_key(self, start: datetime, expiry: datetime) -> UserDelegationKey:
        self.keys_asked += 1
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid = "00000000-0000-0000-0000-0000000000aa", "tenant-id"
        key.signed_start = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_service, key.signed_version = "b", "2025-01-05"
        key.value = base64.b64encode(b"k" * 32).decode()
        return key


def service_principal_store(service: Any, clients: azure.AzureClients | None = None) -> azure.AzureStore:
    location = azure.parse_location("acct/cas")
    credentials = azure.AzureCredentials(tenant_id="t", client_id="c", client_secret="s")
    return azure.AzureStore(clients or azure.AzureClients(1.0, 1.0), service, location, credentials, "")


class FakeClock:
    """The adapter's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_service_principal_gets_a_read_only_user_delegation_sas_for_one_blob() -> None:
    # Given a service principal's store, on a frozen clock
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    store = service_principal_store(DelegatingService(), azure.AzureClients(1.0, 1.0, clock=FakeClock(now)))
    description = ObjectDescription(ObjectInfo(size=3, etag='"e"', filename="a.txt"))

    # When it hands out a URL for 300 s with a Content-Disposition
    url = store.direct_url(DIGEST, description, 300, 'attachment; filename="a.txt"')

    # Then it is a user delegation SAS (skoid, sktid) for that blob, read only, HTTPS only, within the TTL
    sas = query(url.url)
    assert urlsplit(url.url).netloc == "acct.blob.core.windows.net"
    assert urlsplit(url.url).path == "/cas/sha256%3A" + "ab" * 32
    assert (sas["sp"], sas["sr"], sas["spr"]) == ("r", "b", "https")
    assert sas["skoid"] == "00000000-0000-0000-0000-0000000000aa"
    assert sas["sktid"] == "tenant-id"
    expiry = datetime.fromisoformat(sas["se"].replace("Z", "+00:00"))
    assert expiry == now + timedelta(seconds=300)
    assert url.expires_at == expiry
    assert sas["rscd"] == 'attachment; filename="a.txt"'


def test_the_delegation_key_is_reused_until_near_its_expiry() -> None:
    # Given one container's clients on a frozen clock and a service that counts the keys it hands out
    started = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    clock = FakeClock(started)
    service = DelegatingService()
    clients = azure.AzureClients(1.0, 1.0, clock=clock)
    description = ObjectDescription(ObjectInfo(size=3, etag='"e"'))

    def url_key_expiry() -> str:
        url = service_principal_store(service, clients).direct_url(DIGEST, description, 300, None)
        return query(url.url)["ske"]

    # When two stores of that container hand out 300 s URLs, the second at the last moment the
    # key (1 h) still outlives the URL by the 5 minute margin (50 minutes on)
    first = url_key_expiry()
    clock.now = started + timedelta(minutes=50)
    reused = url_key_expiry()

    # Then one key served both
    assert service.keys_asked == 1
    assert reused == first == "2026-03-01T13:00:00Z"

    # When a URL is asked for one second past that point
    clock.now = started + timedelta(minutes=50, seconds=1)
    renewed = url_key_expiry()

    # Then a new key, dated from the clock, signs it, and serves the next URL too
    assert service.keys_asked == 2
    assert renewed == "2026-03-01T13:50:01Z"
    assert url_key_expiry() == renewed
    assert service.keys_asked == 2


def http_error(code: str | None, status: int, cls: type[HttpResponseError] = HttpResponseError) -> Any:
    error = cls(message="m")
    error.error_code = "".join(list(code)) if code else code  # a fresh string, as the SDK parses it
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            http_error("AuthenticationFailed", 403, ClientAuthenticationError),
            AttemptReason.CREDENTIALS_INVALID,
        ),
        (http_error("InvalidAuthenticationInfo", 401), AttemptReason.CREDENTIALS_INVALID),
        (http_error("AuthorizationFailure", 403), AttemptReason.ACCESS_DENIED),
        (http_error("AuthorizationPermissionMismatch", 403), AttemptReason.ACCESS_DENIED),
        (http_error("BlobNotFound", 404, ResourceNotFoundError), AttemptReason.NOT_FOUND),
        (http_error("ContainerNotFound", 404, ResourceNotFoundError), AttemptReason.NOT_FOUND),
        (http_error("ConditionNotMet", 412), AttemptReason.UNVERIFIABLE),
        (http_error("InternalError", 500), AttemptReason.UNREACHABLE),
        (http_error("ServerBusy", 503), AttemptReason.UNREACHABLE),
        (http_error(None, 403), AttemptReason.ACCESS_DENIED),
        (http_error(None, 404), AttemptReason.NOT_FOUND),
        (http_error(None, 401), AttemptReason.CREDENTIALS_INVALID),
        (http_error(None, 412), AttemptReason.UNVERIFIABLE),
        (http_error("ConditionNotMet", 0), AttemptReason.UNVERIFIABLE),
        (http_error(None, 403, ClientAuthenticationError), AttemptReason.ACCESS_DENIED),
        (http_error(None, 400), AttemptReason.UNREACHABLE),
        (
            ClientAuthenticationError(message="AADSTS7000215 invalid_client"),
            AttemptReason.CREDENTIALS_INVALID,
        ),
        (ServiceRequestError(message="connection refused"), AttemptReason.UNREACHABLE),
        (ServiceResponseTimeoutError(message="read timed out"), AttemptReason.TIMEOUT),
    ],
    ids=lambda value: getattr(value, "error_code", None) or type(value).__name__,
)
def test_an_azure_answer_has_one_reason(error: Exception, reason: AttemptReason) -> None:
    assert azure.classify(error) is reason


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(0), AttemptReason.CREDENTIALS_INVALID),
        (timedelta(minutes=14), AttemptReason.CREDENTIALS_INVALID),
        (timedelta(minutes=16), AttemptReason.ACCESS_DENIED),
        (-timedelta(hours=1), AttemptReason.ACCESS_DENIED),
    ],
    ids=["same-clock", "14-minutes", "16-minutes", "an-hour-behind"],
)
def test_an_authentication_refusal_is_our_clock_only_when_azures_date_is_beyond_its_tolerance(
    offset: timedelta, reason: AttemptReason
) -> None:
    # Given AuthenticationFailed (a HEAD: no detail) answered at Azure's time, ours plus ``offset``
    error = http_error("AuthenticationFailed", 403)
    answered = datetime.now(UTC) + offset
    error.response = SimpleNamespace(headers={"Date": format_datetime(answered, usegmt=True)})
    # Then beyond Azure's 15 minutes it is a clock skew (refused), within them the credentials
    assert azure.classify(error) is reason


def test_a_skewed_date_says_clock_only_for_an_authentication_refusal() -> None:
    # another refusal answered an hour off is still what its code says
    error = http_error("InvalidAuthenticationInfo", 401)
    error.response = SimpleNamespace(
        headers={"Date": format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)}
    )
    assert azure.classify(error) is AttemptReason.CREDENTIALS_INVALID


@pytest.mark.parametrize("date", ["", "not a date", "Mon, 30 Nov 2026 21:00:00"])
def test_an_unreadable_date_is_not_a_clock_skew(date: str) -> None:
    error = http_error("AuthenticationFailed", 403)
    error.response = SimpleNamespace(headers={"Date": date})
    assert azure.classify(error) is AttemptReason.CREDENTIALS_INVALID


def test_a_read_timing_out_mid_body_is_a_timeout() -> None:
    # the storage SDK wraps it: an HttpResponseError whose inner exception is the timeout
    wrapped = HttpResponseError(message="Read timed out.")
    wrapped.inner_exception = ServiceResponseTimeoutError(message="Read timed out.")
    assert azure.classify(wrapped) is AttemptReason.TIMEOUT


def test_a_token_request_that_never_got_an_answer_is_unreachable_not_a_refusal() -> None:
    # azure-identity wraps the transport's failure: its cause says the authority did not answer
    refused = ClientAuthenticationError(message="Authentication failed: connection refused")
    refused.__cause__ = ServiceRequestError(message="connection refused")
    assert azure.classify(refused) is AttemptReason.UNREACHABLE


def test_azurites_signature_refusal_reads_as_rejected_credentials_and_nothing_else_does() -> None:
    # Azurite answers a bad shared-key signature with 403 AuthorizationFailure and this message
    azurite = http_error("AuthorizationFailure", 403)
    azurite.message = "Server failed to authenticate the request. Make sure the value of ..."
    assert azure.classify(azurite) is AttemptReason.CREDENTIALS_INVALID
    assert azure.classify(http_error("AuthorizationFailure", 403)) is AttemptReason.ACCESS_DENIED
    # the same words under another code are that code's answer
    other = http_error("AuthorizationPermissionMismatch", 403)
    other.message = azurite.message
    assert azure.classify(other) is AttemptReason.ACCESS_DENIED


class RefusingDelegationService(DelegatingService):
    """A storage account that refuses this principal a user delegation key (no Storage Blob Delegator
    role), and still serves its blobs to the principal (the data roles are separate)."""

    def get_user_delegation_key(self, start: datetime, expiry: datetime) -> UserDelegationKey:
        self.keys_asked += 1
        raise http_error("AuthorizationPermissionMismatch", 403)


def test_a_refused_delegation_key_is_access_denied_for_a_url_and_never_cached() -> None:
    # Given a principal the account refuses a user delegation key
    service = RefusingDelegationService()
    clients = azure.AzureClients(1.0, 1.0)
    description = ObjectDescription(ObjectInfo(size=3, etag='"e"'))

    # When a URL is asked for, twice
    for _ in range(2):
        with pytest.raises(AttemptFailed) as refused:
            service_principal_store(service, clients).direct_url(DIGEST, description, 300, None)
        # Then the attempt is access_denied (redirect and url modes move to the next candidate)
        assert refused.value.reason is AttemptReason.ACCESS_DENIED
    # and a refusal is not remembered as a key: the second request asked again
    assert service.keys_asked == 2
