"""A look ahead's answer (logic/look_ahead.py) is used once, only through the backend and with the
credentials it was made with; a storage failure is the attempt's, any other error is not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime

import pytest

from cas_download.config import Settings
from cas_download.data.storage.port import DirectUrl, ObjectDescription, SecretFields
from cas_download.data.tables import TableError
from cas_download.domain import AttemptFailed, AttemptReason, Backend, ObjectInfo, VerificationRecord
from cas_download.logic.look_ahead import Located, LookAhead, LookAheadTally, Lookup
from cas_download.logic.verification import VerificationRecords

SECRET = SecretFields({"accessKeyID": "AKIA1", "secretAccessKey": "s1"})
ROTATED = SecretFields({"accessKeyID": "AKIA2", "secretAccessKey": "s2"})
LOCATED = Located(
    ObjectDescription(ObjectInfo(size=3, etag='"e"')),
    DirectUrl("https://bucket.example/obj", datetime(2026, 12, 7, tzinfo=UTC)),
    record_ahead=None,
)


def backend(bid: str) -> Backend:
    return Backend(
        id=bid, org_id="o1", name=bid, provider="AWS-S3", location=f"b-{bid}", secret_name=f"s/{bid}"
    )


def lookup_of(outcome: Located | BaseException) -> tuple[Lookup, LookAheadTally]:
    """A look ahead through backend ``a`` with SECRET, done with ``outcome``."""
    tally = LookAheadTally()
    tally.count()
    future: Future[Located] = Future()
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
    return Lookup(backend("a"), SECRET, future, tally), tally


def test_the_answer_serves_the_backend_and_credentials_it_was_made_with_once() -> None:
    lookup, tally = lookup_of(LOCATED)
    assert (
        lookup.take(backend("a"), SecretFields({"access_key_id": "AKIA1", "secret-access-key": "s1"}))
        is LOCATED
    )
    assert lookup.take(backend("a"), SECRET) is None
    lookup.drop()
    assert (tally.started, tally.used, tally.dropped) == (1, 1, 0)


def test_another_backend_gets_nothing_and_the_answer_waits_for_its_own() -> None:
    lookup, tally = lookup_of(LOCATED)
    assert lookup.take(backend("b"), SECRET) is None
    assert lookup.take(backend("a"), SECRET) is LOCATED
    assert (tally.used, tally.dropped) == (1, 0)


def test_credentials_rotated_since_get_nothing() -> None:
    lookup, tally = lookup_of(LOCATED)
    assert lookup.take(backend("a"), ROTATED) is None
    lookup.drop()
    assert (tally.used, tally.dropped) == (0, 1)


def test_a_storage_failure_is_the_attempts_own() -> None:
    lookup, tally = lookup_of(AttemptFailed(AttemptReason.NOT_FOUND, "no such key"))
    with pytest.raises(AttemptFailed) as raised:
        lookup.take(backend("a"), SECRET)
    assert raised.value.reason is AttemptReason.NOT_FOUND
    assert tally.used == 1


def test_any_other_error_leaves_the_attempt_to_ask_again() -> None:
    lookup, tally = lookup_of(RuntimeError("connection pool closed"))
    assert lookup.take(backend("a"), SECRET) is None
    assert (tally.used, tally.dropped) == (0, 1)


def test_an_answer_never_taken_is_dropped_once() -> None:
    lookup, tally = lookup_of(LOCATED)
    lookup.drop()
    lookup.drop()
    assert lookup.take(backend("a"), SECRET) is None
    assert (tally.started, tally.used, tally.dropped) == (1, 0, 1)


def test_a_miss_is_dropped_only_once_its_calls_are_over() -> None:
    # Given a look ahead still at work (its calls answer in 0.2 s)
    tally = LookAheadTally()
    tally.count()
    future: Future[Located] = Future()
    threading.Timer(0.2, future.set_result, args=(LOCATED,)).start()
    lookup = Lookup(backend("a"), SECRET, future, tally)
    # When the request is done without it
    lookup.drop()
    # Then nothing of it is left in flight when the request answers
    assert future.done()
    assert tally.dropped == 1


def test_the_worker_runs_the_lookup_and_is_made_again_after_a_restore() -> None:
    ahead = LookAhead()
    first = ahead.start(backend("a"), SECRET, lambda: LOCATED)
    assert first.take(backend("a"), SECRET) is LOCATED
    ahead.forget_all()
    second = ahead.start(backend("a"), SECRET, lambda: LOCATED)
    assert second.take(backend("a"), SECRET) is LOCATED
    assert (ahead.tally.started, ahead.tally.used) == (2, 2)
    ahead.forget_all()


# ---------------------------------------------------------------- the record read while describing


class RecordTable:
    """The Verifications table's one read, counted; ``broken`` makes it fail as DynamoDB can."""

    def __init__(self, *records: VerificationRecord, broken: bool = False) -> None:
        self.records = {r.object_id: r for r in records}
        self.reads: list[str] = []
        self.broken = broken

    def verification_record(self, object_id: str) -> VerificationRecord | None:
        self.reads.append(object_id)
        if self.broken:
            raise TableError("ProvisionedThroughputExceededException")
        return self.records.get(object_id)


