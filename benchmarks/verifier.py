"""``make bench-verifier``: verifying ahead of requests (SPEC.md), against S3 on moto, Chainloop's
layout (no SHA-256 checksum, multipart from 5 MiB).

    python -m benchmarks.verifier [--sizes 1,64,1024] [--reps 3] [--no-write]

For each size, in one run, side by side:

1. a plain boto3 GET + hashlib of the object (the floor), then the verifier's proof of it
   (``verify_mapping``, the stream handler's code; a fresh container and an empty Verifications table
   each time) reading one stream and reading ``VERIFY_READ_CONCURRENCY`` ranged GETs at once:
   throughput against the floor (target >= 0.9);
2. the same proof under ``tracemalloc``: the peak of Python allocations (target <= 64 MiB, whatever
   the size);
3. the first request for the object in a warm container (secret and rows cached by another object)
   once the verifier ran: AWS calls, and latency against the 1 MiB case (target <= 1.1);
4. at 64 MiB, the same first request before this change: no record, so the request hashes it.

The largest object one invocation proves is the best measured rate times 840 s (900 s less a minute):
``VERIFY_MAX_BYTES``'s default. Writes its section of BENCHMARKS.md between its markers (``make
bench`` keeps the section when it rewrites the rest).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

from tests.support.moto_servers import AwsServers, start_aws_servers
from tests.support.tables import create_tables, create_verifications_table
from tests.support.world import BackendRef, World

from benchmarks.counting import CallCounter, Calls, describe, total
from benchmarks.env import ROOT, WORK_DIR, apply_env, aws_env
from benchmarks.output import CapturedStdout
from benchmarks.scenarios import Scenarios
from benchmarks.sections import VERIFIER, stamp
from cas_admin.chainloop_layout import s3 as chainloop_s3
from cas_download.app import App
from cas_download.config import VERIFY_BUDGET_SECONDS, Settings
from cas_download.domain import Mapping
from cas_download.logic.deadline import Deadline
from cas_download.logic.verifier import Outcome, verify_mapping

BEGIN, END = VERIFIER.begin, VERIFIER.end
MIB = 1024 * 1024
BLOCK = hashlib.shake_256(b"cas-download verifier benchmark").digest(MIB)  # 1 MiB, repeated
FIRST_REQUEST_CALL_TARGET = 2  # the steady state's
LATENCY_RATIO_TARGET = 1.1
THROUGHPUT_TARGET = 0.9
PEAK_TARGET_MIB = 64
PARALLEL = 4
# moto answers each ranged GET of a multipart object by assembling the whole object first: ranged reads
# of large objects measure moto (14 MiB/s at 1 GiB), not the verifier, and take minutes.
PARALLEL_MAX_BYTES = 64 * MIB


class Payload:
    """``size`` deterministic bytes, read as a file (the upload streams them: no copy in memory)."""

    def __init__(self, size: int, salt: bytes) -> None:
        self.size = size
        self.salt = salt
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.position if n < 0 else min(n, self.size - self.position)
        out = bytearray()
        while len(out) < n:
            at = (self.position + len(out)) % MIB
            out += BLOCK[at : at + n - len(out)]
        if self.position == 0 and out:
            out[: len(self.salt)] = self.salt[: len(out)]
        self.position += len(out)
        return bytes(out)

    def digest(self) -> str:
        sha = hashlib.sha256()
        copy = Payload(self.size, self.salt)
        while chunk := copy.read(8 * MIB):
            sha.update(chunk)
        return f"sha256:{sha.hexdigest()}"


@dataclass
class Proofs:
    """The verifier's proofs of one object at one read concurrency: each one's time, one's peak memory."""

    seconds: list[float] = field(default_factory=list)
    peak: int = 0


