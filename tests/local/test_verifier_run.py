"""`make run`'s verifier (spec: "Verifying ahead of requests"): the demo's large unchecksummed object
answers 503 verification_pending with Retry-After, then 307 to verified bytes; a mapping written while
the stack runs is proven by the poller on moto's Mappings stream before anyone asks; `cas-admin verify`
backfills the rest."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas_admin.chainloop_layout import s3 as chainloop_s3
from cas_download.data.items import to_item
from tests.local.conftest import (
    Admin,
    RunningStack,
    http,
    new_org_with_backend,
    start_run,
    stop_run,
    wait_for_state,
)

# A client honours Retry-After this many times before the test gives up (each wait is Retry-After).
RETRIES = 30


def bearer(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer local:{org}"}


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[RunningStack]:
    """A stack of this test's own: the session's shared one may have served the demo object already."""
    proc, state, out, err = start_run(tmp_path)
    try:
        yield RunningStack(proc, wait_for_state(proc, state, err), state, out, err)
    finally:
        stop_run(proc)


def test_the_demo_object_over_the_hashing_limit_answers_503_then_307(fresh_stack: RunningStack) -> None:
    # Given the demo's object with no checksum, over what a request may hash, proven by nobody yet
    unproven = fresh_stack.artifact("unproven.bin")
    url = f"{fresh_stack.api_url}/v1/artifacts/{unproven['digest']}"
    headers = bearer(fresh_stack.demo["org"])

    # When it is first requested
    first = http(url, headers=headers)

    # Then the verifier was asked: 503 verification_pending, Retry-After in whole seconds
    assert first.status == 503
    assert first.json["error"]["code"] == "verification_pending"
    retry_after = int(first.headers["retry-after"])
    assert retry_after >= 1

    # When the client comes back after Retry-After, as often as it is told to
    answer = first
    for _ in range(RETRIES):
        time.sleep(int(answer.headers["retry-after"]))
        answer = http(url, headers=headers)
        if answer.status != 503:
            break

    # Then it is redirected to the verified bytes
    assert answer.status == 307
    followed = http(url, headers=headers, follow=True)
    assert followed.status == 200
    assert f"sha256:{hashlib.sha256(followed.body).hexdigest()}" == unproven["digest"]


def test_a_new_mapping_is_proven_by_the_stream_poller_before_any_request(
    admin: Admin, local_stack: RunningStack, identity: tuple[str, str]
) -> None:
    # Given an org's backend, and an object written as Chainloop writes it (no checksum) then mapped
    # while the stack runs
    _, bucket = identity
    org, added = new_org_with_backend(admin, identity, "main", "--json")
    backend = added.json
    data = b"mapped while the verifier polls\n" + uuid.uuid4().bytes
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    chainloop_s3.put_object(local_stack.client("s3", storage=True), bucket, digest, data, "fresh.bin")
    env = local_stack.endpoints.function_env
    mapping = {
        "digest": digest,
        "org_backend": f"{org}#{backend['id']}",
        "org_id": org,
        "backend_id": backend["id"],
    }
    local_stack.client("dynamodb").put_item(
        TableName=env["MAPPINGS_TABLE"], Item=to_item({**mapping, "created_at": "2025-12-01T00:00:00Z"})
    )

    # When the poller has had its turns (nobody requests the object)
    records: list[dict[str, object]] = []
    for _ in range(RETRIES):
        records = [
            item
            for item in local_stack.client("dynamodb").scan(TableName=env["VERIFICATIONS_TABLE"])["Items"]
            if item.get("digest") == {"S": digest}
        ]
        if records:
            break
        time.sleep(1)

    # Then the verifier proved it from the stream: one record, of the object's size
    assert len(records) == 1
    assert records[0]["size"] == {"N": str(len(data))}
    # and cas-admin verify finds nothing left to prove
    summary = admin.ok("verify", "--org", org, "--json").json
    assert (summary["proven"], summary["already_proven"], summary["failed"]) == (0, 1, 0)
