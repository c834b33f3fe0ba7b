"""Slims the layer's botocore data: the services the functions call, their models without documentation.

    python slim_botocore.py BOTOCORE_DATA SERVICE...

Why (BENCHMARKS.md 4b): a container's first client of each service parses that service's model and
endpoint rules, and botocore lists every service directory it ships (about 440) for each kind of file
it loads. Most of a model's bytes are documentation, which only docstrings read: S3's model and rules
are 2.3 MB of JSON, 0.4 MB without it. Each ``documentation`` text becomes ``""`` (the key stays:
botocore indexes some of them) and the JSON is written compact, under the same file name. The first
client of a container also parses ``endpoints.json`` (1.25 MB: every service's legacy endpoints in
every partition): it keeps the partitions and their regions, and the kept services' entries only.
Every other key and value is kept as it is; tests/test_layer.py compares the slimmed files with
botocore's own.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path
from typing import Any

# What a client loads when it is made; paginators, waiters and examples are read only on use.
MODELS = ("service-2", "endpoint-rule-set-1")
DOCUMENTATION_KEYS = frozenset({"documentation", "documentationUrl"})


def without_documentation(node: Any) -> Any:
    """``node`` with every documentation text emptied (a member *named* documentation is a dict: kept)."""
    if isinstance(node, dict):
        return {
            key: "" if key in DOCUMENTATION_KEYS and isinstance(value, str) else without_documentation(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [without_documentation(item) for item in node]
    return node


def slim_model(path: Path) -> None:
    compressed = path.suffix == ".gz"
    raw = path.read_bytes()
    model = json.loads(gzip.decompress(raw) if compressed else raw)
    text = json.dumps(without_documentation(model), separators=(",", ":"), ensure_ascii=False).encode()
    # mtime=0: the same input gives the same bytes, so a rebuilt layer is not a new layer version
    path.write_bytes(gzip.compress(text, mtime=0) if compressed else text)


def slim_endpoints(path: Path, services: list[str]) -> None:
    endpoints = json.loads(path.read_text(encoding="utf-8"))
    for partition in endpoints["partitions"]:
        partition["services"] = {
            name: entry for name, entry in partition["services"].items() if name in services
        }
    path.write_text(json.dumps(endpoints, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")


def slim(data: Path, services: list[str]) -> None:
    missing = [service for service in services if not (data / service).is_dir()]
    if missing:
        raise SystemExit(f"botocore has no data for {', '.join(missing)} in {data}")
    for directory in sorted(p for p in data.iterdir() if p.is_dir()):
        if directory.name not in services:
            shutil.rmtree(directory)
    slim_endpoints(data / "endpoints.json", services)
    for service in services:
        for name in MODELS:
            for path in sorted((data / service).glob(f"*/{name}.json*")):
                slim_model(path)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    slim(Path(sys.argv[1]), sys.argv[2:])
