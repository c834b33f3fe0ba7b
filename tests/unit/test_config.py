"""Settings are read once from the environment and validated."""

import pytest

from cas_download.config import MAX_BODY_BYTES_LIMIT, ConfigError, Settings

BASE = {"BACKENDS_TABLE": "backends", "MAPPINGS_TABLE": "mappings"}


def test_defaults_follow_the_spec() -> None:
    settings = Settings.from_env(BASE)
    assert settings.org_claim == "org_id"
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.presign_ttl_seconds == 300


def test_missing_table_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MAPPINGS_TABLE"):
        Settings.from_env({"BACKENDS_TABLE": "b"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRESIGN_TTL_SECONDS", "3601"),
        ("PRESIGN_TTL_SECONDS", "0"),
        ("MAX_BODY_BYTES", "6291456"),  # a 6 MB Lambda response cannot carry this after base64
        ("MAX_BODY_BYTES", "lots"),
        ("REQUEST_DEADLINE_SECONDS", "45"),
    ],
)
def test_out_of_range_values_are_rejected(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})


def test_largest_body_limit_fits_a_lambda_response_after_base64() -> None:
    envelope_allowance = 64 * 1024
    assert 4 * -(-MAX_BODY_BYTES_LIMIT // 3) + envelope_allowance <= 6 * 1024 * 1024


def test_the_link_issuer_is_chainloops_unless_set_and_empty_accepts_any() -> None:
    # Given no CHAINLOOP_CAS_ISSUER, Then tokens must come from Chainloop's control plane (cp.chainloop)
    assert Settings.from_env(BASE).chainloop_cas_issuer == "cp.chainloop"
    # Given it set to nothing, Then any issuer is accepted; given another, that one
    assert Settings.from_env({**BASE, "CHAINLOOP_CAS_ISSUER": ""}).chainloop_cas_issuer is None
    assert (
        Settings.from_env({**BASE, "CHAINLOOP_CAS_ISSUER": "cp.example"}).chainloop_cas_issuer == "cp.example"
    )


def test_a_link_lives_at_most_an_hour_by_default() -> None:
    assert Settings.from_env(BASE).chainloop_link_max_lifetime_seconds == 3600
    assert (
        Settings.from_env(
            {**BASE, "CHAINLOOP_LINK_MAX_LIFETIME_SECONDS": "60"}
        ).chainloop_link_max_lifetime_seconds
        == 60
    )
    with pytest.raises(ConfigError, match="CHAINLOOP_LINK_MAX_LIFETIME_SECONDS"):
        Settings.from_env({**BASE, "CHAINLOOP_LINK_MAX_LIFETIME_SECONDS": "0"})
