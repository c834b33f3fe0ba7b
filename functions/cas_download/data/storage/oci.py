"""``OCI``: an OCI distribution registry (GHCR, Docker Hub, ECR, Harbor, CNCF distribution, ...).

Chainloop's layout: the artifact is the image ``{location}/chainloop-<hex>:latest``, an OCI image
manifest with exactly one layer whose digest is the artifact's, titled with the filename; the bytes
are that blob. A registry proves nothing about what it returns, so the bytes are hashed (or proven by
a verification record). Its URL is the Location its blob GET redirects to (presigned storage); a
registry that serves the bytes itself has none (``no_direct_url``).

Written on urllib3 (already in the layer, under botocore) rather than an OCI client library: the
service needs three GETs and the token flow, and must see every redirect and status itself.
This module is imported only when an OCI backend is used.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import urllib3
from msgspec import Struct
from msgspec.structs import replace
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from cas_download.data.storage.port import DirectUrl, ObjectDescription, SecretFields, call_timeouts
from cas_download.domain import AttemptFailed, AttemptReason, Backend, ObjectInfo
from cas_download.filenames import safe_filename

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE_ANNOTATION = "org.opencontainers.image.title"
# A manifest of one layer is a few hundred bytes; anything far larger is not Chainloop's.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
# An error or redirect body up to this size is read off so the connection can be reused; past it,
# the connection is closed instead.
_DRAIN_LIMIT = 16 * 1024
# A registry's Location that states no expiry is assumed good for this long.
DEFAULT_URL_LIFETIME_SECONDS = 60
# A token is not used in its last seconds: it could expire in flight.
_TOKEN_EXPIRY_MARGIN_SECONDS = 5
_DEFAULT_TOKEN_LIFETIME_SECONDS = 60
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LINK_LOCAL = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::/32"),
)
# go-containerregistry names Docker Hub ``index.docker.io`` (``docker.io`` and no host are aliases);
# the spec names its API host, which serves the same registry.
_DOCKER_HUB = "registry-1.docker.io"
_DOCKER_HUB_NAMES = frozenset({"", "docker.io", "index.docker.io"})
_REPOSITORY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-./"
_MAX_REPOSITORY_CHARS = 255
# An RFC 3986 authority as go-containerregistry accepts one: a name or IPv4 address, or an IPv6
# literal in brackets, and an optional port.
_REGISTRY_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_RFC1918 = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
)
# name.Registry.Scheme()'s patterns, besides RFC 1918 addresses and ``localhost:<port>``.
_PLAIN_HTTP_REGISTRIES = (
    re.compile(r"[^\n]*\.localhost(?::[0-9]{1,5})?"),
    re.compile(r"127\.0\.0\.1(?::[0-9]{1,5})?"),
    re.compile(r"::1|\[::1\](?::[0-9]{1,5})?"),
)
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


class RegistryLocation(Struct, frozen=True):
    base_url: str  # scheme://host[:port]
    repository: str  # the location's path, maybe empty: artifacts live at {repository}/chainloop-<hex>
    # go-containerregistry's ping (pkg/v1/remote/transport/ping.go): HTTPS first, then plain HTTP, for a
    # registry whose name.Registry.Scheme() is http (RFC 1918, localhost:<port>, loopback) and whose
    # location names no scheme. ``base_url`` is then the HTTPS one until RegistryClient.resolve says.
    http_fallback: bool = False

    def artifact_repository(self, digest: str) -> str:
        """The repository of a digest's image ``{location}/chainloop-<hex>``, named as
        go-containerregistry names it: on Docker Hub a single-segment name is in ``library/``."""
        name = f"chainloop-{digest.removeprefix('sha256:')}"
        if self.repository:
            return f"{self.repository}/{name}"
        return f"library/{name}" if self.base_url == f"https://{_DOCKER_HUB}" else name


def parse_location(location: str) -> RegistryLocation:
    """A location as Chainloop's CAS reads it: go-containerregistry's ``name.ParseReference`` of
    ``{location}/chainloop-<hex>`` (pkg/name/repository.go, registry.go). The first segment is the
    registry when it is ``localhost`` or holds a ``.`` or a ``:``; otherwise the whole location is a
    Docker Hub repository (``docker.io`` is Docker Hub too). The scheme is :func:`registry_scheme`'s;
    an explicit ``http://``/``https://`` prefix (this service's own) overrides it."""
    scheme = None
    rest = location.strip()
    for prefix in ("http://", "https://"):
        if rest.startswith(prefix):
            scheme, rest = prefix[:-3], rest[len(prefix) :]
    rest = rest.rstrip("/")
    first, _, path = rest.partition("/")
    if first == "localhost" or "." in first or ":" in first:
        host = first
    elif scheme is None:
        host, path = "", rest  # no registry host: Docker Hub
    else:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid registry location: no registry host")
    if not rest or not location.isprintable() or (host and not _REGISTRY_HOST.fullmatch(host)):
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid registry location: bad registry host")
    if path.strip(_REPOSITORY_CHARS) or "//" in path or path.startswith("/"):
        # go-containerregistry's repository characters: lower case, digits, ``_-./``; a tag or a
        # digest (``:``, ``@``) is refused: the location names a repository.
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid registry location: bad repository")
    if len(path) + len("/chainloop-") + 64 > _MAX_REPOSITORY_CHARS:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid registry location: repository too long")
    if host in _DOCKER_HUB_NAMES:
        host = _DOCKER_HUB
    if scheme is None and registry_scheme(host) == "http":
        return RegistryLocation(f"https://{host}", path, http_fallback=True)
    return RegistryLocation(f"{scheme or registry_scheme(host)}://{host}", path)


