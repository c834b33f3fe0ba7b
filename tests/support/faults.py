"""A fault-injecting HTTP endpoint of the tests' own: S3-, DynamoDB- and Secrets Manager-like.

One ``FaultServer`` listens on 127.0.0.1 (a free port) in threads of the test process. It tells
requests apart the way the SDK sends them:

* ``X-Amz-Target: DynamoDB_20120810.<Operation>``: DynamoDB (JSON 1.0 protocol);
* ``X-Amz-Target: secretsmanager.<Operation>``: Secrets Manager (JSON 1.1 protocol);
* anything else: S3, path style ``/<bucket>/<key>`` (point a backend's ``location`` at
  ``server.bucket_location(bucket)``).

S3 buckets are configured one by one with an :class:`S3Fault` (a bucket not configured answers
``NoSuchBucket``). DynamoDB and Secrets Manager requests are forwarded to ``upstream`` (a moto server)
unless a fault is armed for them, so a test can break one operation or one secret and keep the rest
real:

    faults = FaultServer(upstream=aws_servers.control_url)
    location = faults.s3("bucket-a", S3Fault.STALL_MID_BODY, data)
    faults.throttle_dynamodb(times=2)                 # the next two DynamoDB calls are throttled
    faults.secret_fault(backend.secret_name, SecretFault.THROTTLE)

Every request is recorded (:attr:`FaultServer.seen`). ``reset()`` disarms the DynamoDB and secret faults
and forgets what was seen (buckets stay: give each test its own). ``stop()`` wakes any stalled handler.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import itertools
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.calls import CallRecorder

HOST = "127.0.0.1"
_DYNAMODB_TARGET = "DynamoDB_20120810."
_SECRETS_TARGET = "secretsmanager."
_HOP_BY_HOP = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding", "keep-alive"}


class S3Fault(StrEnum):
    HEALTHY = "healthy"  # serves the object properly (the control case: the harness itself works)
    ERROR_500 = "error_500"  # 500 InternalError (XML; HEAD: no body, as S3 does)
    ERROR_503 = "error_503"  # 503 SlowDown
    RESET = "reset"  # the connection is reset (TCP RST) before any answer
    STALL_MID_BODY = "stall_mid_body"  # GET: headers and half the body, then silence
    SHORT_BODY = "short_body"  # GET: Content-Length N, half the bytes, then the connection closes
    RESET_MID_BODY = "reset_mid_body"  # GET: headers and half the body, then a TCP RST
    CLOCK_SKEW = "clock_skew"  # 403 RequestTimeTooSkewed (XML; HEAD: bare 403)


class SecretFault(StrEnum):
    THROTTLE = "throttle"  # 400 ThrottlingException
    RESET = "reset"  # the connection is reset before any answer
    SLOW = "slow"  # answers (forwarded upstream) only after ``slow_seconds``


DYNAMODB_THROTTLING_CODES = ("ThrottlingException", "ProvisionedThroughputExceededException")


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    service: str  # "s3", "dynamodb", "secretsmanager"
    operation: str  # S3: the HTTP method; others: the X-Amz-Target operation
    path: str
    bucket: str | None = None
    secret_id: str | None = None
    fault: str | None = None  # what the server did instead of answering normally, if anything
    at: float = 0.0


@dataclass
class _S3Bucket:
    fault: S3Fault
    objects: dict[str, bytes]
    checksum: bool


class FaultServer:
    def __init__(
        self, upstream: str | None = None, *, stall_seconds: float = 15.0, slow_seconds: float = 3.0
    ) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.stall_seconds = stall_seconds
        self.slow_seconds = slow_seconds
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._buckets: dict[str, _S3Bucket] = {}
        self._dynamodb_faults: Iterable[str] | None = None
        self._dynamodb_operations: frozenset[str] | None = None
        self._secret_faults: dict[str, SecretFault] = {}
        self._holds: dict[str, _Hold] = {}
        server = self

        class Handler(_FaultHandler):
            owner = server

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-server", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ configuration

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def bucket_location(self, bucket: str) -> str:
        """A backend ``location`` (S3-compatible, path style) naming ``bucket`` on this server."""
        return f"{self.url}/{bucket}"

    def s3(self, bucket: str, fault: S3Fault, objects: dict[str, bytes] | None = None) -> str:
        """Answer requests for ``bucket`` with ``fault``; ``objects`` maps keys to bytes (what the
        faults announce and partly send). Returns the backend location."""
        with self._lock:
            self._buckets[bucket] = _S3Bucket(fault, dict(objects or {}), checksum=False)
        return self.bucket_location(bucket)

    def healthy_s3(self, bucket: str, objects: dict[str, bytes], *, checksum: bool = True) -> str:
        """Serve ``objects`` properly from ``bucket`` (with a full-object SHA-256 unless told not to)."""
        with self._lock:
            self._buckets[bucket] = _S3Bucket(S3Fault.HEALTHY, dict(objects), checksum=checksum)
        return self.bucket_location(bucket)

    def throttle_dynamodb(
        self,
        times: int | None = None,
        codes: Iterable[str] = DYNAMODB_THROTTLING_CODES,
        operations: Iterable[str] | None = None,
    ) -> None:
        """Throttle the next ``times`` DynamoDB requests (None: all of them), cycling through ``codes``;
        only ``operations`` when given: an operation (``"BatchGetItem"``) or an operation on one index
        (``"Query:org_id-index"``). Others are forwarded upstream."""
        cycle = itertools.cycle(list(codes))
        with self._lock:
            self._dynamodb_faults = cycle if times is None else iter([next(cycle) for _ in range(times)])
            self._dynamodb_operations = frozenset(operations) if operations is not None else None

    def hold_dynamodb(self, operation: str, after: int) -> threading.Event:
        """Forward the first ``after`` requests of ``operation``, then hold every later one unanswered
        until the server stops: a caller killed while held has had exactly ``after`` of them done. The
        event is set when the first request is held."""
        hold = _Hold(after)
        with self._lock:
            self._holds[operation] = hold
        return hold.reached

    def secret_fault(self, secret_id: str, fault: SecretFault) -> None:
        """Break reads of one secret (by the exact ``SecretId`` the app sends: name or ARN)."""
        with self._lock:
            self._secret_faults[secret_id] = fault

    def reset(self) -> None:
        """Disarm DynamoDB and secret faults and forget what was seen (S3 buckets keep their faults)."""
        with self._lock:
            self._dynamodb_faults = None
            self._dynamodb_operations = None
            self._secret_faults.clear()
            self._holds.clear()
            self.seen.clear()

    # ------------------------------------------------------------------ observation

    def count(self, service: str, operation: str | None = None, *, faulted: bool | None = None) -> int:
        with self._lock:
            return sum(
                1
                for s in self.seen
                if s.service == service
                and (operation is None or s.operation == operation)
                and (faulted is None or (s.fault is not None) == faulted)
            )

    def seen_for_bucket(self, bucket: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.bucket == bucket]

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ used by the handler

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _bucket(self, name: str) -> _S3Bucket | None:
        with self._lock:
            return self._buckets.get(name)

    def _next_dynamodb_fault(self, operation: str, index: str | None) -> str | None:
        with self._lock:
            if self._dynamodb_faults is None:
                return None
            chosen = self._dynamodb_operations
            if chosen is not None and operation not in chosen and f"{operation}:{index}" not in chosen:
                return None
            return next(iter(self._dynamodb_faults), None)

    def _held(self, operation: str) -> bool:
        """Whether this request of ``operation`` is one to hold (counted as it arrives)."""
        with self._lock:
            hold = self._holds.get(operation)
            if hold is None:
                return False
            hold.arrived += 1
            if hold.arrived <= hold.after:
                return False
        hold.reached.set()
        return True

    def _secret_fault_for(self, secret_id: str | None) -> SecretFault | None:
        with self._lock:
            return self._secret_faults.get(secret_id or "")

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        self._stopping.wait(seconds)


@dataclass
class _Hold:
    after: int  # requests forwarded before the first held one
    arrived: int = 0
    reached: threading.Event = field(default_factory=threading.Event)


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    owner: FaultServer
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 does: the SDK reuses connections

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._s3()

    def do_HEAD(self) -> None:
        self._s3()

    def do_PUT(self) -> None:
        self._s3()

    def do_POST(self) -> None:
        target = self.headers.get("X-Amz-Target", "")
        body = self._read_body()
        if target.startswith(_DYNAMODB_TARGET):
            self._dynamodb(target.removeprefix(_DYNAMODB_TARGET), body)
        elif target.startswith(_SECRETS_TARGET):
            self._secrets(target.removeprefix(_SECRETS_TARGET), body)
        else:
            self._s3()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no request log on stderr
        return

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    # ------------------------------------------------------------------ S3

    def _s3(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        bucket_name, _, key = path.lstrip("/").partition("/")
        bucket = self.owner._bucket(bucket_name)
        method = self.command
        fault = bucket.fault if bucket else None
        faulted = None if fault in (None, S3Fault.HEALTHY) else str(fault)
        self.owner._record(Seen("s3", method, path, bucket=bucket_name, fault=faulted, at=time.monotonic()))
        if method in {"POST", "PUT"}:
            self._read_body()
        if bucket is None:
            self._s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
            return
        if fault is S3Fault.ERROR_500:
            self._s3_error(500, "InternalError", "We encountered an internal error. Please try again.")
        elif fault is S3Fault.ERROR_503:
            self._s3_error(503, "SlowDown", "Please reduce your request rate.")
        elif fault is S3Fault.CLOCK_SKEW:
            self._s3_error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                extra="<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>",
            )
        elif fault is S3Fault.RESET:
            self._reset()
        elif key not in bucket.objects:
            self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
        elif method == "HEAD":
            self._s3_object_headers(bucket, bucket.objects[key])
            self.end_headers()
        elif method != "GET":
            self._s3_error(405, "MethodNotAllowed", "The specified method is not allowed.")
        else:
            self._s3_get(bucket, bucket.objects[key])

    def _s3_get(self, bucket: _S3Bucket, data: bytes) -> None:
        fault = bucket.fault
        if fault is S3Fault.HEALTHY:
            self._s3_object_headers(bucket, data)
            self.end_headers()
            self.wfile.write(data)
            return
        half = data[: len(data) // 2]
        self._s3_object_headers(bucket, data)  # announces the full size
        self.end_headers()
        self.wfile.write(half)
        self.wfile.flush()
        if fault is S3Fault.STALL_MID_BODY:
            self.owner._wait(self.owner.stall_seconds)
            self.close_connection = True
        elif fault is S3Fault.SHORT_BODY:
            self.close_connection = True  # a clean close (FIN) with bytes still owed
        elif fault is S3Fault.RESET_MID_BODY:
            self._reset()

    def _s3_object_headers(self, bucket: _S3Bucket, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"')
        self.send_header("Last-Modified", self.date_time_string(1_700_000_000))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        if bucket.checksum:
            checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
            self.send_header("x-amz-checksum-sha256", checksum)
            self.send_header("x-amz-checksum-type", "FULL_OBJECT")

    def _s3_error(self, status: int, code: str, message: str, extra: str = "") -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        if self.command == "HEAD":  # S3 answers a failed HEAD without a body
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # ------------------------------------------------------------------ DynamoDB

    def _dynamodb(self, operation: str, body: bytes) -> None:
        try:
            index = json.loads(body or b"{}").get("IndexName")
        except ValueError:
            index = None
        if self.owner._held(operation):
            self.owner._record(Seen("dynamodb", operation, self.path, fault="held", at=time.monotonic()))
            while not self.owner._stopping.is_set():  # no answer: the caller is killed while it waits
                self.owner._wait(1.0)
            return
        code = self.owner._next_dynamodb_fault(operation, index)
        self.owner._record(Seen("dynamodb", operation, self.path, fault=code, at=time.monotonic()))
        if code is None:
            self._forward(body)
            return
        document = {
            "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
            "message": "Rate of requests exceeds the allowed throughput.",
        }
        self._json(400, document, "application/x-amz-json-1.0")

    # ------------------------------------------------------------------ Secrets Manager

    def _secrets(self, operation: str, body: bytes) -> None:
        try:
            secret_id = json.loads(body or b"{}").get("SecretId")
        except ValueError:
            secret_id = None
        fault = self.owner._secret_fault_for(secret_id)
        self.owner._record(
            Seen(
                "secretsmanager",
                operation,
                self.path,
                secret_id=secret_id,
                fault=str(fault) if fault else None,
                at=time.monotonic(),
            )
        )
        if fault is SecretFault.THROTTLE:
            self._json(
                400,
                {"__type": "ThrottlingException", "message": "Rate exceeded"},
                "application/x-amz-json-1.1",
            )
        elif fault is SecretFault.RESET:
            self._reset()
        else:
            if fault is SecretFault.SLOW:
                self.owner._wait(self.owner.slow_seconds)
            self._forward(body)

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, document: object, content_type: str) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self, body: bytes) -> None:
        """Relay the request to the upstream server and its answer back, byte for byte."""
        upstream = self.owner.upstream
        if upstream is None:
            self._json(500, {"__type": "InternalFailure", "message": "no upstream"}, "application/json")
            return
        status, answer_headers, payload = ask_upstream(self, upstream, body, _HOP_BY_HOP)
        self.send_response(status)
        for name, value in answer_headers:
            if name.lower() not in _HOP_BY_HOP | {"date", "server"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        reset_connection(self)


def ask_upstream(
    handler: http.server.BaseHTTPRequestHandler, upstream: str, body: bytes | None, hop_by_hop: set[str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The request ``handler`` received, sent on to ``upstream`` (its headers but ``hop_by_hop``):
    the answer's status, headers and body, errors included."""
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in hop_by_hop}
    request = urllib.request.Request(
        upstream + handler.path, data=body, headers=headers, method=handler.command
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, list(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, list(error.headers.items()), error.read()


def reset_connection(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Abort the handler's connection with a TCP RST (SO_LINGER 0, then close every reference)."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.wfile.flush()
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()
        handler.connection.close()


def closed_port_url() -> str:
    """An ``http://127.0.0.1:<port>`` where nothing listens (connection refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
    return f"http://{HOST}:{port}"


__all__ = [
    "DYNAMODB_THROTTLING_CODES",
    "CallSettings",
    "ClientSettingsRecorder",
    "FaultServer",
    "S3Fault",
    "SecretFault",
    "Seen",
    "closed_port_url",
]


# ------------------------------------------------------------------ what a fault can cost

_TARGET_KEY = "cas_settings_target"


@dataclass(frozen=True)
class CallSettings:
    """What bounds one API call's cost: the client's timeouts and its attempts (retries included)."""

    service: str
    operation: str
    target: str | None  # the Bucket or SecretId the call was for
    connect_timeout: float
    read_timeout: float
    max_attempts: int


class ClientSettingsRecorder:
    """Records the timeouts and attempts of every call the app's clients make (how long a fault can
    cost, read from the configuration instead of a clock). Registered on the app's session before the
    app creates its clients (the ``service`` fixture builds the app at ``configure``)."""

    def __init__(self, recorder: CallRecorder) -> None:
        self.calls: list[CallSettings] = []
        self._lock = threading.Lock()
        events = recorder.session.events
        events.register(
            "before-parameter-build", self._before_parameter_build, unique_id=f"cas-tp-{id(self)}"
        )
        events.register("before-call", self._before_call, unique_id=f"cas-tc-{id(self)}")

    @staticmethod
    def _before_parameter_build(params: Any, context: Any = None, **_: Any) -> None:
        # The same ``context`` dict reaches before-call: carry the call's target there.
        if isinstance(context, dict):
            context[_TARGET_KEY] = params.get("Bucket") or params.get("SecretId")

    def _before_call(self, model: Any, context: Any = None, **_: Any) -> None:
        config = context.get("client_config") if isinstance(context, dict) else None
        if config is None:
            return
        retries = config.retries or {}
        # botocore's two spellings: attempts in all, or retries after the first (its legacy default: 4)
        attempts = retries.get("total_max_attempts") or (retries.get("max_attempts", 4) + 1)
        settings = CallSettings(
            service=str(model.service_model.service_name),
            operation=str(model.name),
            target=context.get(_TARGET_KEY),
            connect_timeout=float(config.connect_timeout),
            read_timeout=float(config.read_timeout),
            max_attempts=int(attempts),
        )
        with self._lock:
            self.calls.append(settings)

    def of(self, service: str, target: str | None = None) -> list[CallSettings]:
        with self._lock:
            return [c for c in self.calls if c.service == service and (target is None or c.target == target)]
