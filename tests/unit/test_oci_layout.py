"""The OCI writer's objects are Chainloop's (pkg/blobmanager/oci/backend.go: craftImage): the bytes
go-containerregistry makes of ``empty.Image`` + ``mutate.Append`` with Chainloop's annotations and
``static.NewLayer(content, DetectedMediaType(content))``. Pure: nothing is pushed here."""

from __future__ import annotations

import hashlib
import json

import pytest

from cas_admin.chainloop_layout import oci as layout

DATA = b'{"_type": "https://in-toto.io/Statement/v1"}\n'
DIGEST = f"sha256:{hashlib.sha256(DATA).hexdigest()}"


def test_the_config_is_go_containerregistrys_empty_image_config_with_the_layer_as_diff_id() -> None:
    # encoding/json of v1.ConfigFile after mutate.Append: zero times kept, rootfs "layers", one history
    assert layout.image_config(DIGEST) == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + DIGEST.encode() + b'"]},"config":{}}'
    )


def test_the_manifest_carries_chainloops_annotations_and_one_raw_layer() -> None:
    config = layout.image_config(DIGEST)

    manifest = json.loads(layout.image_manifest(DATA, "attestation.json", config))

    assert manifest == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": f"sha256:{hashlib.sha256(config).hexdigest()}",
        },
        "layers": [{"mediaType": "text/plain", "size": len(DATA), "digest": DIGEST}],
        "annotations": {
            "org.opencontainers.image.authors": "chainloop.dev",
            "org.opencontainers.image.title": "attestation.json",
        },
    }


def test_the_manifest_is_written_as_go_writes_json() -> None:
    # compact, UTF-8, "<>&" escaped: the bytes (and so the manifest digest) Chainloop's client makes
    body = layout.image_manifest(DATA, "résumé <1>&.txt", layout.image_config(DIGEST))
    assert b", " not in body
    assert b": " not in body
    assert '"org.opencontainers.image.title":"résumé \\u003c1\\u003e\\u0026.txt"'.encode() in body


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b'{"predicateType": "slsa"}', "text/plain"),
        (b"\xef\xbb\xbfutf-8 with a BOM", "text/plain"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/x-gzip"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"%PDF-1.7", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        (b"  <HTML><body>", "text/html"),
        (b"<?xml version='1.0'?>", "text/xml"),
        (b"\x7fELF\x02\x01\x01\x00", "application/octet-stream"),
        (b"text then a NUL \x00", "application/octet-stream"),
        (b"x" * 512 + b"\x00", "text/plain"),  # only the first 512 bytes are read
    ],
)
def test_the_layer_media_type_is_gos_detected_content_type_without_parameters(
    data: bytes, media_type: str
) -> None:
    assert layout.detected_media_type(data) == media_type


@pytest.mark.parametrize(("data", "filename"), [(b"", "empty.bin"), (DATA, "")])
def test_what_chainloop_would_not_store_is_refused_before_any_request(data: bytes, filename: str) -> None:
    with pytest.raises(layout.PushError):
        layout.push_artifact("registry.invalid/cas", data, filename)