def registry_scheme(registry: str) -> str:
    """``name.Registry.Scheme()``: plain HTTP for RFC 1918 addresses, ``localhost:<port>``,
    ``*.localhost``, ``127.0.0.1`` and ``::1`` (each with or without a port); and, as the spec says,
    for every loopback address and ``localhost`` without a port (a registry there has no certificate
    either). HTTPS for anything else, ``*.local`` included."""
    try:
        address = ipaddress.ip_address(registry.partition(":")[0])
    except ValueError:
        address = None
    if address is not None and (address.is_loopback or any(address in network for network in _RFC1918)):
        return "http"
    if (
        registry == "localhost"
        or registry.startswith("localhost:")
        or any(rule.fullmatch(registry) for rule in _PLAIN_HTTP_REGISTRIES)
    ):
        return "http"
    return "https"


class RegistryCredentials(Struct, frozen=True):
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return "RegistryCredentials(<redacted>)"

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.username}\0{self.password}".encode()).hexdigest()


def credentials_from_secret(secret: SecretFields) -> RegistryCredentials | None:
    """``Username`` and ``Password``; neither (``{}``) is anonymous pull; ``Repo`` is ignored."""
    username, password = secret.text("Username"), secret.text("Password")
    if username is None and password is None:
        return None
    if username is None or password is None:
        raise AttemptFailed(AttemptReason.SECRET_UNAVAILABLE, "secret has only one of Username and Password")
    return RegistryCredentials(username, password)


# ---------------------------------------------------------------------------------- the HTTP client


class _Challenge(Struct, frozen=True):
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str | None) -> _Challenge | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in {"basic", "bearer"}:
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return _Challenge(scheme, params)


