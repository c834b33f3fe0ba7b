"""Body mode at 1 MiB and 4 MiB: throughput against this machine's floor, and peak memory.

Three things are timed in the same rounds, shuffled:

* ``app``: a ``mode=body`` request through the handler (mapping query, GET, hash, base64 response);
* ``raw``: the irreducible work of a body request, written plainly: one DynamoDB query of the
  mapping, one boto3 ``GetObject`` through the same key, ``read()``, SHA-256, base64 to text;
* ``floor``: SHA-256 and base64 (to text: a Lambda response is JSON) of the same bytes in memory.

Peak memory is measured separately with tracemalloc (it slows allocation down): the highest traced
allocation during one request above what was allocated before it, the response included.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from tests.support.moto_servers import REGION

from benchmarks.counting import describe
from benchmarks.scenarios import Scenarios, Target

MIB = 1024 * 1024
SIZES = (1 * MIB, 4 * MIB)


@dataclass
class BodyResult:
    size: int
    app_s: float  # medians
    raw_s: float
    floor_s: float
    app_peak: int  # bytes above the baseline
    raw_peak: int
    floor_peak: int
    calls: str

    def mib_s(self, seconds: float) -> float:
        return self.size / MIB / seconds

    @property
    def ratio(self) -> float:
        """App throughput as a fraction of the floor's."""
        return self.floor_s / self.app_s


def floor_work(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), base64.b64encode(data).decode("ascii")


def measure(
    scenarios: Scenarios, reps: int, sizes: tuple[int, ...] = SIZES
) -> list[tuple[BodyResult, Target]]:
    results = []
    rng = random.Random(7)  # noqa: S311 - a shuffle, not a secret
    for size in sizes:
        data = os.urandom(size)
        org, backend, digest = scenarios.healthy_backend(data)
        target = scenarios.target(
            f"body_{size // MIB}mib", f"body {size // MIB} MiB", scenarios.app(), digest, org, mode="body"
        )
        session = scenarios.counter.new_session()
        dynamodb = session.client("dynamodb", region_name=REGION)
        s3 = session.client(
            "s3",
            region_name=REGION,
            aws_access_key_id=backend.access_key_id,
            aws_secret_access_key=backend.secret_access_key,
            config=Config(
                signature_version="s3v4",
                retries={"total_max_attempts": 1, "mode": "standard"},
                response_checksum_validation="when_required",
            ),
        )
        key = backend.key_for(digest)

        def raw(
            bucket: str = backend.bucket,
            key: str = key,
            digest: str = digest,
            s3: Any = s3,
            ddb: Any = dynamodb,
        ) -> tuple[str, str]:
            ddb.query(
                TableName=scenarios.world.tables.mappings,
                KeyConditionExpression="digest = :digest",
                ExpressionAttributeValues={":digest": {"S": digest}},
            )
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return floor_work(body)

        def app(target: Target = target) -> Any:
            return target.serve(target.prepare())

        def floor(data: bytes = data) -> tuple[str, str]:
            return floor_work(data)

        kinds: dict[str, Callable[[], Any]] = {"app": app, "raw": raw, "floor": floor}
        for fn in kinds.values():
            fn()
        mark = scenarios.counter.mark()
        app()
        calls = scenarios.counter.since(mark)
        times: dict[str, list[float]] = {name: [] for name in kinds}
        names = list(kinds)
        for _ in range(reps):
            rng.shuffle(names)
            for name in names:
                started = time.perf_counter()
                result = kinds[name]()
                times[name].append(time.perf_counter() - started)
                del result  # freed outside the timed region
        peaks = {name: peak_allocation(fn) for name, fn in kinds.items()}
        results.append(
            (
                BodyResult(
                    size=size,
                    app_s=statistics.median(times["app"]),
                    raw_s=statistics.median(times["raw"]),
                    floor_s=statistics.median(times["floor"]),
                    app_peak=peaks["app"],
                    raw_peak=peaks["raw"],
                    floor_peak=peaks["floor"],
                    calls=describe(calls),
                ),
                target,
            )
        )
    return results


def peak_allocation(fn: Callable[[], Any], reps: int = 3) -> int:
    """Largest (peak traced - traced before) over ``reps`` calls, the result kept alive at the peak."""
    worst = 0
    tracemalloc.start()
    try:
        for _ in range(reps):
            gc.collect()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            result = fn()
            peak = tracemalloc.get_traced_memory()[1]
            del result
            worst = max(worst, peak - before)
    finally:
        tracemalloc.stop()
    return worst
