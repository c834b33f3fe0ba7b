"""``AWS-S3``: S3 and S3-compatible storage through one backend's own access keys.

Location: a bucket name (the standard endpoint, so ``AWS_ENDPOINT_URL_S3`` applies) or
``http(s)://host[:port]/bucket`` (path-style). Object: ``{key_prefix}sha256:<hex>``, user metadata
``filename``. Proof: the full-object ``ChecksumSHA256``, never a composite one. URL: a SigV4 presigned
GET, for the verified version, never outliving temporary credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from msgspec import Struct

from cas_download.data.storage.port import (
    DirectUrl,
    ObjectDescription,
    SecretFields,
    call_timeouts,
)
from cas_download.domain import AttemptFailed, AttemptReason, Backend, ObjectInfo
from cas_download.filenames import decode_filename

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_CREDENTIAL_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}
)
_ABSENT_ERRORS = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound"})
_DENIED_ERRORS = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"})
# A multipart upload's ETag ends in "-<parts>"; its SHA-256 checksum is then composite even where a
# server omits ChecksumType or the "-N" suffix on HEAD.
_MULTIPART_ETAG = re.compile(r'-\d+"?$')
# A presigned URL must stay usable for at least this long, or it is not worth handing out.
_MIN_URL_LIFETIME_SECONDS = 30
_DEFAULT_REGION = "us-east-1"


class Credentials(Struct, frozen=True):
    """An S3 backend's keys, from its secret (``AccessKeyID``, ``SecretAccessKey``, optional
    ``SessionToken``, ``Region`` and ``Expiration``: when temporary credentials end)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # never let a key reach a log through repr()
        return "Credentials(<redacted>)"


def credentials_from_secret(secret: Mapping[str, object]) -> Credentials:
    fields = secret if isinstance(secret, SecretFields) else SecretFields(secret)
    access_key_id = fields.text("AccessKeyID")
    secret_access_key = fields.text("SecretAccessKey")
    if access_key_id is None or secret_access_key is None:
        raise AttemptFailed(AttemptReason.SECRET_UNAVAILABLE, "secret lacks AccessKeyID or SecretAccessKey")
    return Credentials(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=fields.text("SessionToken"),
        region=fields.text("Region"),
        expires_at=_parse_time(fields.text("Expiration")),
    )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


# Cloudflare R2 does not support ChecksumMode: Chainloop turns it off there
# (pkg/blobmanager/s3/backend.go, checksumVerificationEnabled), and so does the service.
_NO_CHECKSUM_MODE_DOMAIN = "r2.cloudflarestorage.com"


class StorageLocation(Struct, frozen=True):
    bucket: str
    endpoint_url: str | None  # None: the standard S3 endpoint (AWS_ENDPOINT_URL_S3 applies)

    @property
    def checksum_mode(self) -> bool:
        """Whether a HEAD asks for the stored checksum (``ChecksumMode=ENABLED``)."""
        host = (urlsplit(self.endpoint_url).hostname or "") if self.endpoint_url else ""
        return not (host == _NO_CHECKSUM_MODE_DOMAIN or host.endswith("." + _NO_CHECKSUM_MODE_DOMAIN))


def parse_location(location: str) -> StorageLocation:
    """``my-bucket`` or ``http(s)://host[:port]/bucket`` (path-style S3-compatible endpoint)."""
    if "://" not in location:
        if not location or "/" in location or not location.isprintable():
            raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid bucket location")
        return StorageLocation(bucket=location, endpoint_url=None)
    parts = urlsplit(location)
    bucket = parts.path.strip("/")
    if parts.scheme not in {"http", "https"} or not parts.netloc or not bucket or "/" in bucket:
        raise AttemptFailed(AttemptReason.UNREACHABLE, "invalid endpoint location")
    return StorageLocation(bucket=bucket, endpoint_url=f"{parts.scheme}://{parts.netloc}")


