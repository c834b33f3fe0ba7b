"""S3 (and S3-compatible) access through one backend's own credentials.

Every failure is turned into a :class:`StorageFailure` carrying the spec's attempt reason, so the
fallback logic never sees botocore.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from cas_download.domain import AttemptReason, Credentials, ObjectInfo
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


_MIN_TIMEOUT_SECONDS = 0.25


class StorageFailure(Exception):
    def __init__(self, reason: AttemptReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StorageLocation:
    bucket: str
    endpoint_url: str | None  # None: the standard S3 endpoint (AWS_ENDPOINT_URL_S3 applies)


def parse_location(location: str) -> StorageLocation:
    """``my-bucket`` or ``http(s)://host[:port]/bucket`` (path-style S3-compatible endpoint)."""
    if "://" not in location:
        if not location or "/" in location or not location.isprintable():
            raise StorageFailure(AttemptReason.UNREACHABLE, "invalid bucket location")
        return StorageLocation(bucket=location, endpoint_url=None)
    parts = urlsplit(location)
    bucket = parts.path.strip("/")
    if parts.scheme not in {"http", "https"} or not parts.netloc or not bucket or "/" in bucket:
        raise StorageFailure(AttemptReason.UNREACHABLE, "invalid endpoint location")
    return StorageLocation(bucket=bucket, endpoint_url=f"{parts.scheme}://{parts.netloc}")


@dataclass(slots=True)
class StoredObject:
    """What S3 says of an object in the headers of both HEAD and GET."""

    size: int
    etag: str | None
    version_id: str | None
    content_type: str | None
    metadata: dict[str, str]

    def info(self) -> ObjectInfo:
        return ObjectInfo(
            size=self.size,
            etag=self.etag,
            version_id=self.version_id,
            content_type=self.content_type,
            filename=decode_filename(self.metadata.get("filename")),
        )


class _StoredObjectFields(TypedDict):
    size: int
    etag: str | None
    version_id: str | None
    content_type: str | None
    metadata: dict[str, str]


def _stored_object_fields(response: Mapping[str, Any]) -> _StoredObjectFields:
    return {
        "size": int(response.get("ContentLength", 0)),
        "etag": response.get("ETag"),
        "version_id": response.get("VersionId"),
        "content_type": response.get("ContentType"),
        "metadata": {k.lower(): v for k, v in (response.get("Metadata") or {}).items()},
    }


@dataclass(slots=True)
class HeadResult(StoredObject):
    checksum_sha256: str | None
    checksum_type: str | None


class S3ClientPool:
    """One S3 client per set of credentials, endpoint and region, reused across invocations."""

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
        connect_timeout, read_timeout = self._timeouts(time_left_seconds)
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
        with self._lock:
            self._clients[key] = client
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        return client

    def _timeouts(self, time_left_seconds: float | None) -> tuple[float, float]:
        if time_left_seconds is None or time_left_seconds >= self._connect_timeout + self._read_timeout:
            return self._connect_timeout, self._read_timeout
        # Quarter-second steps keep the number of such short-lived clients small.
        cap = max(math.ceil(time_left_seconds * 4) / 4, _MIN_TIMEOUT_SECONDS)
        return min(self._connect_timeout, cap), min(self._read_timeout, cap)


def head_object(client: S3Client, bucket: str, key: str) -> HeadResult:
    try:
        response = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        reason = classify(error)
        if _http_status(error) in {400, 403}:
            # HEAD errors carry no body, so S3 cannot say *why* it refused (a revoked key and a missing
            # permission are both a bare 403; a refused session token a bare 400). One ranged GET
            # returns the error code.
            reason = _explain_refusal(client, bucket, key)
        raise StorageFailure(reason, _describe(error)) from None
    except BotoCoreError as error:
        raise StorageFailure(classify(error), _describe(error)) from None
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


@dataclass(slots=True)
class OpenedObject(StoredObject):
    body: Any  # botocore StreamingBody

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(chunk_size)
        except (BotoCoreError, ClientError) as error:
            raise StorageFailure(classify(error), _describe(error)) from None
        except OSError as error:  # connection reset mid-body
            raise StorageFailure(AttemptReason.UNREACHABLE, type(error).__name__) from None

    def close(self) -> None:
        self.body.close()


def get_object(
    client: S3Client, bucket: str, key: str, version_id: str | None = None, if_match: str | None = None
) -> OpenedObject:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    if if_match:
        params["IfMatch"] = if_match
    try:
        response = client.get_object(**params)
    except (ClientError, BotoCoreError) as error:
        raise StorageFailure(classify(error), _describe(error)) from None
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


def presign_get(
    client: S3Client,
    bucket: str,
    key: str,
    expires_in: int,
    version_id: str | None,
    content_disposition: str | None,
) -> str:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    if content_disposition:
        params["ResponseContentDisposition"] = content_disposition
    return client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)


def _http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


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