@dataclass
class Size:
    size: int
    plain_s: list[float] = field(default_factory=list)
    sequential: Proofs = field(default_factory=Proofs)  # one stream
    parallel: Proofs = field(
        default_factory=Proofs
    )  # PARALLEL ranged GETs (not run above PARALLEL_MAX_BYTES)
    first_calls: Calls | None = None
    first_ms: list[float] = field(default_factory=list)
    before_calls: Calls | None = None
    before_ms: list[float] = field(default_factory=list)
    digest: str = ""
    proven_table: str = ""

    def rate(self, proofs: Proofs) -> float:
        return self.size / statistics.median(proofs.seconds)

    def ratio(self, proofs: Proofs) -> float:
        return statistics.median(self.plain_s) / statistics.median(proofs.seconds)


@dataclass
class Bench:
    world: World
    counter: CallCounter
    scenarios: Scenarios
    org: str
    backend: BackendRef
    _client: Any = None

    def stored(self, size: int) -> tuple[str, Mapping]:
        payload = Payload(size, uuid.uuid4().bytes)
        digest = payload.digest()
        body = cast("IO[bytes]", payload)  # a file as far as the upload reads it
        chainloop_s3.put_object(self.world.s3, self.backend.bucket, digest, body, "artifact.bin")
        self.world.map(digest, self.org, self.backend)
        return digest, Mapping(digest, self.org, self.backend.id)

    def verifier_app(self, concurrency: int, warm_digest: str) -> App:
        """A warm verifier container (its secret and rows read for another mapping, as a stream's
        container is after its first record) and an empty Verifications table: nothing proven yet."""
        table = create_verifications_table(self.world.servers, uuid.uuid4().hex[:12])
        app = self.scenarios.app(VERIFICATIONS_TABLE=table, VERIFY_READ_CONCURRENCY=concurrency)
        verify_mapping(Mapping(warm_digest, self.org, self.backend.id), app.services, Deadline(60))
        return app

    def plain(self, digest: str) -> float:
        """The floor: one GET with the backend's own key (its IAM user's, as the verifier reads), every
        byte through hashlib."""
        client = self.backend_client()
        started = time.perf_counter()
        body = client.get_object(Bucket=self.backend.bucket, Key=digest)["Body"]
        sha = hashlib.sha256()
        for chunk in body.iter_chunks(256 * 1024):
            sha.update(chunk)
        elapsed = time.perf_counter() - started
        assert f"sha256:{sha.hexdigest()}" == digest
        return elapsed

    def backend_client(self) -> Any:
        """One S3 client with the backend's own access key, made once (a warm reader)."""
        if self._client is None:
            self._client = self.world.servers.storage_client(
                "s3", self.backend.access_key_id, self.backend.secret_access_key
            )
        return self._client

    def prove(self, app: App, mapping: Mapping) -> float:
        started = time.perf_counter()
        verification = verify_mapping(mapping, app.services, Deadline(VERIFY_BUDGET_SECONDS))
        elapsed = time.perf_counter() - started
        assert verification.outcome is Outcome.PROVEN, verification
        return elapsed

    def first_request(self, digest: str, table: str, warm_digest: str) -> tuple[Calls, float]:
        """A warm container (secret and rows cached by ``warm_digest``) asked for ``digest`` once."""
        app = self.scenarios.app(VERIFICATIONS_TABLE=table)
        warm = self.scenarios.target("warm", "warm-up", app, warm_digest, self.org)
        warm.serve(warm.prepare())
        target = self.scenarios.target("first", "first request", app, digest, self.org)
        prepared = target.prepare()
        mark = self.counter.mark()
        started = time.perf_counter()
        target.serve(prepared)
        elapsed = (time.perf_counter() - started) * 1000.0
        return self.counter.since(mark), elapsed


