"""Filenames from object metadata, and the RFC 6266 Content-Disposition built from them."""

from __future__ import annotations

import unicodedata
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from urllib.parse import quote

_MAX_FILENAME_LENGTH = 255


def decode_filename(raw: str | None) -> str | None:
    """Decode an RFC 2047 encoded-word metadata value and make it safe as a download name.

    Path components and control characters are removed, so a name can neither point outside the
    download folder nor break a header.
    """
    if not raw:
        return None
    try:
        text = str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        text = raw
    return safe_filename(text)


def safe_filename(text: str) -> str | None:
    """The last path component of ``text``, without control characters; None for nothing, ``.`` or
    ``..``. Checked after NFKC normalization: look-alikes (U+2025 for ``..``, the fullwidth U+FF0F for
    ``/``) become the ASCII they stand for first, as every ASCII fallback of the name would make them."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if text in {"", ".", ".."}:
        return None
    return text[:_MAX_FILENAME_LENGTH]


def encode_filename(filename: str) -> str:
    """What writers of metadata (cas-admin, the local demo, the tests) store for a filename: ASCII as
    it is, anything else one RFC 2047 encoded word (``email.header``), never folded (metadata is one
    line). :func:`decode_filename` reads both."""
    if filename.isascii() and filename.isprintable():
        return filename
    encoded = Header(filename, "utf-8", maxlinelen=1_000_000).encode()
    # The spelling SPEC.md shows (charset and encoding are case-insensitive to every reader)
    return encoded.replace("=?utf-8?b?", "=?UTF-8?B?").replace("=?utf-8?q?", "=?UTF-8?Q?")


def content_disposition(filename: str) -> str:
    """``attachment; filename="<ASCII fallback>"`` plus ``filename*=UTF-8''…`` when not ASCII."""
    # checked here too, whoever built the name, and again once folded to ASCII: it stays a name
    filename = safe_filename(filename) or "download"
    folded = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = safe_filename(folded) or "download"
    fallback = ascii_name.replace("\\", "\\\\").replace('"', '\\"')
    if filename.isascii():
        return f'attachment; filename="{fallback}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
