"""``make bench``: measure cas-download against moto servers on loopback; print the tables and write
them to BENCHMARKS.md.

    python -m benchmarks.run [--requests 500] [--quick] [--no-profile] [--output FILE | --no-write]

Everything is measured side by side in one run and reported as ratios: absolute times on a shared
machine are noise; what the service adds on top of the irreducible work is not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.calls import Call
from tests.support.events import load_event
from tests.support.moto_servers import start_aws_servers
from tests.support.tables import create_tables, create_verifications_table
from tests.support.world import World

from benchmarks import body, coldstart, cost, latency, plots, profiling, providers, sections
from benchmarks.counting import CallCounter, Calls, total
from benchmarks.env import ROOT, WORK_DIR, Machine, apply_env, aws_env
from benchmarks.output import CapturedStdout
from benchmarks.report import render
from benchmarks.scenarios import (
    NO_CACHE,
    Baseline,
    RotationEvent,
    Scenarios,
    Target,
    rotate_under_a_warm_container,
)

STEADY_REQUESTS = 20  # counted per scenario for the call table, after 2 warm-up requests
ROTATIONS = 5  # rotations seen by warm containers

# The performance targets the service is held to (docs/performance.md).
CALL_TARGETS = {
    "healthy": 2,
    "rotation": 2,
    "body": 2,
    "url": 2,
    "not_modified": 1,
    "link": 2,
    "link_rotated": 2,
}
FIRST_AFTER_ROTATION_TARGET = 4
# Warm latency against the sequential baseline (issue 30: overlap the lookup and the proof), for the
# healthy redirect, the rotation story and the link route, median and p99.
LATENCY_TARGET = 0.7
LATENCY_P99_TARGET = 0.8
COLD_START_TARGET = 1.5
BODY_THROUGHPUT_TARGET = 0.7
BODY_PEAK_TARGET = 3.0


@dataclass
class Goal:
    """One performance target: what was measured against what was asked."""

    key: str
    what: str
    value: float
    limit: float
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass
class Steady:
    target: Target
    calls: Calls  # over n requests
    log_bytes: float  # per request
    n: int

    @property
    def per_request(self) -> float:
        return total(self.calls) / self.n


@dataclass
class Results:
    machine: Machine
    args: argparse.Namespace
    steady: dict[str, Steady] = field(default_factory=dict)
    rotations: list[RotationEvent] = field(default_factory=list)
    rotation_sequence: list[str] = field(default_factory=list)
    samples: dict[str, latency.Samples] = field(default_factory=dict)
    bodies: list[body.BodyResult] = field(default_factory=list)
    body_steps: dict[int, list[profiling.MemoryStep]] = field(default_factory=dict)
    body_prototype: dict[int, list[profiling.EncodingRow]] = field(default_factory=dict)
    cold: coldstart.ColdStart | None = None
    costs: list[cost.CostEstimate] = field(default_factory=list)
    providers: providers.ProviderResults | None = None
    profiles: list[profiling.Profile] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    # What could not be measured, and why (a missing server, a measurement that raised): the targets
    # table lists each, so a run never drops a target silently.
    not_measured: list[tuple[str, str]] = field(default_factory=list)
    # Each looking-ahead scenario's tally over the whole run (steady state and latency rounds):
    # label -> (started, used, dropped).
    look_ahead: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def missed(self, prefix: str) -> list[Goal]:
        return [g for g in self.goals if g.key.startswith(prefix) and not g.met]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500, help="timed requests per latency scenario")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds before timing")
    parser.add_argument("--body-reps", type=int, default=15, help="timed runs per body size and kind")
    parser.add_argument(
        "--cold-reps", type=int, default=7, help="fresh processes per cold-start kind and mode"
    )
    parser.add_argument("--profile-requests", type=int, default=200, help="requests per latency profile")
    parser.add_argument("--no-profile", action="store_true", help="do not profile missed targets")
    parser.add_argument("--quick", action="store_true", help="smoke run, few requests (not written)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.body_reps, args.cold_reps, args.profile_requests = 30, 3, 3, 1, 30
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = Results(Machine.describe(), args)
    scratch = WORK_DIR / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    progress(f"starting moto servers (scratch: {scratch.relative_to(ROOT)})")
    servers = start_aws_servers(scratch)
    try:
        apply_env(aws_env(servers, scratch))
        world = World(servers, create_tables(servers, f"bench-{uuid.uuid4().hex[:8]}"))
        verifications = create_verifications_table(servers, f"bench-{uuid.uuid4().hex[:8]}")
        counter = CallCounter()
        with counter.pynamodb_sessions(), CapturedStdout(scratch / "handler-stdout.log") as captured:
            measure(results, Scenarios(world, counter, verifications), captured, scratch)
    finally:
        servers.stop()
    results.seconds = time.monotonic() - started
    text = render(results)
    print(text)
    if not (args.no_write or args.quick):
        # the sections other commands write (make bench-sync, make bench-verifier, the 3.13 cold start)
        found = (section.of(args.output) for section in sections.KEPT)
        kept = "\n".join(section for section in found if section)
        args.output.write_text(text + ("\n" + kept if kept else ""))
        progress(f"wrote {args.output}")
        if results.cold is not None:
            progress(f"wrote {plots.cold_start(results.cold, COLD_START_TARGET)}")
    progress(f"done in {results.seconds:.0f} s")
    return 0


def measure(results: Results, scenarios: Scenarios, captured: CapturedStdout, scratch: Path) -> None:
    args, counter = results.args, scenarios.counter

    progress("building scenarios")
    cached = [
        scenarios.healthy("redirect"),
        scenarios.rotation(),
        scenarios.healthy("url"),
        scenarios.healthy("body"),
        scenarios.not_modified(),
        scenarios.link(),
        scenarios.link_rotated(),
    ]
    uncached = [
        scenarios.healthy("redirect", "_nocache", **NO_CACHE),
        scenarios.rotation("_nocache", **NO_CACHE),
        scenarios.healthy("url", "_nocache", **NO_CACHE),
        scenarios.healthy("body", "_nocache", **NO_CACHE),
        scenarios.not_modified("_nocache", **NO_CACHE),
        scenarios.link("_nocache", **NO_CACHE),
        scenarios.link_rotated("_nocache", **NO_CACHE),
    ]
    org, backend, digest = scenarios.healthy_backend()
    baseline = Baseline(scenarios.world, counter, backend, digest).target()
    every = [baseline, *cached, *uncached]

    progress("1. AWS calls per request")
    for target in every:
        mark = counter.mark()
        target.serve(target.prepare())
        target.first_calls = counter.since(mark)
        for _ in range(2):
            target.serve(target.prepare())
        mark, logged = counter.mark(), captured.size()
        for _ in range(STEADY_REQUESTS):
            target.serve(target.prepare())
        results.steady[target.key] = Steady(
            target, counter.since(mark), (captured.size() - logged) / STEADY_REQUESTS, STEADY_REQUESTS
        )
    if not any(service == "dynamodb" for service, _op in results.steady["healthy"].calls):
        raise RuntimeError("no DynamoDB call was counted: the PynamoDB session hook is not working")
    results.rotations = [rotate_under_a_warm_container(scenarios) for _ in range(ROTATIONS)]
    results.rotation_sequence = [call_label(c, scenarios.world) for c in results.rotations[0].first_sequence]

    progress(f"2-3. warm latency: {args.requests} rounds of {len(every)} scenarios, interleaved")
    results.samples = latency.interleaved(every, counter, args.requests, args.warmup, captured.size)
    for target in every:
        ahead = target.extra.get("look_ahead")
        if ahead is not None:
            tally = ahead.tally
            label = target.label + (", no caches" if target.key.endswith("_nocache") else "")
            results.look_ahead[label] = (tally.started, tally.used, tally.dropped)

    progress("5. body mode: throughput and memory")
    measured = body.measure(scenarios, args.body_reps)
    results.bodies = [result for result, _target in measured]
    for size in body.SIZES:
        try:
            results.body_steps[size] = profiling.body_memory_steps(size)
        except Exception as error:  # the package's internals may move: say so in the report, go on
            not_measured(results, f"where body mode's memory goes at {size // body.MIB} MiB", error)

    progress("4. cold start: fresh processes")
    event = load_event("get_redirect", digest=digest, orgs=org)
    child_env = {**os.environ, **scenarios.function_env}
    results.cold = coldstart.measure(
        child_env, event, scratch, args.cold_reps, None if args.no_profile else COLD_START_TARGET
    )

    progress("7. the new candidate order (S3), Azure on Azurite, OCI on a real registry")
    results.providers = providers.measure(
        scenarios,
        scratch,
        min(args.requests, 200),
    )

    progress("6. cost")
    for key in ("healthy", "rotation"):
        samples = results.samples[key]
        per_request = {op: count / samples.n for op, count in samples.calls.items()}
        results.costs.append(
            cost.estimate(
                f"{samples.target.label}, steady state",
                per_request,
                samples.cpu_ms,
                samples.log_bytes / samples.n,
            )
        )

    evaluate(results)
    if not args.no_profile:
        profile_misses(results, {t.key: t for t in every}, measured)


def not_measured(results: Results, what: str, error: Exception) -> None:
    """Record (and say now) that a measurement failed, naming the failure."""
    why = f"{type(error).__name__}: {error}"
    progress(f"  not measured: {what}: {why}")
    results.not_measured.append((what, why))


def call_label(call: Call, world: World) -> str:
    """``s3:HeadObject (key of old)``: which table, secret or backend key a call used."""
    names = {b.access_key_id: b.name for b in world.backends.values()}
    names.update({b.secret_name: b.name for b in world.backends.values()})
    params, detail = call.params, []
    if call.service == "dynamodb":
        table = str(params.get("TableName", ""))
        detail.append("Mappings" if "mappings" in table else "Backends" if "backends" in table else table)
        if params.get("IndexName"):
            detail.append(f"index {params['IndexName']}")
    elif call.service == "secretsmanager":
        detail.append(f"secret of {names.get(str(params.get('SecretId')), '?')}")
    elif call.service == "s3":
        detail.append(f"key of {names.get(str(call.access_key_id), '?')}")
        if params.get("Range"):
            detail.append(f"Range {params['Range']}")
    return f"{call.service}:{call.operation} ({', '.join(detail)})"


# Section 7's targets on Azurite and on a real registry (listed as not run when the server is missing).
AZURE_TARGETS = (
    "Azure storage calls per redirect, steady state (shared key, record)",
    "Azure latency median / plain SDK client",
    "Azure latency p99 / plain SDK client p99",
    "Azure latency median / plain SDK client + the mapping query",
    "Azure latency p99 / plain SDK client + the mapping query, p99",
)
OCI_TARGETS = (
    "OCI registry calls per redirect, steady state (cached login, record)",
    "OCI bytes read per redirect, steady state (no full hash)",
    "OCI latency median / plain registry client",
    "OCI latency p99 / plain registry client p99",
    "OCI latency median / plain registry client + the mapping query",
    "OCI latency p99 / plain registry client + the mapping query, p99",
)
# Issue 30: the service against the plain client plus the mapping query, with the same overlap.
WITH_MAPPING_TARGET = 1.0


def _against_plain_client(
    key: str,
    labels: tuple[str, ...],
    service: providers.Latency,
    plain: providers.Latency,
    plain_mapping: providers.Latency,
) -> list[Goal]:
    """A provider's four latency goals, ``labels`` in this order: median and p99 against the plain
    client, then against the plain client plus the mapping query (issue 30's fairer baseline)."""
    comparisons = [
        (key, plain, providers.OCI_LATENCY_TARGET),
        (f"{key}_with_mapping", plain_mapping, WITH_MAPPING_TARGET),
    ]
    goals = []
    for index, (name, baseline, target) in enumerate(comparisons):
        median, p99 = service.over(baseline)
        goals += [
            Goal(f"latency:{name}", labels[2 * index], median, target),
            Goal(f"latency:{name}:p99", labels[2 * index + 1], p99, target),
        ]
    return goals


def providers_not_run(p: providers.ProviderResults) -> list[tuple[str, str]]:
    """Section 7's targets that could not run, each with the reason (a server that is not installed)."""
    skipped = [(AZURE_TARGETS, p.azure_skipped), (OCI_TARGETS, p.oci_skipped)]
    return [(what, why) for targets, why in skipped if why is not None for what in targets]


def providers_goals(p: providers.ProviderResults) -> list[Goal]:
    goals = [
        Goal(
            "calls:s3_marked_rotation",
            "calls: first request of a new container after a rotation, old backend marked Invalid",
            p.s3_marked_rotation_calls,
            providers.S3_FIRST_AFTER_MARKED_ROTATION_TARGET,
        )
    ]
    if p.azure_skipped is None:
        goals.append(
            Goal(
                "calls:azure_steady",
                AZURE_TARGETS[0],
                p.azure_steady_storage_calls,
                providers.AZURE_STEADY_STORAGE_CALLS_TARGET,
            )
        )
        goals += _against_plain_client(
            "azure", AZURE_TARGETS[1:5], p.azure, p.azure_plain, p.azure_plain_mapping
        )
    if p.oci_skipped is None:
        goals += [
            Goal(
                "calls:oci_steady",
                OCI_TARGETS[0],
                p.oci_steady_registry_calls,
                providers.OCI_STEADY_REGISTRY_CALLS_TARGET,
            ),
            Goal("calls:oci_storage_reads", OCI_TARGETS[1], p.oci_steady_storage_reads, 0),
        ]
        goals += _against_plain_client("oci", OCI_TARGETS[2:6], p.oci, p.plain, p.plain_mapping)
    return goals


def evaluate(results: Results) -> None:
    goals = results.goals
    for key, limit in CALL_TARGETS.items():
        steady = results.steady[key]
        goals.append(
            Goal(f"calls:{key}", f"calls: {steady.target.label}, steady state", steady.per_request, limit)
        )
    worst = max(total(r.first_calls) for r in results.rotations)
    goals.append(
        Goal(
            "calls:after_rotation",
            "calls: first request after a rotation",
            worst,
            FIRST_AFTER_ROTATION_TARGET,
        )
    )
    base = results.samples["baseline"]
    for key in ("healthy", "rotation", "link", "link_rotated"):
        s = results.samples[key]
        goals += [
            Goal(
                f"latency:{key}",
                f"latency median / baseline: {s.target.label}",
                s.median_ms / base.median_ms,
                LATENCY_TARGET,
            ),
            Goal(
                f"latency:{key}:p99",
                f"latency p99 / baseline p99: {s.target.label}",
                s.p99_ms / base.p99_ms,
                LATENCY_P99_TARGET,
            ),
        ]
    if results.providers is not None:
        goals += providers_goals(results.providers)
        results.not_measured += providers_not_run(results.providers)
    assert results.cold is not None
    for mode in results.cold.modes:
        goals.append(
            Goal(
                "cold", f"cold start / (import boto3 + 1 client), {mode.mode}", mode.ratio, COLD_START_TARGET
            )
        )
    for r in results.bodies:
        mib = r.size // body.MIB
        goals.append(
            Goal(
                f"body:throughput:{mib}",
                f"body {mib} MiB: throughput / floor",
                r.ratio,
                BODY_THROUGHPUT_TARGET,
                True,
            )
        )
        goals.append(
            Goal(
                f"body:memory:{mib}",
                f"body {mib} MiB: peak memory / size",
                r.app_peak / r.size,
                BODY_PEAK_TARGET,
            )
        )


def profile_misses(
    results: Results, targets: dict[str, Target], measured: list[tuple[body.BodyResult, Target]]
) -> None:
    n = results.args.profile_requests
    # Only the interleaved scenarios have a profiling target; the providers' latency goals (section 7)
    # compare against a plain client measured there, and their notes say where the time goes.
    missed = sorted({g.key.split(":")[1] for g in results.missed("latency:")} & set(targets))
    if missed:
        progress("profiling: baseline and " + ", ".join(missed))
        results.profiles.append(profiling.profile_target(targets["baseline"], n))
        results.profiles.extend(profiling.profile_target(targets[key], n) for key in missed)
    for result, target in measured:
        if result.ratio < BODY_THROUGHPUT_TARGET:
            progress(f"profiling: {target.label}")
            results.profiles.append(profiling.profile_target(target, max(10, n // 10)))
    if results.missed("body:"):
        progress("measuring the proposed body-mode encoding")
        for size in body.SIZES:
            try:
                results.body_prototype[size] = profiling.body_encoding_prototype(size)
            except Exception as error:  # the package's internals may move: say so in the report, go on
                not_measured(results, f"the proposed body-mode encoding at {size // body.MIB} MiB", error)


if __name__ == "__main__":
    sys.exit(main())
