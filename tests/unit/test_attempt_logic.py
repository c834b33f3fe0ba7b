"""One attempt and the final answer, over in-memory fakes of the storage port and the catalog: proof
by the provider's checksum, a record or the stream; the URL before the bytes; the body limit; the
final error when nothing served. No server: these read like the spec and run in milliseconds."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from cas_download.config import Settings
from cas_download.data.storage.port import DirectUrl, ObjectDescription, SecretFields
from cas_download.domain import (
    AttemptFailed,
    AttemptReason,
    Backend,
    Mapping,
    Mode,
    ObjectInfo,
    VerificationMethod,
    VerificationRecord,
)
from cas_download.errors import (
    BackendsUnavailable,
    ContentMissing,
    DeadlineExceeded,
    IntegrityFailure,
    TooLargeForBody,
)
from cas_download.logic.backend_attempt import serve_through
from cas_download.logic.deadline import Deadline
from cas_download.logic.fallback import serve_with_fallback
from cas_download.logic.verification import VerificationRecords

DATA = b"bytes of the artifact\n" * 100
DIGEST = f"sha256:{hashlib.sha256(DATA).hexdigest()}"


@dataclass
class FakeStore:
    """A provider holding ``data`` under every digest; ``proof`` is its own checksum verdict;
    ``url_refused``: it serves the bytes but refuses to sign a URL (an Azure principal refused a user
    delegation key)."""

    data: bytes = DATA
    proof: bool | None = None
    url: str | None = "https://storage.example/blob?sig=x"
    failure: AttemptFailed | None = None
    url_refused: AttemptReason | None = None
    calls: list[str] = field(default_factory=list)

    def describe(self, digest: str) -> ObjectDescription:
        self.calls.append("describe")
        if self.failure:
            raise self.failure
        return ObjectDescription(ObjectInfo(size=len(self.data), etag='"e1"'), self.proof, f"fake|{digest}")

    def open(self, digest: str, description: Any = None, via: DirectUrl | None = None) -> Any:
        self.calls.append("open via url" if via else "open")
        if self.failure:
            raise self.failure
        data = self.data

        class Stream:
            info = ObjectInfo(size=len(data), etag='"e1"')

            def chunks(self) -> Iterator[bytes]:
                yield data[:10]
                yield data[10:]

            def close(self) -> None:
                pass

        return Stream()

    def direct_url(self, digest: str, description: Any, ttl: int, disposition: str | None) -> DirectUrl:
        self.calls.append("direct_url")
        if self.url_refused is not None:
            raise AttemptFailed(self.url_refused, "no key to sign with")
        if self.url is None:
            raise AttemptFailed(AttemptReason.NO_DIRECT_URL, "serves the bytes itself")
        return DirectUrl(self.url, datetime.now(UTC) + timedelta(seconds=ttl))

    def probe(self, key_prefix: str) -> AttemptReason | None:
        return None


class FakeTables:
    def __init__(self) -> None:
        self.records: dict[str, VerificationRecord] = {}

    def verification_record(self, object_id: str) -> VerificationRecord | None:
        return self.records.get(object_id)

    def save_verification_record(self, record: VerificationRecord, expires_at: datetime) -> None:
        self.records[record.object_id] = record


def services_for(stores: dict[str, FakeStore], *, max_body: int = 4096, records: bool = True) -> Any:
    settings = Settings(
        backends_table="b",
        mappings_table="m",
        max_body_bytes=max_body,
        verifications_table="v" if records else None,
    )
    tables = FakeTables()
    storage = SimpleNamespace(
        check_supported=lambda backend: None,
        open=lambda backend, secret, time_left=None: stores[backend.id],
    )
    credentials = SimpleNamespace(get=lambda name: SecretFields({}), refresh=lambda name: None)
    health = SimpleNamespace(
        recently_failed=lambda backend_id: False,
        observe_failure=lambda backend, reason: None,
        observe_success=lambda backend: None,
    )
    return SimpleNamespace(
        settings=settings,
        storage=storage,
        credentials=credentials,
        health=health,
        verification_records=VerificationRecords(settings, tables),  # type: ignore[arg-type]
        tables=tables,
        look_ahead=None,
    )


def backend(bid: str, **kw: Any) -> Backend:
    return Backend(
        id=bid, org_id="o1", name=bid, provider="AWS-S3", location=f"loc-{bid}", secret_name=bid, **kw
    )


# ---------------------------------------------------------------------------------------------------
# proof


def test_the_providers_own_proof_serves_without_reading_the_bytes() -> None:
    store = FakeStore(proof=True)
    artifact = serve_through(backend("a"), DIGEST, Mode.REDIRECT, Deadline(5), services_for({"a": store}))
    assert artifact.verification is VerificationMethod.CHECKSUM
    assert store.calls == ["describe", "direct_url"]


def test_a_providers_proof_that_differs_is_a_digest_mismatch_before_any_url() -> None:
    store = FakeStore(proof=False)
    with pytest.raises(AttemptFailed) as failed:
        serve_through(backend("a"), DIGEST, Mode.REDIRECT, Deadline(5), services_for({"a": store}))
    assert failed.value.reason is AttemptReason.DIGEST_MISMATCH
    assert store.calls == ["describe"]


def test_without_proof_the_bytes_at_the_url_are_hashed_once_then_a_record_proves_them() -> None:
    store = FakeStore(proof=None)
    services = services_for({"a": store})
    first = serve_through(backend("a"), DIGEST, Mode.URL, Deadline(5), services)
    store.calls.clear()
    second = serve_through(backend("a"), DIGEST, Mode.URL, Deadline(5), services)
    assert first.verification is VerificationMethod.STREAM_HASH
    assert second.verification is VerificationMethod.RECORD
    assert store.calls == ["describe", "direct_url"]


def test_bytes_that_do_not_hash_to_the_digest_are_never_handed_out() -> None:
    store = FakeStore(data=DATA[:-1] + b"X")
    with pytest.raises(AttemptFailed) as failed:
        serve_through(backend("a"), DIGEST, Mode.REDIRECT, Deadline(5), services_for({"a": store}))
    assert failed.value.reason is AttemptReason.DIGEST_MISMATCH


def test_no_direct_url_fails_before_any_bytes_are_read() -> None:
    store = FakeStore(url=None)
    with pytest.raises(AttemptFailed) as failed:
        serve_through(backend("a"), DIGEST, Mode.REDIRECT, Deadline(5), services_for({"a": store}))
    assert failed.value.reason is AttemptReason.NO_DIRECT_URL
    assert store.calls == ["describe", "direct_url"]


# ---------------------------------------------------------------------------------------------------
# body mode


def test_body_mode_hashes_and_encodes_the_bytes() -> None:
    # Given a store without a checksum proof, When the body is asked for
    store = FakeStore()
    artifact = serve_through(backend("a"), DIGEST, Mode.BODY, Deadline(5), services_for({"a": store}))
    # Then the bytes read were hashed, and the body is exactly their base64, with no URL signed
    assert artifact.verification is VerificationMethod.STREAM_HASH
    assert artifact.body_base64 == base64.b64encode(DATA).decode("ascii")
    assert store.calls == ["open"]


def test_a_store_that_cannot_sign_a_url_still_serves_the_body_and_moves_on_otherwise() -> None:
    # Given a backend whose storage serves its bytes but refuses to sign a URL (a delegation key refused)
    refusing = FakeStore(url_refused=AttemptReason.ACCESS_DENIED)
    # When the body is asked for, Then it is served (body mode needs no URL)
    served = serve_through(backend("a"), DIGEST, Mode.BODY, Deadline(5), services_for({"a": refusing}))
    assert served.body_base64 == base64.b64encode(DATA).decode("ascii")
    assert "direct_url" not in refusing.calls
    # When a redirect is asked for, Then that attempt is access_denied and the next candidate serves
    artifact = walk({"a": refusing, "b": FakeStore()}, [backend("a"), backend("b", is_default=True)])
    assert artifact.backend.id == "b"
    assert [(a.backend.id, a.reason) for a in artifact.attempts] == [("a", AttemptReason.ACCESS_DENIED)]


def test_body_mode_over_the_limit_is_too_large_for_body() -> None:
    with pytest.raises(TooLargeForBody):
        serve_through(
            backend("a"), DIGEST, Mode.BODY, Deadline(5), services_for({"a": FakeStore()}, max_body=100)
        )


# ---------------------------------------------------------------------------------------------------
# the walk and the final answer


def walk(stores: dict[str, FakeStore], backends: list[Backend], mode: Mode = Mode.REDIRECT) -> Any:
    services = services_for(stores)
    services.catalog = SimpleNamespace(
        org_backends=lambda org: tuple(backends),
        reread_org_backends=lambda org, since: None,
        now=lambda: 0.0,
    )
    mapping = Mapping(DIGEST, "o1", backends[0].id, "2026-01-01")
    return serve_with_fallback(DIGEST, mode, [mapping], Deadline(5), services)


def failing(reason: AttemptReason) -> FakeStore:
    return FakeStore(failure=AttemptFailed(reason, "fake"))


def test_the_next_candidate_serves_after_a_failure_and_the_answer_says_fallback() -> None:
    artifact = walk(
        {"m": failing(AttemptReason.CREDENTIALS_INVALID), "d": FakeStore()},
        [backend("m"), backend("d", is_default=True)],
    )
    assert artifact.backend.id == "d"
    assert artifact.fallback is True


def test_only_absences_is_content_missing() -> None:
    with pytest.raises(ContentMissing):
        walk({"m": failing(AttemptReason.NOT_FOUND)}, [backend("m")])


def test_only_mismatches_and_absences_is_an_integrity_failure() -> None:
    with pytest.raises(IntegrityFailure) as error:
        walk(
            {"m": FakeStore(data=b"other"), "d": failing(AttemptReason.NOT_FOUND)},
            [backend("m"), backend("d", is_default=True)],
        )
    assert [a.reason for a in error.value.attempts] == [
        AttemptReason.DIGEST_MISMATCH,
        AttemptReason.NOT_FOUND,
    ]


def test_any_other_failure_is_backends_unavailable_with_every_attempt_in_order() -> None:
    with pytest.raises(BackendsUnavailable) as error:
        walk(
            {"m": failing(AttemptReason.NOT_FOUND), "d": failing(AttemptReason.NO_DIRECT_URL)},
            [backend("m"), backend("d", is_default=True)],
        )
    assert [(a.backend.id, a.reason) for a in error.value.attempts] == [
        ("m", AttemptReason.NOT_FOUND),
        ("d", AttemptReason.NO_DIRECT_URL),
    ]


def test_a_copy_over_the_body_limit_is_final_only_when_no_other_copy_serves() -> None:
    # the limit is services_for's 4096 bytes: DATA (2,200 bytes) fits, DATA * 100 does not
    big = FakeStore(data=DATA * 100)
    with pytest.raises(TooLargeForBody):
        walk({"m": big}, [backend("m")], Mode.BODY)
    served = walk({"m": big, "d": FakeStore()}, [backend("m"), backend("d", is_default=True)], Mode.BODY)
    assert served.backend.id == "d"


def test_a_spent_deadline_is_deadline_exceeded_before_any_attempt() -> None:
    # Given a deadline already spent (a frozen clock: no time passes) and a backend that would serve
    store = FakeStore()
    services = services_for({"m": store})
    calls: list[str] = []
    services.storage.open = lambda backend, secret, time_left=None: calls.append(f"open {backend.id}")
    services.credentials.get = lambda name: calls.append(f"secret {name}")
    services.catalog = SimpleNamespace(
        org_backends=lambda org: (backend("m"),), reread_org_backends=lambda org, since: None, now=lambda: 0.0
    )
    spent = Deadline(0, clock=lambda: 100.0)
    # When the walk starts, Then it is deadline_exceeded, and no secret, client or storage call was made
    with pytest.raises(DeadlineExceeded):
        serve_with_fallback(DIGEST, Mode.REDIRECT, [Mapping(DIGEST, "o1", "m", "1")], spent, services)
    assert calls == []
    assert store.calls == []
