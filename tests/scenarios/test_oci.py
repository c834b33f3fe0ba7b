"""OCI registry backends (spec: Providers, ``OCI``) against a real CNCF distribution registry:
Chainloop's layout, proof by hashing, the registry's redirect as the URL, fallback across providers."""

from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cas_admin.chainloop_layout.oci import push_artifact
from cas_download.data.storage.oci import RegistryClient, RegistryCredentials, parse_location, url_expiry
from tests.scenarios.conftest import Service, assert_failed
from tests.scenarios.test_deadline import download_log_line, service_log  # noqa: F401 - a fixture
from tests.support.calls import CallRecorder
from tests.support.moto_servers import AwsServers
from tests.support.provider_scenarios import (
    OciArtifact,
    assert_presigned_url_serves,
    assert_served_by,
    oci_artifact,
)
from tests.support.registry import Registry, RegistryUser, start_registry
from tests.support.tls import loopback_tls
from tests.support.token_issuer import TokenIssuer
from tests.support.world import BackendRef, World

DATA = b"an artifact kept in an OCI registry\n" * 300
OTHER = b"some other bytes entirely\n" * 50


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return bytes(answer.read())


def unique_data() -> bytes:
    """Bytes no other test pushes: a registry stores a blob once for all repositories, so a test that
    tampers with one must not share it."""
    return DATA + uuid.uuid4().bytes


def tampered(data: bytes) -> bytes:
    """``data`` with its last byte flipped: always other bytes (writing a fixed byte there left a random
    last byte unchanged one time in 256)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def test_body_mode_serves_the_hashed_bytes_of_the_layer_with_the_manifests_title_as_filename(
    world: World, service: Service, registry: Registry
) -> None:
    # Given an artifact written as Chainloop writes it on a self-hosted registry: the title is on the
    # manifest only, never on the layer
    org, oci, user, digest = oci_artifact(world, registry, DATA, is_default=True)
    manifest, _config = read_image(registry, user, oci.location, digest)
    assert manifest["annotations"]["org.opencontainers.image.title"] == "release.tgz"
    assert "annotations" not in manifest["layers"][0]

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the bytes are served through that backend, with the manifest's title as the filename
    assert response.status == 200
    assert response.body == DATA
    assert response.headers["X-Cas-Backend"] == "registry"
    assert response.headers["X-Cas-Fallback"] == "false"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="release.tgz"')


def retitled_image(world: World, registry: Registry, *, manifest_title: bool) -> tuple[str, str]:
    """Chainloop's image re-tagged by another writer with a title on its layer ("layer-title.bin"),
    the manifest's own title kept or removed: the org and the digest."""
    org, oci, user, digest = oci_artifact(world, registry, DATA, is_default=True)
    manifest, _config = read_image(registry, user, oci.location, digest)
    if not manifest_title:
        del manifest["annotations"]["org.opencontainers.image.title"]
    manifest["layers"][0]["annotations"] = {"org.opencontainers.image.title": "layer-title.bin"}
    registry_put_manifest(registry, user, oci.location, digest, manifest)
    return org, digest


@pytest.mark.parametrize(
    ("manifest_title", "filename"),
    [(True, "release.tgz"), (False, "layer-title.bin")],
    ids=["the-manifests-title-wins", "the-layers-title-without-one-on-the-manifest"],
)
def test_the_manifests_title_names_the_file_and_the_layers_only_without_one(
    world: World, service: Service, registry: Registry, manifest_title: bool, filename: str
) -> None:
    # Given an image whose layer carries a title of its own, with or without one on its manifest
    org, digest = retitled_image(world, registry, manifest_title=manifest_title)
    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")
    # Then the manifest's title names the file when it has one, else the layer's
    assert response.status == 200
    assert response.body == DATA
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="{filename}"')


