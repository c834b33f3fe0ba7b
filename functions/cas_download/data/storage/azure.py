"""``AzureBlob``: Azure Blob Storage (and Azurite) through the official SDK.

Location: ``<account>/<container>`` (``https://<account>.blob.core.windows.net``),
``<endpoint suffix>/<account>/<container>``, or ``http(s)://host[:port]/<account>/<container>``
(path-style: Azurite and other custom endpoints). Secret: a service principal (``TenantID``,
``ClientID``, ``ClientSecret``: what Chainloop writes) or a shared ``AccountKey``. Object: blob
``{key_prefix}sha256:<hex>``, metadata ``Filename`` (any case). Proof: none of Azure's own (it keeps an
MD5): hashing, or a verification record. URL: a read-only SAS for that one blob: a user delegation SAS
for a service principal (the delegation key cached until near its expiry), a service SAS for a shared
key.

Imported only when an Azure backend is used: the SDK is heavy and the S3 path never needs it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas
from msgspec import Struct

from cas_download.data.storage.port import DirectUrl, ObjectDescription, SecretFields, call_timeouts
from cas_download.domain import AttemptFailed, AttemptReason, Backend, ObjectInfo
from cas_download.filenames import decode_filename

# Any case, as Chainloop accepts it (DNS is case-insensitive); sent lowercased, Azure's own spelling.
_ACCOUNT = re.compile(r"^[A-Za-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_PUBLIC_SUFFIX = "blob.core.windows.net"
# A user delegation key is asked for this long, and replaced when less than a URL's lifetime is left.
_DELEGATION_KEY_LIFETIME = timedelta(hours=1)
_DELEGATION_KEY_MARGIN = timedelta(minutes=5)
# Azure refuses a request whose date is more than 15 minutes from its clock.
_SKEW_TOLERANCE = timedelta(minutes=15)

_CREDENTIAL_CODES = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo"})
_DENIED_CODES = frozenset(
    {
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationResourceTypeMismatch",
        "InsufficientAccountPermissions",
    }
)
_ABSENT_CODES = frozenset({"BlobNotFound", "ContainerNotFound", "ResourceNotFound"})
# Azurite answers a bad shared-key signature with 403 AuthorizationFailure and this message, where
# Azure answers AuthenticationFailed: only this exact form is read as rejected credentials.
_AZURITE_SIGNATURE_REFUSAL = "Server failed to authenticate the request"


class ContainerLocation(Struct, frozen=True):
    account_url: str  # https://acct.blob.core.windows.net, or http://127.0.0.1:10000/acct
    account: str
    container: str

    @property
    def https(self) -> bool:
        return self.account_url.startswith("https://")


def parse_location(location: str) -> ContainerLocation:
    if "://" in location:
        parts = urlsplit(location)
        segments = parts.path.strip("/").split("/")
        if parts.scheme not in {"http", "https"} or not parts.netloc or len(segments) != 2:
            raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid Azure location")
        account, container = _checked(*segments)
        return ContainerLocation(f"{parts.scheme}://{parts.netloc}/{account}", account, container)
    segments = location.strip().split("/")
    if len(segments) == 2:
        account, container = _checked(*segments)
        return ContainerLocation(f"https://{account}.{_PUBLIC_SUFFIX}", account, container)
    if len(segments) == 3 and "." in segments[0]:
        account, container = _checked(segments[1], segments[2])
        return ContainerLocation(f"https://{account}.{segments[0]}", account, container)
    raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid Azure location")


def _checked(account: str, container: str) -> tuple[str, str]:
    """The account lowercased, the container as it is: both valid Azure names, else unreachable."""
    if not _ACCOUNT.match(account) or not _CONTAINER.match(container):
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid Azure account or container name")
    return account.lower(), container


class AzureCredentials(Struct, frozen=True):
    account_key: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:  # never let a key reach a log through repr()
        return "AzureCredentials(<redacted>)"

    @property
    def is_service_principal(self) -> bool:
        return self.account_key is None

    def fingerprint(self) -> str:
        material = "\0".join(
            v or "" for v in (self.account_key, self.tenant_id, self.client_id, self.client_secret)
        )
        return hashlib.sha256(material.encode()).hexdigest()


def credentials_from_secret(secret: SecretFields) -> AzureCredentials:
    """A service principal (``TenantID``, ``ClientID``, ``ClientSecret``) or a shared ``AccountKey``."""
    tenant, client, client_secret = (
        secret.text("TenantID"),
        secret.text("ClientID"),
        secret.text("ClientSecret"),
    )
    if tenant and client and client_secret:
        return AzureCredentials(tenant_id=tenant, client_id=client, client_secret=client_secret)
    key = secret.text("AccountKey")
    if key:
        return AzureCredentials(account_key=key)
    raise AttemptFailed(
        AttemptReason.SECRET_UNAVAILABLE, "secret has neither TenantID/ClientID/ClientSecret nor AccountKey"
    )


class AzureClients:
    """One per container: service clients by endpoint, credentials and timeouts; token credentials by
    service principal; user delegation keys until near their expiry. Creation under one lock."""

    def __init__(
        self,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        authority_host: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.authority_host = authority_host
        self.clock = clock  # the time URLs and delegation keys are dated from (a seam for tests)
        self.connect_timeout_seconds = connect_timeout_seconds
        self.read_timeout_seconds = read_timeout_seconds
        self._services: dict[tuple[str, str, float, float], BlobServiceClient] = {}
        self._delegation_keys: dict[tuple[str, str], UserDelegationKey] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every service client (credentials, connections); forget the delegation keys."""
        with self._lock:
            services = list(self._services.values())
            self._services.clear()
            self._delegation_keys.clear()
        for client in services:
            client.close()

    def service(
        self, location: ContainerLocation, credentials: AzureCredentials, time_left: float | None
    ) -> BlobServiceClient:
        connect, read = call_timeouts(self.connect_timeout_seconds, self.read_timeout_seconds, time_left)
        key = (location.account_url, credentials.fingerprint(), connect, read)
        with self._lock:
            client = self._services.get(key)
            if client is None:
                if credentials.is_service_principal and not location.https:
                    # The SDK sends tokens over HTTPS only (and raises ValueError otherwise).
                    raise AttemptFailed(
                        AttemptReason.UNREACHABLE, "a service principal needs an HTTPS endpoint"
                    )
                client = BlobServiceClient(
                    location.account_url,
                    credential=_sdk_credential(location, credentials, self.authority_host),
                    connection_timeout=connect,
                    read_timeout=read,
                    # No SDK retries: the next candidate backend is the retry.
                    retry_total=0,
                )
                self._services[key] = client
            return client

    def delegation_key(
        self,
        service: BlobServiceClient,
        location: ContainerLocation,
        credentials: AzureCredentials,
        until: datetime,
    ) -> UserDelegationKey:
        """A user delegation key valid at least ``until`` (+ a margin), asked for again only then."""
        cache_key = (location.account_url, credentials.fingerprint())
        with self._lock:
            cached = self._delegation_keys.get(cache_key)
        if cached is not None and _parse_time(cached.signed_expiry) >= until + _DELEGATION_KEY_MARGIN:
            return cached
        now = self.clock().replace(microsecond=0)
        fresh = service.get_user_delegation_key(now - timedelta(minutes=1), now + _DELEGATION_KEY_LIFETIME)
        with self._lock:
            self._delegation_keys[cache_key] = fresh
        return fresh


