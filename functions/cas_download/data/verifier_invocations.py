"""Asking the verifier function to prove one object now (spec: "Verifying ahead of requests", on
demand): an asynchronous Lambda invocation (``InvocationType=Event``) whose payload is shaped as the
Mappings table's stream delivers it, so the verifier has one way in.

The verifier is shared by every org, so asking goes through the :class:`AskLedger` (every container's
asks): at most one invocation per object while one is in flight, at most ``VERIFY_ASKS_PER_ORG`` per
org, and none within the hour for an object the verifier could not prove. The container also
remembers its own asks and its orgs' busy answers, so asking again costs no table read.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from cas_download.data.tables import TableError
from cas_download.data.verifier_asks import AskClaim, AskLedger, AskState, ask_key
from cas_download.domain import Backend

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
else:
    LambdaClient = Any

_log = logging.getLogger(__name__)

# The stream record's eventSource for an on-demand request: the verifier logs where a record came from.
ON_DEMAND_SOURCE = "cas-download:on-demand"


def mapping_event(digest: str, backend: Backend) -> dict[str, Any]:
    """A one-record stream event asking to prove ``digest`` through ``backend`` (then its org's
    candidates), as a new mapping of it would."""
    org_backend = f"{backend.org_id}#{backend.id}"
    keys = {"digest": {"S": digest}, "org_backend": {"S": org_backend}}
    image = {**keys, "org_id": {"S": backend.org_id}, "backend_id": {"S": backend.id}}
    return {
        "Records": [
            {
                "eventID": f"on-demand:{digest}:{backend.id}",
                "eventName": "INSERT",
                "eventSource": ON_DEMAND_SOURCE,
                "dynamodb": {"Keys": keys, "NewImage": image, "StreamViewType": "NEW_IMAGE"},
            }
        ]
    }


class VerifierInvocations:
    """The verifier function, asked asynchronously; its client is made on the first ask, so a
    container that never asks pays nothing at cold start."""

    def __init__(
        self,
        function_name: str,
        client_factory: Callable[[], LambdaClient],
        ledger: AskLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function_name = function_name
        self._client_factory = client_factory
        self._client: LambdaClient | None = None
        self._ledger = ledger
        self._clock = clock
        self._in_flight_until: dict[tuple[str, str], float] = {}
        self._org_busy_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def forget_all(self) -> None:
        """Forget the asks in flight and close the client's connections (a SnapStart restore)."""
        with self._lock:
            self._in_flight_until.clear()
            self._org_busy_until.clear()
            if self._client is not None:
                self._client.close()

    def ask(self, digest: str, backend: Backend, expected_seconds: int) -> AskClaim | None:
        """Ask the verifier to prove ``digest`` through ``backend`` (``expected_seconds``: how long
        that proof should take), unless an ask is in flight, the org has its share in flight, or the
        object is not to be asked yet: the claim says which, and when to try again. None when nobody
        is proving it (the invocation, or the ledger, failed)."""
        key = (digest, backend.id)
        now = self._clock()
        with self._lock:
            if (until := self._in_flight_until.get(key, 0.0)) > now:
                return AskClaim(AskState.IN_FLIGHT, max(1, math.ceil(until - now)))
            if (busy_until := self._org_busy_until.get(backend.org_id, 0.0)) > now:
                return AskClaim(AskState.ORG_BUSY, max(1, math.ceil(busy_until - now)))
        if self._ledger is not None:
            try:
                claim = self._ledger.claim(backend.org_id, ask_key(digest, backend.id), expected_seconds)
            except TableError as failure:
                _log.warning("verifier not asked: its asks could not be read (%s)", failure)
                return None
            if claim.state is not AskState.CLAIMED:
                if claim.state is AskState.ORG_BUSY:
                    with self._lock:
                        self._org_busy_until[backend.org_id] = now + claim.retry_after_seconds
                return claim
        with self._lock:
            self._in_flight_until[key] = now + expected_seconds
            if self._client is None:
                self._client = self._client_factory()
            client = self._client
        try:
            client.invoke(
                FunctionName=self.function_name,
                InvocationType="Event",
                Payload=json.dumps(mapping_event(digest, backend)).encode(),
            )
        except (ClientError, BotoCoreError) as failure:
            code = failure.response.get("Error", {}).get("Code") if isinstance(failure, ClientError) else None
            _log.warning("verifier not invoked: %s", code or type(failure).__name__)
            with self._lock:
                self._in_flight_until.pop(key, None)
            self._release(backend.org_id, ask_key(digest, backend.id))
            return None
        return AskClaim(AskState.CLAIMED, expected_seconds)

    def _release(self, org_id: str, key: str) -> None:
        if self._ledger is None:
            return
        try:
            self._ledger.release(org_id, key)
        except TableError as failure:  # the ask lapses by time instead
            _log.warning("verifier ask not released: %s", failure)
