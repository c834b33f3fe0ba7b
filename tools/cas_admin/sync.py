"""``cas-admin sync chainloop``: the scheduled sync function's code (cas_download.logic.chainloop_sync),
run from a terminal against Chainloop's database and the tables cas-admin is pointed at."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

from cas_admin.errors import AdminError, UsageError
from cas_admin.output import print_json, print_table
from cas_admin.store import AdminStore
from cas_download.data.chainloop_db import ChainloopDatabase, SourceUnavailable
from cas_download.data.sync_target import SyncTarget, TargetError, sync_client_config
from cas_download.logic.chainloop_sync import DEFAULT_OVERLAP, SyncSummary, run_sync

DSN_VARIABLE = "CHAINLOOP_DATABASE_URL"


class _Bar:
    """tqdm on a terminal (stderr), counting mappings."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm  # noqa: PLC0415 - only a terminal run draws a bar

        self._bar = tqdm(total=total, unit="mapping", desc="mappings", file=sys.stderr, leave=False)

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_sync_chainloop(args: argparse.Namespace, store: AdminStore) -> int:
    dsn = args.dsn or os.environ.get(DSN_VARIABLE, "").strip()
    if not dsn:
        raise UsageError(
            f"which database? pass --dsn or set {DSN_VARIABLE} (e.g. postgresql://user@host/chainloop)"
        )
    if args.overlap_seconds < 0:
        raise UsageError("--overlap-seconds must be 0 or more")
    target = SyncTarget(
        store.session.client("dynamodb", region_name=store.region, config=sync_client_config()),
        store.backends_table,
        store.mappings_table,
    )
    bar = _Bar() if sys.stderr.isatty() and not args.json else None
    try:
        with ChainloopDatabase(dsn) as database:
            summary = run_sync(
                database,
                target,
                now=lambda: dt.datetime.now(dt.UTC),
                dry_run=args.dry_run,
                overlap=dt.timedelta(seconds=args.overlap_seconds),
                progress=bar,
            )
    except (SourceUnavailable, TargetError) as error:
        raise AdminError(str(error)) from None
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print_json(summary.as_dict())
    else:
        _print_summary(summary)
    return 0


def _print_summary(summary: SyncSummary) -> None:
    rows = []
    for kind, tally in (("backends", summary.backends), ("mappings", summary.mappings)):
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(tally.skipped.items()))
        rows.append([kind, tally.created, tally.updated, tally.unchanged, skipped or "0"])
    verb = "would be " if summary.dry_run else ""
    print(f"chainloop sync{' (dry run: nothing written)' if summary.dry_run else ''}")
    print_table(["rows", f"{verb}created", f"{verb}updated", "unchanged", "skipped"], rows)
    # Copied all the same: they prove their org holds the digest, served through its default and fallback
    print(f"mappings whose backend Chainloop no longer has: {summary.mappings.backend_missing}")
    print(f"watermark: {summary.watermark or '-'}")


def add_overlap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overlap-seconds",
        type=int,
        default=int(DEFAULT_OVERLAP.total_seconds()),
        help="re-read mappings this far before the watermark, for rows committed late (default %(default)s)",
    )
