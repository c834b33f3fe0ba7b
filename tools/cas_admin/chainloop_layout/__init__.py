"""Objects written exactly as Chainloop's CAS writes them: the one writer behind ``cas-admin artifact
put``, ``make run``'s demo and the tests' fixtures.

A writer shaped after our own reader proves nothing, so every rule here is taken from Chainloop's
source (``chainloop-dev/chainloop``), cited in each provider's module:

* ``s3``: ``pkg/blobmanager/s3/backend.go``;
* ``azure``: ``pkg/blobmanager/azureblob/backend.go``;
* ``oci``: ``pkg/blobmanager/oci/backend.go``.
"""

from cas_download.filenames import encode_filename

# pkg/blobmanager/backend.go: ``AuthorAnnotation``. Chainloop's Describe refuses an object without it.
AUTHOR = "chainloop.dev"


def object_name(digest: str, key_prefix: str = "") -> str:
    """``resourceName``: ``sha256:<hex>``, after the row's ``key_prefix`` (a prefix Chainloop never
    writes, but the spec allows)."""
    return f"{key_prefix}{digest}"


def author_and_filename(author_key: str, filename_key: str, filename: str | None) -> dict[str, str]:
    """The metadata Chainloop writes under its provider's key names; a non-ASCII filename
    RFC 2047-encoded (metadata is ASCII). Chainloop always names a file; ``None`` leaves the name out
    (an object another tool wrote)."""
    named = {filename_key: encode_filename(filename)} if filename is not None else {}
    return {author_key: AUTHOR, **named}
