"""``World``: build test scenarios as real state in the moto servers.

Every name a World makes is unique (uuid-suffixed), so tests share one pair of servers and one pair
of tables without resets. Storage setup (buckets, objects, IAM users and keys) uses the storage
server's admin key; rows and secrets go to the control server.

    org = world.org()
    old = world.backend(org, is_default=False)
    new = world.backend(org, bucket=old.bucket, is_default=True)
    digest = world.put(old, b"bytes", filename="report.pdf")
    world.map(digest, org, old)
    world.revoke(old)  # its key is deleted in IAM: S3 answers InvalidAccessKeyId
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cas_admin.chainloop_layout import s3 as chainloop_s3
from cas_download.data.items import to_item, to_value
from cas_download.filenames import encode_filename
from cas_local.presign import verify_presigned

from .hygiene import register as register_secret
from .hygiene import register_secret_string
from .moto_servers import ACCOUNT_ID, REGION, SETUP_CONFIG, AwsServers

SecretMode = Literal["valid", "missing", "malformed", "no_secret_key"]
SecretSpec = SecretMode | Mapping[str, Any] | Callable[[str, str], Any] | str
"""How ``World.backend`` writes the backend's secret:

* ``"valid"``: ``{"AccessKeyID": ..., "SecretAccessKey": ...}`` with the user's real key;
* ``"missing"``: the row names a secret that does not exist;
* ``"malformed"``: the SecretString is not JSON;
* ``"no_secret_key"``: JSON with ``AccessKeyID`` only;
* a mapping: dumped as JSON after ``str.format(access_key_id=..., secret_access_key=...)`` of its
  string values, e.g. ``{"accessKeyId": "{access_key_id}", "secret_access_key": "{secret_access_key}"}``;
* a callable ``(access_key_id, secret_access_key) -> object``: its result, JSON-dumped unless a str;
* any other str: stored verbatim as the SecretString.
"""

MIN_PART_SIZE = 5 * 1024 * 1024
_counter = itertools.count()


def sha256_digest(data: bytes) -> str:
    """``sha256:<64 lowercase hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64_sha256(data: bytes) -> str:
    """The S3 ``ChecksumSHA256`` form (base64 of the raw digest) of ``data``."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def iso(moment: dt.datetime) -> str:
    """ISO 8601 UTC with a ``Z``, the form the control plane writes."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}{next(_counter)}"


class Artifact(NamedTuple):
    """What most scenarios start from: an org, its default backend, and the digest stored there."""

    org: str
    backend: BackendRef
    digest: str


class Rotation(NamedTuple):
    """The rotation story: the org, its revoked old backend, its new default, the digest mapped to old."""

    org: str
    old: BackendRef
    new: BackendRef
    digest: str


class SideBySide(NamedTuple):
    """Two backends of one org on one bucket holding the digest's bytes (``World.side_by_side``)."""

    org: str
    first: BackendRef
    second: BackendRef
    digest: str


@dataclass(kw_only=True)
class BackendRef:
    """A backend the World created: not a Backends row (that is ``cas_download.domain.Backend``) but
    the test's handle on what stands behind one: its bucket, IAM user and keys (empty for a provider
    other than S3). ``access_key_id``/``secret_access_key`` are the user's current key (updated by
    ``rotate_secret_in_place``); ``revoked`` is True after ``World.revoke``."""

    id: str
    name: str
    org: str
    location: str
    secret_name: str
    secret_arn: str | None
    bucket: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    user_name: str = ""
    key_prefix: str = ""
    provider: str = "AWS-S3"
    revoked: bool = False
    old_access_key_ids: list[str] = field(default_factory=list)

    @property
    def credentials(self) -> tuple[str, str]:
        return self.access_key_id, self.secret_access_key

    def key_for(self, digest: str) -> str:
        """The object key of ``digest`` in this backend."""
        return f"{self.key_prefix}{digest}"


@dataclass(frozen=True)
class Tables:
    backends: str
    mappings: str


@dataclass(frozen=True)
class PutResult:
    bucket: str
    key: str
    digest: str
    version_id: str | None
    etag: str
    checksum_sha256: str | None


@dataclass
class PresignedResponse:
    """What fetching a presigned URL gave (see ``World.fetch_presigned``)."""

    status: int
    headers: dict[str, str]
    body: bytes
    error_code: str | None
    access_key_id: str
    bucket: str
    key: str
    version_id: str | None
    expires_at: dt.datetime
    query: dict[str, str]


