"""Scenario vocabulary shared by the provider tests (S3, OCI, Azure): an org's artifact behind an OCI
registry backend, and what a served URL must hand out.

    org, oci, user, digest = oci_artifact(world, registry, DATA, is_default=True)
    assert_served_by(response, 307, "registry", fallback=False)
    assert_presigned_url_serves(world, response.headers["Location"], DATA)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from cas_admin.chainloop_layout.oci import push_artifact

from .registry import Registry, RegistryUser
from .world import BackendRef, World, sha256_digest

if TYPE_CHECKING:
    from tests.scenarios.conftest import HttpResult


class OciArtifact(NamedTuple):
    """An org, its OCI backend, the registry user whose login the backend's secret holds, the digest."""

    org: str
    backend: BackendRef
    user: RegistryUser
    digest: str


def oci_artifact(
    world: World,
    registry: Registry,
    data: bytes,
    name: str = "registry",
    *,
    org: str | None = None,
    user: RegistryUser | None = None,
    anonymous: bool = False,
    pushed: bool = True,
    mapped: bool = True,
    **backend: Any,
) -> OciArtifact:
    """An OCI backend (``name``) of ``org`` (a new one unless given) on a new repository of ``registry``,
    and ``data``'s digest: pushed there as Chainloop pushes it ("release.tgz") unless ``pushed`` is
    False (the image never arrived), and mapped to the backend unless ``mapped`` is False (an org's
    default that merely holds a copy). ``user``: the registry login (a new user unless given); the
    backend's secret holds it, or nothing at all when ``anonymous``. ``backend``: as
    ``World.oci_backend`` (``is_default``, ``secret``...)."""
    org = org or world.org()
    user = user or registry.new_user()
    location = registry.location()
    ref = world.oci_backend(org, name, location, None if anonymous else user, **backend)
    if pushed:
        digest = push_artifact(location, data, "release.tgz", user.name, user.password).digest
    else:
        digest = sha256_digest(data)
    if mapped:
        world.map(digest, org, ref)
    return OciArtifact(org, ref, user, digest)


def assert_served_by(response: HttpResult, status: int, backend_name: str, *, fallback: bool) -> None:
    """A success (``status``: 307, or 200 in body and url modes) through ``backend_name``, flagged a
    fallback or not."""
    assert response.status == status
    assert response.headers["X-Cas-Backend"] == backend_name
    assert response.headers["X-Cas-Fallback"] == ("true" if fallback else "false")


def assert_presigned_url_serves(world: World, url: str, data: bytes) -> None:
    """The presigned URL, fetched as S3 would serve it, answers 200 with exactly ``data``."""
    fetched = world.fetch_presigned(url)
    assert fetched.status == 200
    assert fetched.body == data


__all__ = ["OciArtifact", "assert_presigned_url_serves", "assert_served_by", "oci_artifact"]
