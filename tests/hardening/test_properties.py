"""Property-based tests: the digest parser, the claims parser, the candidate order
as the service really walks it, and presigned URL lifetimes.

The candidate order is exercised through the real ``download()`` -> ``serve_with_fallback()`` (mapping
filter by caller, candidate lists, deferral of recently failed backends), with generated orgs, backends
and mappings behind a fake catalog, and ``serve_through`` replaced by a stand-in that fails or serves
as the generated scenario says. What is checked is the sequence of backends actually tried.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cas_download.data.storage.s3 as s3_module
import cas_download.logic.fallback as fallback_module
from cas_download.data.storage.s3 import url_lifetime
from cas_download.digests import digest_hex, parse_digest
from cas_download.domain import (
    Artifact,
    AttemptFailed,
    AttemptReason,
    Backend,
    DownloadRequest,
    Mapping,
    Mode,
    ObjectInfo,
    ValidationStatus,
)
from cas_download.errors import CasError, InvalidDigest, NotFound, Unauthenticated
from cas_download.identity import parse_orgs
from cas_download.logic.deadline import Deadline
from cas_download.logic.download import download
from tests.hardening.figures import count

# ---------------------------------------------------------------------------------------------------
# digests

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
SPEC_DIGEST = re.compile(r"(?:sha256:)?[0-9a-f]{64}", re.IGNORECASE)


def mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=False))


@given(
    hex_part=hex64,
    flips=st.lists(st.booleans(), min_size=64, max_size=64),
    form=st.sampled_from(["sha256:{}", "sha256%3A{}", "sha256%3a{}", "{}"]),
)
def test_every_spec_spelling_of_a_sha256_parses_to_the_lower_case_canonical_digest(
    hex_part: str, flips: list[bool], form: str
) -> None:
    raw = form.format(mixed_case(hex_part, flips))
    assert parse_digest(raw) == f"sha256:{hex_part}"
    count("property examples: digest parser")


@given(hex_part=hex64, form=st.sampled_from(["sha256:{}", "sha256%3A{}", "{}"]))
def test_parsed_digest_round_trips(hex_part: str, form: str) -> None:
    canonical = parse_digest(form.format(hex_part.upper()))
    assert parse_digest(canonical) == canonical
    assert parse_digest(digest_hex(canonical)) == canonical
    assert parse_digest(canonical.replace(":", "%3A")) == canonical
    assert digest_hex(canonical) == hex_part
    count("property examples: digest parser")


def near_misses() -> st.SearchStrategy[str]:
    """Valid digests with one character inserted, deleted or replaced, and other algorithms' digests."""
    valid = st.tuples(st.sampled_from(["sha256:", "sha256%3A", ""]), hex64).map("".join)
    noise = st.characters(codec="utf-8")

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        text = draw(valid)
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            return text[:at] + draw(noise) + text[at:]
        if action == "delete":
            return text[:at] + text[at + 1 :]
        return text[:at] + draw(noise) + text[at + 1 :]

    other_algorithm = st.tuples(
        st.sampled_from(
            ["sha512:", "sha1:", "md5:", "sha384:", "sha3-256:", "blake3:", "SHA-256:", ":", "sha256sum:"]
        ),
        st.integers(0, 130).flatmap(lambda n: st.text("0123456789abcdef", min_size=n, max_size=n)),
    ).map("".join)
    return st.one_of(mutate(), other_algorithm, st.text(), st.text(string.hexdigits + ":%3Ash", max_size=90))


@given(raw=near_misses())
def test_only_a_sha256_of_64_hex_digits_is_ever_accepted(raw: str) -> None:
    try:
        parsed = parse_digest(raw)
    except InvalidDigest:
        count("property examples: digest parser")
        return
    # Accepted: it was a spec spelling of a SHA-256, and the result is its canonical form.
    decoded = unquote(raw)
    assert SPEC_DIGEST.fullmatch(decoded), raw
    assert parsed == "sha256:" + decoded[-64:].lower()
    count("property examples: digest parser")