@dataclass
class SharedBucket:
    """A new org whose backends stand on one bucket that holds the digest's bytes (``World.shared_bucket``):
    several backends that could each serve them, mapped in the order a story needs."""

    world: World
    org: str
    bucket: str
    digest: str

    def backend(self, name: str, **row: Any) -> BackendRef:
        """A backend of the org on the shared bucket (``row``: :meth:`World.backend`'s keywords)."""
        return self.world.backend(self.org, name, bucket=self.bucket, **row)

    def map(self, *backends: BackendRef) -> None:
        """Map the digest to ``backends``, oldest mapping first: a minute apart, the last one now."""
        now = dt.datetime.now(dt.UTC)
        for position, backend in enumerate(backends, start=1):
            age = dt.timedelta(minutes=len(backends) - position)
            self.world.map(self.digest, self.org, backend, created_at=now - age)


class World:
    """Scenario builder over the running servers. One per test (the ``world`` fixture)."""

    def __init__(self, servers: AwsServers, tables: Tables) -> None:
        self.servers = servers
        self.tables = tables
        self.s3 = servers.cached_client("storage", "s3")
        # No flexible checksum unless asked: ``checksum=False`` must store an object with no checksum
        # (botocore >= 1.36 otherwise adds CRC32 to every PutObject).
        self.s3_plain = servers.cached_client("storage", "s3", "plain")
        self.iam = servers.cached_client("storage", "iam")
        self.dynamodb = servers.cached_client("control", "dynamodb")
        self.secrets = servers.cached_client("control", "secretsmanager")
        self.backends: dict[str, BackendRef] = {}
        self.puts: dict[tuple[str, str], PutResult] = {}
        # every access key this World issued: id -> (secret, user)
        self._keys: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ names and buckets

    def org(self) -> str:
        """A new unique org id."""
        return _unique("org")

    def bucket(self, *, versioned: bool = False) -> str:
        """A new bucket (admin key), versioning enabled when asked."""
        name = _unique("cas")
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def storage_location(self, bucket: str) -> str:
        """A ``location`` naming the storage server explicitly (the S3-compatible, path-style form)."""
        return f"{self.servers.storage_url}/{bucket}"

    def black_hole_location(self, bucket: str = "stuck-bucket") -> str:
        """A ``location`` whose endpoint accepts connections and never answers."""
        return self.servers.black_hole.bucket_url(bucket)

    # ------------------------------------------------------------------ backends

    def backend(
        self,
        org: str,
        name: str | None = None,
        bucket: str | None = None,
        *,
        is_default: bool = False,
        is_fallback: bool = False,
        status: Literal["OK", "Invalid"] | str | None = None,
        validation_error: str | None = None,
        deleted: bool = False,
        provider: str = "AWS-S3",
        key_prefix: str = "",
        location: str | None = None,
        region: str | None = None,
        secret: SecretSpec = "valid",
        secret_by_arn: bool = False,
        read_buckets: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
        created_at: dt.datetime | str | None = None,
        extra: Mapping[str, Any] | None = None,
        write_row: bool = True,
    ) -> BackendRef:
        """Create an IAM user with a key and a read policy, its secret, and the backend row.

        ``bucket``: a new one when None. ``read_buckets``: the buckets its policy allows (default:
        just ``bucket``); ``actions`` overrides the allowed actions (default GetObject,
        GetObjectVersion, ListBucket). ``location`` overrides the row's location (default: the bucket
        name, so ``AWS_ENDPOINT_URL_S3`` applies). ``status`` None leaves ``validation_status`` out.
        ``extra``: more row attributes (plain Python values). ``write_row=False``: storage, key and
        secret only, for a row another system writes (the Chainloop sync).
        """
        bucket = bucket or self.bucket()
        name = name or _unique("backend")
        backend_id = str(uuid.uuid4())
        user = _unique("cas-user")
        self.iam.create_user(UserName=user)
        buckets = list(read_buckets) if read_buckets is not None else [bucket]
        self.iam.put_user_policy(
            UserName=user,
            PolicyName="cas-read",
            PolicyDocument=json.dumps(read_policy(buckets, actions)),
        )
        key_id, key_secret = self._new_key(user)

        secret_name = _unique("cas/backend")
        secret_arn = self._write_secret(secret_name, secret, key_id, key_secret)
        if secret_by_arn and secret_arn is None:
            raise ValueError("secret_by_arn needs a secret that exists")

        ref = BackendRef(
            id=backend_id,
            name=name,
            org=org,
            bucket=bucket,
            location=location or bucket,
            secret_name=(secret_arn if secret_by_arn and secret_arn else secret_name),
            secret_arn=secret_arn,
            access_key_id=key_id,
            secret_access_key=key_secret,
            user_name=user,
            key_prefix=key_prefix,
            provider=provider,
        )
        row = _row_of(
            ref, is_default=is_default, is_fallback=is_fallback, status=status, created_at=created_at
        )
        if region is not None:
            row["region"] = region
        if validation_error is not None:
            row["validation_error"] = validation_error
        if deleted:
            row["deleted_at"] = iso(dt.datetime.now(dt.UTC))
        row.update(extra or {})
        if write_row:
            self.put_backend_row(row)
        self.backends[backend_id] = ref
        return ref

    def oci_backend(
        self,
        org: str,
        name: str,
        location: str,
        user: Any | None,
        *,
        secret: Mapping[str, Any] | None = None,
        **row: Any,
    ) -> BackendRef:
        """An ``OCI`` backend row and its secret (Chainloop's form: ``Username``, ``Password``,
        ``Repo``); ``user`` None writes ``{}`` (anonymous pull); ``secret`` overrides the value.
        ``row``: as :meth:`provider_backend`."""
        if secret is None:
            secret = {"Username": user.name, "Password": user.password, "Repo": location} if user else {}
        ref = self.provider_backend(org, name, "OCI", location, secret, **row)
        ref.user_name = user.name if user else ""
        return ref

    def azure_backend(
        self, org: str, name: str, location: str, secret: Mapping[str, Any], **row: Any
    ) -> BackendRef:
        """An ``AzureBlob`` backend row and its secret (``AccountKey``, or a service principal)."""
        return self.provider_backend(org, name, "AzureBlob", location, secret, **row)

    def provider_backend(
        self,
        org: str,
        name: str,
        provider: str,
        location: str,
        secret: Mapping[str, Any],
        *,
        is_default: bool = False,
        is_fallback: bool = False,
        key_prefix: str = "",
        status: str | None = None,
        created_at: str | None = None,
    ) -> BackendRef:
        """A backend row of a provider other than S3 (no IAM user) and its secret, written as JSON."""
        backend_id = str(uuid.uuid4())
        secret_name = _unique(f"cas/{provider.lower()}")
        value = json.dumps(secret)
        register_secret_string(value)
        arn = str(self.secrets.create_secret(Name=secret_name, SecretString=value)["ARN"])
        ref = BackendRef(
            id=backend_id,
            name=name,
            org=org,
            location=location,
            secret_name=secret_name,
            secret_arn=arn,
            key_prefix=key_prefix,
            provider=provider,
        )
        self.put_backend_row(
            _row_of(ref, is_default=is_default, is_fallback=is_fallback, status=status, created_at=created_at)
        )
        self.backends[backend_id] = ref
        return ref

    def put_backend_row(self, row: Mapping[str, Any]) -> None:
        """Write a raw Backends row (plain Python values; None values are left out)."""
        self.dynamodb.put_item(TableName=self.tables.backends, Item=to_item(row))

    def update_backend(self, backend: BackendRef, **attrs: Any) -> None:
        """Set (or, with None, remove) attributes of a backend row, e.g. ``validation_status="Invalid"``,
        ``deleted_at=iso(...)``, ``is_default=False``."""
        sets = {k: v for k, v in attrs.items() if v is not None}
        removes = [k for k, v in attrs.items() if v is None]
        names = {f"#a{i}": k for i, k in enumerate(attrs)}
        by_attr = {k: n for n, k in names.items()}
        parts = []
        if sets:
            parts.append("SET " + ", ".join(f"{by_attr[k]} = :v{i}" for i, k in enumerate(sets)))
        if removes:
            parts.append("REMOVE " + ", ".join(by_attr[k] for k in removes))
        kwargs: dict[str, Any] = {
            "TableName": self.tables.backends,
            "Key": {"id": {"S": backend.id}},
            "UpdateExpression": " ".join(parts),
            "ExpressionAttributeNames": names,
        }
        if sets:
            kwargs["ExpressionAttributeValues"] = {f":v{i}": to_value(v) for i, v in enumerate(sets.values())}
        self.dynamodb.update_item(**kwargs)

    def delete_backend_row(self, backend: BackendRef) -> None:
        """Remove the row entirely (a mapping then points at a missing backend)."""
        self.dynamodb.delete_item(TableName=self.tables.backends, Key={"id": {"S": backend.id}})

    def revoke(self, backend: BackendRef) -> None:
        """Delete the backend's access key in IAM: S3 then answers ``InvalidAccessKeyId``."""
        self.iam.delete_access_key(UserName=backend.user_name, AccessKeyId=backend.access_key_id)
        backend.revoked = True

    def rotate_secret_in_place(self, backend: BackendRef) -> BackendRef:
        """New key for the same user, written into the same secret; the old key is deleted."""
        old = backend.access_key_id
        key_id, key_secret = self._new_key(backend.user_name)
        self.secrets.put_secret_value(
            SecretId=backend.secret_arn or backend.secret_name,
            SecretString=json.dumps({"AccessKeyID": key_id, "SecretAccessKey": key_secret}),
        )
        self.iam.delete_access_key(UserName=backend.user_name, AccessKeyId=old)
        backend.old_access_key_ids.append(old)
        backend.access_key_id, backend.secret_access_key = key_id, key_secret
        backend.revoked = False
        return backend

    def set_secret(self, backend: BackendRef, secret: SecretSpec) -> None:
        """Overwrite (or with "missing", delete) the backend's secret value."""
        sid = backend.secret_arn or backend.secret_name
        if secret == "missing":
            self.secrets.delete_secret(SecretId=sid, ForceDeleteWithoutRecovery=True)
            return
        value = _secret_string(secret, backend.access_key_id, backend.secret_access_key)
        register_secret_string(value)  # secret hygiene: its credential values must never be logged
        self.secrets.put_secret_value(SecretId=sid, SecretString=value)

    def _new_key(self, user: str) -> tuple[str, str]:
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        key_id, key_secret = str(key["AccessKeyId"]), str(key["SecretAccessKey"])
        self._keys[key_id] = (key_secret, user)
        register_secret(key_id, "access_key_id")  # secret hygiene (tests/support/hygiene.py)
        register_secret(key_secret, "secret_access_key")
        return key_id, key_secret

    def _write_secret(self, name: str, secret: SecretSpec, key_id: str, key_secret: str) -> str | None:
        if secret == "missing":
            return None
        value = _secret_string(secret, key_id, key_secret)
        register_secret_string(value)  # secret hygiene: its credential values must never be logged
        return str(self.secrets.create_secret(Name=name, SecretString=value)["ARN"])

    # ------------------------------------------------------------------ objects and mappings

    def put(
        self,
        target: BackendRef | str,
        data: bytes,
        *,
        filename: str | None = None,
        checksum: bool = False,
        multipart: bool = False,
        part_size: int = MIN_PART_SIZE,
        content_type: str | None = None,
        key_prefix: str | None = None,
        metadata: Mapping[str, str] | None = None,
        under_digest: str | None = None,
    ) -> str:
        """Upload ``data`` under ``{prefix}sha256:<hex>`` and return the digest.

        ``target``: a backend (its bucket and, unless ``key_prefix`` is given, its prefix) or a bucket
        name. By default the object is written as Chainloop writes it (``cas_admin.chainloop_layout.s3``:
        ``author`` and ``filename`` metadata, no SHA-256 checksum, multipart from 5 MiB on).
        ``checksum``: instead, an object with an S3 SHA-256 checksum (full-object for a single PUT,
        COMPOSITE ``...-N`` with ``multipart``), the case S3 itself proves. ``filename`` goes to the
        ``filename`` metadata, RFC 2047-encoded when not ASCII. ``under_digest``: the key's digest when
        it is not ``data``'s own (use :meth:`put_corrupt`, which checks they differ).
        """
        digest = under_digest or sha256_digest(data)
        bucket, key = self._locate(target, digest, key_prefix)
        if not (checksum or metadata or multipart):
            written = chainloop_s3.put_object(
                self.s3,
                bucket,
                digest,
                data,
                filename,
                key_prefix=key.removesuffix(digest),
                content_type=content_type,
                part_size=part_size,
            )
            self.puts[(bucket, key)] = PutResult(
                bucket, key, digest, written.version_id, written.etag, written.checksum_sha256
            )
            return digest
        client = self.s3 if checksum else self.s3_plain
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        meta = dict(metadata or {})
        if filename is not None:
            meta["filename"] = encode_filename(filename)
        if meta:
            args["Metadata"] = meta
        if content_type is not None:
            args["ContentType"] = content_type
        algo = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        if not multipart:
            resp = client.put_object(Body=data, **args, **algo)
        else:
            upload_id = client.create_multipart_upload(**args, **algo)["UploadId"]
            parts = []
            chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
            for number, chunk in enumerate(chunks, start=1):
                part = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk, **algo
                )
                entry = {"PartNumber": number, "ETag": part["ETag"]}
                if checksum:
                    entry["ChecksumSHA256"] = part["ChecksumSHA256"]
                parts.append(entry)
            resp = client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        version = resp.get("VersionId")
        self.puts[(bucket, key)] = PutResult(
            bucket=bucket,
            key=key,
            digest=digest,
            version_id=None if version in (None, "null") else str(version),
            etag=str(resp["ETag"]),
            checksum_sha256=resp.get("ChecksumSHA256"),
        )
        return digest

    def artifact(
        self, data: bytes, name: str | None = None, *, filename: str | None = None, mapped: bool = True
    ) -> Artifact:
        """A new org whose default backend (``name``) holds ``data`` as Chainloop writes it, mapped
        there unless told not (a Chainloop link names its backend itself)."""
        org = self.org()
        backend = self.backend(org, name, is_default=True)
        digest = self.put(backend, data, filename=filename)
        if mapped:
            self.map(digest, org, backend)
        return Artifact(org, backend, digest)

    def rotated(self, data: bytes) -> Rotation:
        """Chainloop's rotation: a new org's artifact mapped to its old backend, whose access key is then
        deleted (S3 itself answers ``InvalidAccessKeyId``), and a new default on the same bucket."""
        org, old, new, digest = self.side_by_side(data, "old", "new", created_at="2025-01-01T00:00:00Z")
        self.revoke(old)
        return Rotation(org, old, new, digest)

    def shared_bucket(self, data: bytes) -> SharedBucket:
        """A new org and a new bucket holding ``data``, on which its backends are then made (see
        :class:`SharedBucket`)."""
        bucket = self.bucket()
        return SharedBucket(self, self.org(), bucket, self.put(bucket, data))

    def side_by_side(
        self,
        data: bytes,
        first: str,
        second: str = "default",
        *,
        mapped: Literal["first", "second"] = "first",
        second_is_default: bool = True,
        **first_row: Any,
    ) -> SideBySide:
        """Two backends of a new org on one bucket that holds ``data``: ``first``, made with
        ``first_row`` (:meth:`backend`'s keywords, e.g. ``status="Invalid"``, ``provider="GCS"``,
        ``deleted=True``), then ``second``, the org default unless told not; the digest mapped to one.
        The shape of every story where another backend could serve the same bytes (rotation, a backend
        marked Invalid, deleted or of an unsupported provider)."""
        shared = self.shared_bucket(data)
        one = shared.backend(first, **first_row)
        other = shared.backend(second, is_default=second_is_default)
        shared.map(one if mapped == "first" else other)
        return SideBySide(shared.org, one, other, shared.digest)

    def tampered_artifact(
        self, data: bytes, stored: bytes, name: str | None = None, *, checksum: bool = False
    ) -> Artifact:
        """A new org whose default backend (``name``) holds other bytes, ``stored``, under ``data``'s
        digest, mapped there: what a proof must refuse (``put_corrupt``)."""
        org = self.org()
        backend = self.backend(org, name, is_default=True)
        digest = sha256_digest(data)
        self.put_corrupt(backend, digest, stored, checksum=checksum)
        self.map(digest, org, backend)
        return Artifact(org, backend, digest)

    def put_corrupt(
        self,
        target: BackendRef | str,
        digest: str,
        data: bytes,
        *,
        checksum: bool = False,
        filename: str | None = None,
        key_prefix: str | None = None,
    ) -> PutResult:
        """Store bytes that do NOT hash to ``digest`` under ``digest``'s key, as Chainloop would have
        written them. With ``checksum`` S3 holds their (true, hence mismatching) SHA-256; without,
        only hashing the body finds out."""
        if sha256_digest(data) == digest:
            raise ValueError("put_corrupt needs bytes that differ from the digest's")
        self.put(
            target, data, filename=filename, checksum=checksum, key_prefix=key_prefix, under_digest=digest
        )
        return self.puts[self._locate(target, digest, key_prefix)]

    def delete_object(self, target: BackendRef | str, digest: str, *, key_prefix: str | None = None) -> None:
        bucket, key = self._locate(target, digest, key_prefix)
        self.s3.delete_object(Bucket=bucket, Key=key)

    def head(self, target: BackendRef | str, digest: str, *, key_prefix: str | None = None) -> dict[str, Any]:
        """Admin HeadObject (ChecksumMode ENABLED) of the digest's object."""
        bucket, key = self._locate(target, digest, key_prefix)
        return dict(self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))

    def map(
        self,
        digest: str,
        org: str,
        backend: BackendRef | str,
        created_at: dt.datetime | str | None = None,
        *,
        workflow_run_id: str | None = None,
    ) -> None:
        """Write a mapping row ``(digest, "{org}#{backend_id}")``. ``backend`` may be a bare id (e.g.
        of a backend that never existed). ``created_at`` orders mappings (default now)."""
        backend_id = backend.id if isinstance(backend, BackendRef) else backend
        row: dict[str, Any] = {
            "digest": digest,
            "org_backend": f"{org}#{backend_id}",
            "org_id": org,
            "backend_id": backend_id,
            "created_at": _as_iso(created_at) or iso(dt.datetime.now(dt.UTC)),
            "workflow_run_id": workflow_run_id,
        }
        self.dynamodb.put_item(TableName=self.tables.mappings, Item=to_item(row))

    def _locate(self, target: BackendRef | str, digest: str, key_prefix: str | None) -> tuple[str, str]:
        if isinstance(target, BackendRef):
            prefix = target.key_prefix if key_prefix is None else key_prefix
            return target.bucket, f"{prefix}{digest}"
        return target, f"{key_prefix or ''}{digest}"

    # ------------------------------------------------------------------ app settings

    def settings_env(self, **overrides: object) -> dict[str, str]:
        """Environment for the app: ``BACKENDS_TABLE``, ``MAPPINGS_TABLE`` plus ``overrides``
        (values str()-ed; a None override removes the name)."""
        env = {"BACKENDS_TABLE": self.tables.backends, "MAPPINGS_TABLE": self.tables.mappings}
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env

    # ------------------------------------------------------------------ presigned URLs

    def fetch_presigned(self, url: str, *, now: dt.datetime | None = None) -> PresignedResponse:
        """Fetch a SigV4 presigned GET URL the way S3 would serve it.

        moto with IAM auth on cannot serve presigned URLs (it answers 500: it reads only the
        ``Authorization`` header), so this checks the URL itself: SigV4 query signature recomputed
        with the secret of the key it names (any key this World issued), expiry, then performs the
        GET *with that same key*, so the storage server still enforces revocation, the key's policy,
        the object's existence and the ``versionId``. ``response-*`` overrides come back as headers.
        Errors come back as S3 would: 403 ``SignatureDoesNotMatch`` / ``AccessDenied`` (expired) /
        ``InvalidAccessKeyId``, or the storage server's own answer.
        """
        parts = urllib.parse.urlsplit(url)
        for name, kind in (("X-Amz-Signature", "url_signature"), ("X-Amz-Security-Token", "session_token")):
            register_secret(urllib.parse.parse_qs(parts.query).get(name, [""])[0], kind)  # secret hygiene
        check = verify_presigned(url, lambda key_id: self._keys.get(key_id, (None, ""))[0], now=now)
        query, key_id, bucket, key = check.query, check.access_key_id, check.bucket, check.key
        expires_at = check.expires_at

        def answer(
            status: int,
            error_code: str | None,
            headers: Mapping[str, str] | None = None,
            body: bytes = b"",
            version_id: str | None = query.get("versionId"),
        ) -> PresignedResponse:
            """What the URL gave: the request's key, bucket and expiry with this answer (headers
            lower-cased)."""
            return PresignedResponse(
                status=status,
                headers={k.lower(): v for k, v in (headers or {}).items()},
                body=body,
                error_code=error_code,
                access_key_id=key_id,
                bucket=bucket,
                key=key,
                version_id=version_id,
                expires_at=expires_at,
                query=query,
            )

        if not check.ok or check.secret_access_key is None:
            return answer(check.status, check.error_code or "AccessDenied")
        secret = check.secret_access_key

        client = _client_at(f"{parts.scheme}://{parts.netloc}", key_id, secret, query)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if "versionId" in query:
            kwargs["VersionId"] = query["versionId"]
        for param, arg in _RESPONSE_OVERRIDES.items():
            if param in query:
                kwargs[arg] = query[param]
        try:
            resp = client.get_object(**kwargs)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            code = str(exc.response["Error"].get("Code"))
            return answer(int(meta.get("HTTPStatusCode", 500)), code, meta.get("HTTPHeaders"))
        meta = resp["ResponseMetadata"]
        return answer(
            int(meta["HTTPStatusCode"]), None, meta["HTTPHeaders"], resp["Body"].read(), resp.get("VersionId")
        )


