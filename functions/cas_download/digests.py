"""The ``digest`` path parameter: ``sha256:<64 hex>`` (colon possibly URL-encoded) or bare hex."""

from __future__ import annotations

import re
from urllib.parse import unquote

from cas_download.errors import InvalidDigest

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Longest accepted raw form: "sha256%3A" + 64 hex; anything longer is rejected before any work.
_MAX_RAW_LENGTH = 80


def parse_digest(raw: object) -> str:
    """Return the canonical ``sha256:<lowercase hex>`` or raise :class:`InvalidDigest`."""
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_RAW_LENGTH:
        raise InvalidDigest("digest must be sha256:<64 hex characters> or 64 hex characters")
    text = unquote(raw)
    algorithm, sep, hex_part = text.rpartition(":")
    if (sep and algorithm.lower() != "sha256") or not _HEX64.fullmatch(hex_part):
        raise InvalidDigest("digest must be sha256:<64 hex characters> or 64 hex characters")
    return f"sha256:{hex_part.lower()}"


def digest_hex(digest: str) -> str:
    return digest.removeprefix("sha256:")