class RegistryClient:
    """One per container: a connection pool, and bearer tokens by registry, scope and credentials,
    each reused until it expires."""

    def __init__(
        self,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.connect_timeout_seconds = connect_timeout_seconds
        self.clock = clock  # the tokens' expiry clock (tests move it)
        self.read_timeout_seconds = read_timeout_seconds
        self._http = http or urllib3.PoolManager(retries=False, maxsize=4)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        # Registries that asked for HTTP Basic: later requests send it without waiting for the 401.
        self._basic_registries: set[str] = set()
        # The scheme a TLS-first registry answered on (RegistryLocation.http_fallback), by its HTTPS URL.
        self._resolved: dict[str, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the pool's connections; forget the tokens and the schemes registries answered on."""
        with self._lock:
            self._tokens.clear()
            self._basic_registries.clear()
            self._resolved.clear()
        self._http.clear()

    def resolve(self, location: RegistryLocation, timeout: urllib3.Timeout) -> RegistryLocation:
        """``location`` on the scheme its registry answers, as go-containerregistry's ping finds it:
        ``GET /v2/`` over HTTPS, and over plain HTTP only if HTTPS gets no 200 or 401 (no TLS there, a
        refused handshake). A registry that answers on neither stays on HTTPS, whose error the request
        then reports; only an answer is remembered (per container)."""
        if not location.http_fallback:
            return location
        with self._lock:
            known = self._resolved.get(location.base_url)
        if known is None:
            plain = "http://" + location.base_url.removeprefix("https://")
            for candidate in (location.base_url, plain):
                if self._pings(candidate, timeout):
                    known = candidate
                    with self._lock:
                        self._resolved[location.base_url] = candidate
                    break
        return replace(location, base_url=known or location.base_url, http_fallback=False)

    def _pings(self, base_url: str, timeout: urllib3.Timeout) -> bool:
        try:
            response = self.request("GET", f"{base_url}/v2/", timeout)
        except AttemptFailed:
            return False
        discard(response)
        return response.status in (200, 401)

    def request(
        self, method: str, url: str, timeout: urllib3.Timeout, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        """One request, redirects not followed, the body left to stream (bounded by the caller)."""
        try:
            return self._http.request(
                method,
                url,
                headers=headers or {},
                timeout=timeout,
                redirect=False,
                preload_content=False,
            )
        except NewConnectionError:
            # urllib3 derives this from ConnectTimeoutError: a refused connection is not a timeout
            raise AttemptFailed(AttemptReason.UNREACHABLE, "connection refused") from None
        except Urllib3Timeout:
            raise AttemptFailed(AttemptReason.TIMEOUT, "registry did not answer in time") from None
        except HTTPError as error:
            raise AttemptFailed(AttemptReason.UNREACHABLE, type(error).__name__) from None

    def cached_token(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            token, expires = entry
            if self.clock() >= expires:
                del self._tokens[key]
                return None
            return token

    def remember_token(self, key: tuple[str, str, str], token: str, lifetime_seconds: float) -> None:
        with self._lock:
            self._tokens[key] = (token, self.clock() + lifetime_seconds - _TOKEN_EXPIRY_MARGIN_SECONDS)

    def wants_basic(self, base_url: str) -> bool:
        with self._lock:
            return base_url in self._basic_registries

    def remember_basic(self, base_url: str) -> None:
        with self._lock:
            self._basic_registries.add(base_url)

    def forget_token(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


# ----------------------------------------------------------------------------------- the adapter


class OciStore:
    """The storage port for one ``OCI`` backend."""

    def __init__(
        self,
        client: RegistryClient,
        location: RegistryLocation,
        credentials: RegistryCredentials | None,
        timeout: urllib3.Timeout,
    ) -> None:
        self._client = client
        self._location = location
        self._credentials = credentials
        self._timeout = timeout
        self._registry_internal: bool | None = None

    def _registry_is_internal(self) -> bool:
        """Whether the registry is itself at a loopback, unspecified or private address (resolved once,
        when the first URL it sends is to be followed)."""
        if self._registry_internal is None:
            self._registry_internal = any(_is_internal(a) for a in _addresses(self._location.base_url))
        return self._registry_internal

    @classmethod
    def open_backend(
        cls, backend: Backend, secret: SecretFields, client: RegistryClient, time_left: float | None
    ) -> OciStore:
        location = parse_location(backend.location)
        credentials = credentials_from_secret(secret)
        connect, read = call_timeouts(client.connect_timeout_seconds, client.read_timeout_seconds, time_left)
        timeout = urllib3.Timeout(connect=connect, read=read)
        return cls(client, client.resolve(location, timeout), credentials, timeout)

    # -------------------------------------------------------------- the port

    def describe(self, digest: str) -> ObjectDescription:
        repository = self._repository(digest)
        response = self._registry_get(
            repository, f"/v2/{repository}/manifests/latest", {"Accept": MANIFEST_MEDIA_TYPE}
        )
        try:
            body = _read_bounded(response, MAX_MANIFEST_BYTES)
        finally:
            response.release_conn()
        manifest, layer = _single_layer(body, response.headers.get("Content-Type"), digest)
        info = ObjectInfo(
            size=int(layer["size"]),
            # No ETag of the registry's: it names a blob by its digest whatever the blob holds, so it
            # cannot tie a verification record to the bytes. The storage its URL leads to can
            # (direct_url: storage_etag); without one, the bytes are hashed every time.
            etag=None,
            filename=_filename(manifest, layer),
        )
        return ObjectDescription(info=info, provider_proof=None, record_key=self.record_key(digest))

    def record_key(self, digest: str) -> str:
        return f"oci|{self._location.base_url}|{self._repository(digest)}|{digest}"

    def open(
        self, digest: str, description: ObjectDescription | None = None, via: DirectUrl | None = None
    ) -> BlobStream:
        description = description or self.describe(digest)
        if via is not None:
            response = self._storage_get(via.url)
        else:
            repository = self._repository(digest)
            response = self._registry_get(repository, f"/v2/{repository}/blobs/{digest}", allow_redirect=True)
            if response.status in _REDIRECTS:
                location = _redirect_target(response, self._blob_url(digest))
                discard(response)
                response = self._storage_get(location)
        return BlobStream(description.info, response)

    def direct_url(
        self, digest: str, description: ObjectDescription, ttl_seconds: int, disposition: str | None
    ) -> DirectUrl:
        # The registry decides the lifetime and the response headers of its storage's URL.
        repository = self._repository(digest)
        response = self._registry_get(repository, f"/v2/{repository}/blobs/{digest}", allow_redirect=True)
        try:
            if response.status in _REDIRECTS:
                target = _redirect_target(response, self._blob_url(digest))
            else:
                target = None
        finally:
            discard(response)  # a 200 is the blob itself: a few KiB at most are read off
        if target is None:
            raise AttemptFailed(AttemptReason.NO_DIRECT_URL, "the registry serves the blob itself")
        etag = self._storage_etag(target, description.info.size)
        return DirectUrl(target, url_expiry(target, datetime.now(UTC)), storage_etag=etag)

    def probe(self, key_prefix: str) -> AttemptReason | None:
        """Authenticate for pull on the location, reading nothing."""
        try:
            response = self._authorized_get(self._location.repository, "/v2/")
            discard(response)
        except AttemptFailed as failure:
            return failure.reason
        return None

    # -------------------------------------------------------------- requests

    def _repository(self, digest: str) -> str:
        return self._location.artifact_repository(digest)

    def _blob_url(self, digest: str) -> str:
        repository = self._repository(digest)
        return f"{self._location.base_url}/v2/{repository}/blobs/{digest}"

    def _registry_get(
        self,
        repository: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        allow_redirect: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """An authorized GET whose body is left to stream: 200 (or a redirect, when allowed)."""
        response = self._authorized_get(repository, path, headers)
        if response.status == 200 or (allow_redirect and response.status in _REDIRECTS):
            return response
        discard(response)
        raise AttemptFailed(
            _classify(response.status, self._credentials is not None), f"registry {response.status}"
        )

    def _authorized_get(
        self, repository: str, path: str, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        """GET with what the registry asks for: a cached token first, else the challenge's scheme."""
        url = f"{self._location.base_url}{path}"
        token_key = (self._location.base_url, repository, self._credentials_fingerprint())
        sent = dict(headers or {})
        token = self._client.cached_token(token_key)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        elif self._credentials is not None and self._client.wants_basic(self._location.base_url):
            sent["Authorization"] = self._credentials.basic()
        response = self._client.request("GET", url, self._timeout, sent)
        if response.status != 401:
            return response
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        discard(response)
        if token is not None:
            self._client.forget_token(token_key)  # expired or revoked early: ask for a new one
        if challenge is None:
            raise AttemptFailed(self._refused(), "registry 401 without a usable challenge")
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise AttemptFailed(AttemptReason.ACCESS_DENIED, "registry wants credentials, none given")
            sent["Authorization"] = self._credentials.basic()
            self._client.remember_basic(self._location.base_url)
        else:
            token = self._fetch_token(challenge, repository, token_key)
            sent["Authorization"] = f"Bearer {token}"
        response = self._client.request("GET", url, self._timeout, sent)
        if response.status == 401:
            discard(response)
            raise AttemptFailed(self._refused(), "registry 401 with the credentials given")
        return response

    def _fetch_token(self, challenge: _Challenge, repository: str, key: tuple[str, str, str]) -> str:
        realm = challenge.params.get("realm", "")
        if urlsplit(realm).scheme not in {"http", "https"} or _is_link_local(urlsplit(realm).hostname):
            raise AttemptFailed(AttemptReason.UNREACHABLE, "token realm is not an http(s) URL")
        refuse_internal_target(realm, self._registry_is_internal())
        query = {"scope": f"repository:{repository}:pull"}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        separator = "&" if urlsplit(realm).query else "?"
        response = self._client.request(
            "GET", f"{realm}{separator}{urlencode(query)}", self._timeout, headers
        )
        try:
            if response.status != 200:
                raise AttemptFailed(
                    _classify(response.status, self._credentials is not None), f"token {response.status}"
                )
            document = _json_object(_read_bounded(response, MAX_TOKEN_RESPONSE_BYTES))
        finally:
            response.release_conn()
        token = document.get("token") or document.get("access_token") if document else None
        if not isinstance(token, str) or not token:
            raise AttemptFailed(AttemptReason.UNREACHABLE, "token endpoint answered no token")
        lifetime = document.get("expires_in") if document else None
        seconds = lifetime if isinstance(lifetime, int) and lifetime > 0 else _DEFAULT_TOKEN_LIFETIME_SECONDS
        self._client.remember_token(key, token, seconds)
        return token

    def _storage_get(self, url: str) -> urllib3.BaseHTTPResponse:
        """GET a storage URL the registry redirected to: never with the registry's credentials."""
        for _ in range(MAX_REDIRECTS):
            refuse_internal_target(url, self._registry_is_internal())
            response = self._client.request("GET", url, self._timeout)
            if response.status == 200:
                return response
            if response.status in _REDIRECTS:
                target = _redirect_target(response, url)
                discard(response)
                url = target
                continue
            discard(response)
            raise AttemptFailed(
                _classify(response.status, credentials_given=False), f"storage {response.status}"
            )
        raise AttemptFailed(AttemptReason.UNREACHABLE, "too many redirects")

    def _storage_etag(self, url: str, size: int) -> str | None:
        """The ETag the storage behind ``url`` gives the stored bytes (one byte read), or None when it
        gives none, answers otherwise or redirects again (then no record applies: the bytes are
        hashed). A stored size other than the manifest's is not the artifact."""
        refuse_internal_target(url, self._registry_is_internal())
        response = self._client.request("GET", url, self._timeout, {"Range": "bytes=0-0"})
        try:
            if response.status not in (200, 206):
                return None
            stored = _stored_size(response)
            if stored is not None and stored != size:
                raise AttemptFailed(
                    AttemptReason.DIGEST_MISMATCH,
                    f"the storage holds {stored} bytes, the manifest says {size}",
                )
            etag = (response.headers.get("ETag") or "").strip()
            return etag or None
        finally:
            discard(response)

    def _credentials_fingerprint(self) -> str:
        return self._credentials.fingerprint() if self._credentials else "anonymous"

    def _refused(self) -> AttemptReason:
        return AttemptReason.CREDENTIALS_INVALID if self._credentials else AttemptReason.ACCESS_DENIED


def _stored_size(response: urllib3.BaseHTTPResponse) -> int | None:
    """The whole object's size from a ranged answer (``Content-Range: bytes 0-0/N``) or a full one."""
    if response.status == 206:
        total = (response.headers.get("Content-Range") or "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length") or ""
    return int(length) if length.isdigit() else None


class BlobStream:
    """A blob's bytes as they arrive."""

    def __init__(self, info: ObjectInfo, response: urllib3.BaseHTTPResponse) -> None:
        self.info = info
        self._response = response
        self._complete = False

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            yield from self._response.stream(chunk_size)
            self._complete = True
        except Urllib3Timeout:
            raise AttemptFailed(AttemptReason.TIMEOUT, "blob read timed out") from None
        except (HTTPError, ProtocolError, OSError) as error:
            raise AttemptFailed(AttemptReason.UNREACHABLE, type(error).__name__) from None

    def close(self) -> None:
        if not self._complete:
            self._response.close()  # unread bytes would corrupt the next request on this connection
        self._response.release_conn()


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Give a response's connection back: a small body is read off (keep-alive), a large or unknown
    one closes the connection, so no unread bytes precede the next request on it."""
    try:
        if len(response.read(_DRAIN_LIMIT + 1, decode_content=False)) > _DRAIN_LIMIT:
            response.close()
    except (HTTPError, OSError):
        response.close()
    response.release_conn()


# ------------------------------------------------------------------------------------- answers


def _classify(status: int, credentials_given: bool) -> AttemptReason:
    if status == 401:
        return AttemptReason.CREDENTIALS_INVALID if credentials_given else AttemptReason.ACCESS_DENIED
    if status == 403:
        return AttemptReason.ACCESS_DENIED
    if status == 404:
        return AttemptReason.NOT_FOUND
    return AttemptReason.UNREACHABLE


def _read_bounded(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    try:
        data = response.read(limit + 1, decode_content=True)
    except Urllib3Timeout:
        raise AttemptFailed(AttemptReason.TIMEOUT, "registry answer timed out") from None
    except (HTTPError, OSError) as error:
        raise AttemptFailed(AttemptReason.UNREACHABLE, type(error).__name__) from None
    if len(data) > limit:
        raise AttemptFailed(AttemptReason.UNREACHABLE, f"registry answer over {limit} bytes")
    return data


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _single_layer(
    body: bytes, content_type: str | None, digest: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and its one layer, if this is the artifact's image as Chainloop writes it."""
    manifest = _json_object(body)
    if manifest is None:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "manifest is not a JSON object")
    media_type = manifest.get("mediaType") or (content_type or "").split(";")[0].strip()
    layers = manifest.get("layers")
    if media_type != MANIFEST_MEDIA_TYPE or not isinstance(layers, list) or len(layers) != 1:
        raise AttemptFailed(AttemptReason.NOT_FOUND, "not a single-layer OCI image manifest")
    layer = layers[0]
    if not isinstance(layer, dict) or layer.get("digest") != digest:
        raise AttemptFailed(AttemptReason.NOT_FOUND, "the image's layer is another digest")
    size = layer.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "the layer has no valid size")
    return manifest, layer


def _filename(manifest: dict[str, Any], layer: dict[str, Any]) -> str | None:
    """The title Chainloop puts on the manifest (pkg/blobmanager/oci/backend.go: craftImage's
    ``mutate.Annotations``, read back by Describe), else a title on the layer (other writers)."""
    for described in (manifest, layer):
        annotations = described.get("annotations")
        title = annotations.get(TITLE_ANNOTATION) if isinstance(annotations, dict) else None
        if isinstance(title, str) and title:
            return safe_filename(title)
    return None


def _redirect_target(response: urllib3.BaseHTTPResponse, base: str) -> str:
    """The Location of a redirect, resolved against ``base``: only http(s), never link-local."""
    location = response.headers.get("Location")
    if not location:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "redirect without a Location")
    target = urljoin(base, location)
    parts = urlsplit(target)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "redirect to a non-http(s) URL refused")
    if _is_link_local(parts.hostname):
        raise AttemptFailed(AttemptReason.UNREACHABLE, "redirect to a link-local address refused")
    return target


def _is_link_local(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return _is_link_local_address(address)


def _is_link_local_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(address in network for network in _LINK_LOCAL) or address.is_link_local


def _addresses(url: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``url``'s host is (a literal) or resolves to; none when it does not resolve (the
    request itself then fails as unreachable)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        resolved = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in resolved]


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, unspecified, private or otherwise not globally routed: where Lambda's Runtime API
    (127.0.0.1:9001) and a VPC's own services answer."""
    return address.is_loopback or address.is_unspecified or address.is_private or not address.is_global


def refuse_internal_target(url: str, registry_is_internal: bool) -> None:
    """Before following a URL a registry sent (a redirect, a token realm): refused when its host is,
    or resolves to, a link-local address (a cloud's metadata service), or a loopback, unspecified or
    private one unless the registry itself is at such an address (a registry on a private network keeps
    its storage there; the local stack and the tests run on loopback). Only followed URLs are checked
    (hashing, body mode, tokens); a URL handed to the caller is never fetched here."""
    addresses = _addresses(url)
    if any(_is_link_local_address(address) for address in addresses):
        raise AttemptFailed(AttemptReason.UNREACHABLE, "redirect to a link-local address refused")
    if not registry_is_internal and any(_is_internal(address) for address in addresses):
        raise AttemptFailed(
            AttemptReason.UNREACHABLE, "redirect to a loopback, unspecified or private address refused"
        )


def url_expiry(url: str, now: datetime) -> datetime:
    """When a storage URL stops working, as it says: SigV4 ``X-Amz-Date`` + ``X-Amz-Expires``, an
    Azure SAS ``se``, a CloudFront or SigV2 ``Expires`` (epoch seconds); else a short default."""
    query = {key.lower(): values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    try:
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed + timedelta(seconds=int(query["x-amz-expires"]))
        if "se" in query:
            return datetime.fromisoformat(query["se"].replace("Z", "+00:00")).astimezone(UTC)
        if "expires" in query:
            return datetime.fromtimestamp(int(query["expires"]), tz=UTC)
    except (ValueError, OverflowError):
        pass
    return now.replace(microsecond=0) + timedelta(seconds=DEFAULT_URL_LIFETIME_SECONDS)
