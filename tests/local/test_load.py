"""`make load` in small: the load driver (benchmarks/load.py) against its own `cas-local run`, with a
bound of 200 requests from 4 clients and no time bound (speed belongs to `make load`, not to a test).
Every kind of the mix answered as expected, nothing lost."""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import render, run


def test_a_small_load_gets_every_kind_answered_as_expected(tmp_path: Path) -> None:
    # Given the local stack under 4 clients, When 20 warm-up and 200 load requests are sent
    report = run(requests=200, duration=None, workers=4, warmup=20, work_dir=tmp_path / "load")
    text = render(report)

    # Then every one was issued and answered as its kind expects, and the server saw each
    assert report.load.issued == 200, text
    assert report.errors == 0, text
    assert report.lost == 0, text
    assert report.server_seen == report.sent == 220, text
    assert {f.group for f in report.kinds} == {"healthy", "rotated", "failing"}
    assert len(report.kinds) == 10
    assert all(f.requests == 20 for f in report.kinds), text
    assert {f.status for f in report.kinds} == {307, 200, 404, 400, 401}
    assert report.memory_after.rss_kib > 0
    assert report.ok, text
