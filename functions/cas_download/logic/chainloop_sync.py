"""Chainloop's backends and mappings -> the two tables of SPEC.md, idempotently and incrementally.

One implementation for the scheduled sync function and ``cas-admin sync chainloop``.

* Backends are few: every run reads them all and compares each with its row, so a change Chainloop
  makes without touching ``updated_at`` is still seen, and a run with nothing new writes nothing.
  A row's status is Chainloop's only while Chainloop validated more recently than the row says: a
  status the service or its validator repaired since is never overwritten by an older one.
* Mappings are many and insert-only: a run reads those created since the watermark (minus an overlap,
  for rows whose transaction committed late), asks DynamoDB which of them exist, and writes only the
  others. The watermark moves after each chunk is written, so a run that dies is resumed by the next
  one, and rewriting a chunk twice writes nothing the second time.
* Organizations are read whole (id, deletion, suspension): Chainloop soft-deletes an org and hides its
  backends through that join, so a deleted org's backends are written deleted (the earlier of the
  two deletions), and its mappings are not copied. A suspended org's backends are written
  ``org_suspended`` (cleared when Chainloop lifts it); its mappings are copied as any other.
* A mapping to a backend row Chainloop no longer has (``cas_mappings`` has had no foreign key since
  20241126182209) still proves its org holds the digest (SPEC, *Resolution*): it is copied, and
  counted apart as ``backend_missing``.
* Bad rows are skipped and counted, never written: a malformed digest, a mapping or backend of an
  org Chainloop does not know or has deleted, a backend without an org.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from msgspec import Struct, field

from cas_download.data.chainloop_db import ChainloopBackend, ChainloopMapping, ChainloopOrganization
from cas_download.domain import Backend, ValidationStatus

Row = dict[str, Any]

# Chainloop checks digests with go-containerregistry's parser: "sha256:" and 64 hex digits. Upper-case
# hex is accepted here and lowered, the form every reader of the Mappings table expects.
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STATUS_ATTRIBUTES = ("validation_status", "validation_error", "validated_at")
# The attributes of a Backends row that Chainloop owns; any other (region, key_prefix set by an
# operator) is left as it is.
_BACKEND_ATTRIBUTES = (
    "org_id",
    "name",
    "provider",
    "location",
    "secret_name",
    "created_at",
    "is_default",
    "is_fallback",
    "deleted_at",
    "org_suspended",
    *_STATUS_ATTRIBUTES,
)

DEFAULT_OVERLAP = dt.timedelta(minutes=10)
CHUNK_ROWS = 500
# Save the watermark at most every this many rows: a killed run redoes at most this much reading.
WATERMARK_EVERY_ROWS = 5000


class SkipReason:
    MALFORMED_DIGEST = "malformed_digest"
    MISSING_ORG = "missing_org"
    UNKNOWN_ORG = "unknown_org"
    DELETED_ORG = "deleted_org"


# Each org's id -> its deletion and suspension. An org absent from it is unknown.
Organizations = Mapping[str, ChainloopOrganization]


class ChainloopSource(Protocol):
    def organizations(self) -> dict[str, ChainloopOrganization]: ...
    def backends(self) -> list[ChainloopBackend]: ...
    def count_mappings(self, since: dt.datetime) -> int: ...
    def mappings_since(self, since: dt.datetime) -> Iterable[ChainloopMapping]: ...


class Target(Protocol):
    def backends(self, ids: Iterable[str]) -> dict[str, Row]: ...
    def backend(self, backend_id: str) -> Row | None: ...
    def update_backend(
        self, backend_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> bool: ...
    def existing_mappings(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def put_mappings(self, rows: list[Row]) -> None: ...
    def watermark(self) -> str | None: ...
    def save_watermark(self, created_at: str, saved_at: str) -> None: ...


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, rows: int) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        return None

    def advance(self, rows: int) -> None:
        return None


class Tally(Struct):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": dict(sorted(self.skipped.items())),
        }


class MappingTally(Tally):
    # Of the mappings copied (created or unchanged), those whose backend row Chainloop no longer has.
    backend_missing: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "backend_missing": self.backend_missing}


class SyncSummary(Struct):
    dry_run: bool
    backends: Tally = field(default_factory=Tally)
    mappings: MappingTally = field(default_factory=MappingTally)
    watermark: str | None = None
    complete: bool = True

    @property
    def writes(self) -> int:
        return (
            self.backends.created + self.backends.updated + self.mappings.created if not self.dry_run else 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            "backends": self.backends.as_dict(),
            "mappings": self.mappings.as_dict(),
            "watermark": self.watermark,
        }


# ---------------------------------------------------------------------- row encoding


def utc_iso(moment: dt.datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``: the form the service writes its own times in."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # timestamptz arrives aware; a bare timestamp is UTC
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def normalize_digest(raw: str | None) -> str | None:
    """``sha256:<lowercase hex>``, or None for anything Chainloop's own parser would refuse."""
    match = _DIGEST.fullmatch(raw or "")
    return f"sha256:{match.group(1).lower()}" if match else None


