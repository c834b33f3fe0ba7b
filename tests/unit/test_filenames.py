"""Filenames from S3 metadata and RFC 6266 Content-Disposition."""

import pytest

from cas_download.filenames import content_disposition, decode_filename, encode_filename


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("report.pdf", "report.pdf"),
        ("=?UTF-8?B?csOpc3Vtw6kudHh0?=", "résumé.txt"),
        ("=?UTF-8?Q?r=C3=A9sum=C3=A9.txt?=", "résumé.txt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("a\r\nSet-Cookie: x.txt", "aSet-Cookie: x.txt"),
        ("..", None),
        # look-alikes of ".." and "/" (two-dot leader, fullwidth solidus and full stop), as NFKC reads them
        ("\u2025\uff0f\u2025\uff0f.bashrc", ".bashrc"),
        ("\u2025", None),
        ("\uff0e\uff0e", None),
        ("a\uff3cb.txt", "b.txt"),
        ("", None),
        (None, None),
    ],
)
def test_metadata_filename_is_decoded_and_made_safe(raw: str | None, name: str | None) -> None:
    assert decode_filename(raw) == name


def test_ascii_filename_is_a_quoted_filename_parameter() -> None:
    assert content_disposition('my "file".tgz') == 'attachment; filename="my \\"file\\".tgz"'


def test_non_ascii_filename_adds_an_rfc5987_parameter() -> None:
    assert content_disposition("résumé.txt") == (
        "attachment; filename=\"resume.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    )


def test_a_name_with_no_ascii_at_all_still_has_a_fallback() -> None:
    assert content_disposition("报告.pdf").startswith('attachment; filename=".pdf"; filename*=UTF-8')


@pytest.mark.parametrize(
    "name", ["plain.txt", "résumé.pdf", "報告書.tar.gz", "x" * 40 + "é" * 120 + ".bin", "tab\there.txt"]
)
def test_an_encoded_filename_is_one_ascii_line_that_decodes_back(name: str) -> None:
    encoded = encode_filename(name)
    assert encoded.isascii()
    assert "\n" not in encoded
    assert "\r" not in encoded
    expected = name.replace("\t", "")  # control characters are dropped on the way back
    assert decode_filename(encoded) == expected


@pytest.mark.parametrize(
    "name", ["\u2025\uff0f\u2025\uff0f.bashrc", "x\u2215\u2025\u2215.bashrc", "\ufe52\ufe52"]
)
def test_no_ascii_fallback_of_a_name_is_a_path(name: str) -> None:
    # Given a name whose ASCII folding (NFKD) would spell a path or ".."
    # When it is the filename of a Content-Disposition (directly, not through decode_filename)
    disposition = content_disposition(name)

    # Then the ASCII fallback is still one name
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert "/" not in fallback
    assert ".." not in fallback.split("/")
    assert fallback not in {".", ".."}
