"""Asking the verifier function to prove one object now (spec: "Verifying ahead of requests", on
demand): an asynchronous Lambda invocation (``InvocationType=Event``) whose payload is shaped as the
Mappings table's stream delivers it, so the verifier has one way in.

At most one invocation per object per container while one is in flight: a request that finds the
object still unproven within that time answers ``verification_pending`` without asking again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function_name = function_name
        self._client_factory = client_factory
        self._client: LambdaClient | None = None
        self._clock = clock
        self._in_flight_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def forget_all(self) -> None:
        """Forget the asks in flight and close the client's connections (a SnapStart restore)."""
        with self._lock:
            self._in_flight_until.clear()
            if self._client is not None:
                self._client.close()

    def ask(self, digest: str, backend: Backend, expected_seconds: float) -> bool:
        """Ask the verifier to prove ``digest`` through ``backend``, unless an ask of this container is
        still in flight (``expected_seconds``: how long that proof should take). False when the
        invocation could not be made: nobody is proving it."""
        key = (digest, backend.id)
        now = self._clock()
        with self._lock:
            if self._in_flight_until.get(key, 0.0) > now:
                return True
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
            return False
        return True
