"""Azure blobs as Chainloop's CAS writes them (``pkg/blobmanager/azureblob/backend.go``, ``Upload``):

* blob ``sha256:<hex>`` (``resourceName``) in the location's container, after the row's
  ``key_prefix`` (which Chainloop never writes, but the spec allows);
* metadata ``Author: chainloop.dev`` and ``Filename`` (``annotationNameAuthor``,
  ``annotationNameFilename``): Chainloop's ``Describe`` refuses a blob without the author;
* written with the SDK's ``UploadStream``: staged blocks of its default 1 MiB, one at a time, then
  one block list, so the blob has no Content-MD5, whatever its size.
"""

from __future__ import annotations

import base64
import io
from typing import IO, Any

from cas_admin.chainloop_layout import author_and_filename, object_name

BLOCK_SIZE = 1024 * 1024  # azblob UploadStreamOptions.BlockSize's default
AUTHOR_KEY = "Author"
FILENAME_KEY = "Filename"


blob_name = object_name


def metadata(filename: str | None) -> dict[str, str]:
    return author_and_filename(AUTHOR_KEY, FILENAME_KEY, filename)


def put_blob(
    container: Any,
    digest: str,
    body: bytes | IO[bytes],
    filename: str | None,
    *,
    key_prefix: str = "",
    content_type: str | None = None,
    block_size: int = BLOCK_SIZE,
) -> str:
    """Write ``body`` as ``digest``'s blob through ``container`` (a ``ContainerClient``), block by
    block; returns the blob's ETag."""
    from azure.storage.blob import BlobBlock, ContentSettings  # noqa: PLC0415 - Azure only

    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    blob = container.get_blob_client(blob_name(digest, key_prefix))
    blocks: list[BlobBlock] = []
    while chunk := stream.read(block_size):
        block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
        blob.stage_block(block_id, chunk)
        blocks.append(BlobBlock(block_id=block_id))
    settings = ContentSettings(content_type=content_type) if content_type else None
    committed = blob.commit_block_list(blocks, metadata=metadata(filename), content_settings=settings)
    return str(committed["etag"])
