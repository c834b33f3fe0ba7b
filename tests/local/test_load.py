"""`make load` in small: the load driver (benchmarks/load.py) against its own `cas-local run`, with a
bound of 200 requests from 4 clients. Every kind of the mix answered as expected, nothing lost."""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import render, run


def test_a_small_load_gets_every_kind_answered_as_expected(tmp_path: Path) -> None:
    report = run(requests=200, duration=30.0, workers=4, warmup=20, work_dir=tmp_path / "load")
    text = render(report)

    assert report.load.issued == 200, text
    assert not report.load.timed_out, text
    assert report.errors == 0, text
    assert report.lost == 0, text
    assert report.server_seen == report.sent == 220, text
    assert {f.group for f in report.kinds} == {"healthy", "rotated", "failing"}
    assert len(report.kinds) == 10
    assert all(f.requests == 20 for f in report.kinds), text
    assert {f.status for f in report.kinds} == {307, 200, 404, 400, 401}
    assert report.memory_after.rss_kib > 0
    assert report.ok, text