def _org_skip(org_id: str, organizations: Organizations) -> str | None:
    """Why rows of this org are not copied, or None when it is a live org."""
    if not org_id:
        return SkipReason.MISSING_ORG
    if org_id not in organizations:
        return SkipReason.UNKNOWN_ORG
    return SkipReason.DELETED_ORG if organizations[org_id].deleted_at is not None else None


def backend_row(backend: ChainloopBackend, organizations: Organizations) -> Row | str:
    """The spec's Backends row for a Chainloop backend (None: attribute absent), or a skip reason.
    A deleted org's backend is written deleted, as Chainloop hides it (not skipped: its row must say
    so, or a run before the org's deletion would leave it serving)."""
    skip = _org_skip(backend.org_id, organizations)
    if skip is not None and skip != SkipReason.DELETED_ORG:
        return skip
    organization = organizations[backend.org_id]
    deletions = [moment for moment in (backend.deleted_at, organization.deleted_at) if moment]
    deleted_at = min(deletions, key=utc_iso) if deletions else None
    deleted = deleted_at is not None
    status = (
        ValidationStatus(backend.validation_status)
        if backend.validation_status in set(ValidationStatus)
        else None
    )
    row = Backend(
        id=backend.id,
        org_id=backend.org_id,
        name=backend.name or backend.id,
        # Copied as Chainloop names it: INLINE and AWS-S3-ACCESS-POINT rows are skipped by the service
        # (unsupported_provider) and still prove that an org holds a digest.
        provider=backend.provider,
        location=backend.location or "",
        secret_name=backend.secret_name or "",
        created_at=utc_iso(backend.created_at),
        # A deleted backend is never a candidate; the spec: never both default and fallback, default wins.
        is_default=backend.is_default and not deleted,
        is_fallback=backend.is_fallback and not backend.is_default and not deleted,
        deleted_at=utc_iso(deleted_at) if deleted_at else None,
        # Chainloop blocks a suspended org's every operation: its rows say so until it is lifted.
        org_suspended=organization.suspended,
        validation_status=status,
        validation_error=(backend.validation_error or None) if status else None,
        validated_at=utc_iso(backend.validated_at) if status and backend.validated_at else None,
    ).to_row()
    # region and key_prefix are the operator's (Chainloop has neither): not Chainloop's to write.
    del row["region"], row["key_prefix"]
    return row


def mapping_row(
    mapping: ChainloopMapping, known_backends: Mapping[str, str], organizations: Organizations
) -> Row | str:
    """The spec's Mappings row for a Chainloop mapping, or a skip reason. Its backend need not exist:
    the row still proves that its org holds the digest."""
    digest = normalize_digest(mapping.digest)
    if digest is None:
        return SkipReason.MALFORMED_DIGEST
    org = mapping.org_id or known_backends.get(mapping.backend_id, "")
    skip = _org_skip(org, organizations)
    if skip is not None:
        return skip
    return {
        "digest": digest,
        "org_backend": f"{org}#{mapping.backend_id}",
        "org_id": org,
        "backend_id": mapping.backend_id,
        "created_at": utc_iso(mapping.created_at),
        "workflow_run_id": mapping.workflow_run_id or None,
    }


def backend_changes(desired: Row, existing: Row | None) -> tuple[Row, Row]:
    """What to write to make ``existing`` say what Chainloop says, and the values the write expects
    to find (so that a status written meanwhile by the service is not overwritten)."""
    if existing is None:
        return {k: v for k, v in desired.items() if k != "id" and v is not None}, {"id": None}
    wanted = {k: desired.get(k) for k in _BACKEND_ATTRIBUTES}
    ours, theirs = parse_iso(desired.get("validated_at")), parse_iso(existing.get("validated_at"))
    if ours is None or (theirs is not None and theirs >= ours):
        for attribute in _STATUS_ATTRIBUTES:
            del wanted[attribute]
    changes = {k: v for k, v in wanted.items() if existing.get(k) != v}
    expect: Row = {"id": desired["id"]}
    if any(attribute in changes for attribute in _STATUS_ATTRIBUTES):
        expect["validated_at"] = existing.get("validated_at")
    return changes, expect


# ---------------------------------------------------------------------- the run


