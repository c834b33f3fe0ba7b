"""Event fuzzing: generated and mutated API Gateway events always get an error
response of the spec's form through the handler Lambda runs (``instrumented_handler(app)``), never an unhandled exception.

Every case goes through the real handler and app, against tables of its own that hold no mapping (so no
case can succeed: every answer must be an error). Checked for each response:

* a Lambda proxy response (statusCode int, headers str -> str, body str, isBase64Encoded bool) that the
  Lambda runtime can serialize (``json.dumps`` works: no lone surrogate from the input leaks out);
* a 4xx or 5xx status, never 500 (``internal_error`` is what ``handle`` answers when something raised);
* the status the spec gives the error code, ``Content-Type: application/json``, ``Retry-After`` on 503;
* a JSON body ``{"error": {"code", "message", "attempts": []}}``, or for HEAD an empty body with its
  ``Content-Length``; a short message (the input is never echoed back);
* header values without CR/LF.

Mutations start from every file in ``events/``: each field at every depth is deleted or replaced by a
value of the wrong type, a huge value or an oddly encoded one; then digests, methods, claims, headers and
queries are fuzzed on their own; then hypothesis piles random mutations on random events.

The mappings lookup is memoized per digest for speed (the tables are empty: the answer is always "none",
and thousands of cases would otherwise spend most of their time in identical DynamoDB queries).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas_download.app import App
from cas_download.config import Settings
from cas_download.handlers.download import instrumented_handler
from tests.hardening.figures import count
from tests.support.events import EVENTS_DIR, EXAMPLE_DIGEST, FakeLambdaContext, load_event
from tests.support.moto_servers import AwsServers
from tests.support.tables import create_tables

# The spec's error table (plus the service's own 405 and 500), written out here so that the oracle
# does not trust the code it judges.
STATUS_BY_CODE = {
    "invalid_request": 400,
    "invalid_digest": 400,
    "invalid_mode": 400,
    "unauthenticated": 401,
    "not_found": 404,
    "content_missing": 404,
    "method_not_allowed": 405,
    "too_large_for_body": 413,
    "backends_unavailable": 502,
    "integrity_failure": 502,
    "service_unavailable": 503,
    "deadline_exceeded": 504,
    "internal_error": 500,
}

HEX = EXAMPLE_DIGEST.removeprefix("sha256:")
HUGE = "A" * 200_000
WRONG_TYPES: tuple[object, ...] = (
    None,
    0,
    -1,
    3.5,
    True,
    "",
    [],
    {},
    ["GET"],
    {"x": {"y": 1}},
    HUGE,
    "\x00\ud800\r\n",
)
MAX_MESSAGE_LENGTH = 300
# Every HTTP API event file in events/ (env.json, the SAM local environment file, is not one).
EVENT_NAMES = tuple(
    sorted(
        path.stem for path in EVENTS_DIR.glob("*.json") if "requestContext" in json.loads(path.read_text())
    )
)


class _MemoCatalog:
    """The app's catalog, with ``mappings_for_digest`` answered once per digest."""

    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog
        self._memo: dict[str, Any] = {}

    def mappings_for_digest(self, digest: str) -> Any:
        if digest not in self._memo:
            self._memo[digest] = self._catalog.mappings_for_digest(digest)
        return self._memo[digest]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._catalog, name)


@pytest.fixture(scope="module")
def fuzz_app(aws_servers: AwsServers) -> App:
    tables = create_tables(aws_servers, uuid.uuid4().hex[:12])
    app = App.create(Settings(backends_table=tables.backends, mappings_table=tables.mappings))
    services = msgspec.structs.replace(app.services, catalog=_MemoCatalog(app.services.catalog))
    return msgspec.structs.replace(app, services=services)


