"""``cas-admin artifact ...``: upload (put), download through the API (get), explain (where)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import mimetypes
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from cas_admin.chainloop_layout import s3 as chainloop_s3
from cas_admin.chainloop_layout.oci import PushError, push_artifact
from cas_admin.errors import AdminError, IntegrityError, UsageError
from cas_admin.output import note, print_json, print_table
from cas_admin.store import AdminStore
from cas_download.data.storage.oci import credentials_from_secret as oci_credentials
from cas_download.digests import digest_hex, parse_digest
from cas_download.domain import AttemptFailed, Backend, Mapping, Provider
from cas_download.errors import InvalidDigest
from cas_download.filenames import decode_filename
from cas_download.logic.candidates import holding_orgs, plan_candidates

_CHUNK = 1024 * 1024
MAX_SINGLE_PUT_BYTES = 5 * 1024**3  # S3's PutObject limit
PROGRESS_MIN_BYTES = 1024 * 1024
TOKEN_ENV = "CAS_TOKEN"  # noqa: S105 - the name of a variable, not a token
API_URL_ENV = "CAS_API_URL"


def canonical_digest(raw: str) -> str:
    try:
        return parse_digest(raw)
    except InvalidDigest:
        raise UsageError(f"bad digest {raw!r}: expected sha256:<64 hex> or 64 hex characters") from None


# ---------------------------------------------------------------------------------------------- put


def cmd_put(args: argparse.Namespace, store: AdminStore) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {args.file}")
    rows = store.known_org(args.org)
    backend = _upload_backend(rows, args.org, args.backend)
    size = path.stat().st_size
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    digest = f"sha256:{sha.hexdigest()}"
    checksum = base64.b64encode(sha.digest()).decode()
    filename = args.filename or path.name
    content_type = args.content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"

    if backend.provider == Provider.OCI:
        uploaded = _push_to_registry(store, backend, path, filename)
    elif backend.provider == Provider.AZURE_BLOB:
        uploaded = _upload_to_azure(store, backend, path, digest, filename, content_type)
    else:
        uploaded = _upload_to_s3(store, backend, path, digest, checksum, filename, content_type, size)
    mapped = store.put_mapping(digest, args.org, backend.id, args.workflow_run_id)
    if args.json:
        print_json(
            {
                "digest": digest,
                "size": size,
                "filename": filename,
                "org_id": args.org,
                "backend": {"id": backend.id, "name": backend.name},
                "uploaded": uploaded,
                "mapped": mapped,
            }
        )
    else:
        if not uploaded:
            note(f"{backend.name} already holds {digest}: not uploaded again")
        if not mapped:
            note(f"{args.org} already maps {digest} to {backend.name}")
        print(digest)
    return 0


def _upload_to_s3(
    store: AdminStore,
    backend: Backend,
    path: Path,
    digest: str,
    checksum: str,
    filename: str,
    content_type: str,
    size: int,
) -> bool:
    """Upload in Chainloop's layout (``chainloop_layout.s3``) plus the full-object SHA-256 that
    Chainloop checks when present, so the service proves it with one HEAD; False if already there."""
    credentials = store.read_credentials(backend.secret_name)
    client, bucket = store.s3_for(credentials, backend.location, backend.region)
    key = chainloop_s3.object_key(digest, backend.key_prefix or "")
    if _already_stored(client, bucket, key, checksum):
        return False
    if size > MAX_SINGLE_PUT_BYTES:
        note("over 5 GiB: multipart upload, as Chainloop writes it; the service proves it by hashing")
    try:
        with path.open("rb") as body:
            chainloop_s3.put_object(
                client,
                bucket,
                digest,
                body,
                filename,
                key_prefix=backend.key_prefix or "",
                content_type=content_type,
                sha256_checksum=checksum if size <= MAX_SINGLE_PUT_BYTES else None,
            )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise AdminError(f"upload through {backend.name} failed: {code}") from None
    return True


def _upload_to_azure(
    store: AdminStore, backend: Backend, path: Path, digest: str, filename: str, content_type: str
) -> bool:
    """Blob ``{key_prefix}sha256:<hex>`` in Chainloop's layout (``chainloop_layout.azure``); False if
    the blob is already there with that size."""
    from azure.core.exceptions import AzureError, ResourceExistsError  # noqa: PLC0415 - Azure only

    from cas_admin.chainloop_layout import azure as chainloop_azure  # noqa: PLC0415
    from cas_download.data.storage import azure  # noqa: PLC0415

    try:
        credentials = azure.credentials_from_secret(store.read_secret(backend.secret_name))
        location = azure.parse_location(backend.location)
        service = store.providers.azure_clients().service(location, credentials, None)
    except AttemptFailed as error:
        raise AdminError(f"{backend.name} cannot be used: {error}") from None
    container = service.get_container_client(location.container)
    blob = container.get_blob_client(chainloop_azure.blob_name(digest, backend.key_prefix or ""))
    try:
        if blob.exists() and blob.get_blob_properties().size == path.stat().st_size:
            return False
        if not container.exists():
            container.create_container()
        with path.open("rb") as body:
            chainloop_azure.put_blob(
                container,
                digest,
                body,
                filename,
                key_prefix=backend.key_prefix or "",
                content_type=content_type,
            )
    except ResourceExistsError:
        return False
    except AzureError as error:
        raise AdminError(f"upload through {backend.name} failed: {azure.describe_error(error)}") from None
    return True


def _push_to_registry(store: AdminStore, backend: Backend, path: Path, filename: str) -> bool:
    """Push in Chainloop's layout (image chainloop-<hex>:latest, one layer, the title annotation)."""
    secret = store.read_secret(backend.secret_name)
    try:
        login = oci_credentials(secret)
    except AttemptFailed as error:
        raise AdminError(f"secret {backend.secret_name!r} is not usable: {error}") from None
    try:
        push_artifact(
            backend.location,
            path.read_bytes(),  # a registry upload of one blob: cas-admin reads the file whole
            filename,
            login.username if login else None,
            login.password if login else None,
        )
    except (PushError, urllib3.exceptions.HTTPError) as error:
        raise AdminError(f"push through {backend.name} failed: {error}") from None
    return True


