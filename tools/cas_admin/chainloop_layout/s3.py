"""S3 objects as Chainloop's CAS writes them (``pkg/blobmanager/s3/backend.go``, ``Upload``):

* key ``sha256:<hex>`` (``resourceName``), after the row's ``key_prefix``, a prefix Chainloop never
  writes but the spec allows;
* user metadata ``author: chainloop.dev`` and ``filename``: Chainloop's ``Describe`` refuses an
  object without the author, so a later upload of the same digest through Chainloop fails on it;
* written by the SDK's upload manager (``feature/s3/manager``): one ``PutObject`` below its part
  size (``DefaultUploadPartSize``, 5 MiB), a multipart upload in 5 MiB parts from there on;
* **no SHA-256 checksum**: the line that would set ``ChecksumSHA256`` is commented out, so S3's
  full-object checksum never proves a Chainloop object. The SDK's default checksum (CRC32, since
  aws-sdk-go-v2 s3 v1.73) is still sent; a boto3 client with its default configuration does the same.

``sha256_checksum`` writes the one thing Chainloop does not: a full-object SHA-256 checksum on a
single ``PutObject``. Chainloop's ``Describe`` compares it when present, so such an object is still
one Chainloop reads; ``cas-admin`` writes it so that the service proves the object with one HEAD.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Any

from cas_admin.chainloop_layout import author_and_filename, object_name

PART_SIZE = 5 * 1024 * 1024  # manager.DefaultUploadPartSize (= MinUploadPartSize)
AUTHOR_KEY = "author"  # annotationNameAuthor
FILENAME_KEY = "filename"  # annotationNameFilename


@dataclass(frozen=True)
class S3Written:
    bucket: str
    key: str
    etag: str
    version_id: str | None
    multipart: bool
    checksum_sha256: str | None


object_key = object_name


def metadata(filename: str | None) -> dict[str, str]:
    return author_and_filename(AUTHOR_KEY, FILENAME_KEY, filename)


def put_object(
    client: Any,
    bucket: str,
    digest: str,
    body: bytes | IO[bytes],
    filename: str | None,
    *,
    key_prefix: str = "",
    content_type: str | None = None,
    sha256_checksum: str | None = None,
    part_size: int = PART_SIZE,
) -> S3Written:
    """Write ``body`` as ``digest``'s object in Chainloop's layout, streaming it in parts of
    ``part_size`` (memory stays at one part whatever the size)."""
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    args: dict[str, Any] = {
        "Bucket": bucket,
        "Key": object_key(digest, key_prefix),
        "Metadata": metadata(filename),
    }
    if content_type is not None:
        args["ContentType"] = content_type
    if sha256_checksum is not None:
        response = client.put_object(
            Body=stream, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha256_checksum, **args
        )
        return _written(args, response, multipart=False)
    first = stream.read(part_size)
    if len(first) < part_size:  # the manager's single-part path: the body ended within one part
        return _written(args, client.put_object(Body=first, **args), multipart=False)
    upload_id = client.create_multipart_upload(**args)["UploadId"]
    parts: list[dict[str, Any]] = []
    try:
        chunk = first
        while chunk:
            number = len(parts) + 1
            uploaded = client.upload_part(
                Bucket=bucket, Key=args["Key"], UploadId=upload_id, PartNumber=number, Body=chunk
            )
            parts.append({"PartNumber": number, "ETag": uploaded["ETag"]} | _part_checksums(uploaded))
            chunk = stream.read(part_size)
        response = client.complete_multipart_upload(
            Bucket=bucket, Key=args["Key"], UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=bucket, Key=args["Key"], UploadId=upload_id)
        raise
    return _written(args, response, multipart=True)


def _part_checksums(uploaded: dict[str, Any]) -> dict[str, Any]:
    """The SDK's default checksum of a part, which completing the upload must name again."""
    return {k: v for k, v in uploaded.items() if k.startswith("Checksum") and k != "ChecksumType"}


def _written(args: dict[str, Any], response: dict[str, Any], *, multipart: bool) -> S3Written:
    version = response.get("VersionId")
    return S3Written(
        bucket=args["Bucket"],
        key=args["Key"],
        etag=str(response["ETag"]),
        version_id=None if version in (None, "null") else str(version),
        multipart=multipart,
        checksum_sha256=response.get("ChecksumSHA256"),
    )