@given(algorithm=st.sampled_from(["sha512", "sha1", "md5", "sha384", "sha224", "sha3-256"]), data=st.data())
def test_other_algorithms_are_rejected_whatever_their_length(algorithm: str, data: st.DataObject) -> None:
    length = data.draw(st.sampled_from([32, 40, 56, 64, 96, 128]))
    with pytest.raises(InvalidDigest):
        parse_digest(f"{algorithm}:{'a' * length}")
    count("property examples: digest parser")


@given(
    value=st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.lists(st.text()),
        st.binary(),
        st.dictionaries(st.text(), st.text()),
    )
)
def test_a_digest_that_is_not_a_string_is_rejected(value: object) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(value)
    count("property examples: digest parser")


# ---------------------------------------------------------------------------------------------------
# the org claim

org_ids = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters="-_.:@/|"),
    min_size=1,
    max_size=40,
)


@given(
    orgs=st.lists(org_ids, min_size=1, max_size=12),
    form=st.sampled_from(["comma", "space", "comma-space", "jwt-array", "json-array", "list", "padded"]),
)
def test_every_claim_form_names_the_same_orgs_in_order_without_duplicates(orgs: list[str], form: str) -> None:
    claim: Any = {
        "comma": ",".join(orgs),
        "space": " ".join(orgs),
        "comma-space": ", ".join(orgs),
        "jwt-array": "[" + " ".join(orgs) + "]",
        "json-array": json.dumps(orgs, ensure_ascii=False),
        "list": list(orgs),
        "padded": "  " + " ,\t".join(orgs) + "\n",
    }[form]
    assert parse_orgs(claim) == tuple(dict.fromkeys(orgs))
    count("property examples: claims parser")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@given(claim=st.one_of(json_values, st.text(), st.lists(st.text(), max_size=150)))
def test_any_claim_yields_valid_orgs_or_unauthenticated(claim: object) -> None:
    try:
        orgs = parse_orgs(claim)
    except Unauthenticated:
        count("property examples: claims parser")
        return
    # Some orgs: at most 100, unique, non-empty, printable, at most 256 characters, none invented.
    assert 1 <= len(orgs) <= 100
    assert len(set(orgs)) == len(orgs)
    for org in orgs:
        assert org
        assert org.isprintable()
        assert len(org) <= 256
        if isinstance(claim, str):
            assert org in claim
            assert not re.search(r"[\s,]", org)
        else:
            assert isinstance(claim, list | tuple)
            assert org in [item.strip().strip("\"'") for item in claim if isinstance(item, str)]
    count("property examples: claims parser")


def test_more_than_a_hundred_orgs_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        parse_orgs(",".join(f"org-{i}" for i in range(101)))


# ---------------------------------------------------------------------------------------------------
# candidate order, as the service walks it

DIGEST = "sha256:" + "ab" * 32
ORGS = ("o0", "o1", "o2")
OUTSIDER = "outsider"  # an org the callers never belong to
LOCATIONS = ("bucket-a", "bucket-b", "http://127.0.0.1:9/bucket-a")
TIMES = ("2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-06-01T00:00:00Z")
FAILURES = (
    AttemptReason.NOT_FOUND,
    AttemptReason.CREDENTIALS_INVALID,
    AttemptReason.ACCESS_DENIED,
    AttemptReason.UNREACHABLE,
    AttemptReason.TIMEOUT,
    AttemptReason.DIGEST_MISMATCH,
    AttemptReason.SECRET_UNAVAILABLE,
)


