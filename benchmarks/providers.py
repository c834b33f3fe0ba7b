"""Section 7: the new candidate order on S3, and OCI backends on a real registry (CNCF distribution,
hosted: its blobs live in S3 on the moto control server, so blob GETs redirect to presigned URLs).

- S3: a new container's first request after a rotation once the old backend is marked Invalid.
- OCI: registry calls per redirect in steady state (a cached login, proof from a verification record),
  warm latency against a plain client doing the minimal registry work in the same run, and the
  first request after a registry password rotation.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from tests.support.events import FakeLambdaContext, load_event
from tests.support.world import World

from benchmarks.counting import total
from benchmarks.scenarios import DATA, Scenarios
from cas_admin.chainloop_layout.oci import push_artifact
from cas_download.data.storage.oci import MANIFEST_MEDIA_TYPE, RegistryClient
from cas_download.handlers.download import instrumented_handler
from cas_local.registry import Registry, registry_binary, start_registry

S3_FIRST_AFTER_MARKED_ROTATION_TARGET = 4
OCI_STEADY_REGISTRY_CALLS_TARGET = 2
OCI_LATENCY_TARGET = 1.25  # also Azure's: warm latency against a plain client doing the minimal work
AZURE_STEADY_STORAGE_CALLS_TARGET = 1


@dataclass(frozen=True)
class Latency:
    """Warm latency of one way to serve a redirect, over the run's interleaved requests."""

    median_ms: float = 0.0
    p99_ms: float = 0.0

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        return cls(statistics.median(samples_ms), statistics.quantiles(samples_ms, n=100)[98])

    def over(self, baseline: Latency) -> tuple[float, float]:
        """How many times ``baseline`` this is: (median ratio, p99 ratio)."""
        return self.median_ms / baseline.median_ms, self.p99_ms / baseline.p99_ms


@dataclass
class ProviderResults:
    s3_marked_rotation_calls: int = 0
    s3_marked_rotation_sequence: list[str] = field(default_factory=list)
    oci_skipped: str | None = None
    oci_steady_registry_calls: float = 0.0
    oci_steady_storage_reads: float = 0.0
    oci_steady_etag_reads: float = 0.0
    oci_steady_aws_calls: float = 0.0
    oci_first_calls: list[str] = field(default_factory=list)
    # warm latency: the service, the plain registry client, that client plus the mapping query
    oci: Latency = Latency()
    plain: Latency = Latency()
    plain_mapping: Latency = Latency()
    oci_rotation_registry_calls: list[str] = field(default_factory=list)
    oci_rotation_aws_calls: int = 0
    azure_skipped: str | None = None
    azure_first_calls: list[str] = field(default_factory=list)
    azure_steady_storage_calls: float = 0.0
    azure_steady_aws_calls: float = 0.0
    # the same three for Azure: the service, the plain SDK client, that client plus the mapping query
    azure: Latency = Latency()
    azure_plain: Latency = Latency()
    azure_plain_mapping: Latency = Latency()
    requests: int = 0