def test_what_the_writer_stores_passes_chainloops_describe_and_download_checks(
    registry: Registry,
) -> None:
    # Given an artifact pushed by the writer, read back from the real registry
    user = registry.new_user()
    location = registry.location()
    pushed = push_artifact(location, DATA, "release.tgz", user.name, user.password)
    manifest, config = read_image(registry, user, location, pushed.digest)

    # Then validateImage's checks hold: Chainloop's author, a title, one layer of the digest
    assert manifest["annotations"] == {
        "org.opencontainers.image.authors": "chainloop.dev",
        "org.opencontainers.image.title": "release.tgz",
    }
    assert [layer["digest"] for layer in manifest["layers"]] == [pushed.digest]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # and Download's LayerByDiffID finds the layer: the OCI image config's diff_ids name it
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [pushed.digest]}
    # and the layer is the raw bytes
    assert registry_get(registry, user, f"/v2/{pushed.repository}/blobs/{pushed.digest}") == DATA


def read_image(
    registry: Registry, user: RegistryUser, location: str, digest: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of a digest's image under ``location``, as the registry stores them."""
    repository = parse_location(location).artifact_repository(digest)
    manifest = json.loads(
        registry_get(
            registry,
            user,
            f"/v2/{repository}/manifests/latest",
            {"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    )
    config = json.loads(
        registry_get(registry, user, f"/v2/{repository}/blobs/{manifest['config']['digest']}")
    )
    return manifest, config


def registry_get(
    registry: Registry, user: RegistryUser, path: str, headers: dict[str, str] | None = None
) -> bytes:
    request = urllib.request.Request(
        registry.url + path,
        headers={"Authorization": RegistryCredentials(user.name, user.password).basic(), **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return bytes(answer.read())


def registry_put_manifest(
    registry: Registry, user: RegistryUser, location: str, digest: str, manifest: dict[str, Any]
) -> None:
    """Tag ``manifest`` as the digest's image (``latest``), as another writer would push it."""
    repository = parse_location(location).artifact_repository(digest)
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/latest",
        data=json.dumps(manifest).encode(),
        method="PUT",
        headers={
            "Authorization": RegistryCredentials(user.name, user.password).basic(),
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 201


def test_a_self_hosted_registry_has_no_direct_url_and_the_next_candidate_serves(
    world: World, service: Service, registry: Registry
) -> None:
    # Given the artifact mapped to a self-hosted registry, and the org's S3 default holding the same bytes
    org, _oci, _user, digest = oci_artifact(world, registry, DATA)
    default = world.backend(org, "s3-default", is_default=True)
    world.put(default, DATA)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the S3 default serves, as a fallback
    assert_served_by(response, 307, "s3-default", fallback=True)


def test_a_self_hosted_registry_alone_answers_no_direct_url_in_url_mode(
    world: World, service: Service, registry: Registry
) -> None:
    org, _oci, _user, digest = oci_artifact(world, registry, DATA, is_default=True)
    response = service.get(digest, orgs=org, mode="url")
    assert_failed(response, 502, "backends_unavailable", [("registry", "no_direct_url")])


def test_a_hosted_registry_redirects_to_its_storage_url_once_the_bytes_are_proven(
    world: World, service: Service, hosted_registry: Registry, call_recorder: CallRecorder
) -> None:
    # Given an artifact on a registry whose blobs live in S3 (blob GETs redirect to presigned URLs)
    org, _oci, _user, digest = oci_artifact(world, hosted_registry, DATA, is_default=True)

    # When the caller asks for a redirect
    response = service.get(digest, orgs=org)

    # Then the Location is the registry's presigned storage URL, and it serves the digest's bytes
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "registry"
    location = response.headers["Location"]
    assert "X-Amz-Signature=" in location
    assert urlsplit(location).netloc != urlsplit(hosted_registry.url).netloc
    assert fetch(location) == DATA


def test_url_mode_reports_the_expiry_the_storage_url_states(
    world: World, service: Service, hosted_registry: Registry
) -> None:
    org, _oci, _user, digest = oci_artifact(world, hosted_registry, DATA, is_default=True)

    response = service.get(digest, orgs=org, mode="url")

    assert response.status == 200
    document = response.json
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(document["url"]).query).items()}
    signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    stated = signed + timedelta(seconds=int(query["x-amz-expires"]))
    assert document["expires_at"] == stated.isoformat().replace("+00:00", "Z")
    assert document["size"] == len(DATA)
    assert document["filename"] == "release.tgz"
    assert fetch(document["url"]) == DATA


def change_the_password(registry: Registry, artifact: OciArtifact, data: bytes) -> None:
    """The registry user's password changed since the backend's secret was written."""
    registry.set_password(artifact.user, "changed-" + artifact.user.password)


def tamper_with_the_blob(registry: Registry, artifact: OciArtifact, data: bytes) -> None:
    """The blob file overwritten on the registry's disk (reads are not re-checked)."""
    registry.blob_path(artifact.digest).write_bytes(tampered(data))


# what breaks the registry's copy -> (the error when it is the only copy, the attempt's reason)
REGISTRY_FAULTS = {
    "changed-password": (change_the_password, "backends_unavailable", "credentials_invalid"),
    "tampered-blob": (tamper_with_the_blob, "integrity_failure", "digest_mismatch"),
}


def broken_registry_copy(
    world: World, registry: Registry, fault: str, **backend: Any
) -> tuple[OciArtifact, bytes]:
    """An org's artifact (bytes of its own) mapped to an OCI backend ("registry") whose copy ``fault``
    broke since: the artifact and its bytes."""
    data = unique_data()
    artifact = oci_artifact(world, registry, data, **backend)
    break_copy, _error_code, _reason = REGISTRY_FAULTS[fault]
    break_copy(registry, artifact, data)
    return artifact, data


@pytest.mark.parametrize("fault", sorted(REGISTRY_FAULTS))
def test_a_broken_registry_copy_alone_is_never_served(
    world: World, service: Service, registry: Registry, fault: str
) -> None:
    # Given the artifact mapped to the org's default, an OCI backend whose copy is broken this way
    artifact, _data = broken_registry_copy(world, registry, fault, is_default=True)

    # When the caller asks for the body
    response = service.get(artifact.digest, orgs=artifact.org, mode="body")

    # Then nothing is served: the spec's error, with the fault's reason
    _break_copy, error_code, reason = REGISTRY_FAULTS[fault]
    assert_failed(response, 502, error_code, [("registry", reason)])


@pytest.mark.parametrize("fault", sorted(REGISTRY_FAULTS))
def test_a_broken_registry_copy_falls_back_to_the_orgs_s3_default(
    world: World, service: Service, registry: Registry, fault: str
) -> None:
    # Given the artifact mapped to an OCI backend whose copy is broken this way, and the org's S3
    # default holding the same bytes
    artifact, data = broken_registry_copy(world, registry, fault)
    world.put(world.backend(artifact.org, "s3-default", is_default=True), data)

    # When the caller asks for the body
    response = service.get(artifact.digest, orgs=artifact.org, mode="body")

    # Then the S3 default serves the bytes, as a fallback
    assert_served_by(response, 200, "s3-default", fallback=True)
    assert response.body == data


def test_a_revoked_s3_mapping_is_served_by_an_oci_default(
    world: World, service: Service, registry: Registry
) -> None:
    # Given the artifact mapped to an S3 backend whose key was revoked, and the org's OCI default
    org = world.org()
    s3 = world.backend(org, "s3-old")
    digest = world.put(s3, DATA)
    world.map(digest, org, s3)
    world.revoke(s3)
    oci_artifact(world, registry, DATA, "registry-default", org=org, mapped=False, is_default=True)

    # When the caller asks for the body
    response = service.get(digest, orgs=org, mode="body")

    # Then the registry serves the proven bytes, as a fallback
    assert_served_by(response, 200, "registry-default", fallback=True)
    assert response.body == DATA


@pytest.mark.parametrize(
    "image_layer", [None, OTHER], ids=["no-image-at-all", "an-image-whose-layer-is-another-digest"]
)
def test_a_mapped_registry_without_the_artifacts_image_is_content_missing(
    world: World, service: Service, registry: Registry, image_layer: bytes | None
) -> None:
    # Given a mapping to a registry backend that never received the artifact's image: nothing at the
    # artifact's name, or an image named after the digest whose single layer holds other bytes (and
    # their digest)
    org, oci, user, digest = oci_artifact(world, registry, DATA, pushed=False, is_default=True)
    if image_layer is not None:
        pushed = push_artifact(
            oci.location, image_layer, "other.bin", user.name, user.password, image_digest=digest
        )
        assert pushed.digest != digest

    response = service.get(digest, orgs=org, mode="body")

    # Then there is no artifact there (an image's layer of another digest is never read): 404
    assert_failed(response, 404, "content_missing", [("registry", "not_found")])


def test_anonymous_pull_on_a_registry_that_wants_credentials_is_access_denied(
    world: World, service: Service, registry: Registry
) -> None:
    # Given an OCI backend whose secret is {} (anonymous pull) on a registry that requires a login
    org, _oci, _user, digest = oci_artifact(
        world, registry, DATA, "anonymous", anonymous=True, is_default=True
    )

    response = service.get(digest, orgs=org, mode="body")

    assert_failed(response, 502, "backends_unavailable", [("anonymous", "access_denied")])


@pytest.mark.parametrize(
    "secret",
    [{"username": "{user}", "PASSWORD": "{password}"}, {"user_name": "{user}", "pass-word": "{password}"}],
    ids=["any-case", "separators"],
)
def test_secret_keys_match_in_any_case(
    world: World, service: Service, registry: Registry, secret: dict[str, str]
) -> None:
    user = registry.new_user()
    value = {k: v.format(user=user.name, password=user.password) for k, v in secret.items()}
    org, _oci, _user, digest = oci_artifact(world, registry, DATA, user=user, is_default=True, secret=value)

    response = service.get(digest, orgs=org, mode="body")

    assert response.status == 200
    assert response.body == DATA


def test_url_expiry_reads_what_the_url_states() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    sigv4 = "https://s/x?X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-Signature=s"
    assert url_expiry(sigv4, now) == now + timedelta(seconds=900)
    assert url_expiry("https://a/b?se=2026-01-01T00:10:00Z&sig=s", now) == now + timedelta(minutes=10)
    assert url_expiry("https://cdn/b?Expires=1767225720&Signature=s", now) == datetime.fromtimestamp(
        1767225720, tz=UTC
    )
    assert url_expiry("https://cdn/b", now) == now + timedelta(seconds=60)


# ---------------------------------------------------------------------------------------------------
# the Bearer token flow, against a registry that verifies every token's signature


def token_artifact(world: World, registry: Registry, issuer: TokenIssuer) -> OciArtifact:
    """An org's artifact mapped to its default OCI backend ("token-registry") on ``registry``, whose
    login only ``issuer`` knows (the registry itself takes bearer tokens, never a password)."""
    user = RegistryUser(f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    issuer.add_user(user.name, user.password)
    return oci_artifact(world, registry, DATA, "token-registry", user=user, is_default=True)


def test_a_bearer_token_is_fetched_for_the_pull_scope_and_reused_until_it_expires(
    world: World, service: Service, token_registry: Registry, token_issuer: TokenIssuer
) -> None:
    # Given an artifact on a registry that wants bearer tokens
    org, oci, _user, digest = token_artifact(world, token_registry, token_issuer)
    issued_before = len(token_issuer.issued)

    # When the caller asks for the body twice
    first = service.get(digest, orgs=org, mode="body")
    second = service.get(digest, orgs=org, mode="body")

    # Then both are served, and one token with the pull scope of the artifact's image served both
    assert (first.status, second.status) == (200, 200)
    assert second.body == DATA
    assert token_issuer.issued[issued_before:] == [
        f"repository:{_repository_of(oci)}/chainloop-{digest.removeprefix('sha256:')}:pull"
    ]


def test_a_token_refused_for_the_credentials_given_is_credentials_invalid(
    world: World, service: Service, token_registry: Registry, token_issuer: TokenIssuer
) -> None:
    # Given a backend whose password the token issuer no longer accepts
    org, _oci, user, digest = token_artifact(world, token_registry, token_issuer)
    token_issuer.add_user(user.name, "rotated-" + user.password)

    response = service.get(digest, orgs=org, mode="body")

    assert_failed(response, 502, "backends_unavailable", [("token-registry", "credentials_invalid")])


def test_a_token_the_registry_stops_accepting_is_replaced_and_the_request_served(
    world: World, service: Service, token_registry: Registry, token_issuer: TokenIssuer
) -> None:
    # Given the service holds, for the artifact's image, a token the issuer advertised for 300 s but
    # signed as if 10 minutes ago: by the registry's clock it expired (beyond its 60 s of skew)
    org, backend, user, digest = token_artifact(world, token_registry, token_issuer)
    location = parse_location(backend.location)
    repository = location.artifact_repository(digest)
    stale = token_issuer.issue_at(token_issuer.clock() - 600, user.name, f"repository:{repository}:pull")
    credentials = RegistryCredentials(user.name, user.password)
    client = service.app.services.storage.registry_client()
    client.remember_token((location.base_url, repository, credentials.fingerprint()), stale, 300)
    issued = len(token_issuer.issued)

    # When the caller asks for the body, the registry refusing the cached token
    response = service.get(digest, orgs=org, mode="body")

    # Then the registry's 401 makes the service fetch a new token (once), and the request is served
    assert response.status == 200
    assert response.body == DATA
    assert len(token_issuer.issued) == issued + 1


def _repository_of(backend: BackendRef) -> str:
    return backend.location.split("/", 1)[1]


class ManualClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_not_used_past_the_lifetime_the_issuer_advertised(
    world: World, service: Service, token_registry: Registry, token_issuer: TokenIssuer
) -> None:
    # Given tokens advertised for 6 s (the service stops using one 5 s before it expires), and the
    # service's token clock under the test's control
    org, _oci, _user, digest = token_artifact(world, token_registry, token_issuer)
    clock = ManualClock()
    service.app.services.storage.registry_client().clock = clock
    token_issuer.advertised_lifetime_s = 6
    try:
        assert service.get(digest, orgs=org, mode="body").status == 200
        issued = len(token_issuer.issued)
        clock.now += 0.5
        assert service.get(digest, orgs=org, mode="body").status == 200
        reused = len(token_issuer.issued)
        clock.now += 1.0

        # When the caller asks again after the token's usable life (1.5 s of its 6)
        response = service.get(digest, orgs=org, mode="body")
    finally:
        token_issuer.advertised_lifetime_s = 300

    # Then the token was reused within its usable life, and past it a new one was fetched up front
    assert reused == issued
    assert response.status == 200
    assert len(token_issuer.issued) == issued + 1


# ---------------------------------------------------------------------------------------------------
# steady state: a verification record and a cached login


def test_with_a_record_a_redirect_costs_two_registry_calls_a_one_byte_storage_read_and_no_hash(
    world: World,
    service: Service,
    hosted_registry: Registry,
    verifications_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an artifact on a hosted registry, verification records on, and every HTTP call the
    # registry client makes recorded (path segment, Range header)
    org, _oci, _user, digest = oci_artifact(world, hosted_registry, DATA, is_default=True)
    service.configure(VERIFICATIONS_TABLE=verifications_table)
    calls: list[tuple[str, str | None]] = []
    original = RegistryClient.request

    def recording(
        self: RegistryClient, method: str, url: str, timeout: Any, headers: dict[str, str] | None = None
    ) -> Any:
        calls.append((urlsplit(url).path.rsplit("/", 2)[-2], (headers or {}).get("Range")))
        return original(self, method, url, timeout, headers)

    monkeypatch.setattr(RegistryClient, "request", recording)
    first = service.get(digest, orgs=org)
    hashed = list(calls)
    calls.clear()

    # When the same artifact is asked for again
    second = service.get(digest, orgs=org)

    # Then the first request found the registry's scheme as go-containerregistry does (GET /v2/ over
    # HTTPS, refused by this plain-HTTP registry, then over HTTP), and read the bytes once to hash them;
    # the second, in the same container, made two registry calls (manifest, blob redirect) and read one
    # byte of storage (its ETag ties the record to the bytes)
    assert first.status == 307
    assert [segment for segment, _ in hashed[:2]] == ["v2", "v2"]
    hashed = hashed[2:]
    assert [segment for segment, _ in hashed].count("blobs") == 1
    assert [r for _, r in hashed].count("bytes=0-0") == 1  # the storage's ETag, then the hashing GET
    assert len([seg for seg, r in hashed if seg not in {"manifests", "blobs"} and r is None]) == 1
    assert second.status == 307
    assert [segment for segment, _ in calls[:2]] == ["manifests", "blobs"]
    assert [r for _, r in calls] == [None, None, "bytes=0-0"]
    assert fetch(second.headers["Location"]) == DATA


def test_a_registry_that_swaps_a_blobs_bytes_after_the_record_is_caught(
    world: World,
    service: Service,
    hosted_registry: Registry,
    aws_servers: AwsServers,
    verifications_table: str,
    service_log: pytest.CaptureFixture[str],  # noqa: F811 - the fixture imported above
) -> None:
    # Given an artifact on a hosted registry, proven once and recorded, and a good copy in an S3 fallback
    data = unique_data()
    org, _oci, _user, digest = oci_artifact(world, hosted_registry, data, is_default=True)
    fallback = world.backend(org, "s3-copy", is_fallback=True)
    world.put(fallback, data)
    service.configure(VERIFICATIONS_TABLE=verifications_table)
    assert service.get(digest, orgs=org).headers["X-Cas-Backend"] == "registry"

    # When the registry's storage now holds other bytes of the same length under that digest
    s3 = aws_servers.control_client("s3")
    hex_part = digest.removeprefix("sha256:")
    keys = [
        (bucket["Name"], item["Key"])
        for bucket in s3.list_buckets()["Buckets"]
        if bucket["Name"].startswith("registry-")
        for item in s3.list_objects_v2(Bucket=bucket["Name"], Prefix="registry/").get("Contents", [])
        if item["Key"].endswith(f"/sha256/{hex_part[:2]}/{hex_part}/data")
    ]
    assert len(keys) == 1
    swapped = bytes(reversed(data))
    s3.put_object(Bucket=keys[0][0], Key=keys[0][1], Body=swapped)
    service.configure(VERIFICATIONS_TABLE=verifications_table)  # a new container: no proof in memory

    service_log.readouterr()
    response = service.get(digest, orgs=org, mode="url")

    # Then the record no longer proves the blob (its storage ETag changed): the bytes are hashed and
    # fail the proof, and the good copy serves, its URL handing out the artifact's own bytes
    attempts = download_log_line(service_log.readouterr().out)["attempts"]
    assert [(a["backend_name"], a["reason"]) for a in attempts] == [("registry", "digest_mismatch")]
    assert_served_by(response, 200, "s3-copy", fallback=True)
    assert_presigned_url_serves(world, response.json["url"], data)


def test_a_registry_on_a_loopback_address_speaking_tls_is_reached_over_https_as_chainloop_does(
    world: World, service: Service, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a registry on 127.0.0.1 that speaks only TLS (its CA trusted, as an operator's private CA
    # would be), and a backend whose location names no scheme, as Chainloop writes it
    tls = loopback_tls(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.trust_bundle))
    registry = start_registry(tmp_path / "tls-registry", tls=(tls.certificate, tls.key))
    try:
        assert registry.url.startswith("https://127.0.0.1:")
        org, _oci, _user, digest = oci_artifact(world, registry, DATA, is_default=True)

        # When its artifact is asked for
        response = service.get(digest, orgs=org, mode="body")
    finally:
        registry.stop()

    # Then the service reached it over HTTPS first, as go-containerregistry's ping does for a
    # loopback or RFC 1918 registry (plain HTTP would only have been its fallback)
    assert response.status == 200
    assert response.body == DATA
