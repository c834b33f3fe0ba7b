"""Run in a fresh interpreter by benchmarks/coldstart.py; prints one JSON line with its timings.

    python -S coldstart_child.py app EVENT_JSON   import the handler module, serve the first request
    python -S coldstart_child.py first EVENT_JSON the same, and nothing after it (instruction counts)
    python -S coldstart_child.py start            nothing: this script's own start (instruction counts)
    python -S coldstart_child.py boto3            import boto3, create one S3 client
    python -S coldstart_child.py clients          what PynamoDB's own botocore sessions cost
    python -S coldstart_child.py snapstart EVENT  SnapStart's initialization (AWS_LAMBDA_INITIALIZATION_TYPE
                                                  set by the caller), its hooks, then the first request

Only the standard library is imported before the clock starts; everything else comes from PYTHONPATH
(the layer-like install and a copy of the function's package), exactly as Lambda would find it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # not imported at run time: the import of the handler is what is measured
    from aws_lambda_powertools.utilities.typing import LambdaContext


class _Context:
    """The little of a LambdaContext the handler and Powertools read (duck-typed: importing Powertools'
    class here would move part of the measured import out of the timed section)."""

    aws_request_id = "00000000-0000-0000-0000-000000000000"
    function_name = "cas-download"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cas-download"

    def __init__(self) -> None:
        self._deadline = time.monotonic() + 25.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _import_handler(event_path: str) -> tuple[dict[str, Any], Any, float, float]:
    """The request event (read before the clock starts), then the handler module imported: when its
    import started and when it ended."""
    event = json.loads(Path(event_path).read_text())
    started = time.perf_counter()
    from cas_download.handlers import download  # noqa: PLC0415 - the import is what is measured

    return event, download, started, time.perf_counter()


def _serve(download: Any, event: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """One request through the handler: its response and when it was answered."""
    response = download.lambda_handler(event, cast("LambdaContext", _Context()))
    return response, time.perf_counter()


def _expect_redirects(*responses: dict[str, Any]) -> None:
    """Timings of anything but the redirect (307) would measure an error path: stop."""
    if any(response["statusCode"] != 307 for response in responses):
        statuses = "/".join(str(response["statusCode"]) for response in responses)
        raise SystemExit(f"unexpected status {statuses}: {responses[0]['body']}")


def _app(event_path: str) -> dict[str, Any]:
    event, download, started, imported = _import_handler(event_path)
    first, served = _serve(download, event)
    second, warm = _serve(download, event)
    _expect_redirects(first, second)
    return {
        "import_s": imported - started,
        "work_s": served - imported,
        "total_s": served - started,
        "warm_request_s": warm - served,
    }


def _first(event_path: str) -> dict[str, Any]:
    """Import and the first request only: what an instruction count of the cold start covers."""
    event, download, started, _imported = _import_handler(event_path)
    first, served = _serve(download, event)
    _expect_redirects(first)
    return {"total_s": served - started}


def _snapstart(event_path: str) -> dict[str, Any]:
    """What SnapStart moves out of a cold start, in one process: the initialization Lambda snapshots
    (imports of both routes, the App, its clients), the hooks as Lambda runs them, then the first
    request: what a restored container does first. The restore itself is Lambda's and cannot run here."""
    event, download, started, initialized = _import_handler(event_path)
    import snapshot_restore_py  # noqa: PLC0415 - the runtime's module (a copy of AWS's release here)

    for func, args, kwargs in [*snapshot_restore_py._before_snapshot_registry,
                               *snapshot_restore_py._after_restore_registry]:  # fmt: skip
        func(*args, **kwargs)
    restored = time.perf_counter()
    first, served = _serve(download, event)
    _expect_redirects(first)
    return {
        "import_s": initialized - started,
        "hooks_s": restored - initialized,
        "work_s": served - restored,
        "total_s": served - started,
    }


def _boto3() -> dict[str, Any]:
    started = time.perf_counter()
    import boto3  # noqa: PLC0415 - the import is what is measured

    imported = time.perf_counter()
    boto3.client("s3")
    created = time.perf_counter()
    return {"import_s": imported - started, "work_s": created - imported, "total_s": created - started}


def _clients() -> dict[str, Any]:
    """After the app's S3 and Secrets Manager clients exist: a DynamoDB client from a new botocore
    session (what each PynamoDB model's connection does) against one from the same session."""
    import boto3  # noqa: PLC0415
    import botocore.session  # noqa: PLC0415

    session = boto3.session.Session()
    session.client("s3")
    session.client("secretsmanager")
    timings = {}
    for label in ("new_session_1_s", "new_session_2_s", "shared_session_1_s", "shared_session_2_s"):
        started = time.perf_counter()
        if label.startswith("new"):
            botocore.session.get_session().create_client("dynamodb")
        else:
            session.client("dynamodb")
        timings[label] = time.perf_counter() - started
    return timings


def _start() -> dict[str, Any]:
    """Nothing: what an instruction count subtracts (the interpreter's start and this script's)."""
    return {}


def main() -> None:
    kind = sys.argv[1]
    kinds = {"app": lambda: _app(sys.argv[2]), "first": lambda: _first(sys.argv[2]),
             "snapstart": lambda: _snapstart(sys.argv[2]), "boto3": _boto3, "clients": _clients,
             "start": _start}  # fmt: skip
    result = kinds[kind]()
    result["modules"] = len(sys.modules)
    # The handler's log lines went to stdout before this: the result is the last line.
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
