"""The download function and the verifier as Lambda runs them, for the verifier's scenarios: each
container an :class:`App` with its own call recorder, a request's asynchronous invocations received by
a stand-in for Lambda's event queue, and one clock the test moves for every container's asks (the
Verifications table's leases and memos are wall-clock times shared by all containers).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from msgspec.structs import replace

from cas_download.app import App
from cas_download.config import Settings
from cas_download.data.tables import Tables
from cas_download.data.verifier_asks import AskLedger
from cas_download.data.verifier_invocations import VerifierInvocations
from cas_download.handlers.download import instrumented_handler as download_handler
from cas_download.handlers.verifier import instrumented_handler as verifier_handler
from tests.scenarios.conftest import HttpResult
from tests.support.calls import CallRecorder
from tests.support.events import FakeLambdaContext, load_event
from tests.support.stream_events import mapping_image, stream_event
from tests.support.world import BackendRef, World

VERIFIER_NAME = "cas-download-verifier"


def hold_record_writes_until_both_hashed(monkeypatch: Any) -> None:
    """Drive a race's order: each of two writers of a verification record waits, before writing,
    until the other has hashed too (both then found no record). A writer that never comes (it found
    a record, or failed) breaks the barrier: the other's write raises, and the race test fails."""
    both_hashed = threading.Barrier(2, timeout=20)
    save = Tables.save_verification_record

    def save_once_both_hashed(self: Tables, record: Any, expires_at: Any) -> None:
        both_hashed.wait()
        save(self, record, expires_at)

    monkeypatch.setattr(Tables, "save_verification_record", save_once_both_hashed)


class TestClock:
    """Wall-clock seconds that move only when the test says (every container and the verifier)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LambdaEventQueue:
    """Stands in for Lambda's asynchronous invocation queue: keeps each Event invocation's payload."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **params: Any) -> dict[str, Any]:
        self.invocations.append(params)
        return {"StatusCode": 202}

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(call["Payload"]) for call in self.invocations]


class Stack:
    """The download function and the verifier, each with its own container (App) and call recorder."""

    def __init__(self, world: World, verifications_table: str, context: FakeLambdaContext) -> None:
        self.world = world
        self.verifications_table = verifications_table
        self.context = context
        self.clock = TestClock()
        self.queue = LambdaEventQueue()
        self.request_calls = CallRecorder()
        self.verifier_calls = CallRecorder()
        self._download: Any = None
        self._verifier: Any = None

    def configure_download(self, **env: object) -> None:
        self._download = self.container(**env)

    def container(self, **env: object) -> Any:
        """A new download container (its own App and memory), asking through the stand-in queue."""
        settings = Settings.from_env(
            self.world.settings_env(
                VERIFICATIONS_TABLE=self.verifications_table, VERIFIER_FUNCTION_NAME=VERIFIER_NAME, **env
            )
        )
        app = self._on_clock(App.create(settings, session=self.request_calls.session))
        assert app.services.verifier is not None  # the template's function name makes a verifier to ask
        return download_handler(app)

    def _on_clock(self, app: App) -> App:
        """``app`` with its asks on the test's clock, and its invocations sent to the stand-in queue."""
        settings = app.settings
        asks = AskLedger(
            app.services.tables,
            settings.verify_asks_per_org,
            settings.verify_ask_max_event_age_seconds,
            clock=self.clock,
        )
        queue = self.queue
        asking = VerifierInvocations(VERIFIER_NAME, lambda: queue, asks, clock=self.clock)  # type: ignore[arg-type, return-value]
        return replace(app, services=replace(app.services, asks=asks, verifier=asking))

    def configure_verifier(self, **env: object) -> App:
        settings = Settings.from_env(
            self.world.settings_env(
                VERIFICATIONS_TABLE=self.verifications_table,
                POWERTOOLS_SERVICE_NAME="cas-download-verifier",
                **env,
            )
        )
        app = self._on_clock(App.create(settings, session=self.verifier_calls.session))
        self._verifier = verifier_handler(app)
        return app

    def get(
        self, digest: str, org: str, event_name: str = "get_redirect", container: Any = None
    ) -> HttpResult:
        """A request through ``container`` (default: the one :meth:`configure_download` made)."""
        if container is None:
            if self._download is None:
                self.configure_download()
            container = self._download
        # each invocation has its own context, and so its own time left (as in Lambda)
        raw = container(load_event(event_name, digest=digest, orgs=org), FakeLambdaContext())
        return HttpResult(raw["statusCode"], raw["headers"], dict(raw))

    def verify(self, event: dict[str, Any]) -> dict[str, Any]:
        if self._verifier is None:
            self.configure_verifier()
        response: dict[str, Any] = self._verifier(event, FakeLambdaContext())
        return response

    def request_and_verify_at_once(self, digest: str, org: str, backend_id: str) -> list[Any]:
        """A request for ``digest`` and the verifier on its mapping, in two threads at once: the
        request's status and the verifier's batch response, in the order they finished."""
        answers: list[Any] = []
        threads = [
            threading.Thread(target=lambda: answers.append(self.get(digest, org).status)),
            threading.Thread(
                target=lambda: answers.append(
                    self.verify(stream_event(mapping_image(digest, org, backend_id)))
                )
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    def records_naming(self, digest: str) -> list[dict[str, Any]]:
        """Every Verifications item of an object stored under ``digest``'s name (any provider: the
        object id holds the name), whatever digest its bytes hashed to."""
        hex_digest = digest.removeprefix("sha256:")
        items = self.world.dynamodb.scan(TableName=self.verifications_table)["Items"]
        return [item for item in items if "digest" in item and hex_digest in item["object_id"]["S"]]

    def record(self, backend: BackendRef, digest: str) -> dict[str, Any] | None:
        """The Verifications item of ``digest``'s object in ``backend`` (S3 at the default endpoint)."""
        head = self.world.head(backend, digest)
        object_id = f"s3|{backend.bucket}|{backend.key_for(digest)}|{head.get('VersionId') or ''}"
        item = self.world.dynamodb.get_item(
            TableName=self.verifications_table, Key={"object_id": {"S": object_id}}
        )
        found: dict[str, Any] | None = item.get("Item")
        return found
