"""Cost per million downloads, from the calls counted in this run and published AWS list prices.

PRICES: us-east-1 on-demand list prices, first usage tier, no free tier, as published on the AWS
pricing pages (aws.amazon.com/{lambda,api-gateway,dynamodb,secrets-manager,s3,cloudwatch}/pricing).
They were last checked on PRICES_CHECKED (DynamoDB on-demand has been at $0.125 per million read
request units since its 2024-11-01 reduction). Prices change: re-check them before relying on a total.

Lambda duration is not measured here (moto on loopback is not AWS), so it is modelled, with every
assumption below in plain sight: the app's CPU time per request measured in this run, scaled to the
CPU share of a 512 MB function, plus an assumed in-region latency per AWS call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PRICES_CHECKED = "2026-11-24"

LAMBDA_MEMORY_MB = 512  # template.yaml DownloadFunction MemorySize (arm64)
LAMBDA_GB_SECOND_ARM = 0.0000133334  # $ per GB-second, arm64, first 7.5 billion GB-s a month
LAMBDA_REQUEST = 0.20 / 1e6  # $ per invocation
HTTP_API_REQUEST = 1.00 / 1e6  # $ per HTTP API request (first 300 million a month; 512 KB increments)
DYNAMODB_RRU = 0.125 / 1e6  # $ per on-demand read request unit
DYNAMODB_WRU = 0.625 / 1e6  # $ per on-demand write request unit
SECRETS_MANAGER_CALL = 0.05 / 10_000  # $ per API call
S3_GET_CLASS_REQUEST = 0.0004 / 1000  # $ per GET/HEAD (S3 Standard "GET, SELECT and all other requests")
CLOUDWATCH_LOGS_GB = 0.50  # $ per GB ingested (Standard log class)

# Request units per call: items are far below 4 KB (reads) and 1 KB (writes); PynamoDB reads are
# eventually consistent (half a unit). BatchGetItem is counted as one item (the mapped backend).
DYNAMODB_UNITS: Mapping[str, tuple[str, float]] = {
    "Query": ("read", 0.5),
    "GetItem": ("read", 0.5),
    "BatchGetItem": ("read", 0.5),
    "UpdateItem": ("write", 1.0),
    "PutItem": ("write", 1.0),
}

# Duration model. Lambda gives a function one full vCPU at 1,769 MB, proportionally less below: at
# 512 MB, 29 % of one, so CPU-bound work takes 1769/512 times as long as on one core here (assuming a
# Graviton vCPU and this machine's core are alike). In-region latencies per call are assumptions.
CPU_SCALE = 1769 / LAMBDA_MEMORY_MB
ASSUMED_LATENCY_MS: Mapping[tuple[str, str], float] = {
    ("dynamodb", "Query"): 5.0,
    ("dynamodb", "BatchGetItem"): 5.0,
    ("dynamodb", "UpdateItem"): 8.0,
    ("s3", "HeadObject"): 15.0,
    ("s3", "GetObject"): 20.0,
    ("secretsmanager", "GetSecretValue"): 15.0,
}
DEFAULT_LATENCY_MS = 10.0


@dataclass
class CostLine:
    item: str
    quantity: str
    usd_per_million: float


@dataclass
class CostEstimate:
    scenario: str
    lines: list[CostLine]
    duration_ms: int

    @property
    def total(self) -> float:
        return sum(line.usd_per_million for line in self.lines)


def estimate(
    scenario: str, calls_per_request: Mapping[tuple[str, str], float], cpu_ms: float, log_bytes: float
) -> CostEstimate:
    million = 1e6
    network_ms = sum(
        count * ASSUMED_LATENCY_MS.get(key, DEFAULT_LATENCY_MS) for key, count in calls_per_request.items()
    )
    duration_ms = math.ceil(cpu_ms * CPU_SCALE + network_ms)  # billed in 1 ms steps
    gb_seconds = LAMBDA_MEMORY_MB / 1024 * duration_ms / 1000
    lines = [
        CostLine("API Gateway HTTP API request", "1", HTTP_API_REQUEST * million),
        CostLine("Lambda invocation", "1", LAMBDA_REQUEST * million),
        CostLine(
            f"Lambda duration (arm64, {LAMBDA_MEMORY_MB} MB)",
            f"{duration_ms} ms (model: {cpu_ms:.1f} ms CPU x {CPU_SCALE:.2f} + {network_ms:.0f} ms in calls)",
            gb_seconds * LAMBDA_GB_SECOND_ARM * million,
        ),
    ]
    reads = writes = 0.0
    for (service, operation), count in calls_per_request.items():
        if service == "dynamodb" and operation in DYNAMODB_UNITS:
            kind, units = DYNAMODB_UNITS[operation]
            if kind == "read":
                reads += count * units
            else:
                writes += count * units
    lines.append(CostLine("DynamoDB on-demand reads", f"{reads:.2f} RRU", reads * DYNAMODB_RRU * million))
    if writes:
        lines.append(
            CostLine("DynamoDB on-demand writes", f"{writes:.2f} WRU", writes * DYNAMODB_WRU * million)
        )
    secrets = sum(c for (s, _o), c in calls_per_request.items() if s == "secretsmanager")
    lines.append(
        CostLine("Secrets Manager API calls", f"{secrets:.3f}", secrets * SECRETS_MANAGER_CALL * million)
    )
    s3 = sum(c for (s, _o), c in calls_per_request.items() if s == "s3")
    lines.append(
        CostLine("S3 GET/HEAD requests (bucket owner)", f"{s3:.2f}", s3 * S3_GET_CLASS_REQUEST * million)
    )
    lines.append(
        CostLine(
            "CloudWatch Logs ingestion (log line + EMF metrics)",
            f"{log_bytes:.0f} bytes",
            log_bytes / 1e9 * CLOUDWATCH_LOGS_GB * million,
        )
    )
    return CostEstimate(scenario, lines, duration_ms)


PRICE_TABLE: tuple[tuple[str, str], ...] = (
    ("Lambda duration, arm64", f"${LAMBDA_GB_SECOND_ARM:.10f} per GB-second (first 7.5 billion GB-s/month)"),
    ("Lambda requests", "$0.20 per million"),
    ("API Gateway HTTP API", "$1.00 per million requests (first 300 million/month; metered per 512 KB)"),
    ("DynamoDB on-demand", "$0.125 per million read request units; $0.625 per million write request units"),
    ("Secrets Manager", "$0.05 per 10,000 API calls (plus $0.40 per secret-month, not per download)"),
    ("S3 Standard requests", "$0.0004 per 1,000 GET/HEAD (billed to the bucket's owner)"),
    ("CloudWatch Logs", "$0.50 per GB ingested (Standard)"),
)


# SnapStart for Python (template parameter SnapStart=PublishedVersions): Lambda charges for keeping each
# published version's snapshot cached (per GB-second, at least 3 hours) and for each restore from it
# (per GB restored, that is each cold start). Java's SnapStart has neither charge; Python's and .NET's do.
SNAPSTART_CACHE_GB_SECOND = 0.0000015046  # $ per GB-second of a cached snapshot
SNAPSTART_RESTORE_GB = 0.0001397998  # $ per GB restored
SECONDS_PER_MONTH = 30 * 24 * 3600


def snapstart_lines(
    cold_starts_per_million: tuple[int, ...] = (1_000, 10_000, 100_000),
) -> list[tuple[str, str]]:
    """What SnapStart adds for the download function (512 MB): the cache per published version and
    month, and the restores per million downloads at a few cold-start rates."""
    gb = LAMBDA_MEMORY_MB / 1024
    lines = [
        (
            "snapshot cache, one published version, a month",
            f"{gb:g} GB x {SECONDS_PER_MONTH:,} s x ${SNAPSTART_CACHE_GB_SECOND:.10f} = "
            f"${gb * SECONDS_PER_MONTH * SNAPSTART_CACHE_GB_SECOND:.2f}",
        ),
        (
            "one restore (a cold start)",
            f"{gb:g} GB x ${SNAPSTART_RESTORE_GB} = ${gb * SNAPSTART_RESTORE_GB:.6f}",
        ),
    ]
    for cold in cold_starts_per_million:
        lines.append(
            (
                f"restores per million downloads, {cold / 1e4:g} % cold starts",
                f"{cold:,} x ${gb * SNAPSTART_RESTORE_GB:.6f} = ${cold * gb * SNAPSTART_RESTORE_GB:.2f}",
            )
        )
    return lines
