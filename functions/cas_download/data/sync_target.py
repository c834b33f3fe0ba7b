"""The two tables of SPEC.md as the Chainloop sync writes them: batched reads to learn what exists,
batched writes of what is missing, one conditional update per changed backend, and the watermark.

Plain rows in, DynamoDB items out (``data/items.py``); an attribute whose value is None is absent. Throttling is retried by botocore (its standard retry mode, see ``sync_client_config``), and
what a batch call leaves unprocessed is sent again with backoff here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from cas_download.data.items import from_item, to_item, to_value

Row = dict[str, Any]

# The sync's progress, kept in the Mappings table under a key that is not a digest, so no lookup by
# digest can ever meet it (the service reads Mappings only by a validated sha256 digest).
WATERMARK_KEY = {"digest": "sync:chainloop", "org_backend": "watermark"}

_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25
_UNPROCESSED_RETRIES = 8


def sync_client_config() -> Config:
    """Patient retries: a throttled sync should slow down, not fail (the schedule is the only deadline)."""
    return Config(retries={"total_max_attempts": 10, "mode": "standard"}, connect_timeout=5, read_timeout=30)


class TargetError(Exception):
    """DynamoDB refused a write even after retries; the message is one line."""

    code = "target_unavailable"


class SyncTarget:
    def __init__(
        self, client: Any, backends_table: str, mappings_table: str, *, sleep: Any = time.sleep
    ) -> None:
        self._client = client
        self.backends_table = backends_table
        self.mappings_table = mappings_table
        self._sleep = sleep

    # ------------------------------------------------------------------ backends

    def backends(self, ids: Iterable[str]) -> dict[str, Row]:
        """The Backends rows with these ids that exist, by id."""
        keys = [{"id": backend_id} for backend_id in dict.fromkeys(ids)]
        rows = self._batch_get(self.backends_table, keys, projection=None)
        return {row["id"]: row for row in rows}

    def backend(self, backend_id: str) -> Row | None:
        item = self._call(
            "get_item", TableName=self.backends_table, Key=to_item({"id": backend_id}), ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def update_backend(
        self, backend_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any]
    ) -> bool:
        """Set (or, for None, remove) ``changes`` on the row; only while every ``expect`` attribute still
        has the value read before (None: still absent). False when the row changed meanwhile."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attribute: str) -> str:
            placeholder = f"#n{len(names)}"
            names[placeholder] = attribute
            return placeholder

        sets, removes = [], []
        for attribute, value in changes.items():
            if value is None:
                removes.append(name(attribute))
            else:
                placeholder = f":v{len(values)}"
                values[placeholder] = to_value(value)
                sets.append(f"{name(attribute)} = {placeholder}")
        expression = " ".join(
            part
            for part in (
                f"SET {', '.join(sets)}" if sets else "",
                f"REMOVE {', '.join(removes)}" if removes else "",
            )
            if part
        )
        conditions = []
        for attribute, seen in expect.items():
            if seen is None:
                conditions.append(f"attribute_not_exists({name(attribute)})")
            else:
                placeholder = f":e{len(values)}"
                values[placeholder] = to_value(seen)
                conditions.append(f"{name(attribute)} = {placeholder}")
        request: dict[str, Any] = {
            "TableName": self.backends_table,
            "Key": to_item({"id": backend_id}),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
        try:
            self._client.update_item(**request)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise TargetError(f"UpdateItem on {self.backends_table} failed: {_describe(error)}") from None
        return True

    # ------------------------------------------------------------------ mappings

    def existing_mappings(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these ``(digest, org_backend)`` keys have a row already."""
        requested = [{"digest": digest, "org_backend": org_backend} for digest, org_backend in keys]
        rows = self._batch_get(self.mappings_table, requested, projection="digest, org_backend")
        return {(row["digest"], row["org_backend"]) for row in rows}

    def put_mappings(self, rows: Sequence[Row]) -> None:
        """Write new Mappings rows (whole items), 25 per call, resending what DynamoDB leaves unprocessed."""
        for start in range(0, len(rows), _BATCH_WRITE_LIMIT):
            requests = [
                {"PutRequest": {"Item": to_item(row)}} for row in rows[start : start + _BATCH_WRITE_LIMIT]
            ]
            pending = {self.mappings_table: requests}
            what = f"BatchWriteItem on {self.mappings_table}: items"
            list(
                self._until_processed("batch_write_item", pending, "UnprocessedItems", what)
            )  # answers unused

    # ------------------------------------------------------------------ watermark

    def watermark(self) -> str | None:
        item = self._call(
            "get_item", TableName=self.mappings_table, Key=to_item(WATERMARK_KEY), ConsistentRead=True
        ).get("Item")
        return str(from_item(item).get("created_at")) if item else None

    def save_watermark(self, created_at: str, saved_at: str) -> None:
        """Move the watermark forward, never back (two runs at once cannot rewind each other)."""
        try:
            self._client.put_item(
                TableName=self.mappings_table,
                Item=to_item({**WATERMARK_KEY, "created_at": created_at, "saved_at": saved_at}),
                ConditionExpression="attribute_not_exists(created_at) OR created_at < :mark",
                ExpressionAttributeValues={":mark": {"S": created_at}},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise TargetError(f"PutItem on {self.mappings_table} failed: {_describe(error)}") from None

    # ------------------------------------------------------------------ plumbing

    def _batch_get(self, table: str, keys: Sequence[Mapping[str, Any]], projection: str | None) -> list[Row]:
        rows: list[Row] = []
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                "Keys": [to_item(key) for key in keys[start : start + _BATCH_GET_LIMIT]],
                # A row this run wrote one chunk ago must be seen: the first mapping of a copy wins
                "ConsistentRead": True,
            }
            if projection:
                request["ProjectionExpression"] = projection
            answers = self._until_processed(
                "batch_get_item", {table: request}, "UnprocessedKeys", f"BatchGetItem on {table}: keys"
            )
            for answer in answers:
                rows += [from_item(item) for item in answer.get("Responses", {}).get(table, [])]
        return rows

    def _until_processed(
        self, operation: str, pending: dict[str, Any], unprocessed: str, what: str
    ) -> Iterator[Any]:
        """Each answer of a batch ``operation``, resending with backoff what DynamoDB leaves in the
        answer's ``unprocessed`` part, at most ``_UNPROCESSED_RETRIES`` times."""
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            answer = self._call(operation, RequestItems=pending)
            yield answer
            pending = answer.get(unprocessed) or {}
            if not pending:
                return
            if attempt == _UNPROCESSED_RETRIES:
                raise TargetError(f"{what} still unprocessed after {_UNPROCESSED_RETRIES} retries")
            self._sleep(_backoff(attempt))

    def _call(self, operation: str, **request: Any) -> Any:
        try:
            return getattr(self._client, operation)(**request)
        except ClientError as error:
            raise TargetError(f"{error.operation_name} failed: {_describe(error)}") from None


def _backoff(attempt: int) -> float:
    return float(min(0.05 * 2**attempt, 2.0))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'error')}: {details.get('Message', '')}".strip()