def _upload_backend(rows: list[Backend], org: str, name: str | None) -> Backend:
    live = [r for r in rows if not r.deleted]
    if name:
        for row in live:
            if name in (row.name, row.id):
                return row
        raise AdminError(f"org {org!r} has no live backend {name!r}")
    for row in live:
        if row.is_default:
            return row
    raise AdminError(f"org {org!r} has no default backend", hint="pass --backend NAME")


def _already_stored(client: Any, bucket: str, key: str, checksum: str) -> bool:
    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError):
        return False
    return bool(head.get("ChecksumSHA256") == checksum)


# ---------------------------------------------------------------------------------------------- get


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class _Redirect:
    location: str
    backend: str | None
    fallback: bool
    filename: str | None


def cmd_get(args: argparse.Namespace, store: AdminStore | None) -> int:
    digest = canonical_digest(args.digest)
    api_url = (args.api_url or os.environ.get(API_URL_ENV) or "").rstrip("/")
    if not api_url:
        raise UsageError(f"no API URL: pass --api-url or set {API_URL_ENV}")
    token = args.token or os.environ.get(TOKEN_ENV)
    if args.org and token:
        raise UsageError("pass --org (local server) or --token (JWT), not both")
    if args.org:
        authorization = f"Bearer local:{args.org}"
    elif token:
        authorization = f"Bearer {token}"
    else:
        raise UsageError(f"who is asking? pass --org ORG (local server) or --token JWT (or set {TOKEN_ENV})")

    redirect = _ask_api(api_url, digest, authorization)
    target, to_stdout = _output_path(args.output, redirect.filename, digest, force=args.force)
    size = _download_verified(redirect.location, digest, target, progress=_progress_wanted(args))
    if to_stdout:
        with target.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        target.unlink()
    document = {
        "digest": digest,
        "path": None if to_stdout else str(target),
        "size": size,
        "backend": redirect.backend,
        "fallback": redirect.fallback,
        "verified": True,
    }
    if args.json and not to_stdout:
        print_json(document)
    elif not to_stdout:
        via = (
            f" via {redirect.backend}" + (" (fallback)" if redirect.fallback else "")
            if redirect.backend
            else ""
        )
        print(f"{target}  {size} bytes, sha256 verified{via}")
    return 0


def _ask_api(api_url: str, digest: str, authorization: str) -> _Redirect:
    url = f"{api_url}/v1/artifacts/{urllib.parse.quote(digest, safe='')}"
    request = urllib.request.Request(url, headers={"Authorization": authorization})  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AdminError(f"cannot reach the API at {api_url}: {reason}") from None
    if status == 307 and headers.get("Location"):
        return _Redirect(
            location=headers["Location"],
            backend=headers.get("X-Cas-Backend"),
            fallback=headers.get("X-Cas-Fallback") == "true",
            filename=_disposition_filename(headers.get("Content-Disposition")),
        )
    raise AdminError(_api_error(status, body))


