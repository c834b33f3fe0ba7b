"""Markdown tables of a run (printed, and written to BENCHMARKS.md)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from benchmarks import body, coldstart, cost, plots, profiling, providers
from benchmarks.counting import describe, total
from benchmarks.env import ROOT

if TYPE_CHECKING:
    from benchmarks.run import Results


S3_TARGET = providers.S3_FIRST_AFTER_MARKED_ROTATION_TARGET


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _ms_pair(latency: providers.Latency) -> str:
    """A latency as the report's "median / p99" cell."""
    return f"{_ms(latency.median_ms)} / {_ms(latency.p99_ms)}"


def _x_pair(ratios: tuple[float, float]) -> str:
    """Two ratios (median, p99) as one "median / p99" cell."""
    return f"{_x(ratios[0])} / {_x(ratios[1])}"


def render(results: Results) -> str:
    parts = [
        _header(results),
        _summary(results),
        _calls(results),
        _latency(results),
        _no_cache(results),
        _cold(results),
        _body(results),
        _cost(results),
        _providers(results),
        _profiles(results),
        CAVEATS,
    ]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def _header(results: Results) -> str:
    m, args = results.machine, results.args
    versions = ", ".join(f"{name} {version}" for name, version in m.versions.items())
    quick = (
        "\n\n**QUICK SMOKE RUN: too few requests for the numbers to mean anything.**" if args.quick else ""
    )
    return f"""# Benchmarks

Written by `make bench` (`python -m benchmarks.run`): do not edit by hand, re-run it.{quick}

- **Date**: {m.date_utc}; run took {results.seconds:.0f} s; commit {m.commit}
- **Machine**: {m.host}, {m.cpu}, {m.cores} cores, {m.memory_gib:.1f} GiB RAM (shared; moto runs on the same cores)
- **Python**: {m.python} (Lambda runs 3.13 on arm64); {versions}
- **AWS**: moto in server mode on loopback (`tests/support/moto_servers.py`): DynamoDB and Secrets Manager
  on one server, S3 with IAM authentication on another. Every call is real HTTP, but moto is not AWS:
  absolute times are this machine's, which is why every result is a ratio to work measured in the same run.
- **Method**: the real handler (`cas_download.handlers.download.handle`) with one `App` per scenario (a
  warm container each); AWS calls counted with botocore `before-call` hooks on the app's boto3 session
  (which the app also hands to its PynamoDB models) and on any botocore session PynamoDB still creates
  (`benchmarks/counting.py`). Every container is configured as the template configures the function
  (`benchmarks/env.py`: every variable at its parameter's default, the bench's own tables, a test checks
  it). Latency scenarios are timed
  in the same rounds, shuffled each round ({args.requests} timed requests each after {args.warmup} warm-up
  rounds); the handler's stdout (its log line and EMF metrics) goes to a file, as Lambda's goes to CloudWatch.
- **Data**: every S3 object of sections 1 to 7 is written as Chainloop writes it (`cas_admin.chainloop_layout.s3`:
  no SHA-256 checksum, so S3 cannot prove it) and proven by the verifier once mapped (`verify_mapping`, as
  the Mappings stream runs it), so a container proves it by reading its record once, then from memory;
  body mode hashes what it returns. The baseline's `ChecksumMode` finds no checksum on these objects."""


def _summary(results: Results) -> str:
    rows = [
        (
            g.what,
            f"{g.value:.2f}",
            ("≥ " if g.higher_is_better else "≤ ") + f"{g.limit:g}",
            "met" if g.met else "**MISSED**",
        )
        for g in results.goals
    ]
    rows += [(what, "not run", "", f"**NOT RUN**: {why}") for what, why in results.not_measured]
    return "## Targets\n\n" + table(("target", "measured", "target", ""), rows)


