"""The candidates of a Chainloop link (spec "Chainloop download links"): the token's backend first,
then the mapped ones, then the org's default and fallback; Invalid ones last; never another org's."""

from __future__ import annotations

import pytest

from cas_download.config import ConfigError, Settings
from cas_download.domain import Backend, Mapping, ValidationStatus
from cas_download.logic.candidates import TokenMapping, plan_candidates
from tests.support.chainloop_links import new_key_pair

DIGEST = "sha256:" + "a" * 64


def row(name: str, org: str = "org", **flags: object) -> Backend:
    return Backend(
        id=name,
        org_id=org,
        name=name,
        provider="AWS-S3",
        location=f"bucket-{name}",
        secret_name=f"s/{name}",
        created_at="2025-01-01T00:00:00Z",
        **flags,
    )  # type: ignore[arg-type]


def names(mappings: list[Mapping], rows: list[Backend]) -> tuple[list[str], str | None]:
    plan = plan_candidates(mappings, {"org": rows})
    return [b.name for b in plan.order], plan.primary.name if plan.primary else None


def test_the_tokens_backend_comes_before_a_mapped_default_and_is_the_primary() -> None:
    rows = [row("default", is_default=True), row("token"), row("fallback", is_fallback=True)]
    mappings = [TokenMapping(DIGEST, "org", "token"), Mapping(DIGEST, "org", "default", "2025-02-01")]
    assert names(mappings, rows) == (["token", "default", "fallback"], "token")


def test_a_plain_mapping_keeps_the_default_first() -> None:
    # Without a token mapping the order of Resolution 2.1 is unchanged: the default first
    rows = [row("default", is_default=True), row("other")]
    mappings = [
        Mapping(DIGEST, "org", "other", "2025-01-01"),
        Mapping(DIGEST, "org", "default", "2025-02-01"),
    ]
    assert names(mappings, rows)[0] == ["default", "other"]


def test_an_invalid_token_backend_goes_after_the_orgs_ok_default() -> None:
    rows = [row("default", is_default=True), row("token", validation_status=ValidationStatus.INVALID)]
    assert names([TokenMapping(DIGEST, "org", "token")], rows)[0] == ["default", "token"]


def test_a_token_backend_without_a_row_leaves_the_default_and_fallback() -> None:
    rows = [row("default", is_default=True), row("fallback", is_fallback=True), row("idle")]
    assert names([TokenMapping(DIGEST, "org", "")], rows) == (["default", "fallback"], None)


def test_another_orgs_row_is_never_a_candidate() -> None:
    rows = [row("theirs", org="other", is_default=True)]
    assert names([TokenMapping(DIGEST, "org", "theirs")], rows) == ([], None)


def test_public_keys_are_read_in_every_form_a_template_parameter_carries() -> None:
    pem = new_key_pair().public_pem
    env = {"BACKENDS_TABLE": "b", "MAPPINGS_TABLE": "m"}
    for form in (pem, pem.replace("\n", " "), pem.replace("\n", "\\n"), pem + pem):
        keys = Settings.from_env({**env, "CHAINLOOP_CAS_PUBLIC_KEYS": form}).chainloop_cas_public_keys
        assert set(keys) == {pem}
    assert Settings.from_env(env).chainloop_cas_public_keys == ()
    with pytest.raises(ConfigError, match="PEM public keys"):
        Settings.from_env({**env, "CHAINLOOP_CAS_PUBLIC_KEYS": "not a key"})
    with pytest.raises(ConfigError, match="base64"):
        Settings.from_env(
            {**env, "CHAINLOOP_CAS_PUBLIC_KEYS": "-----BEGIN PUBLIC KEY-----!!-----END PUBLIC KEY-----"}
        )
