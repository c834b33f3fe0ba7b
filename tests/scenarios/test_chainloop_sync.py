"""``cas-admin sync chainloop`` and the scheduled sync function, against a real PostgreSQL holding
Chainloop's tables and the moto servers: the API then serves what Chainloop mapped, through fallback
after a rotation Chainloop made; bad databases, throttling and a killed run end in a clear answer."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cas_admin.cli import main as admin_main
from cas_download.config import SyncSettings
from cas_download.data.sync_target import WATERMARK_KEY, SyncTarget
from cas_download.handlers import chainloop_sync
from tests.scenarios.conftest import HttpResult, Service
from tests.support.calls import CallRecorder
from tests.support.faults import FaultServer
from tests.support.moto_servers import AwsServers
from tests.support.postgres import ChainloopRows, Postgres
from tests.support.world import BackendRef, World

DATA = b"an attestation Chainloop stored\n" * 64


@pytest.fixture
def dynamodb_faults(aws_servers: AwsServers, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    """cas-admin's DynamoDB calls go through a fault endpoint that forwards to moto (and counts)."""
    server = FaultServer(upstream=aws_servers.control_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.url)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class AdminSync:
    """``cas-admin sync chainloop``, run in-process on ``world``'s tables from the Chainloop database at
    ``dsn`` (None: no ``--dsn``, the environment's CHAINLOOP_DATABASE_URL or a usage error)."""

    world: World
    capsys: pytest.CaptureFixture[str]
    dsn: str | None

    def run(self, *options: str) -> tuple[int, str, str]:
        """The exit code, stdout and stderr of one run (never a traceback)."""
        self.capsys.readouterr()
        tables = self.world.tables
        dsn = [] if self.dsn is None else ["--dsn", self.dsn]
        argv = ["--backends-table", tables.backends, "--mappings-table", tables.mappings, "sync", "chainloop"]
        code = admin_main([*argv, *dsn, *options])
        out = self.capsys.readouterr()
        assert "Traceback" not in out.err, out.err
        return code, out.out, out.err

    def summary(self, *options: str) -> dict[str, Any]:
        """The ``--json`` summary of a run that succeeded."""
        code, out, err = self.run("--json", *options)
        assert code == 0, err
        document: dict[str, Any] = json.loads(out)
        return document


@pytest.fixture
def sync(world: World, chainloop: ChainloopRows, capsys: pytest.CaptureFixture[str]) -> AdminSync:
    """The sync of the world's tables from the test's Chainloop database."""
    return AdminSync(world, capsys, chainloop.dsn)


def new_org(chainloop: ChainloopRows) -> str:
    """An org as Chainloop's API creates one (with its INLINE default backend)."""
    return chainloop.add_org().id


def org_with_backend(chainloop: ChainloopRows, **backend: Any) -> tuple[str, str]:
    """A new org and an S3 backend "b" of it besides its INLINE one (``backend``: more of
    ``add_backend``'s columns): the org and the backend's id."""
    org = new_org(chainloop)
    return org, chainloop.add_backend(org, "b", location="bucket", secret_name="s", **backend)


def org_with_inline_backend(chainloop: ChainloopRows) -> tuple[str, str]:
    """A new org and the INLINE backend Chainloop created with it."""
    created = chainloop.add_org()
    assert created.inline_backend is not None
    return created.id, created.inline_backend


def mapping_keys(world: World, digest: str) -> set[str]:
    answer = world.dynamodb.query(
        TableName=world.tables.mappings,
        KeyConditionExpression="digest = :d",
        ExpressionAttributeValues={":d": {"S": digest}},
    )
    return {item["org_backend"]["S"] for item in answer["Items"]}


def backend_item(world: World, backend_id: str) -> dict[str, Any]:
    item = world.dynamodb.get_item(TableName=world.tables.backends, Key={"id": {"S": backend_id}}).get("Item")
    assert item is not None
    return {name: next(iter(value.values())) for name, value in item.items()}


