"""``make load``: the local HTTP server (``cas-local run``) under a bounded concurrent load on loopback.

    python -m benchmarks.load [--requests 2000] [--duration 30] [--workers 8] [--warmup 100]
                              [--max-growth-mib 8] [--write-docs]

Starts the local stack (``python -m cas_local run --port 0``, as ``make run`` does, on 127.0.0.1 only)
in a subprocess, reads its endpoints and the demo's digests from its state file, then sends requests
from ``--workers`` threads (stdlib ``http.client``, one connection per request) until ``--requests``
were sent or ``--duration`` seconds passed, whichever comes first. The requests cycle through a fixed
mix of kinds (``KINDS``): healthy downloads (an artifact mapped to the org's current default), rotated
ones (mapped to the backend whose key was deleted: served by fallback), and failing ones. Every answer
is checked against its kind: status, and for downloads the serving backend, ``X-Cas-Fallback``, the
digest and, in body mode, the bytes' SHA-256. A mismatch, a transport error or a request without an
answer is an error. The server's access log must show every request sent, and no traceback.

Memory is the ``VmRSS`` of the ``cas-local run`` process (it runs the handler, the HTTP front end and
the storage gateway), read from ``/proc/<pid>/status`` before any request, after the warm-up, half way
through the load and after it. Growth is counted from the warm-up: the first requests load code and
fill caches.

Prints a table; ``--write-docs`` also writes it into docs/reliability.md (between the ``load:begin`` and
``load:end`` markers of the Reliability section). Exit status 1 on any error, on a lost request, or
when RSS grew more than ``--max-growth-mib`` after the warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import ROOT, Machine
from benchmarks.latency import percentile
from cas_local.moto import PREEXEC
from cas_local.stack import StackEndpoints, stop_run_process

LOOPBACK = "127.0.0.1"
WORK_DIR = ROOT / "build" / "load"  # state file and the stack's logs (build/ is git-ignored)
PAGE = ROOT / "docs" / "reliability.md"
PAGE_BEGIN = "<!-- load:begin (written by make load: python -m benchmarks.load --write-docs) -->"
PAGE_END = "<!-- load:end -->"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0  # above the function's timeout (template.yaml)
RSS_SAMPLE_INTERVAL_S = 0.2
UNKNOWN_DIGEST = "sha256:" + hashlib.sha256(b"cas-download load: never uploaded").hexdigest()
BAD_DIGEST = "sha256:not-a-digest"
# Not anchored: the server's threads print their lines concurrently, so two may share a line.
ACCESS_LINE = re.compile(r"(GET|HEAD) /v1/artifacts/\S+ -> \d{3} ")


# ------------------------------------------------------------------------------------------- the mix


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Check = Callable[[Response], str | None]  # None: as expected; else what is wrong (never a URL or key)


@dataclass(frozen=True)
class Kind:
    name: str
    group: str  # healthy | rotated | failing
    path: str  # path and query
    headers: dict[str, str]
    status: int  # the expected status
    check: Check


@dataclass(frozen=True)
class Demo:
    """What the load needs of the stack's demo data (its state file's ``demo``)."""

    org: str
    other_org: str
    new_backend: str
    healthy: str  # digest mapped to the org's current default: served without fallback
    rotated: str  # digest mapped to the backend whose key was deleted: served by fallback
    gateway_url: str

    @classmethod
    def from_endpoints(cls, endpoints: StackEndpoints) -> Demo:
        demo = endpoints.demo
        if not demo:
            raise RuntimeError("the local stack has no demo data (started with --no-seed?)")
        by_name = {a["name"]: a for a in demo["artifacts"]}
        return cls(
            org=demo["org"],
            other_org=demo["other_org"],
            new_backend=demo["new_backend"],
            healthy=by_name["notes-2025.txt"]["digest"],
            rotated=by_name["hello.txt"]["digest"],
            gateway_url=endpoints.gateway_url,
        )


def _bearer(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer local:{org}"}


def _served(demo: Demo, digest: str, *, fallback: bool, mode: str) -> Check:
    expected_fallback = "true" if fallback else "false"

    def check(r: Response) -> str | None:
        if r.headers.get("x-cas-backend") != demo.new_backend:
            return "not served through the org's current default backend"
        if r.headers.get("x-cas-fallback") != expected_fallback:
            return f"X-Cas-Fallback is not {expected_fallback}"
        if r.headers.get("etag") != f'"{digest}"':
            return "ETag is not the digest"
        if mode == "redirect":
            if not r.headers.get("location", "").startswith(demo.gateway_url + "/"):
                return "Location is not a URL of the storage gateway"
        elif mode == "url":
            try:
                document = r.json()
                ok = (
                    document["digest"] == digest
                    and str(document["url"]).startswith(demo.gateway_url + "/")
                    and document["fallback"] is fallback
                    and document["backend"]["name"] == demo.new_backend
                )
            except (ValueError, KeyError, TypeError):
                return "not the URL document"
            if not ok:
                return "URL document does not match the artifact"
        elif f"sha256:{hashlib.sha256(r.body).hexdigest()}" != digest:
            return "body bytes do not hash to the digest"
        return None

    return check


def _error_code(code: str) -> Check:
    def check(r: Response) -> str | None:
        try:
            error = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            return "not an error document"
        if error.get("code") != code:
            return f"error code {error.get('code')!r}, expected {code!r}"
        if error.get("attempts"):
            return "attempts reported for a request that must not reach storage"
        return None

    return check


def _unauthorized(r: Response) -> str | None:
    return None if r.body == b'{"message":"Unauthorized"}' else "not the HTTP API's 401 body"


def build_kinds(demo: Demo) -> list[Kind]:
    """The mix, in the order requests cycle through it."""
    route = "/v1/artifacts/"
    kinds: list[Kind] = []
    for group, digest, fallback in (("healthy", demo.healthy, False), ("rotated", demo.rotated, True)):
        for mode, status in (("redirect", 307), ("url", 200), ("body", 200)):
            query = "" if mode == "redirect" else f"?mode={mode}"
            kinds.append(
                Kind(
                    f"{group} {mode}",
                    group,
                    f"{route}{digest}{query}",
                    _bearer(demo.org),
                    status,
                    _served(demo, digest, fallback=fallback, mode=mode),
                )
            )
    kinds += [
        Kind(
            "unknown digest",
            "failing",
            route + UNKNOWN_DIGEST,
            _bearer(demo.org),
            404,
            _error_code("not_found"),
        ),
        Kind(
            "bad digest", "failing", route + BAD_DIGEST, _bearer(demo.org), 400, _error_code("invalid_digest")
        ),
        Kind("no auth", "failing", route + demo.healthy, {}, 401, _unauthorized),
        Kind(
            "another org",
            "failing",
            route + demo.rotated,
            _bearer(demo.other_org),
            404,
            _error_code("not_found"),
        ),
    ]
    return kinds


# ------------------------------------------------------------------------------------------ the load


@dataclass(frozen=True)
class Outcome:
    kind: str
    seconds: float
    error: str | None


def send(port: int, kind: Kind) -> Outcome:
    """One request on a new loopback connection; never raises."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", kind.path, headers={**kind.headers, "Connection": "close"})
        answer = connection.getresponse()
        response = Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    except (OSError, http.client.HTTPException) as error:
        return Outcome(kind.name, time.perf_counter() - started, f"{type(error).__name__}: {error}")
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    if response.status != kind.status:
        return Outcome(kind.name, seconds, f"status {response.status}, expected {kind.status}")
    return Outcome(kind.name, seconds, kind.check(response))


