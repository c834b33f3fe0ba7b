"""``cas-admin verify``: prove what is already mapped (spec: "Verifying ahead of requests", backfill),
with the verifier function's own code (:func:`cas_download.logic.verifier.verify_mapping`): the same
candidates, proofs and verification records, run from a terminal.

    cas-admin verify --org ORG                 every mapping of one org
    cas-admin verify --digest sha256:...       every org's mapping of one digest
    cas-admin verify --since 2025-11-01T00:00:00Z
    cas-admin verify --org ORG --dry-run       what would be proven, nothing read

A summary follows: proven, already proven, failed by reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cas_admin.errors import UsageError
from cas_admin.output import print_json
from cas_admin.parsing import Command, option, table_option
from cas_admin.store import AdminStore
from cas_download.data.items import from_item
from cas_download.digests import parse_digest
from cas_download.domain import Mapping
from cas_download.errors import InvalidDigest
from cas_download.logic.deadline import Deadline
from cas_download.logic.services import Services
from cas_download.logic.verifier import NotAMapping, Outcome, RetryLater, mapping_from_image, verify_mapping

VERIFICATIONS_VARIABLE = "VERIFICATIONS_TABLE"
# An operator's run has no Lambda timeout: one mapping may take as long as its object needs.
_PER_MAPPING_SECONDS = 3600.0


@dataclass
class VerifySummary:
    proven: int = 0
    already_proven: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # reason -> mappings that failed with it
    mappings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for m in self.mappings if m["outcome"] == "failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "proven": self.proven,
            "already_proven": self.already_proven,
            "failed": self.failures,
            "failed_by_reason": dict(sorted(self.failed.items())),
            "skipped": self.skipped,
            "mappings": self.mappings,
        }


def cmd_verify(args: argparse.Namespace, store: AdminStore) -> int:
    digest = _digest(args.digest)
    since = _since(args.since)
    if args.org is not None and not args.org.strip():
        raise UsageError("--org must name an organization")
    selected = list(select_mappings(store, org=args.org, digest=digest, since=since))
    if args.dry_run:
        return _dry_run(selected, args.json)
    table = args.verifications_table or os.environ.get(VERIFICATIONS_VARIABLE, "").strip()
    if not table:
        raise UsageError(
            f"which Verifications table? pass --verifications-table or set {VERIFICATIONS_VARIABLE} "
            "(the stack's VerificationsTableName output)"
        )
    services = _services(store, table)
    summary = run_verify(selected, services, progress=sys.stderr.isatty() and not args.json)
    if args.json:
        print_json(summary.to_json())
    else:
        _print_summary(summary)
    return 1 if summary.failures else 0


COMMAND = Command(
    "verify",
    cmd_verify,
    help="prove mapped objects ahead of requests (backfill)",
    description=(
        "Prove the objects of existing mappings as the verifier function proves new ones: the same "
        "candidates (never another org's), proofs and verification records. Select by --org, "
        "--digest and/or --since (all mappings when none is given)."
    ),
    arguments=(
        option("--org", help="only this organization's mappings"),
        option("--digest", help="only the mappings of this digest (sha256:<hex>)"),
        option(
            "--since",
            metavar="ISO8601",
            help="only mappings created at or after this time (e.g. 2025-11-01T00:00:00Z)",
        ),
        option("--dry-run", action="store_true", help="list what would be proven; read nothing"),
        table_option("Verifications", VERIFICATIONS_VARIABLE),
    ),
)


def select_mappings(
    store: AdminStore, *, org: str | None, digest: str | None, since: str | None
) -> Iterator[Mapping | NotAMapping]:
    """The Mappings rows selected (a query by digest, else a scan), as mappings; a row that is none
    (the sync's watermark) as the reason it is skipped."""
    client = store.client("dynamodb")
    if digest is not None:
        pages = client.get_paginator("query").paginate(
            TableName=store.mappings_table,
            KeyConditionExpression="digest = :d",
            ExpressionAttributeValues={":d": {"S": digest}},
        )
    else:
        pages = client.get_paginator("scan").paginate(TableName=store.mappings_table)
    for page in pages:
        for item in page.get("Items", []):
            try:
                mapping = mapping_from_image(from_item(item))
            except NotAMapping as skipped:
                yield skipped
                continue
            if org is not None and mapping.org_id != org:
                continue
            if since is not None and mapping.created_at < since:
                continue
            yield mapping


def run_verify(
    selected: Iterable[Mapping | NotAMapping], services: Services, *, progress: bool = False
) -> VerifySummary:
    """Prove each mapping in turn with the verifier's code, counting the outcomes."""
    summary = VerifySummary()
    items = list(selected)
    bar = _bar(len(items)) if progress else None
    try:
        for item in items:
            if isinstance(item, NotAMapping):
                summary.skipped += 1
            else:
                summary.mappings.append(_verify_one(item, services, summary))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _verify_one(mapping: Mapping, services: Services, summary: VerifySummary) -> dict[str, Any]:
    line: dict[str, Any] = {"digest": mapping.digest, "org": mapping.org_id, "backend_id": mapping.backend_id}
    try:
        verification = verify_mapping(mapping, services, Deadline(_PER_MAPPING_SECONDS))
    except NotAMapping as skipped:
        summary.skipped += 1
        return {**line, "outcome": "skipped", "reasons": [str(skipped)]}
    except RetryLater as retry:
        reasons = sorted({a.reason.value for a in retry.attempts})
        summary.failed.update(reasons)
        return {**line, "outcome": "failed", "reasons": reasons}
    if verification.outcome is Outcome.FAILED:
        reasons = sorted(set(verification.reasons))
        summary.failed.update(reasons)
        return {**line, "outcome": "failed", "reasons": reasons}
    if verification.outcome is Outcome.PROVEN:
        summary.proven += 1
    else:
        summary.already_proven += 1
    assert verification.backend is not None
    return {
        **line,
        "outcome": verification.outcome.value,
        "proven_by": verification.backend.name,
        "verification": verification.method.value if verification.method else None,
    }


def _services(store: AdminStore, verifications_table: str) -> Services:
    from cas_download.app import App  # noqa: PLC0415 - only a real run builds the service's clients
    from cas_download.config import Settings  # noqa: PLC0415

    settings = Settings(
        backends_table=store.backends_table,
        mappings_table=store.mappings_table,
        verifications_table=verifications_table,
        region=store.region,
        # an operator's patience: the timeouts of cas-admin's own storage calls
        s3_connect_timeout_seconds=store.providers.connect_timeout_seconds,
        s3_read_timeout_seconds=store.providers.read_timeout_seconds,
    )
    return App.create(settings, session=store.session).services


def _digest(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return parse_digest(raw)
    except InvalidDigest:
        raise UsageError(f"--digest: {raw!r} is not sha256:<64 hex>") from None


def _since(raw: str | None) -> str | None:
    """``--since`` as the tables write times (ISO 8601 UTC, ``Z``), so a string comparison orders them."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: {raw!r} is not an ISO 8601 time (e.g. 2025-11-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _dry_run(selected: list[Mapping | NotAMapping], as_json: bool) -> int:
    mappings = [m for m in selected if isinstance(m, Mapping)]
    document = {
        "would_verify": [
            {"digest": m.digest, "org": m.org_id, "backend_id": m.backend_id, "created_at": m.created_at}
            for m in mappings
        ],
        "skipped": len(selected) - len(mappings),
    }
    if as_json:
        print_json(document)
    else:
        for m in mappings:
            print(f"{m.digest}  {m.org_id}  {m.backend_id}  {m.created_at}")
        print(f"{len(mappings)} mapping(s) would be verified (dry run: nothing was read)")
    return 0


def _print_summary(summary: VerifySummary) -> None:
    for line in summary.mappings:
        if line["outcome"] == "failed":
            print(f"failed  {line['digest']}  {line['org']}: {', '.join(line['reasons'])}")
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.failed.items()))
    print(
        f"proven {summary.proven}, already proven {summary.already_proven}, "
        f"failed {summary.failures}{f' ({reasons})' if reasons else ''}, skipped {summary.skipped}"
    )


def _bar(total: int) -> Any:
    from tqdm import tqdm  # noqa: PLC0415 - only a terminal run draws a bar

    return tqdm(total=total, unit="mapping", desc="verifying", file=sys.stderr, leave=False)
