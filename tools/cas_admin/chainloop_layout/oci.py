"""Writes an artifact into an OCI registry as Chainloop's CAS does, so that Chainloop reads it back
(``Describe``, ``Download``) and so does this service.

Chainloop's rules (``chainloop-dev/chainloop``, ``pkg/blobmanager/oci/backend.go``: ``Upload``,
``craftImage``, ``validateImage``; ``pkg/blobmanager/backend.go``: ``AuthorAnnotation``,
``DetectedMediaType``):

* the image is ``{location}/chainloop-<hex>:latest`` (``resourcePath``; no tag means ``latest``);
* ``mutate.MediaType(empty.Image, OCIManifestSchema1)`` and ``mutate.ConfigMediaType(OCIConfigJSON)``:
  an OCI image manifest whose config is an OCI image config;
* ``mutate.Annotations`` on the image: the MANIFEST's annotations are
  ``org.opencontainers.image.authors`` = ``chainloop.dev`` (``validateImage`` refuses an image
  without it) and ``org.opencontainers.image.title`` = the filename (``Describe`` reads it there);
* ``static.NewLayer(content, DetectedMediaType(content))``: one layer, the raw bytes, uncompressed
  (digest = diff id = ``sha256:<hex>``), whose media type is Go's ``http.DetectContentType`` of the
  bytes without its parameters (:func:`detected_media_type`);
* ``mutate.Append``: the config is go-containerregistry's ``empty.Image`` config with the layer
  added (``pkg/v1/empty/image.go``, ``pkg/v1/mutate/image.go``): ``rootfs`` of type ``layers`` whose
  ``diff_ids`` name the layer (``Download`` finds it with ``LayerByDiffID``) and one empty
  ``history`` entry; ``encoding/json``'s bytes (:func:`go_json`), so the config digest is the one
  Chainloop's client computes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import urllib3

from cas_admin.chainloop_layout import AUTHOR
from cas_download.data.storage.oci import (
    MANIFEST_MEDIA_TYPE,
    TITLE_ANNOTATION,
    RegistryClient,
    parse_challenge,
    parse_location,
)

AUTHORS_ANNOTATION = "org.opencontainers.image.authors"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
PUSH_TIMEOUT_SECONDS = 30.0
# go-containerregistry's v1.Time zero value, as encoding/json writes it (``omitempty`` keeps a struct).
_ZERO_TIME = "0001-01-01T00:00:00Z"


class PushError(Exception):
    """The registry refused a step of the push (its status is in the message)."""


@dataclass(frozen=True)
class PushedImage:
    digest: str
    repository: str  # {location path}/chainloop-<hex>
    manifest_digest: str


def image_config(digest: str) -> bytes:
    """The config blob ``mutate.Append`` makes of ``empty.Image`` plus one layer (field order of
    ``v1.ConfigFile``)."""
    config = {
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [digest]},
        "config": {},
    }
    return go_json(config)


def image_manifest(data: bytes, filename: str, config: bytes) -> bytes:
    """The manifest of the artifact's image (field order of ``v1.Manifest`` and ``v1.Descriptor``)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "size": len(config), "digest": _sha256(config)},
        "layers": [{"mediaType": detected_media_type(data), "size": len(data), "digest": _sha256(data)}],
        "annotations": dict(sorted({AUTHORS_ANNOTATION: AUTHOR, TITLE_ANNOTATION: filename}.items())),
    }
    return go_json(manifest)