def peak_of(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def measure_size(bench: Bench, size: int, reps: int, warm_digest: str) -> Size:
    result = Size(size)
    digest, mapping = bench.stored(size)
    print(f"  stored {size // MIB} MiB", file=sys.stderr, flush=True)
    # (read concurrency, its proofs); ranged GETs only up to PARALLEL_MAX_BYTES
    concurrencies = [(1, result.sequential)]
    if size <= PARALLEL_MAX_BYTES:
        concurrencies.append((PARALLEL, result.parallel))
    for _ in range(reps):
        result.plain_s.append(bench.plain(digest))
        for concurrency, proofs in concurrencies:
            proofs.seconds.append(bench.prove(bench.verifier_app(concurrency, warm_digest), mapping))
    print(
        f"  plain {size / statistics.median(result.plain_s) / MIB:.0f} MiB/s, "
        f"verifier {result.rate(result.sequential) / MIB:.0f} MiB/s (1 stream)",
        file=sys.stderr,
        flush=True,
    )
    for concurrency, proofs in concurrencies:
        proofs.peak = peak_of(partial(bench.prove, bench.verifier_app(concurrency, warm_digest), mapping))
    # the verifier ran: its record in the table the first requests read (measure_first_requests)
    result.digest = digest
    result.proven_table = create_verifications_table(bench.world.servers, uuid.uuid4().hex[:12])
    bench.prove(bench.scenarios.app(VERIFICATIONS_TABLE=result.proven_table), mapping)
    return result


def measure_first_requests(bench: Bench, results: list[Size], reps: int, warm_digest: str) -> None:
    """The first request for each size once the verifier ran, the sizes in a new random order each
    round (a fixed order would give the first size the machine's coldest moment); at 64 MiB also before
    it (no record: the request hashes it)."""
    shuffler = random.Random(reps)  # noqa: S311 - an order, not a secret
    for _ in range(reps):
        for result in shuffler.sample(results, len(results)):
            calls, ms = bench.first_request(result.digest, result.proven_table, warm_digest)
            result.first_calls = calls
            result.first_ms.append(ms)
            if result.size == 64 * MIB:
                empty = create_verifications_table(bench.world.servers, uuid.uuid4().hex[:12])
                result.before_calls, ms = bench.first_request(result.digest, empty, warm_digest)
                result.before_ms.append(ms)


def render(sizes: list[Size], reps: int) -> str:
    base = next((s for s in sizes if s.size == MIB), sizes[0])
    base_ms = statistics.median(base.first_ms)
    best = max(s.rate(s.sequential) for s in sizes)
    slowest = min(s.rate(s.sequential) for s in sizes)
    rates = ", ".join(f"{s.rate(s.sequential) / MIB:.0f} MiB/s at {s.size // MIB} MiB" for s in sizes)
    default_rate = Settings.from_env({"BACKENDS_TABLE": "-", "MAPPINGS_TABLE": "-"}).verify_bytes_per_second
    largest = best * VERIFY_BUDGET_SECONDS
    lines = [
        BEGIN,
        "## 9. Verifying ahead of requests (`make bench-verifier`)",
        "",
        stamp(),
        "",
        "Chainloop-layout S3 objects (no SHA-256 checksum, 5 MiB parts) on moto server, loopback, "
        f"median of {reps}. The verifier is `verify_mapping` (the stream handler's and `cas-admin verify`'s "
        "code) in a warm container (secret and rows cached) with an empty Verifications table; the floor is one boto3 GET of the "
        f"same object + hashlib, same run. Peak memory: tracemalloc's peak of Python allocations during one proof.",
        "",
        "| size | floor MiB/s | verifier, 1 stream | ratio | verifier, "
        f"{PARALLEL} ranged GETs | ratio | peak, 1 stream | peak, {PARALLEL} ranges |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        ranged = (
            f"{s.rate(s.parallel) / MIB:.0f} | {s.ratio(s.parallel):.2f} | "
            if s.parallel.seconds
            else "not run (moto) | | "
        )
        lines.append(
            f"| {s.size // MIB} MiB | {s.size / statistics.median(s.plain_s) / MIB:.0f} | "
            f"{s.rate(s.sequential) / MIB:.0f} | {s.ratio(s.sequential):.2f} | {ranged}"
            f"{s.sequential.peak / MIB:.1f} MiB | "
            + (f"{s.parallel.peak / MIB:.1f} MiB |" if s.parallel.seconds else " |")
        )
    lines += [
        "",
        "First request for the object in a warm container, once the verifier ran (targets: "
        f"{FIRST_REQUEST_CALL_TARGET} calls, latency <= {LATENCY_RATIO_TARGET}x the 1 MiB case):",
        "",
        "| size | AWS calls | which | latency ms | ÷ 1 MiB |",
        "|---:|---:|---|---:|---:|",
    ]
    for s in sizes:
        calls = s.first_calls or Calls()
        ms = statistics.median(s.first_ms)
        lines.append(
            f"| {s.size // MIB} MiB | {total(calls)} | {describe(calls)} | {ms:.1f} | {ms / base_ms:.2f} |"
        )
    before = next((s for s in sizes if s.before_ms), None)
    if before is not None:
        before_ms, after_ms = statistics.median(before.before_ms), statistics.median(before.first_ms)
        lines += [
            "",
            f"Before and after, the first request for a {before.size // MIB} MiB Chainloop object: "
            f"before, the request hashes it ({total(before.before_calls or Calls())} calls: "
            f"{describe(before.before_calls or Calls())}), {before_ms:.0f} ms; after the verifier, "
            f"{after_ms:.1f} ms ({before_ms / after_ms:.0f}x faster).",
        ]
    lines += [
        "",
        f"- The largest object one invocation proves: {best / MIB:.0f} MiB/s (best rate measured here) x "
        f"{VERIFY_BUDGET_SECONDS} s = {largest / 1024**3:.1f} GiB. `VERIFY_MAX_BYTES` defaults to "
        f"`VERIFY_BYTES_PER_SECOND` x {VERIFY_BUDGET_SECONDS} s; `VERIFY_BYTES_PER_SECOND` defaults to "
        f"{default_rate / MIB:.0f} MiB/s. This run's one-stream rates: {rates}; the default is "
        f"{'below every one of them' if default_rate < slowest else 'above the slowest of them'}.",
        f"- {PARALLEL} ranged GETs feeding one SHA-256 do not pay here: moto is one Python process on a "
        "shared 2-core machine, and assembles a multipart object anew for each ranged GET (so ranged "
        f"reads are not run above {PARALLEL_MAX_BYTES // MIB} MiB). Whether they pay on Lambda (one S3 "
        "connection against SHA-256 at the CPU share of 1024-1769 MB) needs a deployed stack: not "
        "measured.",
        END,
    ]
    return "\n".join(lines) + "\n"


def run(servers: AwsServers, sizes_mib: list[int], reps: int) -> list[Size]:
    world = World(servers, create_tables(servers, f"bench-verifier-{uuid.uuid4().hex[:8]}"))
    counter = CallCounter()
    scenarios = Scenarios(world, counter, create_verifications_table(servers, uuid.uuid4().hex[:12]))
    org = world.org()
    backend = world.backend(org, "chainloop-s3", is_default=True)
    warm_digest = world.put(backend, b"warms the container's secret and rows\n", checksum=True)
    world.map(warm_digest, org, backend)
    bench = Bench(world, counter, scenarios, org, backend)
    results = []
    with counter.pynamodb_sessions(), CapturedStdout(WORK_DIR / "verifier" / "handler-stdout.log"):
        for size in sizes_mib:
            print(f"size {size} MiB:", file=sys.stderr, flush=True)
            results.append(measure_size(bench, size * MIB, reps, warm_digest))
        print("first requests, sizes shuffled:", file=sys.stderr, flush=True)
        measure_first_requests(bench, results, reps, warm_digest)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verifier", description=__doc__)
    parser.add_argument("--sizes", default="1,64,1024", help="object sizes, MiB, comma separated")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a list of MiB counts")
    if not sizes or min(sizes) < 1 or args.reps < 1:
        parser.error("--sizes and --reps must be 1 or more")
    scratch = WORK_DIR / "verifier"
    scratch.mkdir(parents=True, exist_ok=True)
    servers = start_aws_servers(scratch)
    try:
        apply_env(aws_env(servers, scratch))
        results = run(servers, sizes, args.reps)
    finally:
        servers.stop()
    section = render(results, args.reps)
    VERIFIER.publish(args.output, section, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