def default_backend_holding(
    world: World, chainloop: ChainloopRows, org: str, name: str, **put: Any
) -> tuple[BackendRef, str]:
    """An S3 backend ``name``, ``org``'s default in Chainloop's database, whose bucket holds ``DATA``
    (``put``: as ``World.put``, e.g. ``filename``): the backend and the digest."""
    store = world.backend(org, name, write_row=False)
    digest = world.put(store, DATA, **put)
    chainloop.add_backend(org, name, location=store.location, secret_name=store.secret_name, default=True,
                          backend_id=store.id)  # fmt: skip
    return store, digest


def uploaded_through_default(
    world: World, chainloop: ChainloopRows, org: str, name: str, **put: Any
) -> tuple[BackendRef, str]:
    """``DATA`` uploaded by ``org`` through its default backend ``name``, as Chainloop records it (the
    backend and the mapping in its database, the bytes in the bucket): the backend and the digest."""
    store, digest = default_backend_holding(world, chainloop, org, name, **put)
    chainloop.add_mapping(digest, org, store.id)
    return store, digest


def rotated(world: World, chainloop: ChainloopRows, org: str, old: BackendRef, name: str) -> BackendRef:
    """Chainloop's rotation: a new S3 backend ``name`` on ``old``'s bucket, made the org's default."""
    new = world.backend(org, name, bucket=old.bucket, write_row=False)
    chainloop.add_backend(org, name, location=new.location, secret_name=new.secret_name, backend_id=new.id)
    chainloop.make_default(org, new.id)
    return new


def assert_served(response: HttpResult, backend_name: str, *, fallback: bool) -> None:
    """A 200 carrying ``DATA``, from the backend ``backend_name``, flagged a fallback or not."""
    assert response.status == 200
    assert response.body == DATA
    flags = (response.headers["X-Cas-Backend"], response.headers["X-Cas-Fallback"])
    assert flags == (backend_name, "true" if fallback else "false")


def assert_served_to_its_org_only(
    service: Service, chainloop: ChainloopRows, digest: str, org: str, backend_name: str, *, fallback: bool
) -> None:
    """``org`` is served ``DATA`` from ``backend_name`` (as ``assert_served``); another org, which holds
    no mapping of the digest, is not (404)."""
    assert_served(service.get(digest, orgs=org, mode="body"), backend_name, fallback=fallback)
    assert service.get(digest, orgs=new_org(chainloop), mode="body").status == 404


