"""The OCI adapter's rules as the spec states them: secrets, challenges, answers, the manifest,
redirect targets (location forms: test_oci_location.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3

from cas_download.data.storage import oci
from cas_download.data.storage.port import SecretFields
from cas_download.domain import AttemptFailed, AttemptReason


def test_secret_keys_match_in_any_case_and_repo_is_ignored() -> None:
    credentials = oci.credentials_from_secret(SecretFields({"USERNAME": "u", "password": "p", "Repo": "x/y"}))
    assert credentials == oci.RegistryCredentials("u", "p")
    assert "p" not in repr(credentials)


def test_an_empty_secret_is_anonymous_pull() -> None:
    assert oci.credentials_from_secret(SecretFields({})) is None
    assert oci.credentials_from_secret(SecretFields({"Repo": "ghcr.io/acme/cas"})) is None


@pytest.mark.parametrize("secret", [{"Username": "u"}, {"Password": "p"}, {"Username": "u", "Password": ""}])
def test_half_a_login_is_secret_unavailable(secret: dict[str, str]) -> None:
    with pytest.raises(AttemptFailed) as refused:
        oci.credentials_from_secret(SecretFields(secret))
    assert refused.value.reason is AttemptReason.SECRET_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "credentials_given", "reason"),
    [
        (401, True, AttemptReason.CREDENTIALS_INVALID),
        (401, False, AttemptReason.ACCESS_DENIED),
        (403, True, AttemptReason.ACCESS_DENIED),
        (403, False, AttemptReason.ACCESS_DENIED),
        (404, True, AttemptReason.NOT_FOUND),
        (429, True, AttemptReason.UNREACHABLE),
        (500, True, AttemptReason.UNREACHABLE),
        (503, True, AttemptReason.UNREACHABLE),
        (400, True, AttemptReason.UNREACHABLE),
    ],
)
def test_a_registry_answer_has_one_reason(
    status: int, credentials_given: bool, reason: AttemptReason
) -> None:
    assert oci._classify(status, credentials_given) is reason


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:a:pull",
            },
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ("bearer realm=https://auth/token", "bearer", {"realm": "https://auth/token"}),
    ],
)
def test_a_challenge_names_its_scheme_and_parameters(
    header: str, scheme: str, params: dict[str, str]
) -> None:
    challenge = oci.parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params)


@pytest.mark.parametrize("header", [None, "", "Negotiate abc", "Digest realm=x"])
def test_an_unusable_challenge_is_none(header: str | None) -> None:
    assert oci.parse_challenge(header) is None


def redirect(location: str | None) -> Any:
    return SimpleNamespace(headers={"Location": location} if location is not None else {})


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://[fd00:ec2::254]/latest",
        "file:///etc/passwd",
        "ftp://storage.example/blob",
        "gopher://x/",
        None,
    ],
)
def test_a_redirect_to_a_link_local_address_or_a_non_http_scheme_is_refused(location: str | None) -> None:
    with pytest.raises(AttemptFailed) as refused:
        oci._redirect_target(redirect(location), "https://registry.example/v2/a/blobs/sha256:00")
    assert refused.value.reason is AttemptReason.UNREACHABLE


def test_a_relative_redirect_is_resolved_against_the_registry() -> None:
    target = oci._redirect_target(redirect("/storage/blob?sig=1"), "https://registry.example/v2/a/blobs/x")
    assert target == "https://registry.example/storage/blob?sig=1"


def test_a_followed_redirect_to_a_name_that_resolves_to_a_link_local_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a host name that resolves to the metadata service's address
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        address = "169.254.169.254" if host == "metadata.example" else "93.184.215.14"
        return [(2, 1, 6, "", (address, port))]

    monkeypatch.setattr(oci.socket, "getaddrinfo", resolve)

    # When a redirect to it would be followed, Then it is refused before any connection, even for a
    # registry on a private network; others pass
    for registry_is_internal in (False, True):
        with pytest.raises(AttemptFailed) as refused:
            oci.refuse_internal_target("http://metadata.example/latest/meta-data/", registry_is_internal)
        assert refused.value.reason is AttemptReason.UNREACHABLE
    oci.refuse_internal_target("https://storage.example/blob?sig=1", False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",  # Lambda's Runtime API
        "http://localhost:9001/",
        "http://0.0.0.0/",
        "http://10.0.0.5/blob",
        "http://172.16.3.4/blob",
        "http://192.168.1.1/blob",
        "http://100.64.0.1/blob",
        "http://[::1]:9001/",
        "http://[::]/",
        "http://[fd12:3456::1]/blob",
        "http://[::ffff:127.0.0.1]/",
        "http://internal.example/blob",  # resolves to a private address (below)
    ],
)
def test_a_public_registrys_redirect_to_a_loopback_unspecified_or_private_target_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given names that resolve as a private network's would (no traffic leaves the machine)
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        address = {"internal.example": "10.1.2.3", "localhost": "127.0.0.1"}.get(host, "93.184.215.14")
        return [(2, 1, 6, "", (address, port))]

    monkeypatch.setattr(oci.socket, "getaddrinfo", resolve)

    # When a registry on a public address sends it, Then it is not followed
    with pytest.raises(AttemptFailed, match="loopback, unspecified or private address refused"):
        oci.refuse_internal_target(url, registry_is_internal=False)
    # and a registry that is itself on such an address (the local stack, a private network) may
    oci.refuse_internal_target(url, registry_is_internal=True)


def test_the_registrys_own_address_decides_whether_internal_targets_are_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a registry at a public name and one on loopback
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [(2, 1, 6, "", ("93.184.215.14" if host == "registry.example" else "127.0.0.1", port))]

    monkeypatch.setattr(oci.socket, "getaddrinfo", resolve)
    client = oci.RegistryClient(1.0, 1.0)

    def store(location: str) -> oci.OciStore:
        return oci.OciStore(client, oci.parse_location(location), None, urllib3.Timeout(1.0))

    # Then only the loopback one counts as internal
    assert store("registry.example/cas")._registry_is_internal() is False
    assert store("127.0.0.1:5000/cas")._registry_is_internal() is True
    assert store("localhost:5000/cas")._registry_is_internal() is True


class _Answer:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers


def test_the_stored_size_comes_from_content_range_or_content_length() -> None:
    assert oci._stored_size(_Answer(206, {"Content-Range": "bytes 0-0/12345"})) == 12345  # type: ignore[arg-type]
    assert oci._stored_size(_Answer(206, {"Content-Range": "bytes 0-0/*"})) is None  # type: ignore[arg-type]
    assert oci._stored_size(_Answer(200, {"Content-Length": "77"})) == 77  # type: ignore[arg-type]
    assert oci._stored_size(_Answer(200, {})) is None  # type: ignore[arg-type]


LAYER_DIGEST = "sha256:" + "ab" * 32
MEDIA = "application/vnd.oci.image.manifest.v1+json"


def manifest(**changes: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MEDIA,
        "layers": [{"mediaType": "application/octet-stream", "digest": LAYER_DIGEST, "size": 12}],
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def test_chainloops_single_layer_manifest_names_the_artifact() -> None:
    assert oci._single_layer(manifest(), None, LAYER_DIGEST)[1]["size"] == 12


def test_a_manifest_without_its_media_type_is_read_by_its_content_type() -> None:
    body = manifest(mediaType=None)
    assert oci._single_layer(body, f"{MEDIA}; charset=utf-8", LAYER_DIGEST)[1]["digest"] == LAYER_DIGEST
    assert oci._single_layer(body, MEDIA, LAYER_DIGEST)[1]["digest"] == LAYER_DIGEST
    with pytest.raises(AttemptFailed) as refused:
        oci._single_layer(body, "application/vnd.docker.distribution.manifest.v2+json", LAYER_DIGEST)
    assert refused.value.reason is AttemptReason.NOT_FOUND


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (manifest(mediaType="application/vnd.oci.image.index.v1+json"), AttemptReason.NOT_FOUND),
        (manifest(mediaType="application/vnd.oci.image.zzz.v1+json"), AttemptReason.NOT_FOUND),
        (manifest(layers=[]), AttemptReason.NOT_FOUND),
        (manifest(layers=[{"digest": LAYER_DIGEST, "size": 12}] * 2), AttemptReason.NOT_FOUND),
        (manifest(layers=[{"digest": "sha256:" + "cd" * 32, "size": 12}]), AttemptReason.NOT_FOUND),
        (manifest(layers=[{"digest": "sha256:" + "00" * 32, "size": 12}]), AttemptReason.NOT_FOUND),
        (manifest(layers=["not an object"]), AttemptReason.NOT_FOUND),
        (manifest(layers={"digest": LAYER_DIGEST}), AttemptReason.NOT_FOUND),
        (manifest(layers=[{"digest": LAYER_DIGEST, "size": -1}]), AttemptReason.UNREACHABLE),
        (manifest(layers=[{"digest": LAYER_DIGEST, "size": True}]), AttemptReason.UNREACHABLE),
        (manifest(layers=[{"digest": LAYER_DIGEST, "size": "12"}]), AttemptReason.UNREACHABLE),
        (manifest(layers=[{"digest": LAYER_DIGEST}]), AttemptReason.UNREACHABLE),
        (b"[1, 2]", AttemptReason.UNREACHABLE),
        (b"not json", AttemptReason.UNREACHABLE),
    ],
)
def test_anything_but_that_manifest_is_refused_with_its_reason(body: bytes, reason: AttemptReason) -> None:
    with pytest.raises(AttemptFailed) as refused:
        oci._single_layer(body, None, LAYER_DIGEST)
    assert refused.value.reason is reason


def test_a_zero_size_layer_is_an_artifact_too() -> None:
    assert (
        oci._single_layer(manifest(layers=[{"digest": LAYER_DIGEST, "size": 0}]), None, LAYER_DIGEST)[1][
            "size"
        ]
        == 0
    )


TITLE = "org.opencontainers.image.title"


def filename_of(body: bytes) -> str | None:
    return oci._filename(*oci._single_layer(body, None, LAYER_DIGEST))


def test_the_filename_is_the_manifests_title_as_chainloop_writes_it() -> None:
    # Given Chainloop's manifest: the title among the manifest's annotations, none on the layer
    body = manifest(annotations={"org.opencontainers.image.authors": "chainloop.dev", TITLE: "sbom.json"})
    # Then that title is the filename
    assert filename_of(body) == "sbom.json"


def test_the_manifests_title_wins_over_the_layers() -> None:
    layer = {"digest": LAYER_DIGEST, "size": 12, "annotations": {TITLE: "layer.bin"}}
    assert filename_of(manifest(annotations={TITLE: "manifest.bin"}, layers=[layer])) == "manifest.bin"


@pytest.mark.parametrize("manifest_annotations", [None, {}, {TITLE: ""}, {TITLE: 7}, ["not", "a", "map"]])
def test_without_a_usable_manifest_title_the_layers_title_is_the_filename(
    manifest_annotations: object,
) -> None:
    layer = {"digest": LAYER_DIGEST, "size": 12, "annotations": {TITLE: "layer.bin"}}
    assert filename_of(manifest(annotations=manifest_annotations, layers=[layer])) == "layer.bin"


def test_without_any_title_there_is_no_filename() -> None:
    assert filename_of(manifest(annotations={"org.opencontainers.image.authors": "chainloop.dev"})) is None


@pytest.mark.parametrize(
    ("host", "link_local"),
    [
        (None, False),
        ("", False),
        ("registry.example", False),
        ("127.0.0.1", False),
        ("169.254.169.254", True),
        ("[fd00:ec2::254]", True),
        ("fe80::1", True),
    ],
)
def test_only_link_local_addresses_are_link_local(host: str | None, link_local: bool) -> None:
    assert oci._is_link_local(host) is link_local
