"""The storage gateway: an HTTP proxy in front of the S3 moto server that serves presigned URLs.

moto with IAM authentication on answers any presigned URL with HTTP 500 (it reads only the
``Authorization`` header). Turning authentication off would make revocation fake, so instead the
local stack points ``AWS_ENDPOINT_URL_S3`` at this gateway, and presigned URLs name it:

* a request signed in the ``Authorization`` header (every SDK call) is forwarded untouched, byte for
  byte, Host header included, so moto checks its signature and the key's policies itself;
* a presigned request (``X-Amz-Signature`` in the query) is verified the way S3 verifies it
  (:mod:`cas_local.presign`: SigV4 recomputed with the secret of the key it names, expiry), then
  re-signed *with that same key* and sent to moto, so a deleted key is still refused by IAM and the
  key's policy still applies. The ``response-*`` overrides and ``versionId`` travel in the query and
  moto applies them. Errors are S3's XML errors.

The gateway knows a key's secret the way S3 knows it: from where the keys live. Here that is the
keys the local stack itself created plus every credential stored in Secrets Manager in the spec's
JSON form (read again when an unknown key shows up), so a backend added with ``cas-admin`` works.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from cas_download.data.storage.s3 import credentials_from_secret
from cas_download.domain import AttemptFailed
from cas_local.httpbase import DispatchingHandler, LoopbackServer, bound_handler
from cas_local.presign import PresignCheck, is_presigned, verify_presigned

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",  # answered by the gateway itself; botocore never signs it
    }
)
# Request headers a presigned request may carry on to storage (the rest is the caller's business).
_FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "content-type",
        "content-md5",
        "content-disposition",
        "content-encoding",
        "cache-control",
        "expires",
    }
)
_CHUNK = 1024 * 1024
_UPSTREAM_TIMEOUT_S = 60.0


class KeyDirectory:
    """Access key id -> secret access key, for the keys the local stack can know about.

    ``add`` registers a key directly (the admin key, the seeded keys). On a miss the directory reads
    Secrets Manager again: every secret in the spec's JSON form (``AccessKeyID``/``SecretAccessKey``,
    any case) contributes its key. A secret is read again only when its current version changed.
    """

    def __init__(self, secrets_client: Any | None = None) -> None:
        self._secrets = secrets_client
        self._keys: dict[str, str] = {}
        self._seen_versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, access_key_id: str, secret_access_key: str) -> None:
        with self._lock:
            self._keys[access_key_id] = secret_access_key

    def secret_for(self, access_key_id: str) -> str | None:
        with self._lock:
            known = self._keys.get(access_key_id)
            if known is None and self._secrets is not None and access_key_id:
                self._scan_secrets()
                known = self._keys.get(access_key_id)
            return known

    def _scan_secrets(self) -> None:
        try:
            pages = self._secrets.get_paginator("list_secrets").paginate()  # type: ignore[union-attr]
            entries = [entry for page in pages for entry in page.get("SecretList", [])]
        except (ClientError, BotoCoreError):
            return
        for entry in entries:
            arn = str(entry.get("ARN", ""))
            fingerprint = json.dumps(
                entry.get("SecretVersionsToStages") or str(entry.get("LastChangedDate")), sort_keys=True
            )
            if not arn or self._seen_versions.get(arn) == fingerprint:
                continue
            try:
                value = self._secrets.get_secret_value(SecretId=arn)  # type: ignore[union-attr]
                credentials = credentials_from_secret(json.loads(value.get("SecretString") or ""))
            except (ClientError, BotoCoreError, ValueError, AttemptFailed):
                self._seen_versions[arn] = fingerprint
                continue
            self._seen_versions[arn] = fingerprint
            self._keys[credentials.access_key_id] = credentials.secret_access_key


class StorageGateway(LoopbackServer):
    """The gateway server, run on a daemon thread: ``start()``, ``url``, ``stop()``."""

    thread_name = "storage-gateway"

    def __init__(
        self,
        upstream_url: str,
        keys: KeyDirectory,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the gateway forwards to a plain http:// endpoint, got {upstream_url!r}")
        self.upstream_url = f"http://{parts.netloc}"
        self.keys = keys
        self.clock = clock or (lambda: datetime.now(UTC))
        super().__init__(bound_handler(_GatewayHandler, gateway=self), host, port)

    def upstream(self) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.upstream_url)
        return http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=_UPSTREAM_TIMEOUT_S
        )

    def sign_for_upstream(
        self, check: PresignCheck, method: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, dict[str, str]]:
        """Path and headers of the request to storage: the presigned request, re-signed in the
        ``Authorization`` header with the key the URL names (so storage judges that key)."""
        path = "/" + urllib.parse.quote(check.bucket, safe="")
        if check.key:
            path += "/" + urllib.parse.quote(check.key, safe="/~")
        query = urllib.parse.urlencode(check.forwarded_query(), quote_via=urllib.parse.quote)
        url = f"{self.upstream_url}{path}" + (f"?{query}" if query else "")
        forwarded = {k: v for k, v in headers.items() if k.lower() in _FORWARDED_REQUEST_HEADERS}
        request = AWSRequest(method=method, url=url, headers=forwarded, data=body)
        credentials = Credentials(check.access_key_id, check.secret_access_key or "", check.session_token)
        S3SigV4Auth(credentials, "s3", check.region or "us-east-1").add_auth(request)
        prepared = request.prepare()
        target = path + (f"?{query}" if query else "")
        signed = {k: str(v) for k, v in prepared.headers.items()}
        if not any(k.lower() == "host" for k in signed):
            signed["Host"] = urllib.parse.urlsplit(self.upstream_url).netloc
        return target, signed


class _GatewayHandler(DispatchingHandler):
    """Quiet: the gateway is plumbing (requests show up in the handler's log line instead)."""

    gateway: StorageGateway
    server_version = "cas-local-storage-gateway"

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            query = dict(
                urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
            )
            if is_presigned(query):
                self._presigned(body)
            else:
                self._forward(self.path, dict(self.headers.items()), body)
        except (ConnectionError, TimeoutError, OSError) as error:
            if isinstance(error, BrokenPipeError | ConnectionResetError):
                self.close_connection = True
                return
            self._error(502, "ServiceUnavailable", f"storage server unreachable: {type(error).__name__}")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._read_chunks())
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _presigned(self, body: bytes) -> None:
        host = self.headers.get("Host") or f"{self.gateway.host}:{self.gateway.port}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        check = verify_presigned(
            f"http://{host}{self.path}",
            self.gateway.keys.secret_for,
            method=self.command,
            headers=headers,
            now=self.gateway.clock(),
        )
        if not check.ok:
            extra = {}
            if check.error_code == "AccessDenied":
                extra = {
                    "X-Amz-Expires": check.query.get("X-Amz-Expires", ""),
                    "Expires": check.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ServerTime": self.gateway.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            elif check.error_code == "InvalidAccessKeyId":
                extra = {"AWSAccessKeyId": check.access_key_id}
            self._error(check.status, check.error_code or "AccessDenied", check.message, extra)
            return
        target, signed = self.gateway.sign_for_upstream(check, self.command, dict(self.headers.items()), body)
        self._forward(target, signed, body)

    def _forward(self, target: str, headers: Mapping[str, str], body: bytes) -> None:
        connection = self.gateway.upstream()
        try:
            outgoing = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in {"PUT", "POST", "PATCH"}:
                outgoing = {k: v for k, v in outgoing.items() if k.lower() != "content-length"}
                outgoing["Content-Length"] = str(len(body))
            connection.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for name, value in outgoing.items():
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            self._relay(response)
        finally:
            connection.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        bodiless = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            if name.lower() in HOP_BY_HOP or name.lower() in {"server", "date"}:
                continue
            self.send_header(name, value)
        self.send_header("Date", format_datetime(datetime.now(UTC), usegmt=True))
        if length is None and not bodiless:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if bodiless:
            return
        while chunk := response.read(_CHUNK):
            self.wfile.write(chunk)

    def _error(self, status: int, code: str, message: str, extra: Mapping[str, str] | None = None) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in (extra or {}).items())
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>{fields}"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(document)))
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Date", format_datetime(datetime.now(UTC), usegmt=True))
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(OSError):
                self.wfile.write(document)
