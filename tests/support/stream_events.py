"""DynamoDB stream events of the Mappings table, built only from ``events/stream/new_mapping.json``
(valid ``sam local invoke VerifierFunction -e`` input): each record is the file's record with its
``NewImage`` (and ``Keys``) replaced, and a sequence number and event id of its own."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from typing import Any

from cas_download.data.items import to_item
from tests.support.events import EVENTS_DIR

STREAM_EVENT_FILE = EVENTS_DIR / "stream" / "new_mapping.json"
_sequence = itertools.count(200_000_000_000_000_000_000)


def mapping_image(
    digest: str, org: str, backend_id: str, created_at: str = "2025-11-24T20:00:00Z"
) -> dict[str, Any]:
    """A Mappings item as the sync writes it (plain values)."""
    return {
        "digest": digest,
        "org_backend": f"{org}#{backend_id}",
        "org_id": org,
        "backend_id": backend_id,
        "created_at": created_at,
    }


def stream_event(*images: Mapping[str, Any], event_name: str = "INSERT") -> dict[str, Any]:
    """A stream batch with one record per image (plain values, serialized as DynamoDB does)."""
    template = json.loads(STREAM_EVENT_FILE.read_text())["Records"][0]
    records = []
    for image in images:
        record = copy.deepcopy(template)
        sequence = str(next(_sequence))
        record["eventID"] = f"test-{sequence}"
        record["eventName"] = event_name
        item = to_item({k: v for k, v in image.items() if v is not None})
        record["dynamodb"]["NewImage"] = item
        record["dynamodb"]["Keys"] = {k: item[k] for k in ("digest", "org_backend") if k in item}
        record["dynamodb"]["SequenceNumber"] = sequence
        records.append(record)
    return {"Records": records}


def failed_sequence_numbers(response: Mapping[str, Any]) -> list[str]:
    """The ``itemIdentifier`` of each batch item failure the verifier reported."""
    return [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]


def sequence_number(event: Mapping[str, Any], index: int) -> str:
    return str(event["Records"][index]["dynamodb"]["SequenceNumber"])
