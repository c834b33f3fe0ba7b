"""Storage providers behind one port (:mod:`.port`): one sibling module per provider (:mod:`.s3`,
:mod:`.oci`), and :mod:`.providers`, which opens a backend through the module of its provider."""
