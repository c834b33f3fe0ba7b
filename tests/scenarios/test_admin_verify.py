"""``cas-admin verify`` (spec: "Verifying ahead of requests", backfill): what is already mapped is
proven with the verifier's own code, selected by org, digest or creation time, with a summary."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from cas_admin.cli import main as admin_main
from tests.support.events import FakeLambdaContext
from tests.support.verifier_stack import Stack
from tests.support.world import World, iso, sha256_digest

DATA = b"mapped before the verifier existed\n" * 300


@pytest.fixture
def stack(world: World, verifications_table: str, lambda_context: FakeLambdaContext) -> Stack:
    return Stack(world, verifications_table, lambda_context)


def verify(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    tables = ["--backends-table", world.tables.backends, "--mappings-table", world.tables.mappings]
    code = admin_main([*tables, "verify", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out, out.err


def summary(out: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(out)
    return document


def test_an_orgs_mappings_are_proven_once_and_then_served_without_hashing(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org with two mapped Chainloop objects (no checksum) that nothing has proven
    org = world.org()
    backend = world.backend(org, "chainloop-s3", is_default=True)
    digests = [world.put(backend, DATA + bytes([n])) for n in range(2)]
    for digest in digests:
        world.map(digest, org, backend)

    # When cas-admin verify runs for the org, twice
    code, out, _ = verify(
        world, capsys, "--org", org, "--verifications-table", stack.verifications_table, "--json"
    )
    again_code, again, _ = verify(
        world, capsys, "--org", org, "--verifications-table", stack.verifications_table, "--json"
    )

    # Then the first run proved both, the second found them proven
    assert code == 0
    assert {k: summary(out)[k] for k in ("proven", "already_proven", "failed", "skipped")} == {
        "proven": 2,
        "already_proven": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert again_code == 0
    assert summary(again)["already_proven"] == 2
    assert summary(again)["proven"] == 0
    # and a request for either is proven by its record: no byte read
    assert stack.get(digests[0], org).status == 307
    assert stack.request_calls.count("s3", "GetObject") == 0


def test_failures_are_summed_by_reason_and_the_exit_status_says_so(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org with one provable mapping, one whose object is gone and one whose bytes are wrong
    org = world.org()
    backend = world.backend(org, "chainloop-s3", is_default=True)
    world.map(world.put(backend, DATA), org, backend)
    world.map(sha256_digest(b"never uploaded"), org, backend)
    wrong = sha256_digest(b"the right bytes")
    world.put_corrupt(backend, wrong, b"the wrong bytes")
    world.map(wrong, org, backend)

    # When cas-admin verify runs for the org
    code, out, _ = verify(world, capsys, "--org", org, "--verifications-table", stack.verifications_table)

    # Then the summary line counts each outcome, failures by reason, and the run fails
    assert code == 1
    assert "proven 1, already proven 0, failed 2 (digest_mismatch 1, not_found 1), skipped 0" in out
    assert f"failed  {wrong}  {org}: digest_mismatch" in out


def test_a_digest_selects_its_mappings_only(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two orgs mapping the same digest, and another digest of the first org
    first, second = world.org(), world.org()
    first_backend = world.backend(first, "first", is_default=True)
    second_backend = world.backend(second, "second", is_default=True)
    data = DATA + uuid.uuid4().bytes  # no other test maps this digest (the tables are shared)
    digest = world.put(first_backend, data)
    world.put(second_backend, data)
    world.map(digest, first, first_backend)
    world.map(digest, second, second_backend)
    other = world.put(first_backend, data + b"other")
    world.map(other, first, first_backend)

    # When cas-admin verify runs for that digest
    code, out, _ = verify(
        world, capsys, "--digest", digest, "--verifications-table", stack.verifications_table, "--json"
    )

    # Then both orgs' copies are proven, each in its own org, and the other digest is not touched
    assert code == 0
    proven = {(m["org"], m["proven_by"]) for m in summary(out)["mappings"]}
    assert proven == {(first, "first"), (second, "second")}
    assert stack.record(first_backend, other) is None


def test_since_selects_the_mappings_created_at_or_after_it(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org's mapping of last year and one of now
    org = world.org()
    backend = world.backend(org, "chainloop-s3", is_default=True)
    old = world.put(backend, DATA + b"old")
    new = world.put(backend, DATA + b"new")
    now = dt.datetime.now(dt.UTC)
    world.map(old, org, backend, created_at=now - dt.timedelta(days=365))
    world.map(new, org, backend, created_at=now)

    # When cas-admin verify runs for what was mapped since an hour ago
    since = iso(now - dt.timedelta(hours=1))
    code, out, _ = verify(
        world,
        capsys,
        "--org",
        org,
        "--since",
        since,
        "--verifications-table",
        stack.verifications_table,
        "--json",
    )

    # Then only the new mapping was proven
    assert code == 0
    assert [m["digest"] for m in summary(out)["mappings"]] == [new]
    assert stack.record(backend, old) is None


def test_a_dry_run_lists_what_would_be_proven_and_reads_nothing(
    world: World, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org's unproven mapping
    org, backend, digest = world.artifact(DATA, "chainloop-s3")

    # When cas-admin verify runs dry (no Verifications table is needed)
    code, out, _ = verify(world, capsys, "--org", org, "--dry-run", "--json")

    # Then it names the mapping and wrote no record
    assert code == 0
    assert [m["digest"] for m in summary(out)["would_verify"]] == [digest]
    assert stack.record(backend, digest) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--digest", "sha256:xyz"], "--digest: 'sha256:xyz' is not sha256:<64 hex>"),
        (["--since", "last tuesday"], "--since: 'last tuesday' is not an ISO 8601 time"),
        (["--org", " "], "--org must name an organization"),
        (["--digest", "sha256:" + "a" * 64], "which Verifications table?"),
    ],
    ids=["bad-digest", "bad-since", "blank-org", "no-verifications-table"],
)
def test_bad_input_is_one_line_and_exit_status_2(
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("VERIFICATIONS_TABLE", raising=False)
    code, out, err = verify(world, capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") <= 2  # the error and, at most, a hint
    assert out == ""