@dataclass
class Scenario:
    backends: list[Backend]
    mappings: list[Mapping]
    callers: tuple[str, ...]
    recently_failed: frozenset[str]
    serving: str | None  # the backend that would serve verified bytes if tried
    reasons: dict[str, AttemptReason] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Backend]:
        return {b.id: b for b in self.backends}

    @property
    def visible(self) -> list[Mapping]:
        return [m for m in self.mappings if m.org_id in self.callers]

    @property
    def holding_orgs(self) -> set[str]:
        return {m.org_id for m in self.visible}

    def mapped_ids(self) -> set[str]:
        """Backends that are candidates as mapped ones: live, of the mapping's org."""
        by_id = self.by_id
        return {
            m.backend_id
            for m in self.visible
            if m.backend_id in by_id
            and not by_id[m.backend_id].deleted
            and by_id[m.backend_id].org_id == m.org_id
        }


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    orgs = list(ORGS[: draw(st.integers(1, len(ORGS)))])
    backends = []
    for index in range(draw(st.integers(0, 8))):
        org = draw(st.sampled_from([*orgs, OUTSIDER]))
        backends.append(
            Backend(
                id=f"b{index}",
                org_id=org,
                name=f"{org}-b{index}",
                provider="AWS-S3",
                location=draw(st.sampled_from(LOCATIONS)),
                secret_name=f"cas/{org}/b{index}",
                is_default=draw(st.booleans()),
                is_fallback=draw(st.booleans()),
                validation_status=draw(
                    st.sampled_from([ValidationStatus.OK, ValidationStatus.OK, ValidationStatus.INVALID])
                ),
                created_at=draw(st.sampled_from(TIMES)),
                deleted_at=draw(st.sampled_from([None, None, None, "2025-06-01T00:00:00.000000Z"])),
            )
        )
    ids = [b.id for b in backends] + ["missing-backend"]
    mappings = draw(
        st.lists(
            st.builds(
                lambda org, backend_id, at: Mapping(DIGEST, org, backend_id, at),
                st.sampled_from([*orgs, OUTSIDER]),
                st.sampled_from(ids),
                st.sampled_from(TIMES),
            ),
            max_size=6,
            unique_by=lambda m: (m.org_id, m.backend_id),
        )
    )
    callers = tuple(draw(st.lists(st.sampled_from([*orgs, "stranger"]), min_size=1, max_size=4, unique=True)))
    return Scenario(
        backends=backends,
        mappings=mappings,
        callers=callers,
        recently_failed=frozenset(draw(st.sets(st.sampled_from(ids), max_size=3))),
        serving=draw(st.none() | st.sampled_from(ids)),
        reasons=draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(FAILURES))),
    )


@dataclass
class Walk:
    tried: list[Backend]
    outcome: Artifact | CasError


