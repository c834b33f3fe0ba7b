"""Objects written exactly as Chainloop's CAS writes them: the one writer behind ``cas-admin artifact
put``, ``make run``'s demo and the tests' fixtures.

A writer shaped after our own reader proves nothing, so every rule here is taken from Chainloop's
source (``chainloop-dev/chainloop``), cited in each provider's module:

* ``s3``: ``pkg/blobmanager/s3/backend.go``;
* ``azure``: ``pkg/blobmanager/azureblob/backend.go``;
* ``oci``: ``pkg/blobmanager/oci/backend.go``.
"""

# pkg/blobmanager/backend.go: ``AuthorAnnotation``. Chainloop's Describe refuses an object without it.
AUTHOR = "chainloop.dev"