def test_the_api_serves_a_chainloop_artifact_through_fallback_after_chainloop_rotates(
    world: World, service: Service, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given an org whose artifact Chainloop uploaded through its default S3 backend
    org = new_org(chainloop)
    old, digest = uploaded_through_default(world, chainloop, org, "cas-old", filename="attestation.json")

    # When it is synced, the API serves it through the mapped backend
    assert sync.summary()["mappings"]["created"] == 1
    assert_served(service.get(digest, orgs=org, mode="body"), "cas-old", fallback=False)

    # When Chainloop rotates: the old keys are revoked, a new backend on the same bucket is the default
    world.revoke(old)
    rotated(world, chainloop, org, old, "cas-new")
    summary = sync.summary()

    # Then the sync moved the default, and the API serves the same bytes through the new backend
    assert summary["backends"] == {"created": 1, "updated": 1, "unchanged": 1, "skipped": {}}
    assert "is_default" not in backend_item(world, old.id)
    service.configure()
    served = service.get(digest, orgs=org, mode="body")
    assert_served(served, "cas-new", fallback=True)
    assert 'filename="attestation.json"' in served.headers["Content-Disposition"]


def test_an_org_whose_inline_backend_older_chainloop_flagged_fallback_falls_back_as_any_other(
    world: World, service: Service, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given an org as Chainloop before v1.67.0 left it: its auto-created INLINE backend flagged fallback
    org, inline = org_with_inline_backend(chainloop)
    chainloop.update_backend(inline, fallback=True)
    # and its artifact uploaded through an S3 backend that was then rotated away (keys revoked)
    old, digest = uploaded_through_default(world, chainloop, org, "cas-old")
    new = rotated(world, chainloop, org, old, "cas-new")
    world.revoke(old)

    # When it is synced and the artifact asked for
    sync.summary()
    served = service.get(digest, orgs=org, mode="body")

    # Then the INLINE row keeps Chainloop's flag, and the org's default serves, as for any org
    assert backend_item(world, inline)["is_fallback"] is True
    assert_served(served, "cas-new", fallback=True)

    # When the default cannot serve either
    world.revoke(new)
    service.configure()
    failed = service.get(digest, orgs=org, mode="body")

    # Then the INLINE fallback is only ever skipped (unsupported_provider: no storage is contacted), in
    # the spec's order: the default, the fallback, then the mapped backend, which the first request's
    # rejected keys marked Invalid (tried last)
    assert failed.status == 502
    assert failed.attempts == [
        ("cas-new", "credentials_invalid"),
        ("default-inline", "unsupported_provider"),
        ("cas-old", "credentials_invalid"),
    ]


def test_an_inline_backend_is_copied_skipped_by_the_service_and_still_proves_the_org_holds_the_digest(
    world: World, service: Service, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given a digest Chainloop mapped only to the org's INLINE backend, and the same bytes in its S3 default
    org, inline = org_with_inline_backend(chainloop)
    _store, digest = default_backend_holding(world, chainloop, org, "s3")
    chainloop.add_mapping(digest, org, inline)

    sync.summary()

    # Then the INLINE row is there as Chainloop named it, and the API serves the digest from the default
    assert backend_item(world, inline)["provider"] == "INLINE"
    # (the mapped INLINE backend was the first candidate, skipped: what serves is a fallback), and
    # another org, which holds no mapping of the digest, is not served
    assert_served_to_its_org_only(service, chainloop, digest, org, "s3", fallback=True)


def test_a_second_run_with_nothing_new_writes_nothing(
    world: World, chainloop: ChainloopRows, dynamodb_faults: FaultServer, sync: AdminSync
) -> None:
    # Given a synced Chainloop: 3 backends (the org's INLINE one and 2), 600 mappings (more than one chunk)
    org = new_org(chainloop)
    backends = [
        chainloop.add_backend(org, f"b{i}", location=f"bucket-{i}", secret_name=f"s/{i}") for i in range(2)
    ]
    chainloop.add_generated_mappings(600, backends, [org, org])
    first = sync.summary()
    assert (first["backends"]["created"], first["mappings"]["created"]) == (3, 600)

    # When it runs again
    dynamodb_faults.reset()
    second = sync.summary()

    # Then its reads went through the counting endpoint: the watermark, the 3 backends (one batch) and
    # the 600 mappings of the overlap (chunks of 500 and 100, 100 keys a batch: 5 + 1)
    operations = Counter(s.operation for s in dynamodb_faults.seen if s.service == "dynamodb")
    assert (operations["GetItem"], operations["BatchGetItem"]) == (1, 1 + 6)
    # and not one write reached DynamoDB
    assert [op for op in operations if op in {"PutItem", "UpdateItem", "BatchWriteItem"}] == []
    assert second["backends"] == {"created": 0, "updated": 0, "unchanged": 3, "skipped": {}}
    assert (second["mappings"]["created"], second["mappings"]["unchanged"]) == (0, 600)


def test_bad_rows_are_skipped_and_reported(world: World, chainloop: ChainloopRows, sync: AdminSync) -> None:
    # Given a good mapping (upper-case hex), a malformed digest, and a mapping of an org Chainloop
    # does not have (cas_mappings has no foreign key to organizations)
    org, backend = org_with_backend(chainloop)
    good = "sha256:" + hashlib.sha256(b"good").hexdigest()
    stray = "sha256:" + hashlib.sha256(b"stray").hexdigest()
    chainloop.add_mapping(good.upper().replace("SHA256:", "sha256:"), org, backend)
    chainloop.add_mapping("sha256:short", org, backend)
    chainloop.add_mapping(stray, str(uuid.uuid4()), backend, without_run=True)  # no org: no run either

    code, out, err = sync.run()

    # Then the good one is copied, lowered, and each skip is counted by its reason
    assert code == 0, err
    assert "malformed_digest 1, unknown_org 1" in out
    assert mapping_keys(world, good) == {f"{org}#{backend}"}
    assert mapping_keys(world, stray) == set()


def test_a_mapping_to_a_backend_chainloop_removed_is_copied_and_served_through_the_orgs_default(
    world: World, service: Service, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given an artifact uploaded through a backend whose row Chainloop then removed (CASBackendRepo.Delete;
    # cas_mappings has no foreign key to keep it), and the same bytes in the org's S3 default
    org = new_org(chainloop)
    store, digest = default_backend_holding(world, chainloop, org, "store")
    removed = chainloop.add_backend(org, "removed", location=store.location, secret_name="gone")
    chainloop.add_mapping(digest, org, removed)
    chainloop.remove_backend(removed)

    # When it is synced
    code, out, err = sync.run()

    # Then the mapping is copied as Chainloop has it, and counted apart, not skipped
    assert code == 0, err
    assert "mappings whose backend Chainloop no longer has: 1" in out
    assert {key for key in mapping_keys(world, digest) if key.startswith(f"{org}#")} == {f"{org}#{removed}"}
    summary = sync.summary()
    assert (summary["mappings"]["backend_missing"], summary["mappings"]["skipped"]) == (1, {})
    # and it proves the org holds the digest: served through the org's default, to that org only
    assert_served_to_its_org_only(service, chainloop, digest, org, "store", fallback=True)


def test_a_deleted_orgs_backends_stop_serving_and_a_rerun_does_not_bring_them_back(
    world: World, service: Service, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given a synced org whose artifact the API serves through its default
    org = new_org(chainloop)
    store, digest = uploaded_through_default(world, chainloop, org, "store")
    sync.summary()
    assert service.get(digest, orgs=org, mode="body").status == 200

    # When Chainloop soft-deletes the org (organizations.deleted_at; its backend rows stay as they are)
    chainloop.delete_org(org)
    summary = sync.summary()

    # Then both its backends (the INLINE one and the store) are deleted and neither is the default
    assert summary["backends"]["updated"] == 2
    row = backend_item(world, store.id)
    assert "deleted_at" in row
    assert "is_default" not in row
    # the mapping re-read in the overlap is not copied again: it is the deleted org's
    assert summary["mappings"]["skipped"] == {"deleted_org": 1}
    # and the API no longer serves the artifact, to that org or any other
    service.configure()
    gone = service.get(digest, orgs=org, mode="body")
    # (its mapping is still there and proves the org held the digest, but no backend of it may be tried)
    assert (gone.status, gone.error_code, gone.attempts) == (502, "backends_unavailable", [])
    assert service.get(digest, orgs=new_org(chainloop), mode="body").status == 404

    # When the sync runs again
    again = sync.summary()

    # Then nothing is brought back
    assert again["backends"]["updated"] == 0
    assert backend_item(world, store.id)["deleted_at"] == row["deleted_at"]
    assert "is_default" not in backend_item(world, store.id)


def test_a_suspended_org_is_refused_403_without_a_storage_call_and_served_again_when_lifted(
    world: World, service: Service, call_recorder: CallRecorder, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given an org's artifact, synced and served
    org = new_org(chainloop)
    store, digest = uploaded_through_default(world, chainloop, org, "cas")
    sync.summary()
    assert service.get(digest, orgs=org, mode="body").status == 200

    # When Chainloop suspends the org (OrganizationRepo.SetSuspended) and the sync runs
    chainloop.set_suspended(org, True)
    suspended = sync.summary()

    # Then every backend row of the org says so (its INLINE one too)
    assert suspended["backends"]["updated"] == 2
    assert backend_item(world, store.id)["org_suspended"] is True
    # and the API answers 403 org_suspended, with no secret or storage call
    service.configure()
    call_recorder.clear()
    refused = service.get(digest, orgs=org, mode="body")
    assert (refused.status, refused.error_code) == (403, "org_suspended")
    assert call_recorder.count("secretsmanager") == 0
    assert call_recorder.storage_calls() == []

    # When Chainloop lifts the suspension and the sync runs
    chainloop.set_suspended(org, False)
    lifted = sync.summary()

    # Then the flag is cleared and the artifact is served again
    assert lifted["backends"]["updated"] == 2
    assert "org_suspended" not in backend_item(world, store.id)
    service.configure()
    assert service.get(digest, orgs=org, mode="body").body == DATA


def test_another_org_holding_the_digest_still_serves_it_while_one_is_suspended(
    world: World, service: Service, call_recorder: CallRecorder, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given the same bytes uploaded by two orgs, one of them suspended by Chainloop
    suspended_org, other_org = new_org(chainloop), new_org(chainloop)
    uploaded_through_default(world, chainloop, suspended_org, "cas")
    other_store, digest = uploaded_through_default(world, chainloop, other_org, "cas")
    chainloop.set_suspended(suspended_org, True)
    sync.summary()

    # When a caller of both orgs asks for it
    call_recorder.clear()
    served = service.get(digest, orgs=[suspended_org, other_org], mode="body")

    # Then the live org's backend serves it; the suspended org's is never tried
    assert served.status == 200
    assert served.headers["X-Cas-Backend"] == "cas"
    assert {c.params["Bucket"] for c in call_recorder.storage_calls()} == {other_store.bucket}


def test_a_chainloop_from_before_suspension_is_synced_as_before(
    world: World, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given a Chainloop database from before migration 20260408122048 (v1.89.12): no suspended column
    _org, backend = org_with_backend(chainloop)
    chainloop.connection().execute(b"ALTER TABLE organizations DROP COLUMN suspended")

    # When it is synced
    summary = sync.summary()

    # Then its backends are copied, none of them suspended
    assert summary["backends"]["created"] == 2
    assert "org_suspended" not in backend_item(world, backend)


def synced_history(sync: AdminSync, chainloop: ChainloopRows, mappings: int) -> tuple[str, str]:
    """An org's ``mappings`` recorded over the past (one every 2 minutes, 5 to a run), statistics as
    autovacuum keeps them, all synced by a first import: the org and its backend. ``sync`` must
    write tables of its own (isolated_world): another test's watermark would make this a later run."""
    org, backend = org_with_backend(chainloop)
    chainloop.add_generated_mappings(mappings, [backend], [org], spacing=120.0)
    chainloop.analyze()
    assert sync.summary()["mappings"]["created"] == mappings
    return org, backend


def test_a_quiet_run_reads_a_small_fraction_of_cas_mappings_and_nothing_by_sequential_scan(
    isolated_world: World, chainloop: ChainloopRows, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 20,000 mappings Chainloop recorded over four weeks (a run every 10 minutes, 5 mappings
    # each), already synced, and statistics as autovacuum keeps them
    sync = AdminSync(isolated_world, capsys, chainloop.dsn)
    synced_history(sync, chainloop, 20_000)
    before = chainloop.table_reads()

    # When the sync runs again with nothing new
    again = sync.summary()
    reads = chainloop.reads_since(before)

    # Then it wrote nothing, scanned no table of mappings or runs sequentially, and fetched a small
    # fraction of cas_mappings (the runs of the last hours: count and read, each by index)
    assert again["mappings"]["created"] == 0
    assert reads["cas_mappings"].seq_scan == 0
    assert reads["workflow_runs"].seq_scan == 0
    assert reads["cas_mappings"].idx_tup_fetch <= 0.05 * 20_000
    assert reads["cas_mappings"].idx_scan > 0


def test_an_incremental_run_brings_new_mappings_with_and_without_a_run(
    isolated_world: World, chainloop: ChainloopRows, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a synced history
    world = isolated_world
    sync = AdminSync(world, capsys, chainloop.dsn)
    org, backend = synced_history(sync, chainloop, 2_000)

    # When Chainloop records a mapping of a new run, one of a run started five hours ago (a long
    # pipeline), and one with no run (older data, other writers)
    now = dt.datetime.now(dt.UTC)
    digests = ["sha256:" + hashlib.sha256(f"new-{n}".encode()).hexdigest() for n in range(3)]
    chainloop.add_mapping(digests[0], org, backend)
    long_run = chainloop.add_run(org, created_at=now - dt.timedelta(hours=5))
    chainloop.add_mapping(digests[1], org, backend, workflow_run_id=long_run)
    chainloop.add_mapping(digests[2], org, backend, without_run=True)
    summary = sync.summary()

    # Then the next run brings all three
    assert summary["mappings"]["created"] == 3
    assert all(mapping_keys(world, digest) == {f"{org}#{backend}"} for digest in digests)


# Each column the sync reads that an older Chainloop lacks, put back as that Chainloop had it.
OLDER_SCHEMAS = {
    # before migration 20250902095134 (Chainloop v1.43.2)
    "cas_backends.validation_error": "ALTER TABLE cas_backends DROP COLUMN validation_error",
    # before migration 20250827093032 (v1.43.1)
    "organizations.deleted_at": "DROP INDEX organization_name; ALTER TABLE organizations DROP COLUMN deleted_at",
    # before migration 20241123161902 (v0.123.0)
    "cas_mappings.organization_id": (
        "ALTER TABLE cas_mappings RENAME COLUMN organization_id TO cas_mapping_organization"
    ),
}


@pytest.mark.parametrize("column", sorted(OLDER_SCHEMAS))
def test_an_older_chainloop_schema_is_refused_in_one_line_before_anything_is_written(
    column: str, world: World, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given a Chainloop database from before the column was added, holding a backend
    _org, backend = org_with_backend(chainloop)
    chainloop.connection().execute(OLDER_SCHEMAS[column].encode())

    # When it is synced
    code, out, err = sync.run()

    # Then exit 1, one line on stderr naming the missing column and the oldest supported release
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cas-admin: error: Chainloop's database lacks {column} (")
    assert lines[0].endswith("the sync needs Chainloop v1.43.2 or later")
    # and nothing was written, not even the backends a newer schema's run would copy first
    assert (
        world.dynamodb.get_item(TableName=world.tables.backends, Key={"id": {"S": backend}}).get("Item")
        is None
    )


def test_a_dry_run_writes_nothing(world: World, chainloop: ChainloopRows, sync: AdminSync) -> None:
    org, backend = org_with_backend(chainloop)
    digest = "sha256:" + hashlib.sha256(b"dry").hexdigest()
    chainloop.add_mapping(digest, org, backend)

    summary = sync.summary("--dry-run")

    # (the org's INLINE backend and b)
    assert (summary["dry_run"], summary["backends"]["created"], summary["mappings"]["created"]) == (
        True,
        2,
        1,
    )
    assert (
        world.dynamodb.get_item(TableName=world.tables.backends, Key={"id": {"S": backend}}).get("Item")
        is None
    )
    assert mapping_keys(world, digest) == set()


def test_a_status_the_service_repaired_survives_a_sync_of_an_older_chainloop_status(
    world: World, chainloop: ChainloopRows, sync: AdminSync
) -> None:
    # Given a backend Chainloop last saw Invalid an hour ago, synced
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    _org, backend = org_with_backend(chainloop, status="Invalid", validation_error="AccessDenied",
                                     validated_at=an_hour_ago)  # fmt: skip
    sync.summary()
    assert backend_item(world, backend)["validation_status"] == "Invalid"

    # When the service's validator finds it OK now, and Chainloop changes its name
    tables = SyncTarget(world.dynamodb, world.tables.backends, world.tables.mappings)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert tables.update_backend(
        backend, {"validation_status": "OK", "validation_error": None, "validated_at": now}, expect={}
    )
    chainloop.update_backend(backend, name="renamed")
    summary = sync.summary()

    # Then the name is Chainloop's and the status the service's
    row = backend_item(world, backend)
    assert summary["backends"]["updated"] == 1
    assert (row["name"], row["validation_status"], row["validated_at"]) == ("renamed", "OK", now)
    assert "validation_error" not in row


def test_an_unreachable_database_is_one_line_and_exit_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = AdminSync(world, capsys, "postgresql://chainloop:pw@127.0.0.1:9/chainloop").run()
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cas-admin: error: cannot connect to Chainloop's database:")


def test_a_refused_password_is_one_line_without_the_password(
    world: World, postgres: Postgres, chainloop: ChainloopRows, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "wrong-password-" + uuid.uuid4().hex
    dsn = chainloop.dsn.replace(f":{postgres.password}@", f":{wrong}@")
    code, _, err = AdminSync(world, capsys, dsn).run()
    assert code == 1
    assert "password authentication failed" in err
    assert wrong not in err
    assert len(err.strip().splitlines()) == 1


def test_no_dsn_is_a_usage_error(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHAINLOOP_DATABASE_URL", raising=False)
    code, _, err = AdminSync(world, capsys, dsn=None).run()
    assert code == 2
    assert "CHAINLOOP_DATABASE_URL" in err


def test_the_dsn_may_come_from_the_environment(
    world: World,
    chainloop: ChainloopRows,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org_with_backend(chainloop)
    monkeypatch.setenv("CHAINLOOP_DATABASE_URL", chainloop.dsn)
    summary = AdminSync(world, capsys, dsn=None).summary()
    assert summary["backends"]["created"] == 2  # b and the org's INLINE one


def test_dynamodb_throttling_mid_run_is_retried(
    world: World, chainloop: ChainloopRows, dynamodb_faults: FaultServer, sync: AdminSync
) -> None:
    # Given 300 mappings, and DynamoDB throttling the next 3 batch writes
    org, backend = org_with_backend(chainloop)
    chainloop.add_generated_mappings(300, [backend], [org])
    dynamodb_faults.throttle_dynamodb(times=3, operations=["BatchWriteItem"])

    summary = sync.summary()

    # Then every mapping is written, after the throttled calls were retried
    assert summary["mappings"]["created"] == 300
    assert dynamodb_faults.count("dynamodb", "BatchWriteItem", faulted=True) == 3
    assert dynamodb_faults.count("dynamodb", "BatchWriteItem", faulted=False) == 12  # 300 / 25


def test_a_run_killed_midway_and_run_again_reaches_the_same_state(
    world: World, chainloop: ChainloopRows, dynamodb_faults: FaultServer, sync: AdminSync
) -> None:
    # Given 3,000 mappings, and a sync in another process
    org, backend = org_with_backend(chainloop)
    chainloop.add_generated_mappings(3000, [backend], [org])
    env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_faults.url}
    argv = [sys.executable, "-m", "cas_admin", "--backends-table", world.tables.backends,
            "--mappings-table", world.tables.mappings, "sync", "chainloop", "--dsn", chainloop.dsn]  # fmt: skip
    held = dynamodb_faults.hold_dynamodb("BatchWriteItem", after=10)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # When it is killed (SIGKILL) while its 11th batch write waits for an answer
        assert held.wait(timeout=600), "the sync never reached its 11th batch write"  # a hang guard only
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    dynamodb_faults.reset()
    written = count_mappings(world, org, backend)
    assert written == 10 * 25  # exactly the batches that were answered, 25 mappings each

    # Then a second run completes it: every mapping exactly once, nothing else
    summary = sync.summary()
    assert summary["mappings"]["created"] == 3000 - written
    assert count_mappings(world, org, backend) == 3000
    assert sync.summary()["mappings"]["created"] == 0


def count_mappings(world: World, org: str, backend: str) -> int:
    paginator = world.dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=world.tables.mappings,
        FilterExpression="org_backend = :k",
        ExpressionAttributeValues={":k": {"S": f"{org}#{backend}"}},
        Select="COUNT",
    )
    return sum(page["Count"] for page in pages)


# ---------------------------------------------------------------------- the scheduled function


def scheduled_function(world: World, database_secret: dict[str, Any]) -> chainloop_sync.Container:
    """The function's container as Lambda builds it, its database secret stored in Secrets Manager."""
    arn = world.secrets.create_secret(
        Name=f"chainloop-db-{uuid.uuid4().hex}", SecretString=json.dumps(database_secret)
    )["ARN"]
    env = {"BACKENDS_TABLE": world.tables.backends, "MAPPINGS_TABLE": world.tables.mappings,
           "CHAINLOOP_DATABASE_SECRET_ARN": arn}  # fmt: skip
    return chainloop_sync.build(SyncSettings.from_env(env))


def test_the_scheduled_function_syncs_with_an_rds_style_secret(
    world: World,
    postgres: Postgres,
    chainloop: ChainloopRows,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (at DEBUG, where the SDKs would log GetSecretValue's answer: the suite-wide scan holds the password)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    # Given the database secret in Secrets Manager, in RDS's format
    org, backend = org_with_backend(chainloop, default=True)
    digest = "sha256:" + hashlib.sha256(b"scheduled").hexdigest()
    chainloop.add_mapping(digest, org, backend)
    database = chainloop.dsn.rsplit("/", 1)[1]
    secret = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port, "username": postgres.user,
              "password": postgres.password, "dbname": database}  # fmt: skip

    # When the function runs
    result = chainloop_sync.instrumented_handler(scheduled_function(world, secret))(
        {"id": "e"}, lambda_context
    )

    # Then it wrote what Chainloop has, and says so
    assert (result["backends"]["created"], result["mappings"]["created"], result["complete"]) == (2, 1, True)
    assert backend_item(world, backend)["is_default"] is True
    assert mapping_keys(world, digest) == {f"{org}#{backend}"}
    watermark = world.dynamodb.get_item(
        TableName=world.tables.mappings, Key={k: {"S": v} for k, v in WATERMARK_KEY.items()}
    )["Item"]
    assert watermark["created_at"]["S"] == result["watermark"]


def test_the_scheduled_function_fails_loudly_without_its_database(
    world: World, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    container = scheduled_function(world, {"dsn": "postgresql://u:p@127.0.0.1:9/x"})
    capsys.readouterr()
    with pytest.raises(chainloop_sync.SyncFailed, match="cannot connect to Chainloop's database"):
        chainloop_sync.instrumented_handler(container)({"id": "e"}, lambda_context)
    # and the failed run is counted in the metrics its wrapper flushes
    flushed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"SyncFailed"' in line]
    assert [document["SyncFailed"] for document in flushed] == [[1.0]]


def test_the_scheduled_function_refuses_an_older_chainloop_schema_with_one_log_line(
    world: World,
    chainloop: ChainloopRows,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given Chainloop's database from before v1.43.2 (no cas_backends.validation_error)
    chainloop.connection().execute(b"ALTER TABLE cas_backends DROP COLUMN validation_error")
    container = scheduled_function(world, {"dsn": chainloop.dsn})
    capsys.readouterr()

    # When the function runs, it raises the sync's own error, coded, not the driver's
    with pytest.raises(chainloop_sync.SyncFailed) as raised:
        chainloop_sync.instrumented_handler(container)({"id": "e"}, lambda_context)
    assert raised.value.code == "schema_unsupported"
    assert "cas_backends.validation_error" in str(raised.value)

    # Then it logged one line with the reason, without a traceback
    failures = [record for record in caplog.records if record.getMessage() == "chainloop sync failed"]
    assert len(failures) == 1
    assert failures[0].__dict__["code"] == "schema_unsupported"
    assert (
        failures[0].__dict__["error"].startswith("Chainloop's database lacks cas_backends.validation_error (")
    )
    assert failures[0].exc_info is None
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err