def walk(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Walk:
    """Run ``download`` over the scenario; every backend the service tries is recorded."""
    catalog = SimpleNamespace(
        mappings_for_digest=lambda digest: list(scenario.mappings),
        org_backends=lambda org: tuple(b for b in scenario.backends if b.org_id == org),
        reread_org_backends=lambda org, since: None,
        now=lambda: 0.0,  # the rows are what the scenario says: nothing newer
    )
    health = SimpleNamespace(
        recently_failed=lambda backend_id: backend_id in scenario.recently_failed,
        observe_failure=lambda backend, reason: None,
        observe_success=lambda backend: None,
    )
    tried: list[Backend] = []

    def serve_through(
        backend: Backend, digest: str, mode: Mode, deadline: Deadline, services: Any, lookup: Any = None
    ) -> Artifact:
        tried.append(backend)
        if backend.id == scenario.serving:
            return Artifact(digest, backend, False, ObjectInfo(size=1), None, url="https://example.invalid/x")
        raise AttemptFailed(scenario.reasons.get(backend.id, AttemptReason.NOT_FOUND), "generated")

    monkeypatch.setattr(fallback_module, "serve_through", serve_through)
    request = DownloadRequest(digest=DIGEST, orgs=scenario.callers, mode=Mode.REDIRECT)
    services: Any = SimpleNamespace(catalog=catalog, health=health, look_ahead=None)
    try:
        outcome: Any = download(request, services, Deadline(60.0))
    except CasError as error:
        outcome = error
    return Walk(tried, outcome)


@pytest.fixture
def patcher() -> Iterator[pytest.MonkeyPatch]:
    """A MonkeyPatch for the whole test: each generated example sets its own stand-in again."""
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def segment(scenario: Scenario, backend: Backend) -> int:
    """0: not marked Invalid; 1: marked Invalid; 2: deferred (failed moments ago)."""
    if backend.id in scenario.recently_failed:
        return 2
    return 1 if backend.is_invalid else 0


def is_mapped(scenario: Scenario, backend: Backend) -> bool:
    return backend.id in scenario.mapped_ids()


@given(scenario=scenarios())
def test_only_backends_of_the_callers_orgs_holding_a_mapping_are_ever_tried(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    result = walk(scenario, patcher)
    if not scenario.visible:
        assert isinstance(result.outcome, NotFound)
        assert result.tried == []
    for backend in result.tried:
        assert backend.org_id in scenario.holding_orgs, (backend, scenario.holding_orgs)
        assert backend.org_id in scenario.callers
    count("property examples: candidate order")


@given(scenario=scenarios())
def test_each_backend_is_tried_at_most_once_and_a_deleted_one_never(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    result = walk(scenario, patcher)
    ids = [b.id for b in result.tried]
    assert len(ids) == len(set(ids)), ids
    assert not [b for b in result.tried if b.deleted]
    count("property examples: candidate order")


@given(scenario=scenarios())
def test_invalid_backends_are_tried_after_every_ok_candidate_mapped_or_not(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    result = walk(scenario, patcher)
    segments = [segment(scenario, b) for b in result.tried]
    assert segments == sorted(segments), "not Invalid, then Invalid, then deferred"
    for part in (0, 1, 2):
        mapped_first = [
            not is_mapped(scenario, b) for b, s in zip(result.tried, segments, strict=True) if s == part
        ]
        assert mapped_first == sorted(mapped_first), f"an org candidate came before a mapped one in {part}"
    count("property examples: candidate order")


@given(scenario=scenarios())
def test_mapped_candidates_go_default_first_then_oldest_mapping(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    result = walk(scenario, patcher)
    oldest = {}
    for m in sorted(scenario.visible, key=lambda m: m.created_at):
        oldest.setdefault(m.backend_id, m.created_at)
    mapped = [b for b in result.tried if is_mapped(scenario, b) and segment(scenario, b) < 2]
    keys = [(b.is_invalid, not b.is_default, oldest[b.id]) for b in mapped]
    assert keys == sorted(keys)
    count("property examples: candidate order")


@given(scenario=scenarios())
def test_every_eligible_candidate_is_tried_before_giving_up(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    scenario.serving = None
    result = walk(scenario, patcher)
    tried = {b.id for b in result.tried}
    assert scenario.mapped_ids() <= tried
    for org in scenario.holding_orgs:
        live = sorted(
            (b for b in scenario.backends if b.org_id == org and not b.deleted),
            key=lambda b: (b.created_at, b.id),
        )
        defaults = [b for b in live if b.is_default][:1]
        fallbacks = [b for b in live if b.is_fallback and not b.is_default][:1]
        for backend in defaults + fallbacks:
            assert backend.id in tried, f"{org}'s {backend.name} was never tried"
    if scenario.visible:
        assert isinstance(result.outcome, CasError)
        assert [a.backend.id for a in result.outcome.attempts] == [b.id for b in result.tried]
    count("property examples: candidate order")


@given(scenario=scenarios())
def test_a_served_artifact_says_whether_it_came_from_the_first_mapped_candidate(
    scenario: Scenario, patcher: pytest.MonkeyPatch
) -> None:
    result = walk(scenario, patcher)
    if isinstance(result.outcome, Artifact):
        assert result.outcome.backend.id == scenario.serving == result.tried[-1].id
        by_id = scenario.by_id
        first_mapped = min(
            (by_id[i] for i in scenario.mapped_ids()),
            key=lambda b: (
                b.is_invalid,
                not b.is_default,
                min(m.created_at for m in scenario.visible if m.backend_id == b.id),
                b.id,
            ),
            default=None,
        )
        assert result.outcome.fallback == (first_mapped is None or first_mapped.id != scenario.serving)
    count("property examples: candidate order")


def test_an_orgs_default_is_tried_even_when_another_orgs_mapping_names_it(
    patcher: pytest.MonkeyPatch,
) -> None:
    # Given org o1 holding the digest through b-mapped, o1's default b-default, and an inconsistent
    # mapping of org o0 naming b-default (a backend of o1), for a caller in both orgs
    mapped = Backend("b-mapped", "o1", "o1-mapped", "AWS-S3", "bucket-a", "cas/o1/mapped")
    default = Backend(
        "b-default", "o1", "o1-default", "AWS-S3", "bucket-a", "cas/o1/default", is_default=True
    )
    scenario = Scenario(
        backends=[mapped, default],
        mappings=[Mapping(DIGEST, "o0", "b-default", TIMES[0]), Mapping(DIGEST, "o1", "b-mapped", TIMES[1])],
        callers=("o0", "o1"),
        recently_failed=frozenset(),
        serving="b-default",
    )

    # When the mapped backend does not have the object
    result = walk(scenario, patcher)

    # Then o1's default is tried, and serves
    assert [b.id for b in result.tried] == ["b-mapped", "b-default"]
    assert isinstance(result.outcome, Artifact)


# ---------------------------------------------------------------------------------------------------
# presigned URL lifetime


# The service's clock, frozen: s3.url_lifetime reads datetime.now(UTC), so the boundary is exact.
FROZEN_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MIN_URL_LIFETIME = 30  # seconds of temporary credentials a URL needs (SPEC: below it, credentials_invalid)


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenDatetime:
        return cls.fromtimestamp(FROZEN_NOW.timestamp(), tz)


@pytest.fixture
def frozen_clock(patcher: pytest.MonkeyPatch) -> datetime:
    patcher.setattr(s3_module, "datetime", FrozenDatetime)
    return FROZEN_NOW


@given(configured=st.integers(1, 3600), credentials_left=st.one_of(st.none(), st.integers(-600, 20_000)))
def test_url_lifetime_never_exceeds_the_setting_nor_outlives_the_credentials(
    configured: int, credentials_left: int | None, frozen_clock: datetime
) -> None:
    # Given credentials expiring ``credentials_left`` seconds from a frozen now (or never)
    expires_at = None if credentials_left is None else frozen_clock + timedelta(seconds=credentials_left)
    if credentials_left is not None and credentials_left < MIN_URL_LIFETIME:
        # Then credentials about to expire are not used at all
        with pytest.raises(AttemptFailed) as refused:
            url_lifetime(configured, expires_at)
        assert refused.value.reason is AttemptReason.CREDENTIALS_INVALID
        count("property examples: URL lifetime")
        return
    # Then the URL lives the setting, cut exactly to what the credentials have left
    lifetime = url_lifetime(configured, expires_at)
    expected = configured if credentials_left is None else min(configured, credentials_left)
    assert lifetime == expected
    count("property examples: URL lifetime")


@pytest.mark.parametrize(
    ("credentials_left", "lifetime"),
    [(29, None), (30, 30), (31, 31)],
    ids=["29s-refused", "30s-served-for-30s", "31s-served-for-31s"],
)
def test_the_30_second_cutoff_of_temporary_credentials_is_exact(
    credentials_left: int, lifetime: int | None, frozen_clock: datetime
) -> None:
    # Given credentials expiring 29, 30 or 31 seconds from a frozen now, and a 300 s setting
    expires_at = frozen_clock + timedelta(seconds=credentials_left)
    if lifetime is None:
        # Then below 30 s they are credentials_invalid, never a URL
        with pytest.raises(AttemptFailed) as refused:
            url_lifetime(300, expires_at)
        assert refused.value.reason is AttemptReason.CREDENTIALS_INVALID
    else:
        # Then from 30 s on a URL is signed, living exactly as long as the credentials
        assert url_lifetime(300, expires_at) == lifetime
