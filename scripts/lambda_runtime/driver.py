"""Runs INSIDE the arm64 chroot, as Lambda runs the function: ``python3.13 -S driver.py JOB.json``.

Standard library only before the timed imports; ``sys.path`` gets what Lambda puts first: the
function's code (/var/task) and the layer (/opt/python). The job (written by the host side,
scripts/lambda_runtime/arm64.py) says which modules to import and which events to hand to which
handler. host checks. Each step appends one JSON line to the job's ``results`` file, which the host checks;
the handlers' own log lines go to stderr.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
import os
import platform
import sys
import time
from typing import Any


class Context:
    """The LambdaContext fields the handlers and Powertools read."""

    aws_request_id = "00000000-0000-4000-8000-000000000000"
    function_name = "cas-download-runtime-check"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cas-download-runtime-check"
    log_group_name = "/aws/lambda/cas-download-runtime-check"
    log_stream_name = "runtime-check"

    def __init__(self, timeout_seconds: float) -> None:
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


RESULTS: list[str] = []  # the results file's path, from the job


def emit(step: str, started: float, **fields: Any) -> None:
    line = {"step": step, "seconds": round(time.perf_counter() - started, 3), **fields}
    with open(RESULTS[0], "a") as results:
        results.write(json.dumps(line) + "\n")


def summarize(response: Any) -> dict[str, Any]:
    """Status, headers and the body's digest: what the host asserts on."""
    if not isinstance(response, dict) or "statusCode" not in response:
        return {"result": response}
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return {
        "status": response["statusCode"],
        "headers": {k.lower(): v for k, v in (response.get("headers") or {}).items()},
        "body_sha256": f"sha256:{hashlib.sha256(raw).hexdigest()}",
        "body_head": raw[:300].decode(errors="replace"),
    }


def handler_of(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    RESULTS.append(job["results"])
    sys.path[:0] = job["sys_path"]
    os.environ.update(job["env"])
    started = time.perf_counter()
    emit("runtime", started, python=platform.python_version(), machine=platform.machine())
    with contextlib.redirect_stdout(sys.stderr):  # the handlers' log lines, together in the log
        for module in job["imports"]:
            started = time.perf_counter()
            importlib.import_module(module)
            emit("import", started, module=module)
        for call in job["invocations"]:
            sys.path[:0] = call.get("extra_sys_path", [])
            os.environ.update(call.get("env", {}))
            started = time.perf_counter()
            for module in call.get("imports", []):
                importlib.import_module(module)
            response = handler_of(call["handler"])(call["event"], Context(call.get("timeout_seconds", 25)))
            emit("invoke", started, name=call["name"], **summarize(response))


if __name__ == "__main__":
    main()
