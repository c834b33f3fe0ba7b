"""Fuzzing the Chainloop link route (spec "Chainloop download links"): malformed tokens and headers
always get a JSON 4xx through the handler Lambda runs, never a 500 and never the token echoed back.

The app has the control plane's key configured and tables of its own with no backend, so no case can
serve: a token that passes every rule meets an org without live backends (404 ``not_found``), any
other is 401 ``unauthenticated`` (or 400 for a bad digest or mode). Each response is judged by the
oracle of ``test_event_fuzz.py`` (Lambda proxy form, the status of its code, JSON body, no CR/LF).

Cases: every mutation of a token as Chainloop mints it (each segment replaced, truncated, re-encoded,
with headers of every ``alg`` and claims of every wrong type), sent in ``t``, in ``Authorization``
under odd schemes, and both; then hypothesis piles random tokens and headers.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas_download.app import App
from cas_download.config import Settings
from tests.hardening.test_event_fuzz import Fuzzer
from tests.support.chainloop_links import b64url, claims_of, control_plane_keys, link_event, new_key_pair
from tests.support.moto_servers import AwsServers
from tests.support.tables import create_tables

KEY, _ = control_plane_keys()
STRANGER = new_key_pair()
DIGEST = "sha256:" + "ab" * 32
ORG = "fuzz-org"
DIGEST_FORMS = (DIGEST, DIGEST.removeprefix("sha256:"), DIGEST.replace(":", "%3A"), "sha256:zz", "")
MODES = (None, "url", "body", "bogus")
LINK_CODES = {"unauthenticated", "not_found", "invalid_digest", "invalid_mode"}


@pytest.fixture(scope="module")
def link_app(aws_servers: AwsServers) -> App:
    tables = create_tables(aws_servers, uuid.uuid4().hex[:12])
    settings_ = Settings(
        backends_table=tables.backends,
        mappings_table=tables.mappings,
        chainloop_cas_public_keys=(KEY.public_pem,),
    )
    return App.create(settings_)


class LinkFuzzer(Fuzzer):
    def send(self, token: str | None, *, header: str | None = None, **kw: Any) -> None:
        headers = {"Authorization": header} if header is not None else None
        event = link_event(kw.pop("digest", DIGEST), token, headers=headers, **kw)
        response = self.check(event, f"token={token!r:.120} header={header!r:.120}")
        if response is None:
            return
        status, body = response["statusCode"], response.get("body") or ""
        if not 400 <= status < 500:
            self.failures.append(f"token={token!r:.120}: status {status}, not a 4xx")
        elif body and json.loads(body)["error"]["code"] not in LINK_CODES:
            self.failures.append(f"token={token!r:.120}: code {json.loads(body)['error']['code']}")
        for secret in (token, header):
            if secret and len(secret) >= 16 and secret in json.dumps(response):
                self.failures.append(f"token={secret!r:.60}: echoed in the response")


def valid_token(**fields: Any) -> str:
    return KEY.mint(**{"backend": "AWS-S3", "secret_id": "chainloop/x/y", "org_id": ORG, **fields})


HEADERS: tuple[Any, ...] = (
    {"alg": "none"},
    {"alg": "None"},
    {"alg": "HS256"},
    {"alg": "HS512"},
    {"alg": "RS256"},
    {"alg": "ES256"},
    {"alg": "ES384"},
    {"alg": "PS512"},
    {"alg": "EdDSA"},
    {"alg": "ES512", "crit": ["exp"]},
    {"alg": "ES512", "kid": "../../etc/passwd"},
    {"alg": "ES512", "jku": "http://169.254.169.254/"},
    {"alg": ["ES512"]},
    {"alg": None},
    {"alg": 512},
    {},
    [],
    "ES512",
    None,
)
WRONG_VALUES: tuple[Any, ...] = (None, 0, -1, 1e308, True, "", [], {}, ["downloader"], "x" * 5000, "\ud800")
CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "role", "secret-id", "backend", "maxbytes", "org-id")


def segment_mutations(token: str) -> Iterator[str]:
    header, payload, signature = token.split(".")
    yield from (
        f"{header}.{payload}",
        f"{header}.{payload}.",
        f"{header}..{signature}",
        f".{payload}.{signature}",
    )
    yield from (token + ".", token + ".x", token * 2, token[: len(token) // 2], token[:-1], token + "A")
    yield from (token.replace("-", "+"), token.replace("_", "/"), token + "==", token.upper(), token.lower())
    yield from (f"{header}.{payload}.{signature[::-1]}", f"{header}.{signature}.{payload}")
    yield from (f"{h}.{payload}.{signature}" for h in ("e30", "bnVsbA", "W10", "!!!!", "eyJ", "ey" * 2000))
    yield from (f"{header}.{p}.{signature}" for p in ("e30", "bnVsbA", "W10", "IjEi", "!!!!", "eyJ"))


def header_mutations(claims: dict[str, Any]) -> Iterator[str]:
    for header in HEADERS:
        encoded = b64url(json.dumps(header).encode())
        payload = b64url(json.dumps(claims).encode())
        for signature in (b"", b"\x00" * 132, b"sig", base64.b64decode("AAAA") * 44):
            yield f"{encoded}.{payload}.{b64url(signature)}"


def signed(claims: object, private_pem: bytes = KEY.private_pem) -> str:
    """Any JSON payload signed ES512 (what PyJWT's claim checks would refuse to encode, too)."""
    payload = json.dumps(claims).encode("utf-8", "surrogatepass")
    return jwt.api_jws.encode(payload, private_pem, algorithm="ES512")


def claim_mutations(claims: dict[str, Any]) -> Iterator[str]:
    for claim, value in itertools.product(CLAIMS, WRONG_VALUES):
        yield signed({**claims, claim: value})
        yield signed({**claims, claim: value}, STRANGER.private_pem)
    yield from (signed(document) for document in ([], "x", 1, None, {}, [claims]))


AUTH_SCHEMES = (
    "Bearer {}",
    "bearer {}",
    "BEARER  {}",
    "Basic {}",
    "{}",
    "Bearer",
    "Bearer ",
    "Token {}",
    "Bearer {} {}",
)


def test_malformed_tokens_and_headers_always_get_a_json_4xx(link_app: App) -> None:
    fuzzer = LinkFuzzer(link_app)
    token = valid_token()
    claims = claims_of(token)
    corpus = [
        *segment_mutations(token),
        *header_mutations(claims),
        *claim_mutations(claims),
        valid_token(org_id=None),
        valid_token(role="uploader"),
        valid_token(now=time.time() - 3600),
        "",
        " ",
        "\x00",
        "\r\n",
        "A" * 20_000,
    ]
    for candidate in corpus:
        for digest, mode in itertools.product(DIGEST_FORMS, MODES):
            fuzzer.send(candidate, digest=digest, query={"mode": mode} if mode else None)
        for scheme in AUTH_SCHEMES:
            fuzzer.send(None, header=scheme.format(candidate, candidate))
        fuzzer.send(candidate, header=f"Bearer {token}")
        fuzzer.send(candidate, method="HEAD")
        fuzzer.send(candidate, query={"filename": candidate[:300], "mode": "body"})
    fuzzer.assert_clean("chainloop link tokens")
    assert fuzzer.cases >= 10_000


@settings(max_examples=2000, deadline=None)
@given(
    token=st.one_of(st.text(), st.from_regex(r"[A-Za-z0-9_=+/-]{0,300}(\.[A-Za-z0-9_=+/-]{0,300}){0,4}")),
    scheme=st.sampled_from(AUTH_SCHEMES),
    in_header=st.booleans(),
    digest=st.one_of(st.just(DIGEST), st.text(max_size=90)),
    query=st.dictionaries(st.sampled_from(["t", "mode", "filename", "x"]), st.text(max_size=50), max_size=3),
)
def test_random_tokens_and_headers_get_a_json_4xx(
    link_app: App, token: str, scheme: str, in_header: bool, digest: str, query: dict[str, str]
) -> None:
    fuzzer = LinkFuzzer(link_app)
    header = scheme.format(token, token) if in_header else None
    fuzzer.send(None if in_header else token, header=header, digest=digest, query=query)
    fuzzer.assert_clean("chainloop link tokens (hypothesis)")
