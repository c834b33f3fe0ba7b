"""Count the AWS API calls the app makes, by (service, operation).

    recorder = CallRecorder()
    handler(event, ctx, session=recorder.session)  # the app builds its clients from this session
    assert recorder.count("s3") == 0
    assert recorder.count("secretsmanager", "GetSecretValue") == 1

botocore copies a session's event emitter into each client when the client is created, so the
recorder must be registered before the app creates its clients: ``CallRecorder()`` registers on the
session at construction (its own new session, or one passed in).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.loaders
import botocore.session

_PARAMS_KEY = "cas_recorder_params"

# Loading botocore's JSON service models is most of the cost of a new session's first client; the
# loader caches them, so sessions made for tests share one loader (the models are read-only).
_SHARED_LOADER = botocore.loaders.create_loader()


def fresh_session() -> boto3.session.Session:
    """A new boto3 session (own event emitter and credentials) that shares the model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _SHARED_LOADER)
    return boto3.session.Session(botocore_session=core)


@dataclass(frozen=True)
class Call:
    service: str  # botocore service name: "s3", "secretsmanager", "dynamodb"
    operation: str  # "GetObject", "HeadObject", "GetSecretValue", ...
    params: dict[str, Any] = field(compare=False)  # the API parameters (Bucket, Key, SecretId, ...)
    access_key_id: str | None = field(default=None, compare=False)


class CallRecorder:
    """Records every API call made through clients of ``session`` (one per call, not per retry)."""

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        self.session = session or fresh_session()
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        events = self.session.events
        events.register("before-parameter-build", self._before_parameter_build, unique_id=f"cas-p-{id(self)}")
        events.register("before-call", self._before_call, unique_id=f"cas-c-{id(self)}")

    @staticmethod
    def _before_parameter_build(params: Any, context: Any = None, **_: Any) -> None:
        # The same ``context`` dict reaches before-call: carry the caller's API parameters there.
        if isinstance(context, dict):
            context[_PARAMS_KEY] = dict(params)

    def _before_call(self, model: Any, context: Any = None, request_signer: Any = None, **_: Any) -> None:
        credentials = getattr(request_signer, "_credentials", None)
        params = context.get(_PARAMS_KEY, {}) if isinstance(context, dict) else {}
        call = Call(
            service=str(model.service_model.service_name),
            operation=str(model.name),
            params=params,
            access_key_id=getattr(credentials, "access_key", None),
        )
        with self._lock:
            self.calls.append(call)

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((c.service, c.operation) for c in self.calls)

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        """Calls matching ``service`` and ``operation`` (None matches any)."""
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (service is None or c.service == service)
                and (operation is None or c.operation == operation)
            )

    def of(self, service: str, operation: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.service == service and (operation is None or c.operation == operation)
            ]

    def storage_calls(self) -> list[Call]:
        """Calls to S3 (what "no storage call" means)."""
        return self.of("s3")

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def __repr__(self) -> str:
        return f"CallRecorder({dict(self.counts)})"


__all__ = ["Call", "CallRecorder"]
