"""OCI locations read as Chainloop's CAS reads them: go-containerregistry's ``pkg/name``
(``NewRepository``, ``Registry.Scheme``) on ``{location}/chainloop-<hex>``. The cases are that
package's own (``registry_test.go``: ``TestRegistryScheme``, ``TestIsRFC1918``) plus the spec's forms.
A pure parse: nothing here sends a request."""

from __future__ import annotations

import pytest

from cas_download.data.storage import oci
from cas_download.domain import AttemptFailed, AttemptReason

DIGEST = "sha256:" + "ab" * 32


# registry_test.go TestRegistryScheme, every case, and TestIsRFC1918's addresses
@pytest.mark.parametrize(
    ("registry", "scheme"),
    [
        ("foo.svc.localhost:1234", "http"),
        ("foo.svc.local:1234", "https"),
        ("registry.local", "https"),
        ("127.0.0.1:1234", "http"),
        ("127.0.0.1", "http"),
        ("127.0.0.1.evil.com", "https"),
        ("my127.0.0.1registry.io", "https"),
        ("localhost:8080", "http"),
        ("gcr.io", "https"),
        ("index.docker.io", "https"),
        ("::1", "http"),
        ("[::1]:5000", "http"),
        ("[2001:db8::1]:5000", "https"),
        ("10.2.3.4:5000", "http"),
        ("172.16.3.4:3000", "http"),
        ("192.168.3.4", "http"),
        ("8.8.8.8", "https"),
        ("10.256.0.0:5000", "https"),
        # the spec adds every loopback address and localhost without a port (Scheme() says HTTPS)
        ("localhost", "http"),
        ("127.0.0.2:5000", "http"),
        ("[::1]", "http"),
    ],
)
def test_the_registry_scheme_is_go_containerregistrys(registry: str, scheme: str) -> None:
    assert oci.registry_scheme(registry) == scheme


@pytest.mark.parametrize(
    ("location", "base_url", "repository"),
    [
        ("ghcr.io/acme/cas", "https://ghcr.io", "acme/cas"),
        ("127.0.0.1:5000/cas", "http://127.0.0.1:5000", "cas"),
        ("localhost:5000/a/b", "http://localhost:5000", "a/b"),
        ("[::1]:5000/cas", "http://[::1]:5000", "cas"),
        ("10.2.3.4:5000/cas", "http://10.2.3.4:5000", "cas"),
        ("192.168.3.4/cas", "http://192.168.3.4", "cas"),
        ("registry.localhost/cas", "http://registry.localhost", "cas"),
        ("registry.local/cas", "https://registry.local", "cas"),
        ("localhost/cas", "http://localhost", "cas"),
        # the first segment is a registry only if it is localhost or holds a "." or ":"
        ("acme/cas", "https://registry-1.docker.io", "acme/cas"),
        ("acme", "https://registry-1.docker.io", "acme"),
        ("docker.io/acme/cas", "https://registry-1.docker.io", "acme/cas"),
        ("index.docker.io/acme/cas", "https://registry-1.docker.io", "acme/cas"),
        # a registry alone: the images are at its root
        ("ghcr.io", "https://ghcr.io", ""),
        # the spec's explicit scheme wins
        ("http://registry.internal:8080/cas", "http://registry.internal:8080", "cas"),
        ("https://127.0.0.1:5000/cas", "https://127.0.0.1:5000", "cas"),
        ("https://10.2.3.4/cas", "https://10.2.3.4", "cas"),
        ("harbor.example.com/project/cas/", "https://harbor.example.com", "project/cas"),
    ],
)
def test_a_location_names_the_registry_and_the_repository(
    location: str, base_url: str, repository: str
) -> None:
    parsed = oci.parse_location(location)
    if base_url.startswith("http://") and not location.startswith("http://"):
        # go-containerregistry's ping: HTTPS first, plain HTTP only if HTTPS gets no answer
        assert parsed == oci.RegistryLocation(
            base_url.replace("http://", "https://", 1), repository, http_fallback=True
        )
    else:
        assert parsed == oci.RegistryLocation(base_url, repository)


@pytest.mark.parametrize(
    ("location", "artifact_repository"),
    [
        ("ghcr.io/acme/cas", f"acme/cas/chainloop-{'ab' * 32}"),
        ("acme", f"acme/chainloop-{'ab' * 32}"),
        ("ghcr.io", f"chainloop-{'ab' * 32}"),
        # Docker Hub's official-image namespace, for a name of one segment
        ("docker.io", f"library/chainloop-{'ab' * 32}"),
    ],
)
def test_an_artifacts_image_is_named_under_the_location(location: str, artifact_repository: str) -> None:
    assert oci.parse_location(location).artifact_repository(DIGEST) == artifact_repository


@pytest.mark.parametrize(
    "location",
    [
        "",
        "/",
        "ghcr.io/acme/cas:latest",
        "ghcr.io/a@sha256:00",
        "ghcr.io/Acme/cas",  # repositories are lower case
        "ghcr.io/a//b",
        "white space/cas",
        "gcr?com/cas",
        "ghcr.io/cas\n",
        "http://cas",  # an explicit scheme needs a registry host
        "ghcr.io/" + "a" * 200,  # with /chainloop-<hex>, over 255 characters
    ],
)
def test_a_location_that_is_not_a_repository_is_refused(location: str) -> None:
    with pytest.raises(AttemptFailed) as refused:
        oci.parse_location(location)
    assert refused.value.reason is AttemptReason.UNREACHABLE
