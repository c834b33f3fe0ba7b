"""Verifying ahead of requests (spec: "Verifying ahead of requests"), against moto's S3: the verifier
on the Mappings table's stream proves a new mapping's object through the same port, proofs and records
as a request; a request for an unproven object over what it may hash asks the verifier and answers
503 verification_pending with Retry-After.

The verifier runs as Lambda runs it (the Powertools-wrapped handler, a stream event built from
``events/stream/new_mapping.json``); a request's asynchronous invocation is received by a
stand-in for Lambda's event queue, and its payload is then run through the same handler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from tests.support.events import FakeLambdaContext
from tests.support.faults import FaultServer, S3Fault
from tests.support.moto_servers import AwsServers
from tests.support.stream_events import (
    STREAM_EVENT_FILE,
    failed_sequence_numbers,
    mapping_image,
    sequence_number,
    stream_event,
)
from tests.support.verifier_stack import VERIFIER_NAME, Stack, hold_record_writes_until_both_hashed
from tests.support.world import BackendRef, World, sha256_digest

DATA = b"release-artifact.tar contents\n" * 400  # 12,000 bytes, no checksum (Chainloop's layout)
CORRUPT = b"not the bytes the digest names\n" * 100


@pytest.fixture
def stack(world: World, verifications_table: str, lambda_context: FakeLambdaContext) -> Stack:
    return Stack(world, verifications_table, lambda_context)


def chainloop_object(world: World, data: bytes = DATA) -> tuple[str, BackendRef, str]:
    """An org whose default backend holds ``data`` as Chainloop writes it (no SHA-256 checksum), mapped."""
    org, backend, digest = world.artifact(data, "chainloop-s3", mapped=False)
    assert "ChecksumSHA256" not in world.head(backend, digest)  # the precondition: only hashing proves it
    world.map(digest, org, backend)
    return org, backend, digest


def emitted(stdout: str, metric: str) -> float:
    """The total of ``metric`` over the EMF documents printed (a metric added n times is a list)."""
    total = 0.0
    for line in stdout.splitlines():
        if line.startswith("{") and f'"{metric}"' in line:
            document = json.loads(line)
            if "_aws" in document:
                value = document[metric]
                total += sum(value) if isinstance(value, list) else value
    return total


def log_lines(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    """The fields of each log line ``message`` the functions wrote (Powertools' extra keys)."""
    return [vars(record) for record in caplog.records if record.getMessage() == message]


# ---------------------------------------------------------------------------------------------------
# the verifier on the stream


def test_a_new_mapping_is_proven_by_the_verifier_and_its_first_request_reads_no_byte(
    world: World, stack: Stack
) -> None:
    # Given a Chainloop object (no checksum) and its new mapping on the stream
    org, backend, digest = chainloop_object(world)
    event = stream_event(mapping_image(digest, org, backend.id))

    # When the verifier runs on the stream batch
    response = stack.verify(event)

    # Then the batch succeeded and the object was hashed once, the record written
    assert response == {"batchItemFailures": []}
    assert stack.verifier_calls.count("s3", "GetObject") == 1
    record = stack.record(backend, digest)
    assert record is not None
    assert record["digest"] == {"S": digest}
    assert record["size"] == {"N": str(len(DATA))}
    # and the first request is served from the record: one HEAD and one record read, no GET
    first = stack.get(digest, org)
    assert first.status == 307
    assert [c.operation for c in stack.request_calls.storage_calls()] == ["HeadObject"]
    assert stack.request_calls.count("dynamodb", "GetItem") == 1
    assert world.fetch_presigned(first.headers["Location"]).body == DATA


def test_the_same_mapping_twice_is_proven_once(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a Chainloop object whose mapping arrives twice (in one batch, then again in a later one)
    org, backend, digest = chainloop_object(world)
    image = mapping_image(digest, org, backend.id)

    # When the verifier runs on both batches
    assert stack.verify(stream_event(image, image)) == {"batchItemFailures": []}
    assert stack.verify(stream_event(image)) == {"batchItemFailures": []}

    # Then the bytes were read once: the later proofs cost a describe each and no read, and are
    # counted as already proven
    assert stack.verifier_calls.count("s3", "GetObject") == 1
    assert stack.verifier_calls.count("s3", "HeadObject") == 3
    out = capsys.readouterr().out
    assert (emitted(out, "VerificationsProven"), emitted(out, "VerificationsAlreadyProven")) == (1, 2)


def test_a_mapping_whose_backend_lacks_the_object_is_proven_through_the_orgs_default(
    world: World, stack: Stack
) -> None:
    # Given a mapping to a backend that lacks the object, and the org's default holding it
    org = world.org()
    mapped = world.backend(org, "mapped-empty")
    default = world.backend(org, "default", is_default=True)
    digest = world.put(default, DATA + org.encode())  # bytes of this test alone: its records are its own
    world.map(digest, org, mapped)

    # When the verifier runs on the mapping
    assert stack.verify(stream_event(mapping_image(digest, org, mapped.id))) == {"batchItemFailures": []}

    # Then the next candidate in the spec's order proved it: the default has the record, not the mapped
    assert stack.record(default, digest) is not None
    assert len(stack.records_naming(digest)) == 1


def test_an_object_with_its_full_object_checksum_counts_as_already_proven(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a mapped object uploaded with its full-object SHA-256 (S3 proves it without a read)
    org = world.org()
    backend = world.backend(org, "checksummed", is_default=True)
    digest = world.put(backend, DATA, checksum=True)
    world.map(digest, org, backend)

    # When the verifier runs on its mapping
    assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}

    # Then nothing was read, and it counts as already proven (no proof of the verifier's own)
    assert stack.verifier_calls.count("s3", "GetObject") == 0
    out = capsys.readouterr().out
    assert (emitted(out, "VerificationsProven"), emitted(out, "VerificationsAlreadyProven")) == (0, 1)


def test_a_new_container_finds_the_record_and_reads_no_byte(world: World, stack: Stack) -> None:
    # Given a mapping the verifier proved
    org, backend, digest = chainloop_object(world)
    image = mapping_image(digest, org, backend.id)
    stack.verify(stream_event(image))
    stack.verifier_calls.clear()

    # When another verifier container sees the same mapping
    stack.configure_verifier()
    assert stack.verify(stream_event(image)) == {"batchItemFailures": []}

    # Then the record proves it: one describe, one record read, no read of the bytes
    assert [c.operation for c in stack.verifier_calls.storage_calls()] == ["HeadObject"]
    assert stack.verifier_calls.count("dynamodb", "GetItem") == 1


def test_records_that_are_no_mapping_are_skipped_and_logged_and_the_batch_goes_on(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch holding the sync's watermark item, a malformed digest, an unknown org, a removed
    # image's empty record, and one good mapping last
    org, backend, digest = chainloop_object(world)
    event = stream_event(
        {"digest": "sync:chainloop", "org_backend": "watermark", "created_at": "2025-11-24T20:00:00Z"},
        mapping_image("sha256:NOT-HEX", org, backend.id),
        mapping_image(digest, world.org(), backend.id),
        {"unrelated": "item"},
        mapping_image(digest, org, backend.id),
    )
    capsys.readouterr()

    # When the verifier runs on it
    response = stack.verify(event)

    # Then no record is retried, each bad one is logged as skipped, and the good one is proven
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    skipped = log_lines(caplog, "stream record skipped")
    assert [line["why"] for line in skipped] == [
        "the digest is not sha256:<64 lowercase hex>",
        "the digest is not sha256:<64 lowercase hex>",
        "unknown org: it has no backends",
        "no digest or org_backend",
    ]
    assert emitted(out, "VerifierRecordsSkipped") == 4
    assert stack.record(backend, digest) is not None


def test_a_storage_fault_mid_hash_is_retried_by_the_stream_and_never_recorded(
    world: World, stack: Stack, aws_servers: AwsServers
) -> None:
    # Given a batch of two mappings: the first one's storage resets the connection half way through
    # the body, the second one is healthy
    org, healthy, healthy_digest = chainloop_object(world)
    with FaultServer(upstream=aws_servers.control_url) as faults:
        digest = sha256_digest(CORRUPT)
        location = faults.s3("flaky-bucket", S3Fault.RESET_MID_BODY, {digest: CORRUPT})
        flaky = world.backend(org, "flaky", location=location)
        world.map(digest, org, flaky)
        event = stream_event(
            mapping_image(digest, org, flaky.id), mapping_image(healthy_digest, org, healthy.id)
        )

        # When the verifier runs on the batch
        response = stack.verify(event)

        # Then only the first is reported as a batch item failure (the stream retries it)
        assert failed_sequence_numbers(response) == [sequence_number(event, 0)]
        # and nothing is recorded for it, while the second is proven
        items = world.dynamodb.scan(TableName=stack.verifications_table)["Items"]
        assert not [item for item in items if "flaky-bucket" in item["object_id"]["S"]]
        assert stack.record(healthy, healthy_digest) is not None

        # When a batch holds only that mapping
        with pytest.raises(BatchProcessingError):
            stack.verify(stream_event(mapping_image(digest, org, flaky.id)))
        # Then the invocation fails as a whole: Lambda retries (bisecting) and then sends it to the
        # on-failure destination


def test_bytes_that_fail_the_proof_are_never_recorded_as_proven_and_are_remembered_as_failed(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a mapping whose stored bytes (Chainloop's layout) do not hash to its digest
    org, backend, digest = world.tampered_artifact(DATA, CORRUPT, "tampered")
    capsys.readouterr()

    # When the verifier runs on its stream record
    response = stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # Then the batch is done (no retry can change the bytes), an integrity failure is counted and logged
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert emitted(out, "IntegrityFailures") == 1
    [line] = log_lines(caplog, "integrity failure: stored bytes do not hash to the digest")
    assert line["attempts"] == [
        {"backend_id": backend.id, "backend_name": "tampered", "reason": "digest_mismatch"}
    ]
    # and the record names what the bytes hash to, never the digest
    record = stack.record(backend, digest)
    assert record is not None
    assert record["digest"] == {"S": sha256_digest(CORRUPT)}
    # so a request answers digest_mismatch from the record, without reading the bytes
    response_to_request = stack.get(digest, org)
    assert response_to_request.status == 502
    assert response_to_request.error_code == "integrity_failure"
    assert stack.request_calls.count("s3", "GetObject") == 0


def test_a_new_upload_under_the_same_name_is_proven_again(world: World, stack: Stack) -> None:
    # Given a failed proof remembered for a tampered object
    org, backend, digest = world.tampered_artifact(DATA, CORRUPT, "repaired")
    stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # When the right bytes are uploaded again under the same key (a new ETag)
    world.put(backend, DATA)
    response = stack.get(digest, org)

    # Then the old record no longer applies: the bytes are hashed and served
    assert response.status == 307
    assert stack.request_calls.count("s3", "GetObject") == 1


def test_a_verifier_run_while_a_request_hashes_the_same_object_leaves_one_true_record(
    world: World, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Chainloop object not proven yet, and the order driven: neither the request nor the
    # verifier may write its record before both have hashed the bytes (so both found none)
    org, backend, digest = chainloop_object(world)
    stack.configure_download()
    stack.configure_verifier()
    hold_record_writes_until_both_hashed(monkeypatch)

    # When a request and the verifier prove it at the same time
    answers = stack.request_and_verify_at_once(digest, org, backend.id)

    # Then both hashed it (each read the bytes once), both succeed, and the object has one record,
    # naming its digest, size and ETag
    assert stack.request_calls.count("s3", "GetObject") == 1
    assert stack.verifier_calls.count("s3", "GetObject") == 1
    assert sorted(answers, key=str) == sorted([307, {"batchItemFailures": []}], key=str)
    items = world.dynamodb.scan(TableName=stack.verifications_table)["Items"]
    mine = [item for item in items if f"|{backend.bucket}|" in item["object_id"]["S"]]
    assert len(mine) == 1
    assert mine[0]["digest"] == {"S": digest}
    assert mine[0]["size"] == {"N": str(len(DATA))}
    assert mine[0]["etag"] == {"S": world.head(backend, digest)["ETag"]}


def test_a_large_object_is_read_by_parallel_ranged_gets_feeding_one_hash(world: World, stack: Stack) -> None:
    # Given a 20 MiB Chainloop object (multipart, no checksum)
    data = bytes(range(256)) * (20 * 4096)
    org, backend, digest = chainloop_object(world, data)
    stack.configure_verifier(VERIFY_READ_CONCURRENCY=4)

    # When the verifier proves it
    assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}

    # Then it read the object as 8 MiB ranges of the described version, and recorded the proof
    gets = stack.verifier_calls.of("s3", "GetObject")
    assert sorted(get.params["Range"] for get in gets) == [
        "bytes=0-8388607",
        "bytes=16777216-20971519",
        "bytes=8388608-16777215",
    ]
    assert all(get.params["IfMatch"] == world.head(backend, digest)["ETag"] for get in gets)
    record = stack.record(backend, digest)
    assert record is not None
    assert record["digest"] == {"S": digest}


def test_a_large_object_whose_ranges_hash_elsewhere_is_refused(world: World, stack: Stack) -> None:
    # Given 20 MiB of bytes stored under another digest's key
    data = bytes(range(256)) * (20 * 4096)
    org, backend, digest = world.tampered_artifact(DATA, data, "big-tampered")
    stack.configure_verifier(VERIFY_READ_CONCURRENCY=4)

    # When the verifier reads it in ranges
    stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # Then what it records is what the bytes hash to
    record = stack.record(backend, digest)
    assert record is not None
    assert record["digest"] == {"S": sha256_digest(data)}


def test_an_object_over_verify_max_bytes_is_not_read_and_not_retried(world: World, stack: Stack) -> None:
    # Given a Chainloop object larger than the verifier may hash
    org, backend, digest = chainloop_object(world)
    stack.configure_verifier(VERIFY_MAX_BYTES=len(DATA) - 1)

    # When the verifier sees its mapping
    response = stack.verify(stream_event(mapping_image(digest, org, backend.id)))

    # Then it is done with it (a retry cannot make it smaller), having read nothing
    assert response == {"batchItemFailures": []}
    assert stack.verifier_calls.count("s3", "GetObject") == 0
    assert stack.record(backend, digest) is None


def test_fallback_stays_inside_the_org(world: World, stack: Stack) -> None:
    # Given a mapping whose backend lost the object, while another org's backend holds the same bytes
    org = world.org()
    mapped = world.backend(org, "emptied", is_default=True)
    digest = sha256_digest(DATA)
    world.map(digest, org, mapped)
    other_org = world.org()
    world.put(world.backend(other_org, "someone-else", is_default=True), DATA)

    # When the verifier sees the mapping
    response = stack.verify(stream_event(mapping_image(digest, org, mapped.id)))

    # Then it tried only its org's backend (absent: done, not retried) and read nothing of the other's
    assert response == {"batchItemFailures": []}
    assert {call.access_key_id for call in stack.verifier_calls.storage_calls()} == {mapped.access_key_id}


# ---------------------------------------------------------------------------------------------------
# on demand


def test_a_request_over_the_hashing_limit_asks_the_verifier_and_answers_503_then_307(
    world: World, stack: Stack
) -> None:
    # Given an unproven Chainloop object over what a request may hash (3 MiB at a measured 1 MiB/s)
    data = b"x" * (3 * 1024 * 1024)
    org, _, digest = chainloop_object(world, data)
    stack.configure_download(MAX_HASH_BYTES=1024 * 1024, VERIFY_BYTES_PER_SECOND=1024 * 1024)

    # When it is requested
    first = stack.get(digest, org)

    # Then the answer is 503 verification_pending, with Retry-After from the size and the rate
    assert first.status == 503
    assert first.error_code == "verification_pending"
    assert first.headers["Retry-After"] == "3"
    assert first.attempts == [("chainloop-s3", "verification_pending")]
    assert stack.request_calls.count("s3", "GetObject") == 0
    # and the verifier was invoked asynchronously, once, for that object
    [invocation] = stack.queue.invocations
    assert invocation["FunctionName"] == VERIFIER_NAME
    assert invocation["InvocationType"] == "Event"

    # When it is requested again while the proof is in flight
    second = stack.get(digest, org)

    # Then the same answer, without asking again
    assert second.status == 503
    assert len(stack.queue.invocations) == 1

    # When the verifier has run on the invocation's payload
    assert stack.verify(stack.queue.payloads[0]) == {"batchItemFailures": []}
    third = stack.get(digest, org)

    # Then the next request is served as any other: 307 to the verified bytes, none read by it
    assert third.status == 307
    assert stack.request_calls.count("s3", "GetObject") == 0
    assert world.fetch_presigned(third.headers["Location"]).body == data


def test_retry_after_rounds_the_proofs_time_up(world: World, stack: Stack) -> None:
    # Given an unproven object of 1.5 MiB, over the request's limit, at a measured 1 MiB/s
    org, _, digest = chainloop_object(world, b"z" * (3 * 512 * 1024))
    stack.configure_download(MAX_HASH_BYTES=1024 * 1024, VERIFY_BYTES_PER_SECOND=1024 * 1024)
    # When it is requested, Then Retry-After is the 1.5 s the proof takes, rounded up: 2 (never early)
    response = stack.get(digest, org)
    assert (response.status, response.headers["Retry-After"]) == (503, "2")


def test_an_object_of_exactly_max_hash_bytes_is_hashed_by_the_request(world: World, stack: Stack) -> None:
    # Given an unproven object whose size is MAX_HASH_BYTES exactly
    org, _, digest = chainloop_object(world)
    stack.configure_download(MAX_HASH_BYTES=len(DATA))
    # When it is requested, Then the request hashes it itself (the limit is inclusive): 307, no ask
    response = stack.get(digest, org)
    assert response.status == 307
    assert stack.request_calls.count("s3", "GetObject") == 1
    assert stack.queue.invocations == []


def test_an_object_of_exactly_verify_max_bytes_is_asked_for_and_proven_ahead(
    world: World, stack: Stack
) -> None:
    # Given an unproven object whose size is VERIFY_MAX_BYTES exactly, over the request's limit
    org, _, digest = chainloop_object(world)
    stack.configure_download(MAX_HASH_BYTES=1024, VERIFY_MAX_BYTES=len(DATA))
    stack.configure_verifier(VERIFY_MAX_BYTES=len(DATA))
    # When it is requested
    first = stack.get(digest, org)
    # Then the verifier is asked (the limit is inclusive), proves it, and the next request is served
    assert (first.status, first.error_code) == (503, "verification_pending")
    assert stack.verify(stack.queue.payloads[0]) == {"batchItemFailures": []}
    assert stack.get(digest, org).status == 307


def test_an_object_the_time_left_cannot_hash_asks_the_verifier_too(world: World, stack: Stack) -> None:
    # Given an unproven 2 MiB object, under MAX_HASH_BYTES, and a request whose deadline (1 s) hashes
    # only 1 MiB at the measured rate (1 MiB/s)
    data = b"y" * (2 * 1024 * 1024)
    org, _, digest = chainloop_object(world, data)
    stack.configure_download(REQUEST_DEADLINE_SECONDS=1, VERIFY_BYTES_PER_SECOND=1024 * 1024)

    # When it is requested
    response = stack.get(digest, org)

    # Then the verifier is asked rather than the request running out of time: 503, 2 s to wait
    assert response.status == 503
    assert response.error_code == "verification_pending"
    assert response.headers["Retry-After"] == "2"
    assert stack.request_calls.count("s3", "GetObject") == 0
    assert len(stack.queue.invocations) == 1


def test_a_pending_candidate_is_passed_over_when_another_serves(world: World, stack: Stack) -> None:
    # Given the mapped copy without a checksum, over the request's hashing limit, and the org's
    # fallback copy with a full-object checksum
    org = world.org()
    mapped = world.backend(org, "unchecksummed", is_default=True)
    other = world.backend(org, "checksummed", is_fallback=True)
    digest = world.put(mapped, DATA)
    world.put(other, DATA, checksum=True)
    world.map(digest, org, mapped)
    stack.configure_download(MAX_HASH_BYTES=1024)

    # When it is requested
    response = stack.get(digest, org)

    # Then the other copy serves (a fallback), and the verifier was still asked for the mapped one
    assert response.status == 307
    assert response.headers["X-Cas-Backend"] == "checksummed"
    assert response.headers["X-Cas-Fallback"] == "true"
    assert len(stack.queue.invocations) == 1


def test_body_mode_keeps_its_own_limit_and_never_asks_the_verifier(world: World, stack: Stack) -> None:
    # Given an unproven object over the request's hashing limit, within the body limit
    org, _, digest = chainloop_object(world)
    stack.configure_download(MAX_HASH_BYTES=1024)

    # When its body is asked for
    response = stack.get(digest, org, "get_body")

    # Then body mode hashes it as always and returns it; the verifier is not asked
    assert response.status == 200
    assert response.body == DATA
    assert stack.queue.invocations == []


def test_an_object_over_verify_max_bytes_stays_unverifiable_for_a_request(world: World, stack: Stack) -> None:
    # Given an unproven object over both the request's and the verifier's limits
    org, _, digest = chainloop_object(world)
    stack.configure_download(MAX_HASH_BYTES=1024, VERIFY_MAX_BYTES=2048)

    # When it is requested
    response = stack.get(digest, org)

    # Then nobody can prove it: 502 unverifiable, and the verifier is not asked
    assert response.status == 502
    assert response.attempts == [("chainloop-s3", "unverifiable")]
    assert stack.queue.invocations == []


def test_the_events_file_as_it_is_runs_and_its_unknown_org_is_skipped(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given events/stream/new_mapping.json, the sam local invoke input, untouched (its org has no
    # backends here)
    event = json.loads(STREAM_EVENT_FILE.read_text())
    capsys.readouterr()

    # When the verifier runs on it
    response = stack.verify(event)

    # Then the batch is done: its mapping was read and skipped for its unknown org (logged and
    # counted), not retried, and nothing was proven or read from storage
    assert response == {"batchItemFailures": []}
    [skipped] = log_lines(caplog, "stream record skipped")
    assert skipped["why"] == "unknown org: it has no backends"
    assert emitted(capsys.readouterr().out, "VerifierRecordsSkipped") == 1
    assert stack.verifier_calls.storage_calls() == []


def test_a_verification_pending_answer_is_no_server_error_in_the_metrics(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an unproven Chainloop object over what a request may hash
    org, _, digest = chainloop_object(world, b"y" * (2 * 1024 * 1024))
    stack.configure_download(MAX_HASH_BYTES=1024 * 1024)
    capsys.readouterr()

    # When it is requested and the verifier is asked
    assert stack.get(digest, org).status == 503
    flushed = capsys.readouterr().out

    # Then the request is counted, but not as a server error: the 5xx rate alarms (and a canary
    # deployment's rollback) must not fire because objects are being proven ahead
    assert emitted(flushed, "Requests") == 1
    assert emitted(flushed, "ServerErrors") == 0
    # and it is counted as pending, which the API's 5xx rate alarm subtracts from API Gateway's 5xx
    assert emitted(flushed, "VerificationPending") == 1