def _calls(results: Results) -> str:
    rows = []
    for key, steady in results.steady.items():
        if key.endswith("_nocache"):
            continue
        first = steady.target.first_calls or Counter()
        rows.append(
            (
                steady.target.label,
                f"{steady.per_request:.2f}",
                describe(steady.calls, steady.n),
                f"{total(first)}: {describe(first)}",
            )
        )
    firsts = results.rotations
    first_calls = firsts[0].first_calls
    rows.append(
        (
            "**first request after a rotation** (warm container)",
            f"{max(total(r.first_calls) for r in firsts)}",
            describe(first_calls),
            f"{statistics.median(r.first_ms for r in firsts):.0f} ms (median of {len(firsts)}); "
            f"the request after it: {describe(firsts[0].second_calls)}",
        )
    )
    sequence = "\n".join(f"{i}. `{label}`" for i, label in enumerate(results.rotation_sequence, 1))
    return (
        "## 1. AWS calls per request\n\n"
        f"Steady state: mean of {results.steady['healthy'].n} requests after 2 warm-up requests in the same container. The last column is "
        "the very first request of that container (cold caches).\n\n"
        + table(("scenario", "calls/request", "by operation", "first request in a fresh container"), rows)
        + "\n\nFirst request after a rotation, in order (a container that had served the org through its "
        "default backend; the control plane then made a new default on the same bucket and revoked the old "
        "backend's key):\n\n" + sequence + _look_ahead(results)
    )


def _look_ahead(results: Results) -> str:
    """The look ahead's tally (logic/look_ahead.py): how often its answer served, and what it cost."""
    lines = []
    for label, (started, used, dropped) in results.look_ahead.items():
        rate = f"{used / started:.1%}" if started else "n/a"
        lines.append(
            f"- Look ahead, {label}: started {started} times over the run, used {used} (hit rate {rate}), "
            f"dropped {dropped} (a dropped one cost its storage calls for nothing)."
        )
    return "\n\n" + "\n".join(lines) if lines else ""


def _latency(results: Results) -> str:
    base = results.samples["baseline"]
    rows = []
    for key, s in results.samples.items():
        if key.endswith("_nocache"):
            continue
        rows.append(
            (
                s.target.label,
                _ms(s.median_ms),
                _ms(s.p99_ms),
                _x(s.median_ms / base.median_ms),
                _x(s.p99_ms / base.p99_ms),
                _ms(s.cpu_ms),
                f"{s.calls_per_request:.3f}",
            )
        )
    return (
        f"## 2. Warm latency ({base.n} requests per scenario)\n\n"
        "Baseline (`benchmarks/scenarios.py: Baseline`): one DynamoDB `Query` of the mapping, one S3 "
        "`HeadObject` with `ChecksumMode=ENABLED` through the backend's key, one SigV4 presign, with "
        "boto3 clients created once. CPU = this process's CPU time per request (the app's own work; the moto "
        "servers are other processes). Calls/request is amortized over the whole run (cache expiries "
        "included).\n\n"
        + table(
            (
                "scenario",
                "median ms",
                "p99 ms",
                "median / baseline",
                "p99 / baseline",
                "CPU ms",
                "calls/request",
            ),
            rows,
        )
    )


def _no_cache(results: Results) -> str:
    rows = []
    for key, s in results.samples.items():
        if not key.endswith("_nocache"):
            continue
        warm = results.samples[key.removesuffix("_nocache")]
        rows.append(
            (
                warm.target.label,
                f"{warm.calls_per_request:.2f} → {s.calls_per_request:.2f}",
                f"{_ms(warm.median_ms)} → {_ms(s.median_ms)}",
                _x(s.median_ms / warm.median_ms),
                _x(s.p99_ms / warm.p99_ms),
                f"{_ms(warm.cpu_ms)} → {_ms(s.cpu_ms)}",
            )
        )
    return (
        "## 3. The cost of no caching\n\n"
        "Same scenarios, same rounds, in containers with `SECRET_CACHE_TTL_SECONDS=0`, "
        "`BACKEND_CACHE_TTL_SECONDS=0`, `FAILURE_MEMORY_SECONDS=0` (cached → uncached).\n\n"
        + table(
            ("scenario", "calls/request", "median ms", "median ratio", "p99 ratio", "CPU ms"),
            rows,
        )
    )