def go_json(document: Any) -> bytes:
    """``encoding/json.Marshal``'s bytes: compact, UTF-8, with ``<``, ``>``, ``&``, U+2028 and U+2029
    escaped. Callers give struct fields in their Go order and map keys sorted, as Go writes them."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    for character, escape in _GO_JSON_ESCAPES.items():
        text = text.replace(character, escape)  # these occur only inside strings
    return text.encode("utf-8")


_GO_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def push_artifact(
    location: str,
    data: bytes,
    filename: str,
    username: str | None = None,
    password: str | None = None,
    *,
    image_digest: str | None = None,
    http: urllib3.PoolManager | None = None,
) -> PushedImage:
    """Push ``data`` as its own digest's artifact; ``image_digest`` names the image after another
    digest instead (tests: an image at an artifact's name whose layer is not that artifact)."""
    if not data or not filename:
        # craftImage: "content is empty", "resource metadata is not valid"
        raise PushError("Chainloop stores neither empty content nor an artifact without a filename")
    pool = http or urllib3.PoolManager(retries=False)
    # The scheme as go-containerregistry's ping finds it (HTTPS first for a private or loopback
    # registry): the service's own rule, shared.
    registry = RegistryClient(PUSH_TIMEOUT_SECONDS, PUSH_TIMEOUT_SECONDS, http=pool).resolve(
        parse_location(location), urllib3.Timeout(PUSH_TIMEOUT_SECONDS)
    )
    digest = _sha256(data)
    repository = registry.artifact_repository(image_digest or digest)
    session = _Session(pool, registry.base_url, repository, username, password)
    config = image_config(digest)
    manifest = image_manifest(data, filename, config)
    session.put_blob(data, digest)
    session.put_blob(config, _sha256(config))
    session.send(
        "PUT",
        f"/v2/{repository}/manifests/latest",
        body=manifest,
        headers={"Content-Type": MANIFEST_MEDIA_TYPE},
    )
    return PushedImage(digest, repository, _sha256(manifest))


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# ------------------------------------------------------------------------- Go's content sniffing


def detected_media_type(data: bytes) -> str:
    """``DetectedMediaType``: Go's ``net/http.DetectContentType`` (``src/net/http/sniff.go``, the
    WHATWG MIME sniffing table) of the first 512 bytes, parameters dropped: ``text/plain`` for text
    (JSON included), ``application/x-gzip``, ``application/zip``, ..., else
    ``application/octet-stream``."""
    head = data[:512]
    first_non_ws = len(head) - len(head.lstrip(b"\t\n\x0c\r "))
    for matches in _SIGNATURES:
        detected = matches(head, first_non_ws)
        if detected:
            return detected
    return "application/octet-stream"


def _html(tag: bytes) -> Callable[[bytes, int], str | None]:
    def matches(data: bytes, first_non_ws: int) -> str | None:
        data = data[first_non_ws:]
        if len(data) < len(tag) + 1:
            return None
        for expected, byte in zip(tag, data, strict=False):
            folded = byte & 0xDF if ord("A") <= expected <= ord("Z") else byte  # upper case
            if folded != expected:
                return None
        return "text/html" if data[len(tag)] in b" >" else None

    return matches


def _masked(
    mask: bytes, pattern: bytes, media_type: str, *, skip_ws: bool = False
) -> Callable[[bytes, int], str | None]:
    def matches(data: bytes, first_non_ws: int) -> str | None:
        if skip_ws:
            data = data[first_non_ws:]
        if len(data) < len(mask):
            return None
        if any(byte & m != p for byte, m, p in zip(data, mask, pattern, strict=False)):
            return None
        return media_type

    return matches


def _exact(prefix: bytes, media_type: str) -> Callable[[bytes, int], str | None]:
    def matches(data: bytes, _first_non_ws: int) -> str | None:
        return media_type if data.startswith(prefix) else None

    return matches


def _mp4(data: bytes, _first_non_ws: int) -> str | None:
    if len(data) < 12:
        return None
    box_size = int.from_bytes(data[:4], "big")
    if box_size % 4 != 0 or len(data) < box_size or data[4:8] != b"ftyp":
        return None
    for start in range(8, box_size, 4):
        if start != 12 and data[start : start + 3] == b"mp4":  # 12: the minor version
            return "video/mp4"
    return None


_BINARY_BYTES = frozenset({*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)})


def _text(data: bytes, first_non_ws: int) -> str | None:
    return None if any(byte in _BINARY_BYTES for byte in data[first_non_ws:]) else "text/plain"