def run_sync(
    source: ChainloopSource,
    target: Target,
    *,
    now: Callable[[], dt.datetime],
    dry_run: bool = False,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SyncSummary:
    summary = SyncSummary(dry_run=dry_run)
    organizations = source.organizations()
    known_backends = _sync_backends(source, target, summary, organizations, dry_run)
    _sync_mappings(
        source,
        target,
        summary,
        _MappingContext(known_backends, organizations),
        now,
        dry_run,
        overlap,
        progress or _NoProgress(),
        should_stop,
    )
    return summary


class _MappingContext(Struct, frozen=True):
    known_backends: Mapping[str, str]  # backend id -> org id, of every backend row Chainloop has
    organizations: Organizations


def _sync_backends(
    source: ChainloopSource,
    target: Target,
    summary: SyncSummary,
    organizations: Organizations,
    dry_run: bool,
) -> dict[str, str]:
    tally = summary.backends
    records = source.backends()
    known = {record.id: record.org_id for record in records if record.org_id}
    desired: list[Row] = []
    for record in records:
        row = backend_row(record, organizations)
        if isinstance(row, str):
            tally.skipped[row] += 1
        else:
            desired.append(row)
    existing = target.backends(row["id"] for row in desired)
    planned = [(row, *backend_changes(row, existing.get(row["id"]))) for row in desired]
    # Flags are cleared before they are set, so an org never shows two defaults on the way.
    planned.sort(
        key=lambda plan: not any(plan[1].get(f, True) is None for f in ("is_default", "is_fallback"))
    )
    for row, changes, expect in planned:
        if not changes:
            tally.unchanged += 1
            continue
        created = existing.get(row["id"]) is None
        if not dry_run:
            _write_backend(target, row, changes, expect)
        if created:
            tally.created += 1
        else:
            tally.updated += 1
    return known


def _write_backend(target: Target, row: Row, changes: Row, expect: Row) -> None:
    """Write, and if the row changed between our read and this write (the service recorded a status,
    another sync ran), read it again and redo the comparison."""
    for _ in range(5):
        if not changes or target.update_backend(row["id"], changes, expect=expect):
            return
        changes, expect = backend_changes(row, target.backend(row["id"]))
    raise RuntimeError(f"backend {row['id']} kept changing while the sync wrote it")


def _sync_mappings(
    source: ChainloopSource,
    target: Target,
    summary: SyncSummary,
    context: _MappingContext,
    now: Callable[[], dt.datetime],
    dry_run: bool,
    overlap: dt.timedelta,
    progress: Progress,
    should_stop: Callable[[], bool],
) -> None:
    stored = target.watermark()
    summary.watermark = stored
    since = (parse_iso(stored) or _EPOCH) - overlap if stored else _EPOCH
    progress.start(source.count_mappings(since))
    chunk: list[ChainloopMapping] = []
    unsaved_rows = 0

    def flush() -> None:
        nonlocal unsaved_rows
        _write_mappings(chunk, target, summary.mappings, context, dry_run)
        progress.advance(len(chunk))
        unsaved_rows += len(chunk)
        newest = utc_iso(chunk[-1].created_at)
        if summary.watermark is None or newest > summary.watermark:
            summary.watermark = newest
        chunk.clear()
        if unsaved_rows >= WATERMARK_EVERY_ROWS:
            _save(target, summary, stored, now, dry_run)
            unsaved_rows = 0

    for mapping in source.mappings_since(since):
        chunk.append(mapping)
        if len(chunk) >= CHUNK_ROWS:
            flush()
            if should_stop():
                summary.complete = False
                break
    if chunk:
        flush()
    _save(target, summary, stored, now, dry_run)


def _save(
    target: Target, summary: SyncSummary, stored: str | None, now: Callable[[], dt.datetime], dry_run: bool
) -> None:
    if not dry_run and summary.watermark is not None and summary.watermark != stored:
        target.save_watermark(summary.watermark, utc_iso(now()))


def _write_mappings(
    chunk: list[ChainloopMapping],
    target: Target,
    tally: MappingTally,
    context: _MappingContext,
    dry_run: bool,
) -> None:
    rows: dict[tuple[str, str], Row] = {}
    for mapping in chunk:
        row = mapping_row(mapping, context.known_backends, context.organizations)
        if isinstance(row, str):
            tally.skipped[row] += 1
            continue
        if mapping.backend_id not in context.known_backends:
            tally.backend_missing += 1
        key = (row["digest"], row["org_backend"])
        if key in rows:
            tally.unchanged += 1  # a second Chainloop mapping (another run) of the same copy: the first wins
        else:
            rows[key] = row
    if not rows:
        return
    existing = target.existing_mappings(list(rows))
    new = [row for key, row in rows.items() if key not in existing]
    tally.unchanged += len(rows) - len(new)
    tally.created += len(new)
    if new and not dry_run:
        target.put_mappings(new)