def _cold(results: Results) -> str:
    cold = results.cold
    if cold is None:
        return ""
    rows = []
    for mode in cold.modes:
        rows.append(
            (
                mode.mode,
                f"{mode.median('app', 'import_s') * 1000:.0f} + {mode.median('app', 'work_s') * 1000:.0f} = "
                f"{mode.median('app', 'total_s') * 1000:.0f}",
                f"{mode.median('boto3', 'import_s') * 1000:.0f} + {mode.median('boto3', 'work_s') * 1000:.0f} = "
                f"{mode.median('boto3', 'total_s') * 1000:.0f}",
                _x(mode.ratio),
                f"{mode.median('app', 'process_s') * 1000:.0f} / {mode.median('boto3', 'process_s') * 1000:.0f}",
                f"{statistics.median(r.warm_request_s or 0.0 for r in mode.app) * 1000:.1f}",
            )
        )
    modes = list(cold.imports)
    packages: dict[str, list[str]] = {}
    for column, mode_name in enumerate(modes):
        for name, ms, share in cold.imports[mode_name]:
            packages.setdefault(name, ["" for _ in modes])[column] = f"{ms:.0f} ({share:.0%})"
    import_rows = [(name, *cells) for name, cells in packages.items()]
    import_rows.append(("**total**", *(f"{cold.import_total_ms[m]:.0f}" for m in modes)))
    text = (
        "## 4. Cold start\n\n"
        "Fresh processes of this interpreter with `-S` (no site-packages) and `PYTHONPATH` = a copy of "
        "`functions/cas_download` (as `functions/Makefile` ships it) + `pip install --target` of "
        f"`layers/dependencies/requirements.txt` for this Python (`{cold.layer_dir.relative_to(ROOT)}`; "
        "every pin is pure Python, so these are the layer's files). Not the dev venv: it has awscrt and "
        "pyOpenSSL (from aws-sam-cli), which the layer does not, and botocore behaves differently with awscrt. "
        "**As shipped**: the layer and the function carry no `.pyc` (`--no-compile`, `functions/Makefile` "
        "strips `__pycache__`) and `/opt`, `/var/task` are read-only in Lambda, so every cold start compiles "
        "them from source (`PYTHONDONTWRITEBYTECODE=1`; the standard library keeps its `.pyc`, as the "
        "runtime's does). **With .pyc**: the same files with cached byte code.\n\n"
        f"App: `import cas_download.handlers.download` + the first `lambda_handler` call (builds the App, then "
        f'a redirect of an object the verifier proved: the mappings and org-rows queries, the secret, the HEAD and the record read beside it, over loopback). Reference: `import boto3` + `boto3.client("s3")`. Medians '
        f"of {len(cold.modes[0].app)} processes each, timed inside the process; the process column is the "
        "wall time of the whole process (interpreter start-up included).\n\n"
        + table(
            (
                "mode",
                "app: import + first request (ms)",
                "reference: import + client (ms)",
                "ratio",
                "process wall app / ref (ms)",
                "2nd request ms",
            ),
            rows,
        )
        + f"\n\n![Cold start, one dot per process]({plots.COLD_START_PNG.relative_to(ROOT)})\n\n"
        "Each dot is one process; the black bars are the medians, the dashed line the target "
        "(the ratio's limit x the reference's median)."
        + "\n\nHeaviest imports (`python -X importtime -c 'import cas_download.handlers.download'`, self time "
        f"summed by top-level package, ms, median of {coldstart.IMPORTTIME_RUNS} processes):\n\n"
        + table(("package", *modes), import_rows)
    )
    if cold.clients:
        c = {k: v * 1000 for k, v in cold.clients.items()}
        text += (
            "\n\nDynamoDB client creation, with .pyc, after an S3 and a Secrets Manager client exist (medians, "
            "ms). By default PynamoDB gives each model's connection its own `botocore.session.get_session()`, "
            "which reloads what the app's boto3 session already holds (endpoints, partitions, the service "
            "model): the first row. The app hands its own session to the models instead "
            "(`data/tables.py: _share_session`): the second row.\n\n"
            + table(
                ("client", "1st", "2nd"),
                (
                    (
                        "from a new botocore session (PynamoDB, per model)",
                        _ms(c["new_session_1_s"]),
                        _ms(c["new_session_2_s"]),
                    ),
                    (
                        "from the app's boto3 session",
                        _ms(c["shared_session_1_s"]),
                        _ms(c["shared_session_2_s"]),
                    ),
                ),
            )
        )
    if cold.profile:
        text += (
            f"\n\ncProfile of one more cold start, {cold.profile_mode} (import + first request; {cold.profile_total_ms:.0f} ms "
            "under the profiler, which inflates it; cumulative ms, overlapping rows):\n\n"
            + table(("what", "calls", "cumulative ms"), ((w, c, f"{ms:.0f}") for w, c, ms in cold.profile))
        )
    return text