class S3ClientPool:
    """One S3 client per set of credentials, endpoint, region and timeouts, reused across invocations.

    Clients are created under the lock: a boto3 Session is not thread safe, and the validator probes
    backends from several threads.
    """

    def __init__(
        self,
        session: boto3.session.Session,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        max_clients: int = 64,
    ) -> None:
        self._session = session
        self._connect_timeout = connect_timeout_seconds
        self._read_timeout = read_timeout_seconds
        self._max_clients = max_clients
        self._clients: OrderedDict[tuple[str | float | None, ...], S3Client] = OrderedDict()
        self._lock = threading.Lock()

    def client(
        self,
        credentials: Credentials,
        region: str,
        endpoint_url: str | None,
        time_left_seconds: float | None = None,
    ) -> S3Client:
        """A client for these credentials; near the request deadline (``time_left_seconds`` below the
        configured timeouts) one whose timeouts are cut to the time left, so no call outlives it."""
        connect_timeout, read_timeout = call_timeouts(
            self._connect_timeout, self._read_timeout, time_left_seconds
        )
        key = (
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
            region,
            endpoint_url,
            connect_timeout,
            read_timeout,
        )
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None:
                self._clients.move_to_end(key)
                return cached
            client = self._new_client(credentials, region, endpoint_url, connect_timeout, read_timeout)
            self._clients[key] = client
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            return client

    def forget_all(self) -> None:
        """Close and drop every client: each holds a backend's credentials and a connection pool."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()

    def _new_client(
        self,
        credentials: Credentials,
        region: str,
        endpoint_url: str | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> S3Client:
        config = Config(
            signature_version="s3v4",
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # No SDK retries: the next candidate backend is the retry, and the deadline stays predictable.
            retries={"total_max_attempts": 1, "mode": "standard"},
            # Path-style for S3-compatible endpoints; the digest's bytes are hashed by the service itself,
            # so the SDK's own response checksum validation would only hash them twice.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            response_checksum_validation="when_required",
            tcp_keepalive=True,
        )
        client: S3Client = self._session.client(
            "s3",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            region_name=region,
            endpoint_url=endpoint_url,
            config=config,
        )
        return client


# ----------------------------------------------------------------------------------- the adapter


class S3Store:
    """The storage port for one ``AWS-S3`` backend."""

    def __init__(
        self, client: S3Client, location: StorageLocation, key_prefix: str, credentials: Credentials
    ):
        self.client = client
        self.location = location
        self._key_prefix = key_prefix
        self._credentials_expire_at = credentials.expires_at

    @classmethod
    def open_backend(
        cls, backend: Backend, secret: SecretFields, pool: S3ClientPool, time_left: float | None
    ) -> S3Store:
        location = parse_location(backend.location)
        credentials = credentials_from_secret(secret)
        region = backend.region or credentials.region or _DEFAULT_REGION
        client = pool.client(credentials, region, location.endpoint_url, time_left)
        return cls(client, location, backend.key_prefix, credentials)

    def key(self, digest: str) -> str:
        return f"{self._key_prefix}{digest}"

    def describe(self, digest: str) -> ObjectDescription:
        head = head_object(
            self.client, self.location.bucket, self.key(digest), checksum_mode=self.location.checksum_mode
        )
        hex_digest = digest.removeprefix("sha256:")
        return ObjectDescription(
            info=head.object_info(),
            provider_proof=checksum_proof(head, hex_digest),
            record_key=self.record_key(digest, head.version_id),
        )

    def record_key(self, digest: str, version_id: str | None = None) -> str:
        """One stored object: the endpoint, bucket and key, and the version when the bucket keeps them."""
        endpoint = self.location.endpoint_url or "s3"
        return f"{endpoint}|{self.location.bucket}|{self.key(digest)}|{version_id or ''}"

    def open(
        self, digest: str, description: ObjectDescription | None = None, via: DirectUrl | None = None
    ) -> OpenedObject:
        # ``via`` is a presigned URL of this very object version: reading through the client is the same.
        info = description.info if description else None
        return get_object(
            self.client,
            self.location.bucket,
            self.key(digest),
            version_id=info.version_id if info else None,
            if_match=info.etag if info else None,
        )

    def read_range(self, digest: str, description: ObjectDescription, start: int, length: int) -> bytes:
        info = description.info
        opened = get_object(
            self.client,
            self.location.bucket,
            self.key(digest),
            version_id=info.version_id,
            if_match=info.etag,
            byte_range=(start, length),
        )
        try:
            return b"".join(opened.chunks())
        finally:
            opened.close()

    def direct_url(
        self, digest: str, description: ObjectDescription, ttl_seconds: int, disposition: str | None
    ) -> DirectUrl:
        expires_in = url_lifetime(ttl_seconds, self._credentials_expire_at)
        params: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self.key(digest)}
        if description.info.version_id:
            params["VersionId"] = description.info.version_id
        if disposition:
            params["ResponseContentDisposition"] = disposition
        url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
        return DirectUrl(url, expires_at)

    def probe(self, key_prefix: str) -> AttemptReason | None:
        return probe_read_access(self.client, self.location.bucket, key_prefix)


def url_lifetime(configured_seconds: int, credentials_expire_at: datetime | None) -> int:
    """The configured TTL, cut short so the URL never outlives temporary credentials."""
    if credentials_expire_at is None:
        return configured_seconds
    left = int((credentials_expire_at - datetime.now(UTC)).total_seconds())
    if left < _MIN_URL_LIFETIME_SECONDS:
        raise AttemptFailed(AttemptReason.CREDENTIALS_INVALID, "temporary credentials expire too soon")
    return min(configured_seconds, left)


# ------------------------------------------------------------------------------ S3 calls and answers


class StoredObject(Struct):
    """What S3 says of an object in the headers of both HEAD and GET."""

    size: int
    etag: str | None
    version_id: str | None
    content_type: str | None
    metadata: dict[str, str]

    def object_info(self) -> ObjectInfo:
        return ObjectInfo(
            size=self.size,
            etag=self.etag,
            version_id=self.version_id,
            content_type=self.content_type,
            filename=decode_filename(self.metadata.get("filename")),
        )


def _stored_object_fields(response: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "size": int(response.get("ContentLength", 0)),
        "etag": response.get("ETag"),
        "version_id": response.get("VersionId"),
        "content_type": response.get("ContentType"),
        "metadata": {k.lower(): v for k, v in (response.get("Metadata") or {}).items()},
    }


class HeadResult(StoredObject):
    checksum_sha256: str | None
    checksum_type: str | None


def checksum_proof(head: HeadResult, expected_hex: str) -> bool | None:
    """True: S3's full-object SHA-256 equals the digest. False: it differs. None: no usable checksum.

    A composite checksum (multipart upload: a hash of part hashes, shown as ``…-N``) proves nothing
    about the whole object's SHA-256 and is ignored.
    """
    checksum = head.checksum_sha256
    if not checksum:
        return None
    if "-" in checksum:  # a composite checksum's form; its type is refused below too
        return None
    if head.etag and _MULTIPART_ETAG.search(head.etag):
        return None
    if head.checksum_type and head.checksum_type.upper() != "FULL_OBJECT":
        return None
    try:
        actual = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(actual) != hashlib.sha256().digest_size:
        return None
    return actual.hex() == expected_hex


def head_object(client: S3Client, bucket: str, key: str, *, checksum_mode: bool = True) -> HeadResult:
    try:
        if checksum_mode:
            response = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        else:
            response = client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        reason = classify(error)
        if _http_status(error) in {400, 403}:
            # HEAD errors carry no body, so S3 cannot say *why* it refused (a revoked key and a missing
            # permission are both a bare 403; a refused session token a bare 400). One ranged GET
            # returns the error code.
            reason = _explain_refusal(client, bucket, key)
        raise AttemptFailed(reason, _describe(error)) from None
    except BotoCoreError as error:
        raise AttemptFailed(classify(error), _describe(error)) from None
    return HeadResult(
        **_stored_object_fields(response),
        checksum_sha256=response.get("ChecksumSHA256"),
        checksum_type=response.get("ChecksumType"),
    )


def _explain_refusal(client: S3Client, bucket: str, key: str) -> AttemptReason:
    error = _first_byte_error(client, bucket, key)
    return AttemptReason.ACCESS_DENIED if error is None else classify(error)


def _first_byte_error(client: S3Client, bucket: str, key: str) -> ClientError | BotoCoreError | None:
    """GET one byte: the error S3 answers with (a GET error names its code), or None if it was read."""
    try:
        response = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
    except (ClientError, BotoCoreError) as error:
        return error
    response["Body"].close()
    return None


class OpenedObject(StoredObject):
    body: Any  # botocore StreamingBody

    @property
    def info(self) -> ObjectInfo:
        return self.object_info()

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(chunk_size)
        except (BotoCoreError, ClientError) as error:
            raise AttemptFailed(classify(error), _describe(error)) from None
        except OSError as error:  # connection reset mid-body
            raise AttemptFailed(AttemptReason.UNREACHABLE, type(error).__name__) from None

    def close(self) -> None:
        self.body.close()


def get_object(
    client: S3Client,
    bucket: str,
    key: str,
    version_id: str | None = None,
    if_match: str | None = None,
    byte_range: tuple[int, int] | None = None,
) -> OpenedObject:
    """GET the object (``byte_range``: ``(start, length)`` of it only)."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    if if_match:
        params["IfMatch"] = if_match
    if byte_range is not None:
        start, length = byte_range
        params["Range"] = f"bytes={start}-{start + length - 1}"
    try:
        response = client.get_object(**params)
    except (ClientError, BotoCoreError) as error:
        raise AttemptFailed(classify(error), _describe(error)) from None
    return OpenedObject(**_stored_object_fields(response), body=response["Body"])


