"""Chainloop CAS download tokens (spec "Chainloop download links"): every token here is minted the
way Chainloop's control plane mints it (cas_admin.chainloop_link.mint_token), or forged from one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cas_download.config import ConfigError
from cas_download.errors import Unauthenticated
from cas_download.link_tokens import LinkGrant, LinkTokenVerifier
from tests.support.chainloop_links import b64url, claims_of, control_plane_keys, forge, new_key_pair

ORG = "3f1e6c2a-8d4b-4c1e-9a7f-2b5d8e0c1a44"
SECRET = f"chainloop/{ORG}/0b9a7c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d"
KEY, NEXT_KEY = control_plane_keys()


# The verifier's clock in every test: no rule reads the wall clock (issue 28)
NOW = 1_900_000_000.0


def verifier(
    *keys: str, issuer: str | None = None, max_lifetime: int = 3600, now: float = NOW
) -> LinkTokenVerifier:
    return LinkTokenVerifier(keys or (KEY.public_pem,), issuer, max_lifetime, clock=lambda: now)


def valid(**fields: object) -> str:
    """A token minted at NOW (unless ``now=`` says otherwise), as Chainloop mints it: exp 30 s later."""
    return KEY.mint(**{"backend": "AWS-S3", "secret_id": SECRET, "org_id": ORG, "now": NOW, **fields})


def refused(token: str, *, check: LinkTokenVerifier | None = None) -> str:
    with pytest.raises(Unauthenticated) as refusal:
        (check or verifier()).verify(token)
    assert not token or token not in refusal.value.message
    return refusal.value.message


def test_a_token_as_chainloop_mints_it_grants_its_backend_in_its_org() -> None:
    # Given a token minted as the control plane's CASRedirectService does
    token = valid()
    # Then its claims are Chainloop's, in Go's order
    assert list(claims_of(token)) == [
        "iss",
        "aud",
        "exp",
        "role",
        "secret-id",
        "backend",
        "maxbytes",
        "org-id",
    ]
    assert jwt.get_unverified_header(token) == {"alg": "ES512", "typ": "JWT"}
    # When verified, Then it grants the backend of that secret in that org
    assert verifier().verify(token) == LinkGrant(SECRET, "AWS-S3", ORG)


def test_a_token_of_an_older_release_names_no_org() -> None:
    assert verifier().verify(valid(org_id=None)) == LinkGrant(SECRET, "AWS-S3", None)


def test_a_token_signed_with_the_second_configured_key_is_accepted() -> None:
    # Given both keys of an overlapping rotation configured, When a token of the new key comes
    token = NEXT_KEY.mint(backend="OCI", secret_id=SECRET, org_id=ORG, now=NOW)
    # Then it is accepted
    assert verifier(KEY.public_pem, NEXT_KEY.public_pem).verify(token).backend == "OCI"


def test_an_expired_token_is_refused_after_the_leeway() -> None:
    # Given a token minted at NOW (exp NOW + 30), When the verifier's clock reads 61 s later
    # Then it has expired (30 s of life, 30 s of leeway)
    assert refused(valid(), check=verifier(now=NOW + 61)) == "the token has expired"


def test_a_token_expired_within_the_leeway_is_accepted() -> None:
    assert verifier(now=NOW + 50).verify(valid()).org_id == ORG


def test_expiry_follows_the_verifiers_clock_not_the_wall_clock() -> None:
    # Given a token that expired long ago by the wall clock, and a verifier whose clock is its minting time
    token = valid(now=1_000_000_000.0)

    # Then the verifier's clock decides: valid at its time, expired a minute later
    assert verifier(now=1_000_000_000.0).verify(token).org_id == ORG
    assert refused(token, check=verifier(now=1_000_000_061.0)) == "the token has expired"


def test_a_token_not_valid_yet_is_refused() -> None:
    token = valid(extra_claims={"nbf": int(NOW) + 120})
    assert refused(token) == "the token is not valid yet (nbf or iat in the future)"


def test_a_token_that_lives_ten_years_is_refused() -> None:
    # Given a token valid for ten years (Chainloop mints 30 s)
    token = valid(expires_in=10 * 365 * 24 * 3600)

    # Then the lifetime cap refuses it, naming the setting
    assert refused(token) == "the token lives longer than 3600 s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"


def test_the_lifetime_is_counted_from_iat_when_the_token_has_one() -> None:
    # Given tokens issued an hour before NOW, one living exactly the cap, one a second longer
    issued = NOW - 3000
    at_cap = valid(now=issued, expires_in=3600, extra_claims={"iat": int(issued)})
    over_cap = valid(now=issued, expires_in=3601, extra_claims={"iat": int(issued)})

    # Then the cap is inclusive
    assert verifier().verify(at_cap).org_id == ORG
    assert refused(over_cap) == "the token lives longer than 3600 s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"


def test_without_iat_the_lifetime_is_counted_from_now() -> None:
    # Given tokens with no iat (as Chainloop mints them) expiring 3600 s and 3601 s after NOW
    assert verifier().verify(valid(expires_in=3600)).org_id == ORG
    assert refused(valid(expires_in=3601)) == (
        "the token lives longer than 3600 s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"
    )


def test_a_shorter_configured_lifetime_is_applied() -> None:
    assert refused(valid(expires_in=120), check=verifier(max_lifetime=60)) == (
        "the token lives longer than 60 s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"
    )


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_a_time_claim_that_is_not_a_number_is_refused(claim: str) -> None:
    assert refused(valid(extra_claims={claim: "soon"})) == f"the token's {claim} is not a number"


def test_a_token_for_another_audience_is_refused() -> None:
    assert refused(valid(extra_claims={"aud": ["controlplane.chainloop"]})) == (
        "the token's audience is not artifact-cas.chainloop"
    )


def test_an_uploader_token_is_refused() -> None:
    assert refused(valid(role="uploader")) == "the token's role is not downloader"


@pytest.mark.parametrize(("claim", "message"), [("secret_id", "secret-id"), ("backend", "backend")])
def test_a_token_without_secret_or_backend_is_refused(claim: str, message: str) -> None:
    assert refused(valid(**{claim: ""})) == f"the token names no {message}"


def test_the_issuer_pin_refuses_another_issuer() -> None:
    pinned = verifier(issuer="cp.chainloop")
    assert pinned.verify(valid()).org_id == ORG
    assert (
        refused(valid(issuer="someone.else"), check=pinned) == "the token's issuer is not the configured one"
    )


def test_a_token_signed_by_an_unknown_key_is_refused() -> None:
    stranger = new_key_pair()
    token = stranger.mint(backend="AWS-S3", secret_id=SECRET, org_id=ORG)
    assert refused(token) == "the token's signature matches none of the configured keys"


def test_alg_none_is_refused() -> None:
    token = forge({"alg": "none", "typ": "JWT"}, claims_of(valid()))
    assert refused(token) == "the token is not signed ES512"


def test_hs512_keyed_with_the_public_key_pem_is_refused() -> None:
    # The classic confusion: an HMAC whose key is the (public) PEM text the verifier holds
    signing_input = ".".join(valid().split(".")[:2]).replace(
        b64url(b'{"alg":"ES512","typ":"JWT"}'), b64url(b'{"alg":"HS512","typ":"JWT"}')
    )
    mac = hmac.new(KEY.public_pem.encode(), signing_input.encode(), hashlib.sha512).digest()
    assert refused(f"{signing_input}.{b64url(mac)}") == "the token is not signed ES512"


def test_rs256_and_es256_are_refused() -> None:
    claims = claims_of(valid())
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert refused(jwt.encode(claims, rsa_pem, algorithm="RS256")) == "the token is not signed ES512"
    p256 = new_key_pair(ec.SECP256R1())
    assert refused(jwt.encode(claims, p256.private_pem, algorithm="ES256")) == "the token is not signed ES512"


def test_an_es512_header_over_another_signature_is_refused() -> None:
    # Given a token whose header says ES512 but whose signature is ES256's (shorter)
    p256 = new_key_pair(ec.SECP256R1())
    es256 = jwt.encode(claims_of(valid()), p256.private_pem, algorithm="ES256")
    header = b64url(b'{"alg":"ES512","typ":"JWT"}')
    token = ".".join([header, *es256.split(".")[1:]])
    assert refused(token) == "the token's signature matches none of the configured keys"


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = valid().split(".")
    claims = claims_of(valid())
    claims["org-id"] = "another-org"
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    assert refused(f"{header}.{payload}.{signature}") == (
        "the token's signature matches none of the configured keys"
    )


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "eyJ.eyJ.", "...", "é.é.é", "a" * 9000])
def test_garbage_is_refused(garbage: str) -> None:
    assert refused(garbage) in {"the token is not a JWT", "the token is not a valid JWT"}


def test_a_key_that_is_not_p521_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="P-521"):
        LinkTokenVerifier((new_key_pair(ec.SECP256R1()).public_pem,), None)


def test_a_valid_header_over_claims_with_a_non_ascii_character_is_refused_not_a_server_error() -> None:
    # Given a real token with one non-ASCII character added to its claims segment
    header, claims, signature = valid().split(".")

    # Then it is refused as no JWT (it once reached the signature check and raised UnicodeEncodeError)
    assert refused(f"{header}.{claims}\u00e9.{signature}") == "the token is not a JWT"


# ---------------------------------------------------------------------------------------------------
# the edges of each rule (mutation testing: make mutate's tokens target)


def test_the_leeway_past_exp_is_thirty_seconds_exactly() -> None:
    # Given a token minted at NOW (exp NOW + 30): accepted 59 s later, expired at 60 s (30 + 30)
    assert verifier(now=NOW + 59).verify(valid()).org_id == ORG
    assert refused(valid(), check=verifier(now=NOW + 60)) == "the token has expired"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_in_the_future_is_accepted_up_to_the_leeway(claim: str) -> None:
    # Given tokens whose nbf or iat is 30 s (the leeway) and 31 s after the verifier's clock
    at_leeway = valid(extra_claims={claim: int(NOW) + 30})
    past_leeway = valid(extra_claims={claim: int(NOW) + 31})

    # Then the first is valid, the second not yet
    assert verifier().verify(at_leeway).org_id == ORG
    assert refused(past_leeway) == "the token is not valid yet (nbf or iat in the future)"


def test_a_token_of_the_longest_length_is_read_and_one_character_more_is_not() -> None:
    # Given valid tokens padded by an extra claim to exactly 8,192 characters and to 8,193
    tokens = {len(t): t for t in (valid(extra_claims={"pad": "x" * n}) for n in range(5_650, 5_750))}
    assert 8_192 in tokens
    assert 8_193 in tokens

    # Then the longest a token may be is read; one more character is no token at all
    assert verifier().verify(tokens[8_192]).org_id == ORG
    assert refused(tokens[8_193]) == "the token is not a JWT"


def test_a_segment_of_impossible_base64_length_is_no_jwt() -> None:
    # Given a real token whose header segment has one character too many for any base64 (4n + 1)
    header, claims, signature = valid().split(".")
    longer = header + "A" * ((1 - len(header)) % 4 or 4)
    assert len(longer) % 4 == 1

    # Then it is refused as no JWT (the decoder's own error, never a server error)
    assert refused(f"{longer}.{claims}.{signature}") == "the token is not a JWT"


def test_a_grant_cannot_be_changed_once_made() -> None:
    grant = verifier().verify(valid())
    with pytest.raises(AttributeError):
        grant.org_id = "another-org"  # type: ignore[misc]


@pytest.mark.parametrize("change", ["one byte short", "one byte more"])
def test_a_p521_key_of_the_wrong_length_is_a_configuration_error(change: str) -> None:
    der = base64.b64decode("".join(KEY.public_pem.strip().splitlines()[1:-1]))
    altered = der[:-1] if change == "one byte short" else der + b"\x00"
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(altered).decode() + "\n-----END PUBLIC KEY-----"
    with pytest.raises(ConfigError, match="every key must be an EC P-521 public key"):
        LinkTokenVerifier((pem,), None)


def test_a_p521_key_whose_point_is_not_on_the_curve_is_a_configuration_error() -> None:
    # Given the SubjectPublicKeyInfo of a P-521 key whose point's y coordinate is changed
    der = bytearray(base64.b64decode("".join(KEY.public_pem.strip().splitlines()[1:-1])))
    der[-1] ^= 0x01
    pem = (
        "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(bytes(der)).decode() + "\n-----END PUBLIC KEY-----"
    )

    # Then the key is refused at configuration: no token could ever be checked against it
    with pytest.raises(ConfigError, match="a key cannot be read"):
        LinkTokenVerifier((pem,), None)


def signed(claims: dict[str, object]) -> str:
    """Claims Chainloop never mints, signed with its key (PyJWT, as the control plane signs)."""
    key = serialization.load_pem_private_key(KEY.private_pem, password=None)
    return jwt.encode(claims, key, algorithm="ES512")  # type: ignore[arg-type]


@pytest.mark.parametrize("claim", ["exp", "aud"])
@pytest.mark.parametrize("state", ["absent", "null"])
def test_a_token_without_exp_or_aud_is_refused_naming_it(claim: str, state: str) -> None:
    claims = claims_of(valid())
    if state == "absent":
        del claims[claim]
    else:
        claims[claim] = None
    assert refused(signed(claims)) == f"the token has no {claim} claim"


@pytest.mark.parametrize("issuer", ["a.attacker", "zz.attacker"])
def test_the_issuer_pin_refuses_issuers_on_either_side_of_it(issuer: str) -> None:
    # (an ordering comparison in place of the equality would let one side through)
    assert refused(valid(issuer=issuer), check=verifier(issuer="cp.chainloop")) == (
        "the token's issuer is not the configured one"
    )


@pytest.mark.parametrize("role", ["admin", "uploader", "downloaders"])
def test_only_the_downloader_role_is_granted(role: str) -> None:
    assert refused(valid(role=role)) == "the token's role is not downloader"


def test_the_lifetime_cap_defaults_to_an_hour() -> None:
    default = LinkTokenVerifier((KEY.public_pem,), None, clock=lambda: NOW)
    assert default.verify(valid(expires_in=3600)).org_id == ORG
    assert refused(valid(expires_in=3601), check=default) == (
        "the token lives longer than 3600 s (CHAINLOOP_LINK_MAX_LIFETIME_SECONDS)"
    )


def test_a_key_whose_base64_holds_a_foreign_character_is_a_configuration_error() -> None:
    lines = KEY.public_pem.strip().splitlines()
    lines[1] = lines[1][:10] + "!" + lines[1][10:]
    with pytest.raises(ConfigError, match="a key cannot be read"):
        LinkTokenVerifier(("\n".join(lines),), None)


def test_a_key_of_p521_length_naming_another_curve_is_a_configuration_error() -> None:
    # Given a P-521 SubjectPublicKeyInfo whose curve OID's last byte is changed (secp521r1 -> another)
    der = bytearray(base64.b64decode("".join(KEY.public_pem.strip().splitlines()[1:-1])))
    oid_end = bytes(der).index(bytes.fromhex("2b81040023")) + 4
    der[oid_end] ^= 0x01
    pem = (
        "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(bytes(der)).decode() + "\n-----END PUBLIC KEY-----"
    )
    with pytest.raises(ConfigError, match="every key must be an EC P-521 public key"):
        LinkTokenVerifier((pem,), None)


@pytest.mark.parametrize("dots", ["a.b", "a.b.c.d"])
def test_a_token_of_other_than_three_segments_is_no_jwt(dots: str) -> None:
    assert refused(dots) == "the token is not a JWT"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_in_the_past_is_accepted(claim: str) -> None:
    assert verifier().verify(valid(extra_claims={claim: int(NOW) - 10})).org_id == ORG


def test_a_signature_segment_that_is_no_base64url_is_refused() -> None:
    header, claims, _signature = valid().split(".")
    assert (
        refused(f"{header}.{claims}.not*base64")
        == "the token's signature matches none of the configured keys"
    )