def _body(results: Results) -> str:
    rows = []
    for r in results.bodies:
        rows.append(
            (
                f"{r.size // body.MIB} MiB",
                _ms(r.app_s * 1000),
                f"{r.mib_s(r.app_s):.0f}",
                f"{r.mib_s(r.raw_s):.0f}",
                f"{r.mib_s(r.floor_s):.0f}",
                f"**{r.ratio:.2f}**",
                f"{r.raw_s / r.app_s:.2f}",
                f"{r.floor_s / r.raw_s:.2f}",
                f"{r.app_peak / body.MIB:.1f} (**{r.app_peak / r.size:.2f}x**)",
                f"{r.raw_peak / r.size:.2f}x / {r.floor_peak / r.size:.2f}x",
                r.calls,
            )
        )
    text = (
        "## 5. Body mode\n\n"
        "Timed in the same rounds: **app** = a `mode=body` request through the handler; **irreducible** = "
        "the same work written plainly with boto3 (one DynamoDB `Query` of the mapping, one `GetObject` "
        "through the backend's key, `read()`, SHA-256, base64 to text); **floor** = SHA-256 + base64 to "
        "text of the same bytes already in memory (the body-mode target's reference: it has no I/O at all). Throughput "
        "ratios are of MiB/s (higher is better). "
        "Peak = tracemalloc peak during one request above what was allocated before it, the response "
        f"included (a separate pass). Medians of {results.args.body_reps}.\n\n"
        + table(
            (
                "size",
                "app ms",
                "app MiB/s",
                "irreducible MiB/s",
                "floor MiB/s",
                "app / floor",
                "app / irreducible",
                "irreducible / floor",
                "app peak MiB",
                "irreducible / floor peak",
                "calls",
            ),
            rows,
        )
    )
    for size, prototype in results.body_prototype.items():
        text += (
            f"\n\nProposed fix, measured at {size // body.MIB} MiB on in-memory chunks (no I/O, fastest of "
            f"{profiling.PROTOTYPE_REPS}; `benchmarks/profiling.py: body_encoding_prototype`, not the package's "
            "code):\n\n"
            + table(
                ("approach", "ms", "MiB/s", "peak x size"),
                (
                    (
                        r.approach,
                        _ms(r.seconds * 1000),
                        f"{size / body.MIB / r.seconds:.0f}",
                        f"{r.peak_bytes / size:.2f}",
                    )
                    for r in prototype
                ),
            )
        )
    for size, steps in results.body_steps.items():
        text += (
            f"\n\nWhere body mode's memory goes at {size // body.MIB} MiB (the package's own functions on "
            "in-memory 1 MiB chunks; peak above each step's input):\n\n"
            + table(
                ("step", "peak MiB", "x size"),
                ((s.step, f"{s.peak_bytes / body.MIB:.2f}", f"{s.peak_bytes / size:.2f}") for s in steps),
            )
        )
    return text


