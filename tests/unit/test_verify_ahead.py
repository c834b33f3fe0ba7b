"""Verifying ahead of requests, the parts without servers: ranged reads feeding one hash in order, the
per-container deduplication of on-demand asks, what a stream image must be to be a mapping, and the
503's Retry-After."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import pytest

from cas_download.data.verifier_invocations import VerifierInvocations, mapping_event
from cas_download.domain import Attempt, AttemptFailed, AttemptReason, Backend, Mapping
from cas_download.errors import ServiceUnavailable, VerificationPending
from cas_download.handlers.responses import error_response
from cas_download.logic.deadline import Deadline
from cas_download.logic.verification import DigestMismatch, hash_chunks, ranged_chunks
from cas_download.logic.verifier import NotAMapping, Outcome, Verification, mapping_from_image, settle_ask

DATA = bytes(range(256)) * 1000  # 256,000 bytes
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
BACKEND = Backend(
    id="b-1", org_id="org-1", name="mapped", provider="AWS-S3", location="bucket", secret_name="s"
)


def test_ranged_parts_arrive_in_order_and_hash_to_the_digest_whatever_order_they_finish_in() -> None:
    # Given a reader whose first part finishes last
    first_may_finish = threading.Event()

    def read_range(start: int, length: int) -> bytes:
        if start == 0:
            first_may_finish.wait(5)
        else:
            first_may_finish.set()
        return DATA[start : start + length]

    # When the parts feed one hash
    chunks = list(ranged_chunks(read_range, len(DATA), 10_000, 4))

    # Then they come in the object's order, all of it
    assert b"".join(chunks) == DATA
    hash_chunks(iter(chunks), DIGEST.removeprefix("sha256:"), len(DATA), Deadline(10))


def test_at_most_concurrency_parts_are_read_ahead_of_the_hash() -> None:
    # Given a reader that counts the parts read but not yet consumed
    read: list[int] = []

    def read_range(start: int, length: int) -> bytes:
        read.append(start)
        return DATA[start : start + length]

    parts = ranged_chunks(read_range, len(DATA), 10_000, 3)

    # When the hash has taken two parts
    next(parts)
    next(parts)

    # Then no more than two plus three have been asked for: memory is bounded by the window
    assert len(read) <= 5
    parts.close()


def test_a_part_that_fails_raises_its_failure_in_turn() -> None:
    def read_range(start: int, length: int) -> bytes:
        if start == 20_000:
            raise AttemptFailed(AttemptReason.UNREACHABLE, "reset")
        return DATA[start : start + length]

    with pytest.raises(AttemptFailed) as failure:
        b"".join(ranged_chunks(read_range, len(DATA), 10_000, 4))
    assert failure.value.reason is AttemptReason.UNREACHABLE


def test_bytes_that_hash_elsewhere_name_what_they_hash_to() -> None:
    other = b"other bytes" * 10
    with pytest.raises(DigestMismatch) as mismatch:
        hash_chunks([other], DIGEST.removeprefix("sha256:"), len(other), Deadline(10))
    assert mismatch.value.reason is AttemptReason.DIGEST_MISMATCH
    assert mismatch.value.actual_digest == "sha256:" + hashlib.sha256(other).hexdigest()


class Queue:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {"StatusCode": 202}


def test_one_ask_per_object_per_container_while_it_is_in_flight() -> None:
    # Given a container's verifier asks, on a clock the test moves
    now = [100.0]
    queue = Queue()
    asks = VerifierInvocations("verifier", lambda: queue, clock=lambda: now[0])  # type: ignore[arg-type, return-value]

    # When the same object is asked for three times within the expected proof time, then after it
    assert asks.ask(DIGEST, BACKEND, expected_seconds=5)
    assert asks.ask(DIGEST, BACKEND, expected_seconds=5)
    now[0] += 4.9
    assert asks.ask(DIGEST, BACKEND, expected_seconds=5)
    now[0] += 0.2
    assert asks.ask(DIGEST, BACKEND, expected_seconds=5)

    # Then two asynchronous invocations were made, each a stream-shaped mapping of that object
    assert [call["InvocationType"] for call in queue.calls] == ["Event", "Event"]
    payload = json.loads(queue.calls[0]["Payload"])
    assert payload == mapping_event(DIGEST, BACKEND)
    assert (
        mapping_from_image(
            {k: v["S"] for k, v in payload["Records"][0]["dynamodb"]["NewImage"].items()}
        ).backend_id
        == BACKEND.id
    )


def test_an_image_names_its_mapping_with_its_creation_time() -> None:
    image = {"digest": DIGEST, "org_backend": f"org-1#{BACKEND.id}", "created_at": "2026-12-07T10:00:00Z"}
    assert mapping_from_image(image) == Mapping(DIGEST, "org-1", BACKEND.id, "2026-12-07T10:00:00Z")
    assert mapping_from_image({**image, "created_at": None}).created_at == ""


def test_a_verification_names_the_reasons_of_its_attempts() -> None:
    failed = [Attempt(BACKEND, AttemptReason.NOT_FOUND), Attempt(BACKEND, AttemptReason.ACCESS_DENIED)]
    verification = Verification(Mapping(DIGEST, "org-1", BACKEND.id), Outcome.FAILED, attempts=failed)
    assert verification.reasons == ["not_found", "access_denied"]


def test_without_an_ask_ledger_there_is_no_ask_to_settle() -> None:
    assert settle_ask(None, Mapping(DIGEST, "org-1", BACKEND.id)) is True


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ({"digest": "sync:chainloop", "org_backend": "watermark"}, "the digest is not"),
        ({"digest": "sha256:" + "A" * 64, "org_backend": "o#b"}, "the digest is not"),
        ({"digest": DIGEST}, "no digest or org_backend"),
        ({"digest": DIGEST, "org_backend": "no-separator"}, "org_backend is not"),
        ({"digest": 7, "org_backend": "o#b"}, "no digest or org_backend"),
    ],
    ids=["watermark", "upper-case-hex", "no-range-key", "no-backend", "not-a-string"],
)
def test_an_image_that_is_no_mapping_is_refused_with_why(image: dict[str, Any], why: str) -> None:
    with pytest.raises(NotAMapping, match=why):
        mapping_from_image(image)


def test_verification_pending_carries_its_retry_after_and_other_503s_keep_one_second() -> None:
    pending = error_response(VerificationPending("wait", retry_after_seconds=42))
    other = error_response(ServiceUnavailable("tables down"))
    assert pending["statusCode"] == 503
    assert pending["headers"]["Retry-After"] == "42"
    assert json.loads(pending["body"])["error"]["code"] == "verification_pending"
    assert other["headers"]["Retry-After"] == "1"
    # and never less than a second
    assert error_response(VerificationPending("wait", retry_after_seconds=0))["headers"]["Retry-After"] == "1"
