"""The /v1 route's cold start does not pay for Chainloop links: PyJWT and the token verifier are
imported on the first /download request, not with the handler."""

from __future__ import annotations

from tests.unit.test_lazy_providers import loaded_by_the_handlers, printed_by_a_fresh_interpreter

JOSE = ("jwt", "cas_download.link_tokens", "cas_download.handlers.links", "cas_download.logic.links")


def test_importing_the_handlers_loads_no_jose_library() -> None:
    # Given the download and validator handlers, imported as Lambda imports them
    out = loaded_by_the_handlers(f"m in {JOSE!r}")
    # Then neither PyJWT nor the token verifier is loaded
    assert out == "[]"


def test_a_v1_request_loads_no_jose_library_and_a_link_request_does() -> None:
    # Given a container that answers a /v1 request, then a /download one (no tables: both fail early)
    probe = (
        "import sys\n"
        "from cas_download.app import App\n"
        "from cas_download.config import Settings\n"
        "from cas_download.handlers.download import handle\n"
        "from tests.support.chainloop_links import control_plane_keys, link_event\n"
        "from tests.support.events import FakeLambdaContext, load_event\n"
        f"loaded = lambda: sorted(m for m in sys.modules if m in {JOSE!r})\n"
        "app = App.create(Settings('b', 'm', chainloop_cas_public_keys=(control_plane_keys()[0].public_pem,)))\n"
        "handle(load_event('get_invalid_digest'), FakeLambdaContext(), app)\n"
        "print('loaded:', [m for m in loaded() if m.startswith('cas_download')])\n"
        "handle(link_event('sha256:zz', 'x.y.z'), FakeLambdaContext(), app)\n"
        "print('loaded:', [m for m in loaded() if m.startswith('cas_download')])\n"
    )
    out = printed_by_a_fresh_interpreter(probe)
    after_v1, after_link = [
        line.removeprefix("loaded: ") for line in out.splitlines() if line.startswith("loaded:")
    ]
    # Then the /v1 request loaded no link module, and the /download request did
    assert after_v1 == "[]"
    assert after_link == (
        "['cas_download.handlers.links', 'cas_download.link_tokens', 'cas_download.logic.links']"
    )


def test_verifying_a_link_token_loads_cryptographys_ecdsa_and_not_pyjwt() -> None:
    # Given a token signed ES512 the way Chainloop signs it, made here with cryptography alone
    probe = (
        "import base64, json, sys, time\n"
        "from cryptography.hazmat.primitives import hashes, serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature\n"
        "b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()\n"
        "key = ec.generate_private_key(ec.SECP521R1())\n"
        "pem = key.public_key().public_bytes(serialization.Encoding.PEM,"
        " serialization.PublicFormat.SubjectPublicKeyInfo).decode()\n"
        "claims = {'iss': 'cp.chainloop', 'aud': ['artifact-cas.chainloop'], 'exp': int(time.time()) + 30,"
        " 'role': 'downloader', 'secret-id': 's', 'backend': 'AWS-S3', 'org-id': 'o'}\n"
        'signing_input = b64(b\'{"alg":"ES512","typ":"JWT"}\') + \'.\' + b64(json.dumps(claims).encode())\n'
        "r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA512())))\n"
        "token = signing_input + '.' + b64(r.to_bytes(66, 'big') + s.to_bytes(66, 'big'))\n"
        "from cas_download.link_tokens import LinkTokenVerifier\n"
        "print(LinkTokenVerifier((pem,), 'cp.chainloop').verify(token).org_id, 'jwt' in sys.modules)\n"
    )

    # When the /download route's verifier checks it in a fresh interpreter
    out = printed_by_a_fresh_interpreter(probe)

    # Then it is accepted, and PyJWT (about 60 ms of the route's cold start) was never imported
    assert out == "o False"