def _cost(results: Results) -> str:
    prices = table(("item", "price (us-east-1, list)"), cost.PRICE_TABLE)
    blocks = []
    for estimate in results.costs:
        rows = [(line.item, line.quantity, f"${line.usd_per_million:.4f}") for line in estimate.lines]
        rows.append(("**total**", "", f"**${estimate.total:.2f}**"))
        blocks.append(f"**{estimate.scenario}**\n\n" + table(("item", "per download", "$ per million"), rows))
    latencies = ", ".join(f"{s}:{o} {ms:g} ms" for (s, o), ms in cost.ASSUMED_LATENCY_MS.items())
    return (
        "## 6. Cost per million downloads\n\n"
        f"Prices: us-east-1 on-demand list prices, first tier, no free tier, **as checked on "
        f"{cost.PRICES_CHECKED}: re-check them** (aws.amazon.com/<service>/pricing) before relying on a total.\n\n"
        + prices
        + "\n\nCalls per download are those counted in section 2 (amortized over the run). Lambda duration is "
        f"a model, not a measurement: the app's CPU time per request here x {cost.CPU_SCALE:.2f} (a 512 MB "
        "function gets 512/1769 of a vCPU) + assumed in-region latencies "
        f"({latencies}), rounded up to 1 ms. Not included: the client's own GET through the presigned URL "
        "(one more S3 GET and the data transfer, billed to the bucket's owner), Secrets Manager's $0.40 per "
        "secret-month, Lambda's START/END/REPORT log lines.\n\n"
        + "\n\n".join(blocks)
        + "\n\n"
        + _snapstart_cost()
    )


def _snapstart_cost() -> str:
    return (
        "**SnapStart** (`SnapStart=PublishedVersions`; off by default): on top of the above, a caching "
        f"charge per published version and a restore charge per cold start (prices as checked on "
        f"{cost.PRICES_CHECKED}; Lambda keeps each published version's snapshot cached, at least 3 hours). "
        "Whether it pays: section 4b's cold start with byte code against a restore's.\n\n"
        + table(("SnapStart charge", "cost"), cost.snapstart_lines())
    )


