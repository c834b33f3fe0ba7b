"""What DynamoDB leaves unprocessed in a batch is sent again, with backoff, a bounded number of times."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from cas_download.data.sync_target import SyncTarget, TargetError

ROW = {
    "digest": "sha256:" + "ab" * 32,
    "org_backend": "o#b",
    "org_id": "o",
    "backend_id": "b",
    "created_at": "t",
}


class PartialClient:
    """Leaves everything it is sent unprocessed ``refusals`` times, then takes it."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls: list[str] = []
        self.requests: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("write")
        if len(self.calls) <= self.refusals:
            return {"UnprocessedItems": RequestItems}
        return {"UnprocessedItems": {}}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("get")
        self.requests.append(RequestItems)
        if len(self.calls) <= self.refusals:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        (table, request), *_ = RequestItems.items()
        return {"Responses": {table: request["Keys"]}, "UnprocessedKeys": {}}


def target(client: PartialClient, sleeps: list[float]) -> SyncTarget:
    return SyncTarget(client, "backends", "mappings", sleep=sleeps.append)


def test_unprocessed_writes_are_sent_again_with_growing_backoff() -> None:
    # Given DynamoDB leaving a batch unprocessed three times
    client, sleeps = PartialClient(refusals=3), list[float]()
    # When the batch is written
    target(client, sleeps).put_mappings([ROW])
    # Then it is sent four times, each wait longer than the one before (a constant backoff fails this)
    assert client.calls == ["write"] * 4
    assert len(sleeps) == 3
    assert all(earlier < later for earlier, later in pairwise(sleeps))


def test_unprocessed_keys_are_asked_again_and_every_answer_counts() -> None:
    client, sleeps = PartialClient(refusals=1), list[float]()
    found = target(client, sleeps).existing_mappings([(ROW["digest"], ROW["org_backend"])])
    assert found == {(ROW["digest"], ROW["org_backend"])}
    assert client.calls == ["get", "get"]


def test_a_batch_still_unprocessed_after_the_retries_is_an_error() -> None:
    client, sleeps = PartialClient(refusals=100), list[float]()
    with pytest.raises(TargetError, match="still unprocessed after 8 retries"):
        target(client, sleeps).put_mappings([ROW])
    assert len(client.calls) == 9


def test_existing_rows_are_read_consistently() -> None:
    # A mapping written one chunk ago must be found, or a later duplicate would overwrite it
    client = PartialClient(refusals=0)
    target(client, []).existing_mappings([(ROW["digest"], ROW["org_backend"])])
    assert [request["mappings"]["ConsistentRead"] for request in client.requests] == [True]
