"""The digest path parameter (spec: API, `digest`)."""

import pytest

from cas_download.digests import parse_digest
from cas_download.errors import InvalidDigest

HEX = "afaa745206e121d8cb4c88dac08c52d728c24ed0b5fd5eb7a8d682ed8a39bc4c"


@pytest.mark.parametrize(
    "raw",
    [
        f"sha256:{HEX}",
        f"sha256%3A{HEX}",
        f"sha256%3a{HEX}",
        HEX,
        HEX.upper(),
        f"sha256:{HEX.upper()}",
        f"SHA256:{HEX}",
    ],
)
def test_accepted_forms_become_the_canonical_lowercase_digest(raw: str) -> None:
    assert parse_digest(raw) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        42,
        HEX[:-1],
        HEX + "0",
        "g" * 64,
        f"sha512:{HEX}",
        f"md5:{HEX}",
        f"sha256:sha256:{HEX}",
        f"sha256::{HEX}",
        f"../{HEX}",
        f"sha256%253A{HEX}",
        f"sha256:{HEX}/../../etc/passwd",
        f"sha256:{HEX}%00",
        "\u0660" * 64,  # Arabic-Indic digits are not hex
        "a" * 10_000,
    ],
)
def test_anything_else_is_invalid_digest(raw: object) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(raw)