class Schedule:
    """Hands out the next request's kind until ``limit`` requests were handed out or ``deadline``
    (None: the request count alone bounds the run)."""

    def __init__(self, kinds: Sequence[Kind], limit: int, deadline: float | None) -> None:
        self._kinds = kinds
        self._limit = limit
        self._deadline = deadline
        self._lock = threading.Lock()
        self.issued = 0
        self.timed_out = False

    def take(self) -> Kind | None:
        with self._lock:
            if self.issued >= self._limit:
                return None
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.timed_out = True
                return None
            kind = self._kinds[self.issued % len(self._kinds)]
            self.issued += 1
            return kind


@dataclass
class Phase:
    issued: int
    outcomes: list[Outcome]
    seconds: float
    timed_out: bool

    @property
    def lost(self) -> int:
        return self.issued - len(self.outcomes)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error is not None) + self.lost


def drive(
    port: int,
    kinds: Sequence[Kind],
    *,
    requests: int,
    duration: float | None,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Phase:
    schedule = Schedule(kinds, requests, None if duration is None else time.monotonic() + duration)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def work() -> None:
        while (kind := schedule.take()) is not None:
            outcome = send(port, kind)
            with lock:
                outcomes.append(outcome)
                done = len(outcomes)
            if on_progress is not None:
                on_progress(done)

    threads = [threading.Thread(target=work, name=f"load-{i}", daemon=True) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=None if duration is None else duration + 2 * REQUEST_TIMEOUT_S)
    seconds = time.perf_counter() - started
    with lock:
        return Phase(schedule.issued, list(outcomes), seconds, schedule.timed_out)


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    endpoints: StackEndpoints
    stdout_path: Path
    stderr_path: Path

    @property
    def port(self) -> int:
        assert self.endpoints.api_url is not None
        url = urllib.parse.urlsplit(self.endpoints.api_url)
        if url.hostname != LOOPBACK or url.port is None:
            raise RuntimeError(f"the local API is not on {LOOPBACK}: {self.endpoints.api_url}")
        return url.port

    @property
    def pid(self) -> int:
        """The process that runs the handler (and the HTTP server and gateway): ``cas-local run``."""
        assert self.endpoints.pid == self.process.pid, (self.endpoints.pid, self.process.pid)
        return self.process.pid

    def access_lines(self) -> int:
        return len(ACCESS_LINE.findall(self.stderr_path.read_text(errors="replace")))

    def tracebacks(self) -> int:
        return sum(
            p.read_text(errors="replace").count("Traceback") for p in (self.stdout_path, self.stderr_path)
        )


def _stack_env() -> dict[str, str]:
    """A fresh shell's environment: nothing of this process's AWS settings; loopback never proxied."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "POWERTOOLS_"))}
    env.update(
        {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    )
    return env


@contextlib.contextmanager
def local_stack(work_dir: Path) -> Iterator[Stack]:
    """``cas-local run --port 0`` on 127.0.0.1 in a subprocess; stopped with SIGTERM, which it handles as
    Ctrl-C (SIGINT may be ignored when this runs in the background of a shell without job control)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    state = work_dir / "stack.json"
    state.unlink(missing_ok=True)
    out, err = work_dir / "run.out", work_dir / "run.err"
    argv = [sys.executable, "-m", "cas_local", "run", "--host", LOOPBACK, "--port", "0"]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [*argv, "--state-file", str(state)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=_stack_env(),
            cwd=ROOT,
            preexec_fn=PREEXEC,  # noqa: PLW1509 - only prctl, no locks taken
        )
    try:
        yield Stack(process, StackEndpoints.wait_for(process, state, err, START_TIMEOUT_S), out, err)
    finally:
        stop_run_process(process, signal.SIGTERM, STOP_TIMEOUT_S)


# ----------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    hwm_kib: int  # peak RSS so far
    threads: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        fields: dict[str, str] = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        return cls(_kib(fields["VmRSS"]), _kib(fields["VmHWM"]), int(fields["Threads"]))

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def _kib(value: str) -> int:
    number, _, unit = value.partition(" ")
    assert unit.strip() == "kB", value
    return int(number)


class Sampler:
    """RSS every ``RSS_SAMPLE_INTERVAL_S`` during the load, with the number of answers so far."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.done = 0
        self.samples: list[tuple[int, Memory]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def progress(self, done: int) -> None:
        self.done = done

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            with contextlib.suppress(OSError):
                self.samples.append((self.done, Memory.of(self.pid)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, done: int) -> Memory | None:
        """The sample taken nearest to ``done`` answers."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - done))[1]


# ----------------------------------------------------------------------------------------- report


@dataclass
class KindFigures:
    name: str
    group: str
    status: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    alone_p50_ms: float  # in the warm-up: one client, no queue


@dataclass
class Report:
    requests_limit: int
    duration_limit: float | None  # None: bounded by the request count alone
    workers: int
    warmup: Phase
    load: Phase
    kinds: list[KindFigures]
    overall: KindFigures
    server_seen: int  # access-log lines of the load and the warm-up
    tracebacks: int
    memory_before: Memory
    memory_warm: Memory
    memory_half: Memory
    memory_after: Memory
    max_growth_mib: float
    machine: Machine
    error_samples: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.warmup.issued + self.load.issued

    @property
    def lost(self) -> int:
        """Requests without an answer: none recorded by the driver, or none seen by the server."""
        return max(self.warmup.lost + self.load.lost, self.sent - self.server_seen)

    @property
    def errors(self) -> int:
        return self.warmup.errors + self.load.errors + self.tracebacks

    @property
    def growth_mib(self) -> float:
        return (self.memory_after.rss_kib - self.memory_warm.rss_kib) / 1024

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.lost == 0 and self.growth_mib <= self.max_growth_mib

    @property
    def bound(self) -> str:
        if self.load.timed_out and self.duration_limit is not None:
            return f"{self.duration_limit:.0f} s time bound"
        return "request bound"


def figures(
    name: str, group: str, status: int, outcomes: Sequence[Outcome], alone: Sequence[Outcome]
) -> KindFigures:
    times = [o.seconds * 1000 for o in outcomes] or [math.nan]
    alone_times = [o.seconds * 1000 for o in alone] or [math.nan]
    errors = sum(1 for o in outcomes if o.error is not None)
    return KindFigures(
        name,
        group,
        status,
        len(outcomes),
        errors,
        percentile(times, 50),
        percentile(times, 99),
        percentile(alone_times, 50),
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(report: Report) -> str:
    """The figures as Markdown: printed, and what --write-docs puts in docs/reliability.md."""
    m, load = report.machine, report.load
    verdict = "PASS" if report.ok else "FAIL"
    rate = load.issued / load.seconds if load.seconds else 0.0
    summary = (
        f"**{verdict}: {load.issued:,} requests** ({report.workers} workers, {report.bound}) in "
        f"{load.seconds:.1f} s, {rate:.0f} requests/s, after a warm-up of {report.warmup.issued} requests. "
        f"**Errors: {report.errors}; lost: {report.lost}**: the driver got an answer to each of the "
        f"{report.sent:,} requests sent and the server logged {report.server_seen:,}; "
        f"{report.tracebacks} tracebacks in the server's output."
    )
    latency = table(
        ["kind", "expected", "requests", "errors", "p50 ms", "p99 ms", "p50 ms, one client"],
        [
            [
                f.name if f is not report.overall else "**all**",
                f.status or "",
                f"{f.requests:,}",
                f.errors,
                f"{f.p50_ms:.1f}",
                f"{f.p99_ms:.1f}",
                f"{f.alone_p50_ms:.1f}",
            ]
            for f in [*report.kinds, report.overall]
        ],
    )
    memory = table(
        ["cas-local run process", "VmRSS MiB", "threads"],
        [
            ["before any request", f"{report.memory_before.rss_mib:.1f}", report.memory_before.threads],
            ["after the warm-up", f"{report.memory_warm.rss_mib:.1f}", report.memory_warm.threads],
            ["half way through the load", f"{report.memory_half.rss_mib:.1f}", report.memory_half.threads],
            ["after the load", f"{report.memory_after.rss_mib:.1f}", report.memory_after.threads],
        ],
    )
    growth = report.growth_mib
    half = (report.memory_after.rss_kib - report.memory_half.rss_kib) / 1024
    memory_note = (
        f"Growth after the warm-up: **{growth:+.1f} MiB** ({growth / report.memory_warm.rss_mib:+.1%}; "
        f"limit {report.max_growth_mib:g} MiB), of which {half:+.1f} MiB in the second half of the load; "
        f"peak RSS (VmHWM) {report.memory_after.hwm_kib / 1024:.1f} MiB."
    )
    machine = f"{m.date_utc}, commit {m.commit}; {m.cpu}, {m.cores} cores; {m.python}."
    parts = [summary, latency, memory, memory_note, machine]
    if report.error_samples:
        parts.append("First errors:\n\n" + "\n".join(f"- {line}" for line in report.error_samples))
    return "\n\n".join(parts) + "\n"


def write_page(text: str, path: Path = PAGE) -> None:
    content = path.read_text()
    begin, end = content.find(PAGE_BEGIN), content.find(PAGE_END)
    if begin < 0 or end < begin:
        raise RuntimeError(f"{path} has no {PAGE_BEGIN!r} ... {PAGE_END!r} block")
    path.write_text(content[: begin + len(PAGE_BEGIN)] + "\n" + text + content[end:])


# ------------------------------------------------------------------------------------------- run


def run(
    *,
    requests: int = 2000,
    duration: float | None = 30.0,
    workers: int = 8,
    warmup: int = 100,
    max_growth_mib: float = 8.0,
    work_dir: Path = WORK_DIR,
    progress: Callable[[str], None] | None = None,
) -> Report:
    say = progress or (lambda _line: None)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    say("starting the local stack (cas-local run --port 0) ...")
    with local_stack(work_dir) as stack:
        kinds = build_kinds(Demo.from_endpoints(stack.endpoints))
        port, pid = stack.port, stack.pid
        say(f"stack up: API {stack.endpoints.api_url}, pid {pid}; logs in {work_dir}")
        before = Memory.of(pid)
        say(f"warm-up: {warmup} requests, one client ...")
        warm_limit = None if duration is None else max(60.0, duration)
        warm_phase = drive(port, kinds, requests=warmup, duration=warm_limit, workers=1)
        warm = Memory.of(pid)
        bound = f"up to {requests} requests" + ("" if duration is None else f" or {duration:g} s")
        say(f"load: {bound}, {workers} workers ...")
        with Sampler(pid) as sampler:
            load_phase = drive(
                port,
                kinds,
                requests=requests,
                duration=duration,
                workers=workers,
                on_progress=sampler.progress,
            )
        after = Memory.of(pid)
        half = sampler.at(len(load_phase.outcomes) // 2) or after
        sent = warm_phase.issued + load_phase.issued
        deadline = time.monotonic() + 5  # the access line is written just after the answer is sent
        while (seen := stack.access_lines()) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        tracebacks = stack.tracebacks()
    by_kind = {k.name: [o for o in load_phase.outcomes if o.kind == k.name] for k in kinds}
    # The warm-up's latencies without a queue, its first round (cold code paths) left out.
    alone = warm_phase.outcomes[len(kinds) :]
    alone_by_kind = {k.name: [o for o in alone if o.kind == k.name] for k in kinds}
    samples = [f"{o.kind}: {o.error}" for o in [*warm_phase.outcomes, *load_phase.outcomes] if o.error]
    return Report(
        requests_limit=requests,
        duration_limit=duration,
        workers=workers,
        warmup=warm_phase,
        load=load_phase,
        kinds=[figures(k.name, k.group, k.status, by_kind[k.name], alone_by_kind[k.name]) for k in kinds],
        overall=figures("all", "", 0, load_phase.outcomes, alone),
        server_seen=seen,
        tracebacks=tracebacks,
        memory_before=before,
        memory_warm=warm,
        memory_half=half,
        memory_after=after,
        max_growth_mib=max_growth_mib,
        machine=Machine.describe(),
        error_samples=samples[:10],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000, help="load requests (default %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="time bound, s (default %(default)s)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests (default %(default)s)")
    parser.add_argument(
        "--max-growth-mib", type=float, default=8.0, help="RSS growth allowed after the warm-up (%(default)s)"
    )
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="state and logs (%(default)s)")
    parser.add_argument(
        "--write-docs", action="store_true", help="write the figures into docs/reliability.md"
    )
    args = parser.parse_args(argv)
    if min(args.requests, args.workers, args.warmup) < 1 or args.duration <= 0:
        parser.error("--requests, --workers, --warmup and --duration must be positive")
    report = run(
        requests=args.requests,
        duration=args.duration,
        workers=args.workers,
        warmup=args.warmup,
        max_growth_mib=args.max_growth_mib,
        work_dir=args.work_dir,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    text = render(report)
    print(text)
    if args.write_docs:
        write_page(text)
        print(f"written to {PAGE}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