def probe_read_access(client: S3Client, bucket: str, prefix: str) -> AttemptReason | None:
    """Check that the keys can read the bucket without writing anything. None means healthy.

    Read-only keys are valid: a list of at most one key is enough; keys that may read objects but not
    list them are recognised by a GET of a key that does not exist (NoSuchKey: the read was allowed).
    """
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (ClientError, BotoCoreError) as error:
        reason = classify(error)
        if reason is not AttemptReason.ACCESS_DENIED:
            return reason
    else:
        return None
    refusal = _first_byte_error(client, bucket, f"{prefix}.cas-download-probe")
    if refusal is None:
        return None
    code = refusal.response.get("Error", {}).get("Code") if isinstance(refusal, ClientError) else None
    return None if code == "NoSuchKey" else classify(refusal)


def _http_status(error: ClientError) -> object:
    """The HTTP status S3 answered with (None when the error never got an answer)."""
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def classify(error: BaseException) -> AttemptReason:
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = _http_status(error)
        if code in _CREDENTIAL_ERRORS:
            return AttemptReason.CREDENTIALS_INVALID
        if code in _ABSENT_ERRORS or status == 404:
            return AttemptReason.NOT_FOUND
        if code in _DENIED_ERRORS or status == 403:
            return AttemptReason.ACCESS_DENIED
        if code == "PreconditionFailed":
            # The object changed between HEAD and GET: what was seen cannot be proven.
            return AttemptReason.UNVERIFIABLE
        return AttemptReason.UNREACHABLE
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return AttemptReason.TIMEOUT
    return AttemptReason.UNREACHABLE


def _describe(error: BaseException) -> str:
    """A log-safe description: error class and code, never the message (it can echo a key id)."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{code or 'ClientError'} ({status})"
    return type(error).__name__