def _sdk_credential(
    location: ContainerLocation, credentials: AzureCredentials, authority_host: str | None
) -> Any:
    if credentials.account_key is not None:
        return AzureNamedKeyCredential(location.account, credentials.account_key)
    # azure-identity only for service principals (imported only then).
    from azure.identity import ClientSecretCredential  # noqa: PLC0415

    tenant, client, secret = credentials.tenant_id, credentials.client_id, credentials.client_secret
    if not (tenant and client and secret):
        raise AttemptFailed(AttemptReason.SECRET_UNAVAILABLE, "incomplete service principal")
    if authority_host is None:
        return ClientSecretCredential(tenant, client, secret)
    # A configured authority (sovereign cloud, stand-in) is used as given: no instance discovery at
    # the public cloud's host.
    return ClientSecretCredential(
        tenant, client, secret, authority=authority_host, disable_instance_discovery=True
    )


def _parse_time(value: str | datetime | None) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------------- the adapter


class AzureStore:
    """The storage port for one ``AzureBlob`` backend."""

    def __init__(
        self,
        clients: AzureClients,
        service: BlobServiceClient,
        location: ContainerLocation,
        credentials: AzureCredentials,
        key_prefix: str,
    ) -> None:
        self._clients = clients
        self._service = service
        self._location = location
        self._credentials = credentials
        self._key_prefix = key_prefix

    @classmethod
    def open_backend(
        cls, backend: Backend, secret: SecretFields, clients: AzureClients, time_left: float | None
    ) -> AzureStore:
        location = parse_location(backend.location)
        credentials = credentials_from_secret(secret)
        service = clients.service(location, credentials, time_left)
        return cls(clients, service, location, credentials, backend.key_prefix)

    def blob_name(self, digest: str) -> str:
        return f"{self._key_prefix}{digest}"

    def _blob(self, digest: str) -> Any:
        return self._service.get_blob_client(self._location.container, self.blob_name(digest))

    def describe(self, digest: str) -> ObjectDescription:
        try:
            properties = self._blob(digest).get_blob_properties()
        except AzureError as error:
            raise AttemptFailed(classify(error), describe_error(error)) from None
        return ObjectDescription(
            info=_info(properties),
            provider_proof=None,
            record_key=self.record_key(digest),
        )

    def record_key(self, digest: str) -> str:
        return f"azure|{self._location.account_url}|{self._location.container}|{self.blob_name(digest)}"

    def open(
        self, digest: str, description: ObjectDescription | None = None, via: DirectUrl | None = None
    ) -> BlobDownload:
        # ``via`` is a SAS of this very blob: reading through the client is the same.
        options: dict[str, Any] = {}
        if description is not None and description.info.etag:
            options = {"etag": description.info.etag, "match_condition": MatchConditions.IfNotModified}
        try:
            downloader = self._blob(digest).download_blob(**options)
        except AzureError as error:
            raise AttemptFailed(classify(error), describe_error(error)) from None
        return BlobDownload(_info(downloader.properties), downloader)

    def direct_url(
        self, digest: str, description: ObjectDescription, ttl_seconds: int, disposition: str | None
    ) -> DirectUrl:
        now = self._clients.clock().replace(microsecond=0)
        expires_at = now + timedelta(seconds=ttl_seconds)
        location = self._location
        signing: dict[str, Any]
        if self._credentials.account_key is not None:
            signing = {"account_key": self._credentials.account_key}
        else:
            try:
                key = self._clients.delegation_key(self._service, location, self._credentials, expires_at)
            except AzureError as error:
                raise AttemptFailed(classify(error), describe_error(error)) from None
            signing = {"user_delegation_key": key}
        sas = generate_blob_sas(
            location.account,
            location.container,
            self.blob_name(digest),
            permission=BlobSasPermissions(read=True),
            expiry=expires_at,
            start=now - timedelta(minutes=1),  # clock skew between this function and storage
            content_disposition=disposition,
            protocol="https" if location.https else "https,http",
            **signing,
        )
        blob_url = f"{location.account_url}/{location.container}/{quote(self.blob_name(digest), safe='')}"
        return DirectUrl(f"{blob_url}?{sas}", expires_at)

    def probe(self, key_prefix: str) -> AttemptReason | None:
        """List at most one blob; credentials that may read blobs but not list them are recognised by
        reading the properties of a blob that does not exist (BlobNotFound: the read was allowed)."""
        container = self._service.get_container_client(self._location.container)
        try:
            next(
                iter(container.list_blobs(name_starts_with=key_prefix or None, results_per_page=1).by_page()),
                None,
            )
        except AzureError as error:
            reason = classify(error)
            if reason is not AttemptReason.ACCESS_DENIED:
                return reason
        else:
            return None
        try:
            container.get_blob_client(f"{key_prefix}.cas-download-probe").get_blob_properties()
        except AzureError as error:
            if getattr(error, "error_code", None) == "BlobNotFound" or _status(error) == 404:
                return None
            return classify(error)
        return None


