"""Evidence for missed targets: pyinstrument profiles of warm requests, and where body mode's memory
goes, step by step."""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import os
import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinstrument import Profiler

from benchmarks.scenarios import Target

MIB = 1024 * 1024
PROTOTYPE_REPS = 30


@dataclass
class Profile:
    title: str
    requests: int
    seconds: float
    tree: str
    flat: str


def profile_target(
    target: Target, requests: int, title: str | None = None, interval: float = 0.0005
) -> Profile:
    """Wall-clock profile of ``requests`` warm requests (events prepared beforehand)."""
    prepared = [target.prepare() for _ in range(requests)]
    target.serve(target.prepare())
    responses = []  # kept until the profile ends: freeing big responses is not the request's work
    profiler = Profiler(interval=interval)
    profiler.start()
    for item in prepared:
        responses.append(target.serve(item))
    session = profiler.stop()
    responses.clear()
    tree = profiler.output_text(
        unicode=False,
        color=False,
        time="percent_of_total",
        processor_options={"filter_threshold": 0.04, "hide_regex": r".*/(threading|selectors)\.py"},
    )
    flat = profiler.output_text(unicode=False, color=False, flat=True, time="percent_of_total")
    return Profile(title or target.label, requests, session.duration, _trim(tree, 45), _trim(flat, 22))


def _trim(text: str, lines: int) -> str:
    """Drop pyinstrument's banner (everything before the first line that starts with a percentage)."""
    body = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(body) if re.match(r"\s*[\d.]+%", line)), 0)
    return "\n".join(body[start : start + lines])


@dataclass
class MemoryStep:
    step: str
    peak_bytes: int


def body_memory_steps(size: int) -> list[MemoryStep]:
    """Body mode's allocations, step by step, through the package's own functions on in-memory bytes
    (1 MiB chunks, as botocore delivers them): what each step holds at its peak above its input."""
    from cas_download.domain import Artifact as ArtifactType  # noqa: PLC0415
    from cas_download.domain import Backend, Mode, ObjectInfo, VerificationMethod  # noqa: PLC0415
    from cas_download.handlers.responses import success_response  # noqa: PLC0415
    from cas_download.logic.deadline import Deadline  # noqa: PLC0415
    from cas_download.logic.verification import hash_and_encode  # noqa: PLC0415

    data = os.urandom(size)
    expected = hashlib.sha256(data).hexdigest()
    chunks = [data[i : i + MIB] for i in range(0, size, MIB)]
    steps = [MemoryStep("chunks as read (input, for scale)", size)]
    body: Any = None

    def collect() -> Any:
        nonlocal body
        body = hash_and_encode(iter(chunks), expected, size, Deadline(60))
        return body

    steps.append(MemoryStep("hash_and_encode: hash + keep the base64 text", _peak(collect)))
    backend = Backend(
        id="b",
        org_id="o",
        name="n",
        provider="AWS-S3",
        location="bucket",
        secret_name="unused",  # noqa: S106
    )
    artifact = ArtifactType(
        "sha256:" + expected,
        backend,
        False,
        ObjectInfo(size=size),
        VerificationMethod.STREAM_HASH,
        body_base64=body,
    )
    steps.append(
        MemoryStep(
            "success_response: the response around the kept text",
            _peak(lambda: success_response(artifact, Mode.BODY, "GET")),
        )
    )
    return steps


def _peak(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - before


@dataclass
class EncodingRow:
    approach: str
    seconds: float
    peak_bytes: int


def body_encoding_prototype(size: int, reps: int = PROTOTYPE_REPS) -> list[EncodingRow]:
    """The proposed fix for body mode, measured beside what the package does now (in-memory chunks,
    no I/O): hash and base64-encode each chunk as it arrives (chunks a multiple of 3 bytes long) and
    keep only the text, instead of keeping the bytes, copying them, then encoding all of them."""
    from cas_download.logic.deadline import Deadline  # noqa: PLC0415
    from cas_download.logic.verification import hash_and_encode  # noqa: PLC0415

    data = os.urandom(size)
    expected = hashlib.sha256(data).hexdigest()
    now_chunks = [data[i : i + MIB] for i in range(0, size, MIB)]
    step = 3 * 256 * 1024  # 768 KiB: base64 of each piece needs no carry-over
    new_chunks = [data[i : i + step] for i in range(0, size, step)]

    def current() -> str:
        return hash_and_encode(iter(now_chunks), expected, size, Deadline(60))

    def proposed() -> str:
        digest, pieces, seen = hashlib.sha256(), [], 0
        for chunk in new_chunks:
            digest.update(chunk)
            seen += len(chunk)
            pieces.append(binascii.b2a_base64(chunk, newline=False).decode("ascii"))
        if seen != size or digest.hexdigest() != expected:
            raise AssertionError("prototype broke the proof")
        return "".join(pieces)

    def floor() -> str:
        hashlib.sha256(data).hexdigest()
        return base64.b64encode(data).decode("ascii")

    if current() != proposed():
        raise AssertionError("prototype changed the response")
    rows = []
    for name, fn in (
        ("now: hash_and_encode (1 MiB chunks)", current),
        ("proposed: sha256 + b2a_base64 per 768 KiB chunk, join the text", proposed),
        ("floor: sha256 + base64 of the bytes in memory", floor),
    ):
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        rows.append(EncodingRow(name, min(times), _peak(fn)))  # CPU-bound: the least-disturbed run
    return rows