DIGEST = "sha256:" + "ab" * 32
PROOF = VerificationRecord(
    object_id="s3|b|k|", digest=DIGEST, etag='"e"', size=3, version_id=None, verified_at=""
)


def records_over(table: RecordTable, *, configured: bool = True) -> VerificationRecords:
    env = {"BACKENDS_TABLE": "b", "MAPPINGS_TABLE": "m"}
    if configured:
        env["VERIFICATIONS_TABLE"] = "v"
    return VerificationRecords(Settings.from_env(env), table)  # type: ignore[arg-type]


def described(record_key: str) -> ObjectDescription:
    return ObjectDescription(ObjectInfo(size=3, etag='"e"'), record_key=record_key)


def run_now(work: Callable[[], object]) -> Future[object]:
    """A worker that has already run ``work``."""
    future: Future[object] = Future()
    try:
        future.set_result(work())
    except Exception as failure:  # the future holds whatever the work raised
        future.set_exception(failure)
    return future


def test_the_record_read_ahead_proves_the_described_object_without_a_second_read() -> None:
    table = RecordTable(PROOF)
    records = records_over(table)
    ahead = records.read_ahead("s3|b|k|", run_now)
    assert records.verdict(described("s3|b|k|"), DIGEST, ahead) is True
    assert table.reads == ["s3|b|k|"]


def test_a_description_naming_another_object_reads_its_own_record() -> None:
    table = RecordTable(PROOF)
    records = records_over(table)
    ahead = records.read_ahead("s3|b|k|", run_now)
    # the bucket keeps versions: the HEAD named one, so the record read ahead is another object's
    assert records.verdict(described("s3|b|k|v2"), DIGEST, ahead) is None
    assert table.reads == ["s3|b|k|", "s3|b|k|v2"]


def test_an_object_met_again_lately_is_not_read_ahead_again() -> None:
    records = records_over(RecordTable(PROOF))
    assert records.read_ahead("s3|b|k|", run_now) is not None
    assert records.read_ahead("s3|b|k|", run_now) is None
    records.forget_all()
    assert records.read_ahead("s3|b|k|", run_now) is not None


def test_an_unreadable_record_read_ahead_is_no_record() -> None:
    records = records_over(RecordTable(PROOF, broken=True))
    ahead = records.read_ahead("s3|b|k|", run_now)
    assert records.verdict(described("s3|b|k|"), DIGEST, ahead) is None


def test_nothing_is_read_ahead_without_the_table_or_a_name() -> None:
    assert records_over(RecordTable(PROOF), configured=False).read_ahead("s3|b|k|", run_now) is None
    assert records_over(RecordTable(PROOF)).read_ahead(None, run_now) is None
