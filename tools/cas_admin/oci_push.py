"""Writes an artifact into an OCI registry in Chainloop's layout: the image
``{location}/chainloop-<hex>:latest``, an OCI image manifest with one layer (the raw bytes, digest
``sha256:<hex>``) titled with the filename. Used by ``cas-admin artifact put``, the demo and the tests,
so they make registry data the way the control plane does.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

import urllib3

from cas_download.data.storage.oci import (
    MANIFEST_MEDIA_TYPE,
    TITLE_ANNOTATION,
    parse_challenge,
    parse_location,
)

LAYER_MEDIA_TYPE = "application/octet-stream"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
_CONFIG = b"{}"


class PushError(Exception):
    """The registry refused a step of the push (its status is in the message)."""


@dataclass(frozen=True)
class PushedImage:
    digest: str
    repository: str  # {location path}/chainloop-<hex>
    manifest_digest: str


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
    registry = parse_location(location)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    named = image_digest or digest
    repository = f"{registry.repository}/chainloop-{named.removeprefix('sha256:')}"
    session = _Session(
        http or urllib3.PoolManager(retries=False), registry.base_url, repository, username, password
    )
    config_digest = f"sha256:{hashlib.sha256(_CONFIG).hexdigest()}"
    session.put_blob(_CONFIG, config_digest)
    session.put_blob(data, digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(_CONFIG)},
        "layers": [
            {
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": digest,
                "size": len(data),
                "annotations": {TITLE_ANNOTATION: filename},
            }
        ],
    }
    body = json.dumps(manifest).encode()
    session.send(
        "PUT", f"/v2/{repository}/manifests/latest", body=body, headers={"Content-Type": MANIFEST_MEDIA_TYPE}
    )
    return PushedImage(digest, repository, f"sha256:{hashlib.sha256(body).hexdigest()}")


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
