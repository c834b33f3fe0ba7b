"""The S3 client pool under concurrent use (the validator probes backends from several threads)."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import boto3

from cas_download.data.storage.s3 import Credentials, S3ClientPool

THREADS = 8
KEYS = 12


def test_concurrent_probes_get_one_client_per_set_of_credentials() -> None:
    # Given one pool on one boto3 session, and threads that all start at once
    pool = S3ClientPool(boto3.session.Session(), 1.0, 1.0)
    start = threading.Barrier(THREADS)
    seen: dict[str, set[int]] = defaultdict(set)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def probe_all() -> None:
        start.wait()
        for index in range(KEYS):
            credentials = Credentials(f"AKIDPOOLTEST{index:04d}", f"secret-{index}")
            try:
                client: Any = pool.client(credentials, "us-east-1", "http://127.0.0.1:1")
            except BaseException as error:
                with lock:
                    errors.append(error)
                continue
            with lock:
                seen[credentials.access_key_id].add(id(client))

    # When they each ask for a client for every set of credentials
    threads = [threading.Thread(target=probe_all) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then no creation failed and every set of credentials got exactly one client, shared by all threads
    assert errors == []
    assert len(seen) == KEYS
    assert all(len(clients) == 1 for clients in seen.values()), seen