_RESPONSE_OVERRIDES = {
    "response-content-disposition": "ResponseContentDisposition",
    "response-content-type": "ResponseContentType",
    "response-cache-control": "ResponseCacheControl",
    "response-content-encoding": "ResponseContentEncoding",
    "response-content-language": "ResponseContentLanguage",
    "response-expires": "ResponseExpires",
}


def _client_at(endpoint: str, key_id: str, secret: str, query: Mapping[str, str]) -> Any:
    """An S3 client signing with the presigned URL's key, at the URL's endpoint."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=query.get("X-Amz-Credential", "///").split("/")[2] or REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=query.get("X-Amz-Security-Token"),
        config=SETUP_CONFIG.merge(Config(connect_timeout=2, read_timeout=5)),
    )


# ---------------------------------------------------------------------------------------------------
# helpers


def read_policy(buckets: Iterable[str], actions: Iterable[str] | None = None) -> dict[str, Any]:
    """IAM policy allowing reads of ``buckets`` (objects and listing)."""
    buckets = list(buckets)
    acts = list(actions) if actions is not None else ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
    resources = [f"arn:aws:s3:::{b}" for b in buckets] + [f"arn:aws:s3:::{b}/*" for b in buckets]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": acts, "Resource": resources}],
    }


def _row_of(
    ref: BackendRef,
    *,
    is_default: bool,
    is_fallback: bool,
    status: str | None,
    created_at: dt.datetime | str | None,
) -> dict[str, Any]:
    """The Backends row standing for ``ref`` (validated now when it has a ``status``; created now
    unless told when)."""
    row: dict[str, Any] = {
        "id": ref.id,
        "org_id": ref.org,
        "name": ref.name,
        "provider": ref.provider,
        "location": ref.location,
        "secret_name": ref.secret_name,
        "key_prefix": ref.key_prefix,
        "is_default": is_default,
        "is_fallback": is_fallback,
        "created_at": _as_iso(created_at) or iso(dt.datetime.now(dt.UTC)),
    }
    if status is not None:
        row["validation_status"] = status
        row["validated_at"] = iso(dt.datetime.now(dt.UTC))
    return row


def _as_iso(value: dt.datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return iso(value)


def _secret_string(secret: SecretSpec, key_id: str, key_secret: str) -> str:
    if secret == "valid":
        return json.dumps({"AccessKeyID": key_id, "SecretAccessKey": key_secret})
    if secret == "malformed":
        return "AccessKeyID=" + key_id + " (this is not JSON)"
    if secret == "no_secret_key":
        return json.dumps({"AccessKeyID": key_id})
    if isinstance(secret, str):
        return secret
    if callable(secret):
        value = secret(key_id, key_secret)
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(
        {
            k: v.format(access_key_id=key_id, secret_access_key=key_secret) if isinstance(v, str) else v
            for k, v in secret.items()
        }
    )


__all__ = [
    "ACCOUNT_ID",
    "BackendRef",
    "PresignedResponse",
    "PutResult",
    "SecretSpec",
    "SharedBucket",
    "SideBySide",
    "Tables",
    "World",
    "b64_sha256",
    "iso",
    "read_policy",
    "sha256_digest",
]