def _providers(results: Results) -> str:
    p = results.providers
    if p is None:
        return ""
    lines = [
        "## 7. The new candidate order, AzureBlob on Azurite, and OCI on a real registry",
        "",
        "**S3, a new container's first request after a rotation, the old backend marked Invalid** "
        f"(the org's OK default is tried first): {p.s3_marked_rotation_calls} AWS calls "
        f"(target {S3_TARGET}): {', '.join(p.s3_marked_rotation_sequence)}.",
        "",
    ]
    if p.azure_skipped is not None:
        lines += [f"Azure rows not measured: {p.azure_skipped}.", ""]
    else:
        lines += [
            "**AzureBlob** (Azurite, shared key, verification records on):",
            "",
            table(
                ("measure", "value"),
                [
                    ("first request's storage calls", ", ".join(p.azure_first_calls)),
                    ("storage calls per redirect, steady state", f"{p.azure_steady_storage_calls:.2f}"),
                    ("AWS calls per redirect, steady state", f"{p.azure_steady_aws_calls:.2f}"),
                    (
                        f"warm latency, service median / p99 ({p.requests} requests)",
                        _ms_pair(p.azure),
                    ),
                    (
                        "plain SDK client (properties + SAS), median / p99",
                        _ms_pair(p.azure_plain),
                    ),
                    (
                        "ratio median / p99",
                        _x_pair(p.azure.over(p.azure_plain)),
                    ),
                    (
                        "plain client plus the mapping query, median / p99",
                        _ms_pair(p.azure_plain_mapping),
                    ),
                    (
                        "ratio to that, median / p99",
                        _x_pair(p.azure.over(p.azure_plain_mapping)),
                    ),
                ],
            ),
            "",
        ]
    if p.oci_skipped is not None:
        return "\n".join([*lines, f"OCI rows not measured: {p.oci_skipped}."])
    lines += [
        "**OCI** (CNCF distribution, blobs in S3 on moto: blob GETs redirect to presigned URLs; htpasswd "
        "login; verification records on):",
        "",
        table(
            ("measure", "value"),
            [
                ("first request's registry client calls", ", ".join(p.oci_first_calls)),
                ("registry calls per redirect, steady state", f"{p.oci_steady_registry_calls:.2f}"),
                ("bytes read per redirect, steady state (storage GETs)", f"{p.oci_steady_storage_reads:.2f}"),
                (
                    "storage ETag reads per redirect, steady state (1 byte each: the record's tie to the bytes)",
                    f"{p.oci_steady_etag_reads:.2f}",
                ),
                ("AWS calls per redirect, steady state", f"{p.oci_steady_aws_calls:.2f}"),
                (
                    f"warm latency, service median / p99 ({p.requests} requests)",
                    _ms_pair(p.oci),
                ),
                (
                    "warm latency, plain registry client median / p99",
                    _ms_pair(p.plain),
                ),
                ("ratio median / p99", _x_pair(p.oci.over(p.plain))),
                (
                    "plain client plus the mapping query, median / p99",
                    _ms_pair(p.plain_mapping),
                ),
                (
                    "ratio to that, median / p99",
                    _x_pair(p.oci.over(p.plain_mapping)),
                ),
                (
                    "first request after a password rotation: registry client calls",
                    ", ".join(p.oci_rotation_registry_calls),
                ),
                ("first request after a password rotation: AWS calls", str(p.oci_rotation_aws_calls)),
            ],
        ),
        "",
        "The plain client sends Basic up front and makes the two registry calls a verified redirect needs "
        "(the manifest for the filename, the blob GET for the storage URL). The service adds the mapping "
        "query (DynamoDB), which any caller-scoped service needs, hence the second baseline; a warm container "
        "proves the bytes from its memory of the verification record it read or wrote, after one ranged "
        "read of one byte at the storage URL: the record holds for the stored object's ETag only, so a "
        "registry that swaps a blob's bytes is caught (the plain client does not do this read).",
    ]
    return "\n".join(lines)


def _profiles(results: Results) -> str:
    if not results.profiles:
        return ""
    blocks = []
    for p in results.profiles:
        blocks.append(
            f"### {p.title} ({p.requests} requests, {p.seconds:.2f} s, pyinstrument, wall clock)\n\n"
            f"```text\n{p.tree}\n```\n\nSelf time, flat:\n\n```text\n{p.flat}\n```"
        )
    return "## Profiles of missed targets\n\n" + "\n\n".join(blocks)


CAVEATS = """## Caveats

- moto's server closes the connection after every response, so every AWS call here (the baseline's
  too) pays a TCP connect on loopback; connection reuse, and TLS, cannot show up in these numbers.
- Amortized counts (section 2) depend on the request rate per container: the rotation story re-tries
  the revoked backend once per `FAILURE_MEMORY_SECONDS` (60 s) and re-reads rows once per
  `BACKEND_CACHE_TTL_SECONDS` (30 s); this run served each scenario a few requests per second.
- The machine is shared (other work runs on the same 2 cores), which is why everything is interleaved
  and reported as ratios; single numbers move by 10-30 % between runs, ratios much less.
- Local CPython 3.11 on x86_64, not Lambda's 3.13 on arm64: import and hashing costs differ there,
  and a 512 MB function has about 29 % of a vCPU, which stretches every CPU-bound number above."""
