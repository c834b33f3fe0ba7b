"""The verifier's roles against what it really does: every AWS call the verifier makes with its
function's credentials (recorded on its session, PynamoDB's calls included) is allowed by the
template's role for it, on that very resource; and the role allows nothing more than those calls and
what Lambda itself does with the role (poll the stream, send a failed batch to the queue).

Storage is read with each backend's own key, never the role's."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest

from cas_local.template import load_template
from tests.support.calls import Call
from tests.support.events import FakeLambdaContext
from tests.support.stream_events import mapping_image, stream_event
from tests.support.verifier_stack import Stack
from tests.support.world import World

DATA = b"release-artifact.tar contents\n" * 400  # no checksum: only hashing proves it
ACCOUNT = "123456789012"  # moto's

# What Lambda does with the stream verifier's role, not the code: read the stream, send a batch it
# gave up on to the on-failure queue.
LAMBDA_POLLER = {
    ("dynamodb:DescribeStream", "stream"),
    ("dynamodb:GetRecords", "stream"),
    ("dynamodb:GetShardIterator", "stream"),
    ("sqs:SendMessage", "queue"),
}


@pytest.fixture
def stack(world: World, verifications_table: str, lambda_context: FakeLambdaContext) -> Stack:
    return Stack(world, verifications_table, lambda_context)


def test_the_stream_verifiers_role_allows_each_call_it_makes_and_only_those(
    world: World, stack: Stack
) -> None:
    # Given a new mapping of an object as Chainloop writes it, on the stream
    org, backend, digest = world.artifact(DATA, "chainloop-s3")

    # When the verifier proves it
    assert stack.verify(stream_event(mapping_image(digest, org, backend.id))) == {"batchItemFailures": []}

    # Then its role allows every call it made with the function's credentials, and nothing else but
    # what Lambda's stream poller does
    assert stack.record(backend, digest) is not None
    used = role_calls(stack, world)
    assert {(c.service, c.operation) for c in used} >= {
        ("dynamodb", "Query"),  # the org's backend rows
        ("secretsmanager", "GetSecretValue"),  # the backend's key
        ("dynamodb", "GetItem"),  # the record
        ("dynamodb", "PutItem"),  # the proof
    }
    assert_role_allows_exactly("VerifierFunctionRole", used, stack, world, LAMBDA_POLLER)


def test_the_ask_verifiers_role_allows_each_call_it_makes_and_only_those(world: World, stack: Stack) -> None:
    # Given a request over what it may hash, which asked the verifier
    data = b"x" * (3 * 1024 * 1024)
    org, backend, digest = world.artifact(data, "chainloop-s3")
    stack.configure_download(MAX_HASH_BYTES=1024 * 1024, VERIFY_BYTES_PER_SECOND=1024 * 1024)
    assert stack.get(digest, org).status == 503
    [payload] = stack.queue.payloads

    # When the ask function proves the object and settles the ask
    assert stack.verify(payload) == {"batchItemFailures": []}

    # Then its role allows every call it made with the function's credentials, and nothing else
    assert stack.record(backend, digest) is not None
    used = role_calls(stack, world)
    assert ("dynamodb", "PutItem") in {(c.service, c.operation) for c in used}
    assert_role_allows_exactly("VerifierAskFunctionRole", used, stack, world, set())


# ---------------------------------------------------------------------------------------------------


def role_calls(stack: Stack, world: World) -> list[Call]:
    """The verifier's calls signed with its function's credentials; storage calls are not among them
    (each backend's own key reads the bytes)."""
    credentials = stack.verifier_calls.session.get_credentials()
    assert credentials is not None
    role_key = credentials.access_key
    calls = list(stack.verifier_calls.calls)
    storage = [c for c in calls if c.service == "s3"]
    assert storage, "the verifier read no storage: nothing was proven"
    assert all(c.access_key_id != role_key for c in storage)
    return [c for c in calls if c.access_key_id == role_key]


def assert_role_allows_exactly(
    role: str, calls: list[Call], stack: Stack, world: World, by_lambda: set[tuple[str, str]]
) -> None:
    template = load_template()
    statements = [
        s
        for policy in template["Resources"][role]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    assert all(s["Effect"] == "Allow" for s in statements)
    resolve = Resolver(template, stack, world)
    grants = {
        (action, resolve(resource))
        for s in statements
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
    }
    used: set[tuple[str, str]] = set()
    for call in calls:
        action, arn = iam_action(call), resource_arn(call, stack, world)
        matching = {
            (a, pattern) for a, pattern in grants if a == action and fnmatch.fnmatchcase(arn, pattern)
        }
        assert matching, f"{role} does not allow {action} on {arn}"
        used |= matching
    assert grants - used == by_lambda, f"{role} allows what the verifier never does"


class Resolver:
    """A template's resource expression as the ARN pattern it grants in this test's deployment: the
    tables are the World's, the parameters their defaults; the stream and the queue are named only."""

    def __init__(self, template: dict[str, Any], stack: Stack, world: World) -> None:
        self.region = str(world.secrets.meta.region_name)
        tables = {
            "BackendsTable": world.tables.backends,
            "MappingsTable": world.tables.mappings,
            "VerificationsTable": stack.verifications_table,
        }
        self.arns = {name: table_arn(self.region, table) for name, table in tables.items()}
        self.parameters = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}

    def __call__(self, expression: Any) -> str:
        if isinstance(expression, dict) and "Fn::GetAtt" in expression:
            name, attribute = expression["Fn::GetAtt"]
            if attribute == "StreamArn":
                return "stream"
            if name == "VerifierFailureQueue":
                return "queue"
            return str(self.arns[name])
        if isinstance(expression, dict) and "Fn::Sub" in expression:
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._variable(m.group(1)), expression["Fn::Sub"])
        return str(expression)

    def _variable(self, name: str) -> str:
        pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": ACCOUNT}
        if name in pseudo:
            return pseudo[name]
        if name.endswith(".Arn"):
            return self.arns[name.removesuffix(".Arn")]
        return self.parameters[name]


def table_arn(region: str, table: str) -> str:
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"


def iam_action(call: Call) -> str:
    return f"{call.service}:{call.operation}"


def resource_arn(call: Call, stack: Stack, world: World) -> str:
    """The ARN IAM authorizes ``call`` on."""
    region = str(world.secrets.meta.region_name)
    if call.service == "dynamodb":
        arn = table_arn(region, call.params["TableName"])
        index = call.params.get("IndexName")
        return f"{arn}/index/{index}" if index else arn
    if call.service == "secretsmanager":
        return str(world.secrets.describe_secret(SecretId=call.params["SecretId"])["ARN"])
    raise AssertionError(f"a call the test cannot place: {call.service}:{call.operation}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
