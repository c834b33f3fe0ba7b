"""AWS rules the storage stand-in (moto, IAM authentication on) must follow for the other tests to mean
anything. When a moto release breaks one, this file fails first and says which rule, instead of dozens
of tests failing with a bare ``access_denied`` (moto 5.2.6 did exactly that: issue 26).
"""

from __future__ import annotations

import moto
from botocore.exceptions import ClientError

from tests.scenarios.conftest import Service
from tests.support.world import World

DATA = b"sbom.cdx.json contents\n" * 64

HEAD_OBJECT_RULE = (
    "AWS authorizes HeadObject with s3:GetObject; there is no s3:HeadObject IAM action "
    "(S3 API reference, HeadObject: 'you must have the s3:GetObject permission'). "
    f"moto {moto.__version__} no longer follows it (moto had fixed this in its PR #8334): "
    "keep moto at a release that does (pyproject.toml's pin) and re-run `make lock`."
)


def test_head_object_is_authorized_by_s3_get_object_alone(world: World) -> None:
    # Given a backend key whose policy grants only s3:GetObject on its bucket
    org = world.org()
    backend = world.backend(org, is_default=True, actions=["s3:GetObject"])
    digest = world.put(backend, DATA)
    key_id, key_secret = backend.credentials
    s3 = world.servers.storage_client("s3", key_id, key_secret)

    # When that key HEADs and GETs the object directly
    try:
        head = s3.head_object(Bucket=backend.bucket, Key=backend.key_for(digest))
        body = s3.get_object(Bucket=backend.bucket, Key=backend.key_for(digest))["Body"].read()
    except ClientError as error:
        raise AssertionError(f"{HEAD_OBJECT_RULE} (S3 answered {error.response['Error']})") from error

    # Then both are allowed, as on AWS
    assert head["ContentLength"] == len(DATA)
    assert body == DATA


def test_a_get_object_only_key_serves_through_the_service_by_redirect_and_by_body(
    world: World, service: Service
) -> None:
    # Given an artifact mapped to a backend whose key may only s3:GetObject
    org = world.org()
    backend = world.backend(org, is_default=True, actions=["s3:GetObject"])
    digest = world.put(backend, DATA)
    world.map(digest, org, backend)

    # When the caller asks for a redirect and for the body
    redirect = service.get(digest, orgs=org)
    body = service.get(digest, orgs=org, mode="body")

    # Then the service proves the object with that key (HEAD, then GET to hash it) and serves it
    assert redirect.status == 307, (
        f"{HEAD_OBJECT_RULE} (the service answered {redirect.status}: {redirect.raw.get('body')})"
    )
    assert redirect.headers["X-Cas-Backend"] == backend.name
    assert body.status == 200, (
        f"{HEAD_OBJECT_RULE} (the service answered {body.status}: {body.raw.get('body')})"
    )
    assert body.body == DATA