class Fuzzer:
    def __init__(self, app: App) -> None:
        self.app = app
        self.context = FakeLambdaContext()
        self.handler = instrumented_handler(app)  # what Lambda runs, Powertools' wrappers included
        self.cases = 0
        self.failures: list[str] = []

    def check(self, event: object, label: str, expected: str | None = None) -> dict[str, Any] | None:
        """Send one event; record a failure (with ``label``) instead of raising, so all cases run.
        ``expected``: the error code the case itself determines (its status follows from the table)."""
        self.cases += 1
        try:
            response = dict(self.handler(event, self.context))  # type: ignore[arg-type]
            if response.get("statusCode") == 204:
                problem = preflight_problem(event, response)
            else:
                problem = response_problem(response) or answer_problem(response, expected)
        except Exception as error:  # an exception escaping handle() is the worst finding
            response, problem = None, f"handle raised {type(error).__name__}: {error}"
        if problem:
            self.failures.append(f"{label}: {problem}")
        return response

    def assert_clean(self, figure: str) -> None:
        count(f"fuzz cases: {figure}", self.cases)
        count("fuzz cases: total", self.cases)
        assert not self.failures, f"{len(self.failures)} of {self.cases} cases failed:\n" + "\n".join(
            self.failures[:20]
        )


def preflight_problem(event: object, response: dict[str, Any]) -> str | None:
    """A 204 is right only for what is still a CORS preflight (OPTIONS on the link route, whose
    answer carries no body), with headers Lambda can send; None when it is so."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else None
    if not isinstance(method, str) or method.upper() != "OPTIONS":
        return f"204 to a request that is no preflight (method {method!r:.40})"
    headers = response["headers"]
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return f"headers {headers!r:.200}"
    if any("\r" in v or "\n" in v for v in headers.values()):
        return f"CR/LF in a header value: {headers!r:.300}"
    if response["body"] != "" or response["isBase64Encoded"] is not False:
        return f"a preflight's answer has a body: {response['body']!r:.100}"
    return None


def response_problem(response: Any) -> str | None:
    """What is wrong with a response to a case that must fail, or None."""
    if not isinstance(response, dict) or set(response) != {
        "statusCode",
        "headers",
        "body",
        "isBase64Encoded",
    }:
        return f"not a proxy response: {response!r:.200}"
    status, headers, body = response["statusCode"], response["headers"], response["body"]
    if not isinstance(status, int) or not 400 <= status <= 599:
        return f"status {status!r}"
    if status == 500:
        return f"500 internal_error (an exception was caught by handle): {body!r:.200}"
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return f"headers {headers!r:.200}"
    if any("\r" in v or "\n" in v for v in headers.values()):
        return f"CR/LF in a header value: {headers!r:.300}"
    if headers.get("Content-Type") != "application/json":
        return f"Content-Type {headers.get('Content-Type')!r}"
    if status == 503 and "Retry-After" not in headers:
        return "503 without Retry-After"
    if not isinstance(body, str) or response["isBase64Encoded"] is not False:
        return "body is not plain text"
    try:
        json.dumps(response)
    except (TypeError, ValueError) as error:
        return f"response cannot be serialized by the Lambda runtime: {error}"
    if body == "":
        if "Content-Length" not in headers:
            return "empty body (HEAD) without Content-Length"
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return f"body is not JSON: {body!r:.200}"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(document, dict) or set(document) != {"error"} or not isinstance(error, dict):
        return f"body is not {{'error': ...}}: {body!r:.200}"
    if set(error) != {"code", "message", "attempts"}:
        return f"error keys {sorted(error)}"
    code, message = error["code"], error["message"]
    if code not in STATUS_BY_CODE or STATUS_BY_CODE[code] != status:
        return f"code {code!r} with status {status}"
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE_LENGTH:
        return f"message {message!r:.200}"
    if error["attempts"] != []:
        return f"attempts {error['attempts']!r:.200} (no backend can be tried: no mapping exists)"
    return None


def answer_problem(response: dict[str, Any], expected: str | None) -> str | None:
    """What differs from the answer the case determines (a well-formed response, see above), or None.
    A HEAD answer has no body: its status is all it says."""
    if expected is None:
        return None
    status = response["statusCode"]
    code = json.loads(response["body"])["error"]["code"] if response["body"] else None
    if status != STATUS_BY_CODE[expected] or code not in (expected, None):
        return f"{status} {code} where the case determines {STATUS_BY_CODE[expected]} {expected}"
    return None


def test_the_oracle_rejects_what_a_broken_handler_could_answer() -> None:
    good = {
        "statusCode": 404,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps({"error": {"code": "not_found", "message": "no artifact", "attempts": []}}),
        "isBase64Encoded": False,
    }
    assert response_problem(good) is None
    broken = [
        {**good, "statusCode": 500, "body": good["body"].replace("not_found", "internal_error")},
        {**good, "statusCode": 200},
        {**good, "statusCode": 400},  # not_found is a 404
        {**good, "body": "Internal Server Error"},
        {**good, "body": json.dumps({"message": "x"})},
        {**good, "body": json.dumps({"error": {"code": "not_found", "message": "x" * 1000, "attempts": []}})},
        {**good, "headers": {**good["headers"], "X-Echo": "a\r\nSet-Cookie: x"}},
        {**good, "headers": {"Content-Type": "text/html"}},
        {**good, "body": good["body"] + "\ud800"},
        {**good, "statusCode": 503, "body": good["body"].replace("not_found", "service_unavailable")},
        {**good, "body": "", "headers": {"Content-Type": "application/json"}},
        {k: v for k, v in good.items() if k != "isBase64Encoded"},
        None,
    ]
    for response in broken:
        assert response_problem(response) is not None, response
    # and a well-formed error that is not the one the case determines
    assert answer_problem(good, "not_found") is None
    assert answer_problem(good, "invalid_digest") is not None
    assert answer_problem({**good, "body": ""}, "not_found") is None  # HEAD: the status alone
    assert answer_problem({**good, "body": ""}, "invalid_digest") is not None


# ---------------------------------------------------------------------------------------------------
# systematic mutations of the events/ files


def field_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from field_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from field_paths(value, (*prefix, index))


_DELETE = object()


def mutated(event: dict[str, Any], path: tuple[Any, ...], value: object) -> dict[str, Any]:
    copied = copy.deepcopy(event)
    parent: Any = copied
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_field_deleted_or_of_the_wrong_type_gets_a_json_error(fuzz_app: App, name: str) -> None:
    # Given the event file, and every one of its fields at every depth
    event = load_event(name)
    fuzzer = Fuzzer(fuzz_app)

    # When each field in turn is deleted or replaced by a value of another type, a huge or an odd one
    for path in list(field_paths(event)):
        for value in (_DELETE, *WRONG_TYPES):
            fuzzer.check(mutated(event, path, value), f"{name} {'.'.join(map(str, path))} = {value!r:.40}")

    # Then every answer is an error of the spec's form
    fuzzer.assert_clean("field mutations")


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_pair_of_fields_deleted_gets_a_json_error(fuzz_app: App, name: str) -> None:
    # Given the event file, and every two of its fields that are not one inside the other
    event = load_event(name)
    paths = list(field_paths(event))
    pairs = [
        (first, second)
        for i, first in enumerate(paths)
        for second in paths[i + 1 :]
        if second[: len(first)] != first
    ]
    fuzzer = Fuzzer(fuzz_app)

    # When both are missing at once (a handler that copes with each missing field alone may not)
    for first, second in pairs:
        fuzzer.check(
            mutated(mutated(event, second, _DELETE), first, _DELETE),
            f"{name} without {'.'.join(map(str, first))} and {'.'.join(map(str, second))}",
        )

    # Then every answer is an error of the spec's form
    fuzzer.assert_clean("field pairs deleted")


# ---------------------------------------------------------------------------------------------------
# digests, methods, claims, headers, queries, whole events

ODD_DIGESTS = [
    "",
    "%",
    "%%",
    "%ZZ",
    "sha256%3",
    "sha256%253A" + HEX,
    "sha256%3A" + HEX + "%00",
    "sha256:" + HEX + "\x00",
    "sha256:" + HEX + "\n",
    " sha256:" + HEX,
    "sha256:" + HEX[:-1],
    "sha256:" + HEX + "0",
    "sha256::" + HEX,
    "sha256:sha256:" + HEX,
    "sha512:" + HEX + HEX,
    "md5:" + HEX[:32],
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "../../etc/passwd",
    "\u202e" + HEX,
    "sha256:" + HEX.replace("a", "\u0430"),  # Cyrillic a
    "sha256:" + "\uff10" * 64,  # full-width digits
    "sha256:" + HEX[:63] + "\ud800",  # lone surrogate
    "sha256:" + HEX[:62] + "\U0001f600",
    "%F0%9F%98%80" * 10,
    "%C0%AE%C0%AE%2F",  # overlong UTF-8 "../"
    "%E2%80%AE" + HEX,
    "sha256%3A" + "%" + "%".join(HEX[i : i + 2] for i in range(0, 64, 2)),
    HEX.upper() + "%20",
    "sha256:" + HEX + "?mode=body",
    "sha256:" + HEX + "/extra",
    "sha256:" + HEX + "#frag",
    "sha256:" + "g" * 64,
    "SHA256%3A" + "Z" * 64,
    "x" * 81,
    "sha256:" + "0" * 10_000,
    "%" * 100_000,
]


# The spec's digest rule, written out here (not the parser under test): sha256:<64 hex>, the colon
# possibly URL-encoded, or the bare 64 hex; hex in any case. Anything else is 400 invalid_digest.
SPEC_DIGEST = re.compile(r"(?:sha256(?::|%3[aA]))?[0-9a-fA-F]{64}")


def expected_for_digest(raw: str) -> str:
    """A well-formed digest has no mapping in these tables (404 not_found); any other is invalid."""
    return "not_found" if SPEC_DIGEST.fullmatch(raw) else "invalid_digest"


def test_the_digest_oracle_follows_the_spec() -> None:
    assert expected_for_digest(EXAMPLE_DIGEST) == "not_found"
    assert expected_for_digest("sha256%3A" + HEX) == "not_found"
    assert expected_for_digest(HEX.upper()) == "not_found"
    assert expected_for_digest("sha256:" + HEX[:-1]) == "invalid_digest"
    assert expected_for_digest("sha256:" + HEX + "\n") == "invalid_digest"
    assert expected_for_digest("sha256:" + "\uff10" * 64) == "invalid_digest"


def test_oddly_encoded_digests_get_a_json_4xx(fuzz_app: App) -> None:
    # Given digests of every odd shape and encoding, in the path parameter or in the raw path alone
    fuzzer = Fuzzer(fuzz_app)
    for raw in ODD_DIGESTS:
        expected = expected_for_digest(raw)
        for name in ("get_redirect", "head", "get_body"):
            # When each is asked for, Then a malformed one is 400 invalid_digest (never a 404 that would
            # say "no such artifact"), a well-formed one 404 not_found (no mapping exists)
            fuzzer.check(load_event(name, digest=raw), f"{name} digest={raw!r:.60}", expected)
            event = load_event(name)
            event["rawPath"] = "/v1/artifacts/" + raw  # only the raw path carries it
            event.pop("pathParameters", None)
            fuzzer.check(event, f"{name} rawPath digest={raw!r:.60}", expected)
    fuzzer.assert_clean("odd digests")


UNEXPECTED_METHODS = [
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "",
    " ",
    " GET",
    "GET ",
    "GET\r\nX-Injected: 1",
    "G\x00ET",
    "\uff27\uff25\uff34",  # full-width GET
    "X" * 100_000,
    None,
    1,
    ["GET"],
    {"GET": True},
]


def test_unexpected_methods_get_a_json_4xx(fuzz_app: App) -> None:
    fuzzer = Fuzzer(fuzz_app)
    for method in UNEXPECTED_METHODS:
        for name in ("get_redirect", "get_lambda_authorizer"):
            event = load_event(name)
            event["requestContext"]["http"]["method"] = method
            response = fuzzer.check(event, f"{name} method={method!r:.40}")
            if (
                response is not None
                and isinstance(method, str)
                and method.strip() == method
                and method.isalpha()
            ):
                assert response["statusCode"] == 405, method
    fuzzer.assert_clean("methods")


ODD_CLAIMS: list[object] = [
    "",
    " ",
    ",,,",
    "[]",
    "[ ]",
    '[""]',
    "null",
    None,
    0,
    True,
    [],
    [None, 1, {}],
    {"org": "x"},
    "org\x00",
    "org\r\nX: y",
    "\u202eorg",
    "o" * 100_000,
    ",".join(f"org-{i}" for i in range(5_000)),
    " ".join("x" * 257 for _ in range(10)),
    "[" * 10_000,
    "\ud800",
]


# Claims that name no org at all, in every form the spec reads (comma or space separated, `[a b]`).
NO_ORG_CLAIMS: list[object] = ["", " ", ",,,", "[]", "[ ]", '[""]', None]


def test_odd_org_claims_get_a_json_4xx(fuzz_app: App) -> None:
    fuzzer = Fuzzer(fuzz_app)
    for claim in ODD_CLAIMS:
        # a claim that names no org is 401 unauthenticated; the others only need a well-formed error
        expected = "unauthenticated" if claim in NO_ORG_CLAIMS else None
        for name in ("get_redirect", "get_lambda_authorizer"):
            event = load_event(name)
            authorizer = event["requestContext"]["authorizer"]
            target = authorizer["jwt"]["claims"] if "jwt" in authorizer else authorizer["lambda"]
            target["org_id"] = claim
            fuzzer.check(event, f"{name} org_id={claim!r:.40}", expected)
    fuzzer.assert_clean("claims")


def test_odd_headers_and_queries_get_a_json_4xx(fuzz_app: App) -> None:
    fuzzer = Fuzzer(fuzz_app)
    odd_values: list[object] = [
        None,
        1,
        [],
        {},
        "",
        "*",
        "W/*",
        HUGE,
        "\x00",
        '"' * 1000,
        ["body"],
        "BODY",
        " url ",
    ]
    for value in odd_values:
        event = load_event("get_if_none_match")
        event["headers"]["if-none-match"] = value
        fuzzer.check(event, f"if-none-match={value!r:.40}")
        event = load_event("get_redirect")
        event["headers"] = {str(i): value for i in range(3)} if not isinstance(value, str) else {value: value}
        fuzzer.check(event, f"headers {{{value!r:.20}: ...}}")
        event = load_event("get_url")
        event["queryStringParameters"] = {"mode": value}
        # text that is no spelling of the spec's three modes is 400 invalid_mode (the service reads a
        # mode in any case, blanks around it ignored; an empty one is the default)
        invalid_mode = isinstance(value, str) and value.strip().lower() not in {"", "redirect", "url", "body"}
        fuzzer.check(event, f"mode={value!r:.40}", "invalid_mode" if invalid_mode else None)
        event = load_event("get_url")
        event["queryStringParameters"] = value
        fuzzer.check(event, f"queryStringParameters={value!r:.40}")
    fuzzer.assert_clean("headers and queries")


def test_inputs_that_are_not_events_get_a_json_4xx(fuzz_app: App) -> None:
    fuzzer = Fuzzer(fuzz_app)
    base = load_event("get_redirect")
    not_events: list[object] = [
        None,
        0,
        "",
        "GET /v1/artifacts/x",
        [],
        [base],
        {},
        {"requestContext": None},
        {"requestContext": {"http": None}},
        {"requestContext": {"http": {"method": "GET"}}},
        {"httpMethod": "GET", "path": "/v1/artifacts/" + HEX},  # REST API (payload 1.0) shape
        {"Records": [{"eventSource": "aws:s3"}]},  # some other event source
        {"source": "aws.events", "detail-type": "Scheduled Event"},
        {k: v for k, v in base.items() if k != "requestContext"},
        {**base, "requestContext": {**base["requestContext"], "authorizer": None}},
    ]
    for value in not_events:
        fuzzer.check(value, f"event={value!r:.60}")
    fuzzer.assert_clean("not events")


# ---------------------------------------------------------------------------------------------------
# random piles of mutations (hypothesis)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
odd_text = st.sampled_from(
    ["%", "%3A", "sha256:", HEX, "\u202e", "\ud800", "\x00", "\r\n", "GET", "HEAD", "body"]
)
replacement = st.one_of(json_values, odd_text, st.text(), st.integers(0, 5).map(lambda n: "A" * 10**n))


@st.composite
def mutated_events(draw: st.DrawFn) -> object:
    event = load_event(draw(st.sampled_from(EVENT_NAMES)))
    for _ in range(draw(st.integers(1, 6))):
        paths = list(field_paths(event))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        event = mutated(event, path, _DELETE if draw(st.booleans()) else draw(replacement))
    return event


@settings(max_examples=1000)
@given(event=mutated_events())
def test_randomly_mutated_events_get_a_json_error(fuzz_app: App, event: object) -> None:
    fuzzer = Fuzzer(fuzz_app)
    fuzzer.check(event, f"event={event!r:.300}")
    fuzzer.assert_clean("hypothesis")