_RIFF_MASK = b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff"
_HTML_TAGS = (
    b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT", b"<TABLE",
    b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--",
)  # fmt: skip
_SIGNATURES: tuple[Callable[[bytes, int], str | None], ...] = (
    *(_html(tag) for tag in _HTML_TAGS),
    _masked(b"\xff" * 5, b"<?xml", "text/xml", skip_ws=True),
    _exact(b"%PDF-", "application/pdf"),
    _exact(b"%!PS-Adobe-", "application/postscript"),
    _masked(b"\xff\xff\x00\x00", b"\xfe\xff\x00\x00", "text/plain"),  # UTF-16BE BOM
    _masked(b"\xff\xff\x00\x00", b"\xff\xfe\x00\x00", "text/plain"),  # UTF-16LE BOM
    _masked(b"\xff\xff\xff\x00", b"\xef\xbb\xbf\x00", "text/plain"),  # UTF-8 BOM
    _exact(b"GIF87a", "image/gif"),
    _exact(b"GIF89a", "image/gif"),
    _exact(b"\x89PNG\r\n\x1a\n", "image/png"),
    _exact(b"\xff\xd8\xff", "image/jpeg"),
    _exact(b"BM", "image/bmp"),
    _masked(_RIFF_MASK + b"\xff\xff", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
    _exact(b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    _masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00WAVE", "audio/wave"),
    _masked(_RIFF_MASK, b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
    _masked(b"\xff" * 4, b".snd", "audio/basic"),
    _masked(b"OggS\x00", b"OggS\x00", "application/ogg"),
    _masked(b"\xff" * 8, b"MThd\x00\x00\x00\x06", "audio/midi"),
    _masked(b"\xff" * 3, b"ID3", "audio/mpeg"),
    _masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00AVI ", "video/avi"),
    _exact(b"\x1a\x45\xdf\xa3", "video/webm"),
    _exact(b"Rar \x1a\x07\x00", "application/x-rar-compressed"),
    _exact(b"PK\x03\x04", "application/zip"),
    _exact(b"\x1f\x8b\x08", "application/x-gzip"),
    _mp4,
    _text,  # last
)


# ------------------------------------------------------------------------- the registry API


class _Session:
    """Requests to one repository with push and pull rights: Basic, or a bearer token for the scope."""

    def __init__(
        self,
        http: urllib3.PoolManager,
        base_url: str,
        repository: str,
        username: str | None,
        password: str | None,
    ) -> None:
        self._http = http
        self._base = base_url
        self._repository = repository
        self._basic = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username and password
            else None
        )
        self._authorization: str | None = None

    def put_blob(self, data: bytes, digest: str) -> None:
        if self.send("HEAD", f"/v2/{self._repository}/blobs/{digest}", ok=(200, 404)).status == 200:
            return
        started = self.send("POST", f"/v2/{self._repository}/blobs/uploads/", ok=(202,))
        upload = urljoin(self._base + "/", started.headers["Location"])
        separator = "&" if "?" in upload else "?"
        self.send(
            "PUT",
            f"{upload}{separator}{urlencode({'digest': digest})}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> urllib3.BaseHTTPResponse:
        url = path_or_url if "://" in path_or_url else self._base + path_or_url
        response = self._request(method, url, body, headers)
        if response.status == 401:
            self._authorize(response.headers.get("WWW-Authenticate"))
            response = self._request(method, url, body, headers)
        if response.status not in ok:
            raise PushError(
                f"{method} {path_or_url.split('?', maxsplit=1)[0]}: registry answered {response.status}"
            )
        return response

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None
    ) -> urllib3.BaseHTTPResponse:
        sent = dict(headers or {})
        if self._authorization:
            sent["Authorization"] = self._authorization
        return self._http.request(method, url, body=body, headers=sent, redirect=False)

    def _authorize(self, header: str | None) -> None:
        challenge = parse_challenge(header)
        if challenge is None or (challenge.scheme == "basic" and self._basic is None):
            raise PushError("the registry wants credentials")
        if challenge.scheme == "basic":
            self._authorization = self._basic
            return
        query = {
            "scope": f"repository:{self._repository}:pull,push",
            "service": challenge.params.get("service", ""),
        }
        headers = {"Authorization": self._basic} if self._basic else {}
        answer = self._http.request("GET", f"{challenge.params['realm']}?{urlencode(query)}", headers=headers)
        if answer.status != 200:
            raise PushError(f"token endpoint answered {answer.status}")
        document = json.loads(answer.data)
        self._authorization = f"Bearer {document.get('token') or document.get('access_token')}"