def _info(properties: Any) -> ObjectInfo:
    metadata = {str(k).lower(): v for k, v in (properties.metadata or {}).items()}
    content_settings = getattr(properties, "content_settings", None)
    return ObjectInfo(
        size=int(properties.size or 0),
        etag=properties.etag,
        version_id=getattr(properties, "version_id", None),
        content_type=getattr(content_settings, "content_type", None),
        filename=decode_filename(metadata.get("filename")),
    )


class BlobDownload:
    """A blob's bytes as they arrive (the SDK's downloader, one ranged GET at a time)."""

    def __init__(self, info: ObjectInfo, downloader: Any) -> None:
        self.info = info
        self._downloader = downloader

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._downloader.chunks()
        except AzureError as error:
            raise AttemptFailed(classify(error), describe_error(error)) from None
        except OSError as error:
            raise AttemptFailed(AttemptReason.UNREACHABLE, type(error).__name__) from None

    def close(self) -> None:
        # The downloader holds no open response between chunks.
        self._downloader = None


def _status(error: BaseException) -> int:
    return int(getattr(error, "status_code", None) or 0)


def classify(error: BaseException) -> AttemptReason:
    """An Azure answer as the spec's reason, by its error code first (as Azure answers)."""
    code = getattr(error, "error_code", None)
    status = _status(error)
    if code == "AuthenticationFailed" and _clock_skewed(error):
        # Our clock, not the key: a HEAD carries no detail, but Azure's Date says it (as S3's
        # RequestTimeTooSkewed, a refusal, never a reason to mark a healthy backend Invalid)
        return AttemptReason.ACCESS_DENIED
    if code in _CREDENTIAL_CODES:
        return AttemptReason.CREDENTIALS_INVALID
    if code == "AuthorizationFailure" and _AZURITE_SIGNATURE_REFUSAL in str(getattr(error, "message", error)):
        return AttemptReason.CREDENTIALS_INVALID
    if code in _DENIED_CODES:
        return AttemptReason.ACCESS_DENIED
    if code in _ABSENT_CODES:
        return AttemptReason.NOT_FOUND
    if code == "ConditionNotMet" or status == 412:
        return AttemptReason.UNVERIFIABLE  # the blob changed between describe and read
    if isinstance(error, ClientAuthenticationError) and status == 0:
        # A token request: refused (invalid_client, an unknown tenant), or never answered (the
        # authority down: the transport's error is its cause).
        if isinstance(error.__cause__, ServiceRequestError | ServiceResponseError):
            return classify(error.__cause__)
        return AttemptReason.CREDENTIALS_INVALID
    if status == 401:
        return AttemptReason.CREDENTIALS_INVALID
    if status == 403:
        return AttemptReason.ACCESS_DENIED
    if status == 404:
        return AttemptReason.NOT_FOUND
    # A read that times out mid-body arrives wrapped (HttpResponseError, the timeout as its cause)
    inner = getattr(error, "inner_exception", None) or error.__cause__
    if isinstance(error, ServiceRequestTimeoutError | ServiceResponseTimeoutError) or isinstance(
        inner, ServiceRequestTimeoutError | ServiceResponseTimeoutError
    ):
        return AttemptReason.TIMEOUT
    # ServiceRequestError (connect), ServiceResponseError (read), 5xx and anything else
    return AttemptReason.UNREACHABLE


def _clock_skewed(error: BaseException) -> bool:
    """Whether the answer's Date is further from our clock than Azure accepts a request's date."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        answered_at = parsedate_to_datetime(headers.get("Date") or "")
    except (TypeError, ValueError):
        return False
    if answered_at.tzinfo is None:
        return False
    return abs(answered_at - datetime.now(UTC)) > _SKEW_TOLERANCE


def describe_error(error: BaseException) -> str:
    """A log-safe description: class, code and status, never the message (it can echo a signature)."""
    code = getattr(error, "error_code", None) or ""
    status = _status(error)
    return f"{type(error).__name__} {code} ({status})".strip()
