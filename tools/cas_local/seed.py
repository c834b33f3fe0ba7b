"""The demonstration data of the local stack: the rotation story of SPEC.md, for real.

``org-example`` (the org of the ``events/`` files) kept its artifacts in bucket ``cas-demo`` through
backend ``primary-2024``. Its keys were rotated: a new access key for the same IAM user went into a
new backend ``primary-2025`` on the same bucket, made the default, and the old key was deleted in IAM.
Every artifact uploaded before the rotation is mapped to ``primary-2024``, whose key storage now
refuses (``InvalidAccessKeyId``): the service serves them through ``primary-2025``
(``X-Cas-Fallback: true``). One artifact uploaded after the rotation is served without fallback.

The same story through a Chainloop download link (``/download/{digest}?t=<token>``): Chainloop's
control plane still hands out ``hello.txt``'s link for ``primary-2024`` (its token names that
backend's secret and provider); the service serves it through ``primary-2025``. ``Demo.link`` says
which link, and ``cas-admin chainloop link`` mints it with the stack's key (``make run`` prints how).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from cas_admin.chainloop_layout import s3 as chainloop_s3
from cas_admin.chainloop_layout.oci import push_artifact
from cas_download.data.items import to_item
from cas_download.domain import Backend
from cas_local.azurite import Azurite, new_account_key
from cas_local.events import EXAMPLE_DATA
from cas_local.registry import Registry, RegistryUser
from cas_local.stack import DEMO_AZURE_ACCOUNT, LocalStack

DEMO_ORG = "org-example"
OTHER_ORG = "org-other"  # holds nothing: shows that another org gets 404 not_found
BUCKET = "cas-demo"
IAM_USER = "cas-org-example"
BACKEND_POLICY_NAME = "cas-backend"
OLD_BACKEND = "primary-2024"
NEW_BACKEND = "primary-2025"
CI_REGISTRY_BACKEND = "registry-ci"
RO_REGISTRY_BACKEND = "registry-ro"
SECRET_PREFIX = "cas/"  # noqa: S105 - template.yaml's SecretNamePrefix default
LARGE_EXTRA_BYTES = 1024 * 1024  # the large artifact is this much over MAX_BODY_BYTES
UNPROVEN_NAME = "unproven.bin"
UNPROVEN_EXTRA_BYTES = 8 * 1024 * 1024  # the unproven artifact is this much over MAX_HASH_BYTES
LINK_ARTIFACT = "hello.txt"  # the demo's Chainloop download link: this artifact, for OLD_BACKEND


@dataclass(frozen=True)
class DemoArtifact:
    name: str
    digest: str
    size: int
    backend: str  # the backend it is mapped to
    checksum: bool  # stored with S3's full-object SHA-256 (else the service hashes it)
    note: str


@dataclass(frozen=True)
class DemoLink:
    """A Chainloop download link of the demo: for ``digest`` (``artifact``), minted as the control plane
    mints it for ``backend`` (the token names its ``secret_id`` and ``provider``), which storage now
    refuses: the service answers it through ``served_by`` (``X-Cas-Fallback: true``)."""

    artifact: str
    digest: str
    org: str
    backend: str
    secret_id: str
    provider: str
    served_by: str


@dataclass(frozen=True)
class Demo:
    org: str
    other_org: str
    bucket: str
    iam_user: str
    old_backend: str
    new_backend: str
    artifacts: list[DemoArtifact]
    registry: str | None = None  # the OCI demo's registry location, when it runs
    azure: str | None = None  # the Azure demo's container location, when Azurite runs
    link: DemoLink | None = None  # the Chainloop download link that falls back

    def artifact(self, name: str) -> DemoArtifact:
        return next(a for a in self.artifacts if a.name == name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def large_payload(size: int) -> bytes:
    """Deterministic bytes: the same digest on every run."""
    return hashlib.shake_256(b"cas-download local demo").digest(size)


def grant_bucket_access(iam: Any, user: str, bucket: str) -> None:
    """Let ``user`` (an IAM user of the storage side) read and write ``bucket``: what an org's
    backend keys are allowed in the local stack."""
    iam.put_user_policy(
        UserName=user,
        PolicyName=BACKEND_POLICY_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    }
                ],
            }
        ),
    )


def seed(stack: LocalStack) -> Demo:
    iam = stack.storage_client("iam")
    s3 = stack.storage_client("s3")
    env = stack.function_env
    writer = DemoWriter(stack.control_client("dynamodb"), stack.control_client("secretsmanager"), env, s3)
    put = writer.put
    max_body = int(env.get("MAX_BODY_BYTES", 4 * 1024 * 1024))

    s3.create_bucket(Bucket=BUCKET)
    iam.create_user(UserName=IAM_USER)
    grant_bucket_access(iam, IAM_USER, BUCKET)

    def new_backend(name: str, created_at: str, *, is_default: bool) -> tuple[Backend, str]:
        key = iam.create_access_key(UserName=IAM_USER)["AccessKey"]
        key_id, key_secret = str(key["AccessKeyId"]), str(key["SecretAccessKey"])
        stack.keys.add(key_id, key_secret)
        secret = {"AccessKeyID": key_id, "SecretAccessKey": key_secret}
        row = writer.backend(name, "AWS-S3", BUCKET, secret, created_at, is_default=is_default)
        return row, key_id

    # Before the rotation: everything goes through primary-2024.
    old, old_key_id = new_backend(OLD_BACKEND, "2024-03-01T09:00:00.000000Z", is_default=True)
    artifacts = [
        put(
            "hello.txt",
            EXAMPLE_DATA,
            old,
            "2024-06-01T10:00:00.000000Z",
            checksum=True,
            note="the events/ files' digest",
        ),
        put(
            "résumé.txt",
            "Résumé: a non-ASCII filename, RFC 2047 in S3 metadata, RFC 6266 in Content-Disposition.\n".encode(),
            old,
            "2024-07-01T10:00:00.000000Z",
            checksum=True,
            note="non-ASCII filename",
        ),
        put(
            "large.bin",
            large_payload(max_body + LARGE_EXTRA_BYTES),
            old,
            "2024-08-01T10:00:00.000000Z",
            checksum=False,
            note="over MAX_BODY_BYTES, no S3 checksum: the service hashes the stream",
        ),
    ]
    # The rotation: a new key for the same user in a new default backend; the old key is deleted.
    new, _ = new_backend(NEW_BACKEND, "2025-01-15T09:00:00.000000Z", is_default=True)
    writer.ddb.update_item(
        TableName=env["BACKENDS_TABLE"],
        Key={"id": {"S": old.id}},
        UpdateExpression="REMOVE is_default",
    )
    iam.delete_access_key(UserName=IAM_USER, AccessKeyId=old_key_id)
    artifacts.append(
        put(
            "notes-2025.txt",
            b"Uploaded after the rotation, through primary-2025: no fallback needed.\n",
            new,
            "2025-02-01T10:00:00.000000Z",
            checksum=True,
            note="mapped to the new default",
        )
    )
    # Verifying ahead of requests: over what a request may hash (MAX_HASH_BYTES), with no checksum,
    # mapped before the verifier's stream poller started: the first request asks the verifier (503
    # verification_pending, Retry-After), a moment later the answer is 307.
    hash_limit = int(env.get("MAX_HASH_BYTES", 256 * 1024 * 1024))
    artifacts.append(
        put(
            UNPROVEN_NAME,
            large_payload(hash_limit + UNPROVEN_EXTRA_BYTES),
            new,
            "2025-03-01T10:00:00.000000Z",
            checksum=False,
            note="over MAX_HASH_BYTES, no S3 checksum: proven on demand by the verifier",
        )
    )
    registry_location = None
    if stack.registry is not None:
        registry_location = f"{stack.registry.host}/cas-demo"
        artifacts += seed_registry(stack.registry, registry_location, old, new, writer)
    azure_location = None
    if stack.azurite is not None:
        azure_location = stack.azurite.location(DEMO_AZURE_ACCOUNT, "cas")
        artifacts += seed_azure(stack.azurite, azure_location, new, writer)
    linked = next(a for a in artifacts if a.name == LINK_ARTIFACT)
    link = DemoLink(LINK_ARTIFACT, linked.digest, DEMO_ORG, old.name, old.secret_name, old.provider, new.name)
    return Demo(
        DEMO_ORG,
        OTHER_ORG,
        BUCKET,
        IAM_USER,
        OLD_BACKEND,
        NEW_BACKEND,
        artifacts,
        registry_location,
        azure_location,
        link,
    )


def seed_azure(azurite: Azurite, location: str, new_s3: Backend, writer: DemoWriter) -> list[DemoArtifact]:
    """An Azure container, as Chainloop fills it (blob ``sha256:<hex>``, metadata ``Filename``).

    - ``azure-notes.txt`` is mapped to ``azure-2025`` (a working shared key): a redirect is a SAS for
      that one blob, which Azurite serves.
    - ``archive.tgz`` is mapped to ``azure-2024``, whose key the account no longer has (rotated): the
      bucket's copy is served through primary-2025 (fallback Azure -> S3).
    """
    from azure.core.credentials import AzureNamedKeyCredential  # noqa: PLC0415 - the demo's Azure part
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    from cas_admin.chainloop_layout import azure as chainloop_azure  # noqa: PLC0415

    key = azurite.accounts[DEMO_AZURE_ACCOUNT][0]
    service = BlobServiceClient(
        azurite.account_url(DEMO_AZURE_ACCOUNT), credential=AzureNamedKeyCredential(DEMO_AZURE_ACCOUNT, key)
    )
    container = service.get_container_client("cas")
    container.create_container()

    def azure_backend(name: str, account_key: str, created_at: str) -> Backend:
        return writer.backend(name, "AzureBlob", location, {"AccountKey": account_key}, created_at)

    current = azure_backend("azure-2025", key, "2025-03-01T09:00:00.000000Z")
    rotated = azure_backend("azure-2024", new_account_key(), "2024-05-01T09:00:00.000000Z")
    notes = b"Kept in an Azure container: a redirect is a read-only SAS for this one blob.\n"
    archive = b"archive.tgz: uploaded through azure-2024, copied to the bucket\n" * 30
    artifacts = []
    for name, data, backend, mapped_at in (
        ("azure-notes.txt", notes, current, "2025-04-01T10:00:00.000000Z"),
        ("archive.tgz", archive, rotated, "2024-06-01T10:00:00.000000Z"),
    ):
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        chainloop_azure.put_blob(container, digest, data, name)
        writer.mapping(digest, backend, mapped_at)
        artifacts.append(DemoArtifact(name, digest, len(data), backend.name, False, "Azure demo"))
    # archive.tgz's bytes are in the bucket too (copied there at the rotation), mapped only to Azure
    writer.put("archive.tgz", archive, new_s3, "", checksum=True, note="", map_it=False)
    return artifacts


def seed_registry(
    registry: Registry, location: str, old_s3: Backend, new_s3: Backend, writer: DemoWriter
) -> list[DemoArtifact]:
    """Fallback across providers, both ways, with a real registry.

    - ``chart.tgz`` was pushed through ``registry-ci``, whose password was changed since (the registry
      answers 401): the same bytes in the bucket are served through primary-2025.
    - ``sbom.json`` is mapped to the revoked primary-2024 and is not in the bucket: the org's fallback
      backend ``registry-ro`` (a working login) serves it; self-hosted, it has no credential-free URL,
      so mode=body.
    """
    ci_user, ro_user = RegistryUser("demo-ci", "ci-password-2024"), RegistryUser("demo-ro", "ro-token-2025")
    registry.set_password(ci_user, ci_user.password)
    registry.set_password(ro_user, ro_user.password)

    def oci_backend(name: str, user: RegistryUser, created_at: str, *, is_fallback: bool) -> Backend:
        # Chainloop's form of a registry secret (its Repo key is ignored: the row's location wins)
        value = {"Username": user.name, "Password": user.password, "Repo": location}
        return writer.backend(name, "OCI", location, value, created_at, is_fallback=is_fallback)

    ci = oci_backend(CI_REGISTRY_BACKEND, ci_user, "2024-04-01T09:00:00.000000Z", is_fallback=False)
    oci_backend(RO_REGISTRY_BACKEND, ro_user, "2025-01-20T09:00:00.000000Z", is_fallback=True)
    chart = b"chart.tgz: pushed through the registry, copied to the bucket\n" * 40
    sbom = b'{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}\n'
    pushed_chart = push_artifact(location, chart, "chart.tgz", ci_user.name, ci_user.password)
    pushed_sbom = push_artifact(location, sbom, "sbom.json", ro_user.name, ro_user.password)
    writer.mapping(pushed_chart.digest, ci, "2024-09-01T10:00:00.000000Z")
    writer.mapping(pushed_sbom.digest, old_s3, "2024-10-01T10:00:00.000000Z")
    # chart.tgz's bytes are in the bucket too (copied there at the rotation), mapped only to the registry
    writer.put("chart.tgz", chart, new_s3, "", checksum=True, note="", map_it=False)
    registry.set_password(ci_user, "ci-password-2025")  # the CI login was rotated in the registry
    return [
        DemoArtifact(
            "chart.tgz", pushed_chart.digest, len(chart), ci.name, False, "registry-ci refuses its login"
        ),
        DemoArtifact("sbom.json", pushed_sbom.digest, len(sbom), old_s3.name, False, "only in registry-ro"),
    ]


@dataclass(frozen=True)
class DemoWriter:
    """Where the demo is written: the control plane's tables and secrets, and the bucket."""

    ddb: Any
    secrets: Any
    env: dict[str, str]
    s3: Any

    def backend(
        self,
        name: str,
        provider: str,
        location: str,
        secret: dict[str, str],
        created_at: str,
        *,
        is_default: bool = False,
        is_fallback: bool = False,
    ) -> Backend:
        """A demo backend of ``DEMO_ORG``: its secret under the template's prefix, then its row."""
        secret_name = f"{SECRET_PREFIX}{DEMO_ORG}/{name}"
        self.secrets.create_secret(Name=secret_name, SecretString=json.dumps(secret))
        row = Backend(
            id=_backend_id(name),
            org_id=DEMO_ORG,
            name=name,
            provider=provider,
            location=location,
            secret_name=secret_name,
            created_at=created_at,
            is_default=is_default,
            is_fallback=is_fallback,
        )
        self.ddb.put_item(TableName=self.env["BACKENDS_TABLE"], Item=to_item(row.to_row()))
        return row

    def mapping(self, digest: str, backend: Backend, mapped_at: str) -> None:
        mapping = {
            "digest": digest,
            "org_backend": f"{DEMO_ORG}#{backend.id}",
            "org_id": DEMO_ORG,
            "backend_id": backend.id,
            "created_at": mapped_at,
        }
        self.ddb.put_item(TableName=self.env["MAPPINGS_TABLE"], Item=to_item(mapping))

    def put(
        self,
        name: str,
        data: bytes,
        backend: Backend,
        mapped_at: str,
        *,
        checksum: bool,
        note: str,
        map_it: bool = True,
    ) -> DemoArtifact:
        """An artifact in the bucket, mapped to ``backend`` unless ``map_it`` is False."""
        sha = hashlib.sha256(data)
        digest = f"sha256:{sha.hexdigest()}"
        # As Chainloop writes it; ``checksum`` adds the full-object SHA-256 that cas-admin writes too
        chainloop_s3.put_object(
            self.s3,
            BUCKET,
            digest,
            data,
            name,
            content_type="text/plain; charset=utf-8" if name.endswith(".txt") else "application/octet-stream",
            sha256_checksum=base64.b64encode(sha.digest()).decode() if checksum else None,
        )
        if map_it:
            self.mapping(digest, backend, mapped_at)
        return DemoArtifact(name, digest, len(data), backend.name, checksum, note)


def _backend_id(name: str) -> str:
    """Stable ids, so that the demo reads the same on every run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cas-local:{DEMO_ORG}:{name}"))