def _api_error(status: int, body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return f"the API answered HTTP {status}"
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        attempts = ", ".join(f"{a.get('backend')}: {a.get('reason')}" for a in error.get("attempts") or [])
        return f"HTTP {status} {error.get('code')}: {error.get('message')}" + (
            f" [{attempts}]" if attempts else ""
        )
    message = document.get("message") if isinstance(document, dict) else None
    return f"HTTP {status}: {message or body[:200].decode(errors='replace')}"


def _disposition_filename(header: str | None) -> str | None:
    """The download name of an RFC 6266 ``Content-Disposition``: ``filename*`` (RFC 5987) first."""
    if not header:
        return None
    extended = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;\s]+)", header, re.IGNORECASE)
    if extended:
        try:
            return decode_filename(
                urllib.parse.unquote(extended.group(2), encoding=extended.group(1) or "utf-8")
            )
        except LookupError:
            pass
    plain = re.search(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', header, re.IGNORECASE)
    if not plain:
        return None
    value = plain.group(1) if plain.group(1) is not None else plain.group(2)
    return decode_filename(re.sub(r"\\(.)", r"\1", value))


def _output_path(output: str | None, filename: str | None, digest: str, *, force: bool) -> tuple[Path, bool]:
    if output == "-":
        handle, name = tempfile.mkstemp(prefix="cas-get-")
        os.close(handle)
        return Path(name), True
    target = Path(output) if output else Path(filename or digest_hex(digest))
    if target.is_dir():
        target = target / (filename or digest_hex(digest))
    if target.exists() and not force:
        raise UsageError(f"{target} exists: pass --force to overwrite it, or -o PATH")
    return target, False


def _progress_wanted(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _download_verified(url: str, digest: str, target: Path, *, progress: bool) -> int:
    """Stream ``url`` into a temporary file beside ``target`` while hashing; keep it only if it is
    the digest's bytes."""
    request = urllib.request.Request(url)  # noqa: S310 - the presigned URL the API just gave
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310
    except urllib.error.HTTPError as error:
        raise AdminError(
            f"storage refused the presigned URL: HTTP {error.code} {_s3_code(error.read())}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise AdminError(f"cannot reach storage: {getattr(error, 'reason', error)}") from None
    total = int(response.headers.get("Content-Length") or 0)
    bar = progress_bar(total, target.name) if progress and total >= PROGRESS_MIN_BYTES else None
    sha = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".cas-get-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with response, os.fdopen(handle, "wb") as out:
            while chunk := response.read(_CHUNK):
                sha.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if bar:
                    bar.update(len(chunk))
        if bar:
            bar.close()
        if f"sha256:{sha.hexdigest()}" != digest:
            raise IntegrityError(
                f"the downloaded bytes hash to sha256:{sha.hexdigest()}, not {digest}: discarded"
            )
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def _s3_code(body: bytes) -> str:
    text = body.decode(errors="replace")
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else ""


def progress_bar(total: int, name: str, out: IO[str] | None = None) -> Any:
    """tqdm's bar on stderr, in bytes (KiB, MiB...), for one download."""
    from tqdm import tqdm  # noqa: PLC0415 - only a download on a terminal draws one

    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=out or sys.stderr)


# -------------------------------------------------------------------------------------------- where


@dataclass
class _Probe:
    ok: bool
    result: str  # "checksum_sha256", "hash_needed" or a reason from the spec
    size: int | None = None
    filename: str | None = None


def cmd_where(args: argparse.Namespace, store: AdminStore) -> int:
    """Which backends could serve a digest, in the service's own candidate order, and why not others."""
    digest = canonical_digest(args.digest)
    wanted = {org for value in args.org or [] for org in value.replace(",", " ").split()}
    verdict = where_report(store, digest, wanted)
    if args.json:
        print_json(verdict)
    else:
        _print_where(verdict)
    return 0 if verdict["serves"] is not None else 1


def where_report(store: AdminStore, digest: str, wanted: set[str]) -> dict[str, Any]:
    """The ``where`` document: candidates in the service's order, each probed, and the others."""
    reader = store.tables
    all_mappings: list[Mapping] = reader.mappings_for_digest(digest)
    for org in sorted(wanted):
        store.known_org(org)
    mappings = [m for m in all_mappings if not wanted or m.org_id in wanted]
    if not mappings:
        scope = f" in {', '.join(sorted(wanted))}" if wanted else ""
        raise AdminError(f"not_found: no mapping of {digest}{scope} (the API answers 404 not_found)")

    orgs = holding_orgs(mappings)
    org_rows: dict[str, Sequence[Backend]] = {org: list(reader.backends_of_org(org)) for org in orgs}
    # The service's own planner: the same candidates in the same order.
    plan = plan_candidates(mappings, org_rows)
    order = list(plan.order)
    probes = {backend.id: _probe(store, backend, digest) for backend in order}
    serving = next((b for b in order if probes[b.id].ok), None)
    known_ids = {b.id for rows in org_rows.values() for b in rows}

    mapped_ids = {m.backend_id for m in mappings}
    lines: list[dict[str, Any]] = []
    for position, backend in enumerate(order, start=1):
        probe = probes[backend.id]
        lines.append(_line(backend, position, _roles(backend, mapped_ids), probe, serving))
    for org in orgs:
        for backend in org_rows[org]:
            if backend.id in probes:
                continue
            roles = _roles(backend, mapped_ids)
            if backend.deleted:
                why = "deleted: never tried"
            elif backend.id in mapped_ids:
                why = "not tried"
            else:
                why = "not a candidate: neither mapped nor the org's default or fallback"
            lines.append(_line(backend, None, roles, None, serving, why=why))
    for mapping in mappings:
        if mapping.backend_id not in known_ids:
            lines.append(
                {
                    "order": None,
                    "backend": {"id": mapping.backend_id, "name": None},
                    "org_id": mapping.org_id,
                    "roles": ["mapped"],
                    "status": None,
                    "result": "missing: the mapped backend has no row (its org's default and fallback are tried)",
                    "serves": False,
                }
            )

    primary = plan.primary
    verdict: dict[str, Any] = {
        "digest": digest,
        "orgs": orgs,
        "serves": None,
        "fallback": None,
        "backends": lines,
    }
    if serving is not None:
        verdict["serves"] = {"id": serving.id, "name": serving.name}
        verdict["fallback"] = primary is None or serving.id != primary.id
    return verdict


def _print_where(verdict: dict[str, Any]) -> None:
    lines = verdict["backends"]
    serving = verdict["serves"]
    print(f"{verdict['digest']}  held by {', '.join(verdict['orgs'])}")
    print_table(
        ["ORDER", "BACKEND", "ORG", "ROLE", "STATUS", "RESULT"],
        [
            [
                line["order"],
                (line["backend"]["name"] or line["backend"]["id"])
                + ("  <- serves" if line["serves"] else ""),
                line["org_id"],
                ",".join(line["roles"]),
                line["status"],
                line["result"],
            ]
            for line in lines
        ],
    )
    if serving is not None:
        print(
            f"the service serves it through {serving['name']} "
            f"(X-Cas-Fallback: {'true' if verdict['fallback'] else 'false'})"
        )
    else:
        print("no candidate can serve it: the API answers an error (see RESULT)")


def _roles(backend: Backend, mapped_ids: set[str]) -> list[str]:
    roles = []
    if backend.id in mapped_ids:
        roles.append("mapped")
    if backend.is_default:
        roles.append("default")
    if backend.is_fallback and not backend.is_default:
        roles.append("fallback")
    if backend.deleted:
        roles.append("deleted")
    return roles or ["-"]


def _line(
    backend: Backend,
    position: int | None,
    roles: list[str],
    probe: _Probe | None,
    serving: Backend | None,
    *,
    why: str | None = None,
) -> dict[str, Any]:
    if probe is None:
        result = why or ""
    elif probe.result == "checksum_sha256":
        result = "ok: S3's SHA-256 proves it"
    elif probe.result == "hash_needed":
        result = "ok: found, no full-object SHA-256 (the service proves it by hashing)"
    else:
        result = probe.result
    return {
        "order": position,
        "backend": {"id": backend.id, "name": backend.name},
        "org_id": backend.org_id,
        "roles": roles,
        "status": backend.status,
        "result": result,
        "serves": serving is not None and serving.id == backend.id,
    }


def _probe(store: AdminStore, backend: Backend, digest: str) -> _Probe:
    """What one backend answers for the digest, through its own credentials and the service's
    provider adapter; read-only."""
    try:
        store.providers.check_supported(backend)
        try:
            secret = store.read_secret(backend.secret_name)
        except AdminError:
            return _Probe(False, "secret_unavailable")
        description = store.providers.open(backend, secret).describe(digest)
    except AttemptFailed as failure:
        return _Probe(False, failure.reason.value)
    info = description.info
    if description.provider_proof is False:
        return _Probe(False, "digest_mismatch", info.size, info.filename)
    result = "checksum_sha256" if description.provider_proof else "hash_needed"
    return _Probe(True, result, info.size, info.filename)