class RecordedCalls:
    """Every call of one client method, labelled by ``label(args)``, while ``watching()``."""

    def __init__(self, owner: Any, method: str, label: Callable[..., str]) -> None:
        self.calls: list[str] = []
        self._owner, self._method, self._label = owner, method, label

    @contextmanager
    def watching(self) -> Iterator[None]:
        original = getattr(self._owner, self._method)
        calls, label = self.calls, self._label

        def counted(client: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(label(*args))
            return original(client, *args, **kwargs)

        setattr(self._owner, self._method, counted)
        try:
            yield
        finally:
            setattr(self._owner, self._method, original)


def registry_calls(registry_host: str) -> RecordedCalls:
    """The registry client's HTTP requests, by kind: to the registry (manifests, blobs), or to the
    storage behind a redirect: a one-byte ranged read of its ETag (``storage etag``) or a read of the
    bytes (``storage``). By host, not path: a storage path may well contain ``/blobs/``."""

    def kind(method: str, url: str, *rest: Any) -> str:
        parts = urlsplit(url)
        if parts.netloc == registry_host:
            return (
                "manifests"
                if "/manifests/" in parts.path
                else "blobs"
                if "/blobs/" in parts.path
                else "registry"
            )
        headers = next((r for r in rest if isinstance(r, dict)), {})
        return "storage etag" if headers.get("Range") == "bytes=0-0" else "storage"

    return RecordedCalls(RegistryClient, "request", kind)


def azure_calls() -> RecordedCalls:
    """The Azure SDK's HTTP requests (azure-core's requests transport), by method and first parameter."""
    from azure.core.pipeline.transport import RequestsTransport  # noqa: PLC0415

    def kind(request: Any, *_: Any) -> str:
        query = urlsplit(request.url).query
        return f"{request.method} {'?' + query.split('&')[0] if query else 'blob'}"

    return RecordedCalls(RequestsTransport, "send", kind)


def measure(scenarios: Scenarios, scratch: Path, requests: int) -> ProviderResults:
    results = ProviderResults(requests=requests)
    s3_after_marked_rotation(scenarios, results)
    azure_rows(scenarios, scratch, results)
    if registry_binary() is None:
        results.oci_skipped = "docker-registry is not installed (make registry)"
        return results
    control = scenarios.world.servers
    bucket = f"bench-registry-{uuid.uuid4().hex[:8]}"
    control.control_client("s3").create_bucket(Bucket=bucket)
    registry = start_registry(scratch / "registry", s3_endpoint=control.control_url, s3_bucket=bucket)
    try:
        oci_steady_state(scenarios, registry, results)
        oci_after_rotation(scenarios, registry, results)
    finally:
        registry.stop()
    return results


def s3_after_marked_rotation(scenarios: Scenarios, results: ProviderResults) -> None:
    """The rotation story after the old backend was marked Invalid (by the validator or a request),
    served by a container that has cached nothing; the object in Chainloop's layout, proven by the
    verifier at upload (its record read beside the new default's HEAD)."""
    world, counter = scenarios.world, scenarios.counter
    org = world.org()
    bucket = world.bucket()
    old = world.backend(org, "old", bucket=bucket, created_at="2025-01-01T00:00:00Z", status="Invalid")
    world.backend(org, "new", bucket=bucket, is_default=True)
    digest = world.put(old, DATA, filename="artifact.bin")
    world.map(digest, org, old)
    scenarios.proven(org, old, digest)  # at upload, before the rotation
    world.revoke(old)
    target = scenarios.target("marked_rotation", "first request, new container", scenarios.app(), digest, org)
    prepared = target.prepare()
    mark = counter.mark()
    target.serve(prepared)
    results.s3_marked_rotation_calls = total(counter.since(mark))
    results.s3_marked_rotation_sequence = [f"{c.service}:{c.operation}" for c in counter.calls[mark:]]


def _oci_world(world: World, registry: Registry, **backend: Any) -> tuple[str, Any, Any, str, str]:
    org = world.org()
    user = registry.new_user()
    location = registry.location()
    oci = world.oci_backend(org, "registry", location, user, **backend)
    digest = push_artifact(location, DATA, "artifact.bin", user.name, user.password).digest
    world.map(digest, org, oci)
    return org, oci, user, location, digest


def oci_steady_state(scenarios: Scenarios, registry: Registry, results: ProviderResults) -> None:
    world, counter = scenarios.world, scenarios.counter
    org, _oci, user, location, digest = _oci_world(world, registry, is_default=True)
    app = scenarios.app()
    watcher = registry_calls(registry.host)

    def serve() -> None:
        event = load_event("get_redirect", digest=digest, orgs=org)
        response = instrumented_handler(app)(event, FakeLambdaContext())
        if response["statusCode"] != 307:
            raise RuntimeError(f"OCI redirect answered {response['statusCode']}: {response.get('body')}")

    plain = PlainRegistryClient(registry.url, location, digest, user.name, user.password)
    mappings = world.servers.control_client("dynamodb")

    def plain_with_mapping() -> None:
        # the mapping query the service must make before any registry call, then the registry work
        mappings.query(
            TableName=world.tables.mappings,
            KeyConditionExpression="digest = :d",
            ExpressionAttributeValues={":d": {"S": digest}},
        )
        plain.redirect()

    with watcher.watching():
        serve()  # the first request hashes the bytes and writes the record
        results.oci_first_calls = list(watcher.calls)
        for _ in range(3):
            serve()
            plain.redirect()
        watcher.calls.clear()
        mark = counter.mark()
        steady = 20
        for _ in range(steady):
            serve()
        kinds = Counter(watcher.calls)
        results.oci_steady_registry_calls = (kinds["manifests"] + kinds["blobs"]) / steady
        results.oci_steady_storage_reads = kinds["storage"] / steady
        results.oci_steady_etag_reads = kinds["storage etag"] / steady
        results.oci_steady_aws_calls = total(counter.since(mark)) / steady

    service_ms, plain_ms, plain_mapping_ms = _interleave(
        [serve, plain.redirect, plain_with_mapping], results.requests
    )
    results.oci, results.plain = Latency.of(service_ms), Latency.of(plain_ms)
    results.plain_mapping = Latency.of(plain_mapping_ms)


def oci_after_rotation(scenarios: Scenarios, registry: Registry, results: ProviderResults) -> None:
    """A warm container serves through a registry backend; its password is then changed and a new
    default backend on the same registry location, with a new login, is added."""
    world, counter = scenarios.world, scenarios.counter
    org, oci, user, location, digest = _oci_world(world, registry, is_default=True)
    # Backend rows cached for 1 s, so that the rotation is seen after a short wait
    app = scenarios.app(BACKEND_CACHE_TTL_SECONDS=1)
    event = load_event("get_redirect", digest=digest, orgs=org)
    for _ in range(3):
        instrumented_handler(app)(event, FakeLambdaContext())
    new_user = registry.new_user()
    world.oci_backend(org, "registry-new", location, new_user, is_default=True)
    world.update_backend(oci, is_default=False)
    registry.set_password(user, "rotated-" + user.password)
    time.sleep(app.settings.backend_cache_ttl_seconds + 0.5)  # the cached rows expire

    watcher = registry_calls(registry.host)
    mark = counter.mark()
    with watcher.watching():
        response = instrumented_handler(app)(
            load_event("get_redirect", digest=digest, orgs=org), FakeLambdaContext()
        )
    if response["statusCode"] != 307:
        raise RuntimeError(f"OCI rotation answered {response['statusCode']}: {response.get('body')}")
    results.oci_rotation_registry_calls = list(watcher.calls)
    results.oci_rotation_aws_calls = total(counter.since(mark))


class PlainRegistryClient:
    """The minimal registry work of a redirect, written plainly: the manifest (for the filename) and
    the blob GET that answers with the storage URL, Basic auth sent up front, one connection pool."""

    def __init__(self, base_url: str, location: str, digest: str, username: str, password: str) -> None:
        repository = f"{location.split('/', 1)[1]}/chainloop-{digest.removeprefix('sha256:')}"
        self._manifest = f"{base_url}/v2/{repository}/manifests/latest"
        self._blob = f"{base_url}/v2/{repository}/blobs/{digest}"
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {basic}"}
        self._http = urllib3.PoolManager(retries=False)

    def redirect(self) -> str:
        manifest = self._http.request(
            "GET", self._manifest, headers={**self._headers, "Accept": MANIFEST_MEDIA_TYPE}
        )
        if manifest.status != 200:
            raise RuntimeError(f"plain manifest GET answered {manifest.status}")
        blob = self._http.request(
            "GET", self._blob, headers=self._headers, redirect=False, preload_content=False
        )
        location = blob.headers.get("Location", "")
        blob.release_conn()
        if blob.status != 307 or not location:
            raise RuntimeError(f"plain blob GET answered {blob.status}")
        return str(location)


def azure_rows(scenarios: Scenarios, scratch: Path, results: ProviderResults) -> None:
    """A shared-key AzureBlob backend on Azurite: storage calls per redirect in steady state, and warm
    latency against a plain SDK client doing the minimal work (blob properties + a SAS)."""
    from azure.core.credentials import AzureNamedKeyCredential  # noqa: PLC0415
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas  # noqa: PLC0415

    from cas_local.azurite import Azurite, azurite_binary, new_account_key  # noqa: PLC0415

    if azurite_binary() is None:
        results.azure_skipped = "Azurite is not installed (make azurite)"
        return
    world, counter = scenarios.world, scenarios.counter
    key = new_account_key()
    server = Azurite(scratch / "azurite", {"benchacct": [key]}).start()
    try:
        service_client = BlobServiceClient(
            server.account_url("benchacct"), credential=AzureNamedKeyCredential("benchacct", key)
        )
        container = service_client.get_container_client("cas")
        container.create_container()
        digest = f"sha256:{hashlib.sha256(DATA).hexdigest()}"
        container.upload_blob(digest, DATA, metadata={"Filename": "artifact.bin"})
        org = world.org()
        backend = world.azure_backend(
            org, "azure", server.location("benchacct", "cas"), {"AccountKey": key}, is_default=True
        )
        world.map(digest, org, backend)
        app = scenarios.app()
        watcher = azure_calls()

        def serve() -> None:
            response = instrumented_handler(app)(
                load_event("get_redirect", digest=digest, orgs=org), FakeLambdaContext()
            )
            if response["statusCode"] != 307:
                raise RuntimeError(
                    f"Azure redirect answered {response['statusCode']}: {response.get('body')}"
                )

        blob = container.get_blob_client(digest)
        mappings = world.servers.control_client("dynamodb")

        def plain() -> None:
            blob.get_blob_properties()
            generate_blob_sas(
                "benchacct", "cas", digest, account_key=key, permission=BlobSasPermissions(read=True),
                expiry=datetime.now(UTC) + timedelta(minutes=5),
            )  # fmt: skip

        def plain_with_mapping() -> None:
            mappings.query(
                TableName=world.tables.mappings,
                KeyConditionExpression="digest = :d",
                ExpressionAttributeValues={":d": {"S": digest}},
            )
            plain()

        with watcher.watching():
            serve()
            results.azure_first_calls = list(watcher.calls)
            for _ in range(3):
                serve()
                plain()
            watcher.calls.clear()
            mark = counter.mark()
            steady = 20
            for _ in range(steady):
                serve()
            results.azure_steady_storage_calls = len(watcher.calls) / steady
            results.azure_steady_aws_calls = total(counter.since(mark)) / steady
        service_ms, plain_ms, mapping_ms = _interleave([serve, plain, plain_with_mapping], results.requests)
        results.azure, results.azure_plain = Latency.of(service_ms), Latency.of(plain_ms)
        results.azure_plain_mapping = Latency.of(mapping_ms)
    finally:
        server.stop()


def _interleave(runs: list[Callable[[], Any]], rounds: int) -> list[list[float]]:
    """Timed rounds of one call each, rotating which goes first, so drift hits all alike."""
    samples: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    for round_no in range(rounds):
        shift = round_no % len(order)
        for index in order[shift:] + order[:shift]:
            started = time.perf_counter()
            runs[index]()
            samples[index].append((time.perf_counter() - started) * 1000.0)
    return samples
