"""The verifier as the local stack runs it (template: VerifierFunction; VerifierAskFunction for asks), in
this process:

* a **poller on moto's DynamoDB stream** of the Mappings table (``dynamodbstreams``: DescribeStream,
  GetShardIterator ``LATEST``, GetRecords), handing each batch of new mappings to the verifier's
  handler as Lambda's event source mapping would (the shape of ``events/stream/new_mapping.json``);
* a **Lambda Invoke endpoint** (``POST /2015-03-31/functions/<name>/invocations``,
  ``X-Amz-Invocation-Type: Event``): the download handler's on-demand asks reach it through
  ``AWS_ENDPOINT_URL_LAMBDA`` and are answered 202 at once, the verifier running on a thread.

The poller starts at ``LATEST``: mappings written before it (the demo's) are proven on demand, by the
first request that needs them, which is what the demo shows.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from cas_download.app import App
from cas_download.handlers.verifier import instrumented_handler
from cas_local.events import LocalLambdaContext
from cas_local.httpbase import DispatchingHandler, LoopbackServer, bound_handler

VERIFIER_TIMEOUT_MS = 900_000  # the template's VerifierFunction Timeout
_INVOKE_PATH = "/2015-03-31/functions/"


class LocalVerifier(LoopbackServer):
    thread_name = "verifier-invoke"

    def __init__(
        self,
        app: App,
        streams: Any,
        stream_arn: str,
        *,
        host: str = "127.0.0.1",
        poll_seconds: float = 0.5,
        log: TextIO | None = sys.stderr,
    ) -> None:
        self.app = app
        self._handler: Callable[[dict[str, Any], Any], Any] = instrumented_handler(app)
        self._streams = streams
        self._stream_arn = stream_arn
        self._poll_seconds = poll_seconds
        self._log = log
        self._stopping = threading.Event()
        # One verifier container: batches and asks run one at a time, as in one Lambda container.
        self._lock = threading.Lock()
        self._iterators: dict[str, str] = {}
        self._poller = threading.Thread(target=self._poll, name="verifier-stream-poller", daemon=True)
        super().__init__(bound_handler(_InvokeHandler, verifier=self), host, 0)

    def start(self) -> LocalVerifier:
        self._iterators = self._latest_iterators()
        super().start()
        self._poller.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._poller.join(timeout=5)
        super().stop()

    def run(self, event: dict[str, Any]) -> Any:
        """One verifier invocation, as Lambda would run it."""
        with self._lock:
            return self._handler(
                event, LocalLambdaContext(VERIFIER_TIMEOUT_MS, "cas-download-verifier-local")
            )

    def poll_once(self) -> int:
        """Hand every new stream record to the verifier, one batch per shard; the records seen."""
        seen = 0
        for shard, iterator in list(self._iterators.items()):
            answer = self._streams.get_records(ShardIterator=iterator, Limit=100)
            self._iterators[shard] = answer.get("NextShardIterator") or iterator
            records = [self._as_event_record(record) for record in answer.get("Records", [])]
            new_mappings = [r for r in records if r.get("eventName") == "INSERT"]  # the template's filter
            if new_mappings:
                self._say(f"verifier: {len(new_mappings)} new mapping(s) from the stream")
                self._run_logged({"Records": new_mappings})
            seen += len(records)
        return seen

    def ask(self, payload: bytes) -> None:
        """An asynchronous invocation: queued, run on a thread."""
        try:
            event = json.loads(payload or b"{}")
        except ValueError:
            self._say("verifier: an invocation whose payload is not JSON was dropped")
            return
        threading.Thread(target=self._run_logged, args=(event,), name="verifier-ask", daemon=True).start()

    def _run_logged(self, event: dict[str, Any]) -> None:
        try:
            self.run(event)
        except Exception as error:  # Lambda would count an error and retry: say so once
            self._say(f"verifier: the invocation failed ({type(error).__name__}): Lambda would retry it")

    def _poll(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.poll_once()
            except (BotoCoreError, ClientError) as error:
                self._say(f"verifier: the stream could not be read ({type(error).__name__})")

    def _latest_iterators(self) -> dict[str, str]:
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        return {
            shard["ShardId"]: self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for shard in shards
        }

    def _as_event_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A GetRecords record as Lambda delivers it: times in epoch seconds, the stream's ARN."""
        change = dict(record.get("dynamodb") or {})
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        return {**record, "dynamodb": change, "eventSourceARN": self._stream_arn}

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()


class _InvokeHandler(DispatchingHandler):
    """Lambda's Invoke API, the asynchronous kind only: what the download handler's asks need."""

    verifier: LocalVerifier
    server_version = "cas-local-lambda"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if self.command != "POST" or not (path.startswith(_INVOKE_PATH) and path.endswith("/invocations")):
            self._answer(404, b'{"Type":"User","message":"no such function route"}')
            return
        if self.headers.get("X-Amz-Invocation-Type") != "Event":
            self._answer(400, b'{"Type":"User","message":"the local verifier takes Event invocations only"}')
            return
        self.verifier.ask(payload)
        self._answer(202, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_local_verifier(
    function_env: dict[str, str], dynamodb: Any, streams: Any, *, log: TextIO | None = sys.stderr
) -> LocalVerifier:
    """The verifier of the stack this process's environment points at: its settings are the download
    function's, under the verifier's service name; its stream, the Mappings table's."""
    from cas_download.config import Settings  # noqa: PLC0415 - only `cas-local run` starts one

    env = {**function_env, "POWERTOOLS_SERVICE_NAME": "cas-download-verifier", "VERIFIER_FUNCTION_NAME": ""}
    app = App.create(Settings.from_env(env))
    stream_arn = dynamodb.describe_table(TableName=app.settings.mappings_table)["Table"]["LatestStreamArn"]
    return LocalVerifier(app, streams, stream_arn, log=log).start()
