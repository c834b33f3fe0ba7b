"""The Chainloop sync's rules against in-memory fakes of Chainloop's database and the two tables: row
encoding, skipped rows, status repair, idempotency, the watermark. No server: these run in a second.
The same code against a real PostgreSQL and moto: tests/scenarios/test_chainloop_sync.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from msgspec.structs import replace

from cas_download.data.chainloop_db import ChainloopBackend, ChainloopMapping, ChainloopOrganization
from cas_download.logic.chainloop_sync import (
    CHUNK_ROWS,
    SkipReason,
    backend_row,
    normalize_digest,
    run_sync,
    utc_iso,
)

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def digest_of(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"artifact-{n}".encode()).hexdigest()


class FakeChainloop:
    def __init__(self) -> None:
        self.org_rows: dict[str, ChainloopOrganization] = {}
        self.backend_rows: list[ChainloopBackend] = []
        self.mapping_rows: list[ChainloopMapping] = []
        self.fail_after_rows: int | None = None

    def delete_org(self, org: str, at: dt.datetime) -> None:
        self.org_rows[org] = replace(self.org_rows.get(org, ChainloopOrganization()), deleted_at=at)

    def add_backend(self, org: str, name: str, **fields: Any) -> ChainloopBackend:
        if org:
            self.org_rows.setdefault(
                org, ChainloopOrganization()
            )  # live, as Chainloop's foreign key requires
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "org_id": org,
            "name": name,
            "provider": "AWS-S3",
            "location": f"bucket-{name}",
            "secret_name": f"chainloop/{org}/{name}",
            "created_at": T0,
            "validation_status": "OK",
            "validation_error": None,
            "validated_at": T0,
            "is_default": False,
            "is_fallback": False,
            "deleted_at": None,
        }
        values.update(fields)
        backend = ChainloopBackend(**values)
        self.backend_rows.append(backend)
        return backend

    def replace_backend(self, backend: ChainloopBackend, **fields: Any) -> ChainloopBackend:
        new = replace(backend, **fields)
        self.backend_rows = [new if b.id == backend.id else b for b in self.backend_rows]
        return new

    def add_mapping(
        self, digest: str, backend: ChainloopBackend | str, at: dt.datetime, org: str | None = None
    ) -> None:
        backend_id = backend if isinstance(backend, str) else backend.id
        owner = org or (backend.org_id if isinstance(backend, ChainloopBackend) else str(uuid.uuid4()))
        self.mapping_rows.append(ChainloopMapping(str(uuid.uuid4()), digest, at, backend_id, owner, None))

    def organizations(self) -> dict[str, ChainloopOrganization]:
        return dict(self.org_rows)

    def backends(self) -> list[ChainloopBackend]:
        return list(self.backend_rows)

    def count_mappings(self, since: dt.datetime) -> int:
        return sum(1 for m in self.mapping_rows if m.created_at >= since)

    def mappings_since(self, since: dt.datetime) -> Iterable[ChainloopMapping]:
        rows = sorted(
            (m for m in self.mapping_rows if m.created_at >= since), key=lambda m: (m.created_at, m.id)
        )
        for index, row in enumerate(rows):
            if self.fail_after_rows is not None and index >= self.fail_after_rows:
                raise ConnectionError("the database went away")
            yield row


class FakeTables:
    """The Backends and Mappings tables, with every write counted."""

    def __init__(self) -> None:
        self.backend_items: dict[str, dict[str, Any]] = {}
        self.mapping_items: dict[tuple[str, str], dict[str, Any]] = {}
        self.mark: str | None = None
        self.writes = 0
        self.before_update: Any = None

    def backends(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {i: dict(self.backend_items[i]) for i in ids if i in self.backend_items}

    def backend(self, backend_id: str) -> dict[str, Any] | None:
        item = self.backend_items.get(backend_id)
        return dict(item) if item else None

    def update_backend(
        self, backend_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> bool:
        if self.before_update is not None:
            hook, self.before_update = self.before_update, None
            hook()
        current = self.backend_items.get(backend_id)
        for attribute, seen in expect.items():
            if (current or {}).get(attribute) != seen:
                return False
        item = dict(current or {"id": backend_id})
        for attribute, value in changes.items():
            if value is None:
                item.pop(attribute, None)
            else:
                item[attribute] = value
        self.backend_items[backend_id] = item
        self.writes += 1
        return True

    def existing_mappings(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return {key for key in keys if key in self.mapping_items}

    def put_mappings(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.mapping_items[(row["digest"], row["org_backend"])] = {
                k: v for k, v in row.items() if v is not None
            }
            self.writes += 1

    def watermark(self) -> str | None:
        return self.mark

    def save_watermark(self, created_at: str, saved_at: str) -> None:
        self.mark = max(self.mark or "", created_at)
        self.writes += 1


def sync(source: FakeChainloop, tables: FakeTables, **options: Any) -> Any:
    return run_sync(source, tables, now=lambda: T0 + dt.timedelta(days=1), **options)


@pytest.fixture
def chainloop() -> FakeChainloop:
    return FakeChainloop()


@pytest.fixture
def tables() -> FakeTables:
    return FakeTables()


def test_a_backend_becomes_the_specs_row(chainloop: FakeChainloop, tables: FakeTables) -> None:
    # Given a Chainloop default backend that failed validation
    org = str(uuid.uuid4())
    backend = chainloop.add_backend(org, "main", is_default=True, validation_status="Invalid",
                                    validation_error="AccessDenied", validated_at=T0 + dt.timedelta(hours=1))  # fmt: skip

    # When synced
    summary = sync(chainloop, tables)

    # Then the row has the spec's names, ISO 8601 UTC times and only true flags
    assert summary.backends.created == 1
    assert tables.backend_items[backend.id] == {
        "id": backend.id,
        "org_id": org,
        "name": "main",
        "provider": "AWS-S3",
        "location": "bucket-main",
        "secret_name": f"chainloop/{org}/main",
        "created_at": "2026-11-01T12:00:00.000000Z",
        "is_default": True,
        "validation_status": "Invalid",
        "validation_error": "AccessDenied",
        "validated_at": "2026-11-01T13:00:00.000000Z",
    }


def test_a_soft_deleted_backend_keeps_its_deletion_and_loses_its_flags(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "old", is_default=True, deleted_at=T0 + dt.timedelta(days=2))
    sync(chainloop, tables)
    row = tables.backend_items[backend.id]
    assert row["deleted_at"] == "2026-11-03T12:00:00.000000Z"
    assert "is_default" not in row


@pytest.mark.parametrize("provider", ["INLINE", "AWS-S3-ACCESS-POINT", "OCI", "AzureBlob"])
def test_every_chainloop_provider_is_copied_as_named(
    provider: str, chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b", provider=provider)
    sync(chainloop, tables)
    assert tables.backend_items[backend.id]["provider"] == provider


def test_default_wins_over_fallback_on_one_backend() -> None:
    row = backend_row(
        FakeChainloop().add_backend("org", "b", is_default=True, is_fallback=True),
        {"org": ChainloopOrganization()},
    )
    assert isinstance(row, dict)
    assert (row["is_default"], row["is_fallback"]) == (True, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sha256:" + "ab" * 32, "sha256:" + "ab" * 32),
        ("sha256:" + "AB" * 32, "sha256:" + "ab" * 32),
        ("ab" * 32, None),  # Chainloop's parser needs the algorithm
        ("sha512:" + "ab" * 32, None),
        ("SHA256:" + "ab" * 32, None),
        ("sha256:" + "ab" * 31 + "a", None),
        ("sha256:" + "ab" * 31 + "zz", None),
        (" sha256:" + "ab" * 32, None),
        ("", None),
        (None, None),
    ],
)
def test_digests_are_normalized_or_refused_as_chainloops_parser_does(
    raw: str | None, expected: str | None
) -> None:
    assert normalize_digest(raw) == expected


def test_mappings_are_written_with_lowercase_digests_and_the_org_backend_key(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org-a", "b")
    chainloop.add_mapping("sha256:" + "CD" * 32, backend, T0)
    summary = sync(chainloop, tables)
    assert summary.mappings.created == 1
    key = ("sha256:" + "cd" * 32, f"org-a#{backend.id}")
    assert tables.mapping_items[key] == {
        "digest": key[0],
        "org_backend": key[1],
        "org_id": "org-a",
        "backend_id": backend.id,
        "created_at": "2026-11-01T12:00:00.000000Z",
    }


def test_bad_mappings_are_skipped_counted_and_never_written(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    # Given one good mapping, two malformed digests, one of an org Chainloop does not know and one of
    # an org it deleted
    backend = chainloop.add_backend("org", "b")
    gone = chainloop.add_backend("gone-org", "b")
    chainloop.delete_org("gone-org", T0)
    chainloop.add_mapping(digest_of(1), backend, T0)
    chainloop.add_mapping("sha256:not-hex", backend, T0)
    chainloop.add_mapping("md5:" + "a" * 32, backend, T0)
    chainloop.add_mapping(digest_of(2), str(uuid.uuid4()), T0, org="no-such-org")
    chainloop.add_mapping(digest_of(3), gone, T0)

    summary = sync(chainloop, tables)

    # Then only the good one is written, and each skip is counted under its reason
    assert summary.mappings.created == 1
    assert summary.mappings.skipped == {
        SkipReason.MALFORMED_DIGEST: 2,
        SkipReason.UNKNOWN_ORG: 1,
        SkipReason.DELETED_ORG: 1,
    }
    assert [key[0] for key in tables.mapping_items] == [digest_of(1)]


def test_a_mapping_to_a_backend_chainloop_no_longer_has_is_copied_and_counted_apart(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    # Given a live org's mapping to a backend row Chainloop removed (no foreign key holds it)
    chainloop.add_backend("org", "default", is_default=True)
    removed = str(uuid.uuid4())
    chainloop.add_mapping(digest_of(1), removed, T0, org="org")

    summary = sync(chainloop, tables)

    # Then it is copied as Chainloop has it (it proves the org holds the digest), not skipped
    assert (summary.mappings.created, summary.mappings.skipped) == (1, {})
    assert summary.mappings.backend_missing == 1
    assert summary.as_dict()["mappings"]["backend_missing"] == 1
    assert tables.mapping_items[(digest_of(1), f"org#{removed}")]["backend_id"] == removed


def test_a_deleted_orgs_backends_are_written_deleted_and_a_rerun_keeps_them_so(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    # Given a synced org with a default and a fallback backend
    default = chainloop.add_backend("org", "default", is_default=True)
    fallback = chainloop.add_backend("org", "fallback", is_fallback=True)
    sync(chainloop, tables)
    assert tables.backend_items[default.id]["is_default"] is True

    # When Chainloop soft-deletes the org (its backend rows unchanged) and the sync runs
    chainloop.delete_org("org", T0 + dt.timedelta(days=3))
    summary = sync(chainloop, tables)

    # Then both backends are deleted as of the org's deletion, and neither is a default or fallback
    assert summary.backends.updated == 2
    for backend in (default, fallback):
        row = tables.backend_items[backend.id]
        assert row["deleted_at"] == "2026-11-04T12:00:00.000000Z"
        assert ("is_default" in row, "is_fallback" in row) == (False, False)
    # and a run after that writes nothing and brings nothing back
    writes = tables.writes
    again = sync(chainloop, tables)
    assert (again.backends.unchanged, tables.writes) == (2, writes)
    assert tables.backend_items[default.id]["deleted_at"] == "2026-11-04T12:00:00.000000Z"


def test_a_backend_deleted_before_its_org_keeps_its_own_deletion(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "old", deleted_at=T0 + dt.timedelta(days=1))
    chainloop.delete_org("org", T0 + dt.timedelta(days=3))
    sync(chainloop, tables)
    assert tables.backend_items[backend.id]["deleted_at"] == "2026-11-02T12:00:00.000000Z"


def test_a_backend_of_an_org_chainloop_does_not_know_is_skipped(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b")
    del chainloop.org_rows["org"]
    summary = sync(chainloop, tables)
    assert summary.backends.skipped == {SkipReason.UNKNOWN_ORG: 1}
    assert backend.id not in tables.backend_items


def test_a_backend_without_an_org_is_skipped(chainloop: FakeChainloop, tables: FakeTables) -> None:
    chainloop.add_backend("", "orphan")
    summary = sync(chainloop, tables)
    assert summary.backends.skipped == {SkipReason.MISSING_ORG: 1}
    assert tables.backend_items == {}


def test_a_second_run_writes_nothing(chainloop: FakeChainloop, tables: FakeTables) -> None:
    # Given a synced Chainloop with 3 backends and more mappings than one chunk
    backends = [chainloop.add_backend("org", f"b{i}", is_default=i == 0) for i in range(3)]
    for n in range(CHUNK_ROWS + 7):
        chainloop.add_mapping(digest_of(n), backends[n % 3], T0 + dt.timedelta(seconds=n))
    first = sync(chainloop, tables)
    assert (first.backends.created, first.mappings.created) == (3, CHUNK_ROWS + 7)

    # When it runs again with nothing new
    writes = tables.writes
    second = sync(chainloop, tables)

    # Then nothing is written and everything read is unchanged
    assert tables.writes == writes
    assert (second.backends.unchanged, second.mappings.created) == (3, 0)


def test_a_second_run_reads_only_the_overlap_before_the_watermark(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b")
    for n in range(100):
        chainloop.add_mapping(digest_of(n), backend, T0 + dt.timedelta(minutes=n))
    sync(chainloop, tables)
    assert tables.mark == utc_iso(T0 + dt.timedelta(minutes=99))

    chainloop.add_mapping(digest_of(1000), backend, T0 + dt.timedelta(minutes=200))
    second = sync(chainloop, tables, overlap=dt.timedelta(minutes=10))

    # The 11 mappings of the last 10 minutes before the watermark, and the new one
    assert (second.mappings.unchanged, second.mappings.created) == (11, 1)
    assert tables.mark == utc_iso(T0 + dt.timedelta(minutes=200))


def test_a_late_committed_mapping_inside_the_overlap_is_caught(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b")
    chainloop.add_mapping(digest_of(1), backend, T0 + dt.timedelta(minutes=30))
    sync(chainloop, tables)
    # A transaction that started before the watermark commits after the run
    chainloop.add_mapping(digest_of(2), backend, T0 + dt.timedelta(minutes=25))
    second = sync(chainloop, tables, overlap=dt.timedelta(minutes=10))
    assert second.mappings.created == 1
    assert (digest_of(2), f"org#{backend.id}") in tables.mapping_items


def test_two_chainloop_mappings_of_one_copy_make_one_row_the_earliest(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b")
    chainloop.add_mapping(digest_of(1), backend, T0 + dt.timedelta(seconds=5))
    chainloop.add_mapping(digest_of(1), backend, T0)
    summary = sync(chainloop, tables)
    assert (summary.mappings.created, summary.mappings.unchanged) == (1, 1)
    assert tables.mapping_items[(digest_of(1), f"org#{backend.id}")]["created_at"] == utc_iso(T0)


def test_a_status_repaired_by_the_service_is_not_overwritten_by_an_older_one(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    # Given a backend Chainloop says is Invalid, synced
    backend = chainloop.add_backend("org", "b", validation_status="Invalid", validation_error="expired",
                                    validated_at=T0)  # fmt: skip
    sync(chainloop, tables)
    # And the service's validator found it OK later
    tables.backend_items[backend.id].update(
        validation_status="OK", validated_at=utc_iso(T0 + dt.timedelta(hours=1))
    )
    tables.backend_items[backend.id].pop("validation_error")

    # When Chainloop's older status is synced again (another column changed meanwhile)
    chainloop.replace_backend(backend, name="renamed")
    summary = sync(chainloop, tables)

    # Then the name follows Chainloop and the status stays the service's
    row = tables.backend_items[backend.id]
    assert summary.backends.updated == 1
    assert (row["name"], row["validation_status"], "validation_error" in row) == ("renamed", "OK", False)


def test_a_newer_chainloop_status_replaces_the_rows(chainloop: FakeChainloop, tables: FakeTables) -> None:
    backend = chainloop.add_backend("org", "b", validated_at=T0)
    sync(chainloop, tables)
    chainloop.replace_backend(backend, validation_status="Invalid", validation_error="gone",
                              validated_at=T0 + dt.timedelta(hours=2))  # fmt: skip
    sync(chainloop, tables)
    row = tables.backend_items[backend.id]
    assert (row["validation_status"], row["validation_error"]) == ("Invalid", "gone")


def test_a_status_written_between_read_and_write_wins_if_newer(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    # Given a synced backend and a newer Invalid status in Chainloop
    backend = chainloop.add_backend("org", "b", validated_at=T0)
    sync(chainloop, tables)
    chainloop.replace_backend(backend, validation_status="Invalid", validated_at=T0 + dt.timedelta(hours=1))

    # When the service records an even newer OK just before the sync's write lands
    def service_writes() -> None:
        tables.backend_items[backend.id].update(
            validation_status="OK", validated_at=utc_iso(T0 + dt.timedelta(hours=3))
        )

    tables.before_update = service_writes
    sync(chainloop, tables)

    # Then the sync's conditional write fails, it reads again, and the newer status stays
    assert tables.backend_items[backend.id]["validation_status"] == "OK"


def test_a_new_default_clears_the_old_one_before_it_is_set(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    old = chainloop.add_backend("org", "old", is_default=True)
    sync(chainloop, tables)
    new = chainloop.add_backend("org", "new", is_default=True, created_at=T0 - dt.timedelta(days=1))
    chainloop.replace_backend(old, is_default=False)
    order: list[tuple[str, dict[str, Any]]] = []
    update = tables.update_backend

    def recording(backend_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any]) -> bool:
        order.append((backend_id, dict(changes)))
        return update(backend_id, changes, expect=expect)

    tables.update_backend = recording  # type: ignore[method-assign]
    sync(chainloop, tables)
    assert [backend_id for backend_id, _ in order] == [old.id, new.id]
    assert "is_default" not in tables.backend_items[old.id]
    assert tables.backend_items[new.id]["is_default"] is True


def test_a_dry_run_counts_but_writes_nothing(chainloop: FakeChainloop, tables: FakeTables) -> None:
    backend = chainloop.add_backend("org", "b")
    chainloop.add_mapping(digest_of(1), backend, T0)
    summary = sync(chainloop, tables, dry_run=True)
    assert (summary.backends.created, summary.mappings.created) == (1, 1)
    assert (tables.writes, tables.backend_items, tables.mapping_items, tables.mark) == (0, {}, {}, None)


def test_a_run_that_dies_midway_is_finished_by_the_next(chainloop: FakeChainloop, tables: FakeTables) -> None:
    # Given more mappings than fit before the database connection drops
    backend = chainloop.add_backend("org", "b")
    total = 3 * CHUNK_ROWS
    for n in range(total):
        chainloop.add_mapping(digest_of(n), backend, T0 + dt.timedelta(seconds=n))
    chainloop.fail_after_rows = CHUNK_ROWS + 10

    # When the first run fails part way and the second runs normally
    with pytest.raises(ConnectionError):
        sync(chainloop, tables)
    written = len(tables.mapping_items)
    chainloop.fail_after_rows = None
    second = sync(chainloop, tables)

    # Then the first wrote whole chunks only, and together they wrote every mapping exactly once
    assert written == CHUNK_ROWS
    assert len(tables.mapping_items) == total
    assert second.mappings.created == total - written


def test_a_run_asked_to_stop_saves_its_watermark_and_says_it_is_incomplete(
    chainloop: FakeChainloop, tables: FakeTables
) -> None:
    backend = chainloop.add_backend("org", "b")
    for n in range(2 * CHUNK_ROWS + 1):
        chainloop.add_mapping(digest_of(n), backend, T0 + dt.timedelta(seconds=n))
    summary = sync(chainloop, tables, should_stop=lambda: True)
    assert summary.complete is False
    assert len(tables.mapping_items) == CHUNK_ROWS
    assert tables.mark == utc_iso(T0 + dt.timedelta(seconds=CHUNK_ROWS - 1))
