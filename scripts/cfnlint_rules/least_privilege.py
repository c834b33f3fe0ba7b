"""cfn-lint rule E9101: least privilege on the data the function reads (tables, secrets, keys).

An IAM statement that allows a DynamoDB, Secrets Manager or KMS action (or every action) must name its
resources. Refused:

* ``Resource: "*"``, ``NotResource``, ``NotAction``;
* an ARN whose resource name is a wildcard (``table/*``, ``secret:*``, ``key/*``, ``alias/*``) or whose
  service, region or account is ``*``;
* a wildcard action on those services (``dynamodb:*``, ``kms:Get*``, ``*``).

SAM resources (``AWS::Serverless::Function``/``StateMachine``) are read as written, since cfn-lint
validates SAM templates without expanding them: an inline ``Statement`` policy is checked as above, a SAM
policy template (``DynamoDBReadPolicy: {TableName: ...}``, ``AWSSecretsManagerGetSecretValuePolicy``,
``KMSDecryptPolicy``...) on those services must not be given a wildcard, and a managed policy named by
string that grants those services (``AmazonDynamoDBReadOnlyAccess``, ``SecretsManagerReadWrite``...) is
refused (AWS managed policies grant them on every resource).

A name *prefix* followed by ``*`` is allowed (Secrets Manager appends a random suffix to every secret's
ARN, so ``secret:cas/*`` is how one names "the secrets under cas/"), when the prefix is literal text or a
template parameter that can be neither empty nor contain ``*`` (``MinLength``/``AllowedPattern``). A
sub-resource wildcard after a named table (``table/${T}/index/*``) is allowed too.

    cfn-lint --append-rules scripts/cfnlint_rules template.yaml      (make security)

The checks are plain functions over the (SAM-transformed) template's dicts, so tests can call them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch  # type: ignore[import-untyped]

GUARDED_SERVICES = frozenset({"dynamodb", "secretsmanager", "kms"})
POLICY_RESOURCE_TYPES = {
    "AWS::Serverless::Function": ("SamPolicies",),
    "AWS::Serverless::StateMachine": ("SamPolicies",),
    "AWS::IAM::Role": ("Policies",),
    "AWS::IAM::User": ("Policies",),
    "AWS::IAM::Group": ("Policies",),
    "AWS::IAM::Policy": ("PolicyDocument",),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument",),
}
_GUARDED_NAME = re.compile(r"dynamodb|secret|kms", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")
_PSEUDO = "AWS::"

Path = list[str | int]
Problem = tuple[Path, str]


def policy_documents(resource_type: str, properties: Mapping[str, Any]) -> Iterator[tuple[Path, Any]]:
    """``(path under Properties, policy document)`` of every inline policy of an IAM resource."""
    key = POLICY_RESOURCE_TYPES.get(resource_type, ("",))[0]
    if key == "Policies":
        for index, policy in enumerate(_as_list(properties.get("Policies"))):
            if isinstance(policy, Mapping):
                yield ["Policies", index, "PolicyDocument"], policy.get("PolicyDocument")
    elif key == "PolicyDocument":
        yield ["PolicyDocument"], properties.get("PolicyDocument")
    elif key == "SamPolicies":
        policies = properties.get("Policies")
        for index, policy in enumerate(_as_list(policies)):
            path: Path = ["Policies", index] if isinstance(policies, list) else ["Policies"]
            yield path, policy


def sam_policy_problems(policy: Any, parameters: Mapping[str, Any]) -> list[Problem]:
    """One entry of a SAM resource's ``Policies``: inline document, policy template or managed policy."""
    if isinstance(policy, Mapping) and "Statement" in policy:
        return document_problems(policy, parameters)
    if isinstance(policy, str):
        if _GUARDED_NAME.search(policy):
            return [([], f"managed policy {policy!r} grants table, secret or key access on every resource")]
        return []
    if isinstance(policy, Mapping):
        problems: list[Problem] = []
        for template_name, arguments in policy.items():
            if not _GUARDED_NAME.search(str(template_name)):
                continue
            for argument, value in (arguments or {}).items() if isinstance(arguments, Mapping) else ():
                if isinstance(value, str) and "*" in value:
                    problems.append(([template_name, argument], f"wildcard {argument} {value!r}"))
                elif isinstance(value, Mapping) and "Ref" in value and value["Ref"] in parameters:
                    problem = _parameter_problem(str(value["Ref"]), parameters)
                    if problem:
                        problems.append(([template_name, argument], problem))
        return problems
    return [([], f"policy {policy!r} cannot be shown to name specific resources")]


def document_problems(document: Any, parameters: Mapping[str, Any]) -> list[Problem]:
    """Every least-privilege problem of one policy document, with its path inside the document."""
    if not isinstance(document, Mapping):
        return []
    problems: list[Problem] = []
    for index, statement in enumerate(_as_list(document.get("Statement"))):
        for path, message in statement_problems(statement, parameters):
            problems.append((["Statement", index, *path], message))
    return problems


def statement_problems(statement: Any, parameters: Mapping[str, Any]) -> list[Problem]:
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
        return []
    if "NotAction" in statement:
        return [(["NotAction"], "Allow with NotAction grants every other action")]
    actions = [a for a in _as_list(statement.get("Action")) if isinstance(a, str)]
    guarded = [a for a in actions if a == "*" or a.split(":", 1)[0].lower() in GUARDED_SERVICES]
    if not guarded:
        return []
    problems: list[Problem] = [
        (["Action"], f"wildcard action {action!r} on table, secret or key data")
        for action in guarded
        if "*" in action
    ]
    if "NotResource" in statement:
        problems.append((["NotResource"], "NotResource on table, secret or key actions names no resource"))
    resources = statement.get("Resource")
    if resources is None and "NotResource" not in statement:
        problems.append((["Resource"], "statement names no resource"))
    for index, resource in enumerate(_as_list(resources)):
        path: Path = ["Resource", index] if isinstance(resources, list) else ["Resource"]
        message = resource_problem(resource, parameters)
        if message:
            problems.append((path, message))
    return problems


def resource_problem(resource: Any, parameters: Mapping[str, Any]) -> str | None:
    """Why one ``Resource`` value is too broad, or None."""
    if isinstance(resource, str):
        return arn_problem(resource, parameters, {})
    if isinstance(resource, Mapping) and len(resource) == 1:
        (function, argument), *_ = resource.items()
        if function == "Fn::GetAtt":
            return None  # an attribute of a resource of this template: one named resource
        if function == "Ref":
            if argument in parameters:
                return _parameter_problem(str(argument), parameters)
            return None
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
            return arn_problem(str(text), parameters, variables if isinstance(variables, Mapping) else {})
        if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            delimiter, parts = argument
            text = str(delimiter).join(
                part if isinstance(part, str) else f"${{joined{i}}}" for i, part in enumerate(_as_list(parts))
            )
            return arn_problem(text, parameters, {})
        if function == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
            return resource_problem(argument[1], parameters) or resource_problem(argument[2], parameters)
    return f"resource {resource!r} cannot be shown to name specific resources"


def arn_problem(text: str, parameters: Mapping[str, Any], variables: Mapping[str, Any]) -> str | None:
    """Why one ARN (an ``Fn::Sub`` string: ``${...}`` placeholders allowed) is too broad, or None."""
    if text.strip() == "*":
        return 'wildcard resource "*" on table, secret or key actions'
    # Placeholders may hold ":" ("${AWS::Region}"): swap each for a marker before splitting the ARN.
    names = _PLACEHOLDER.findall(text)
    marked = text
    for index, name in enumerate(names):
        marked = marked.replace("${" + name + "}", f"\x00{index}\x00", 1)
    leading = re.match(r"\x00(\d+)\x00", marked)
    if leading and "." in names[int(leading.group(1))]:
        # "${Table.Arn}/index/x": the ARN of a resource of this template, then a sub-resource.
        rest = marked[leading.end() :]
        return f"wildcard after a resource ARN in {text!r}" if rest.lstrip("/:").startswith("*") else None
    parts = marked.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return f"resource {text!r} is not an ARN"
    _, _partition, service, region, account, resource_part = parts
    for label, value in (("service", service), ("region", region), ("account", account)):
        if "*" in value:
            return f"wildcard {label} in {text!r}"
    kind, delimiter, name = _split_resource(resource_part)
    if not delimiter:
        name = kind
    first = re.split(r"[/:]", name, maxsplit=1)[0]
    if "*" not in first:
        return None
    prefix = first.split("*", 1)[0]
    literal = re.sub(r"\x00\d+\x00", "", prefix)
    markers = [names[int(i)] for i in re.findall(r"\x00(\d+)\x00", prefix)]
    guarded = False
    for placeholder in markers:
        if placeholder.startswith(_PSEUDO) or placeholder in variables:
            continue
        if placeholder in parameters:
            problem = _parameter_problem(placeholder, parameters)
            if problem:
                return f"{problem} (in {text!r})"
            guarded = True
    if not literal.strip() and not guarded:
        return f"wildcard resource name in {text!r}"
    return None


def _split_resource(resource_part: str) -> tuple[str, str, str]:
    """``table/name`` -> ("table", "/", "name"); ``secret:name`` -> ("secret", ":", "name")."""
    positions = [(resource_part.find(d), d) for d in "/:" if resource_part.find(d) >= 0]
    if not positions:
        return resource_part, "", ""
    index, delimiter = min(positions)
    return resource_part[:index], delimiter, resource_part[index + 1 :]


def _parameter_problem(name: str, parameters: Mapping[str, Any]) -> str | None:
    """A parameter used as (the start of) a resource name must be non-empty and never contain ``*``."""
    spec = parameters.get(name)
    if not isinstance(spec, Mapping):
        return None
    pattern = spec.get("AllowedPattern")
    allowed = [str(v) for v in _as_list(spec.get("AllowedValues"))]
    if allowed:
        bad = [v for v in allowed if not v or "*" in v]
        return f"parameter {name} allows {bad[0]!r}" if bad else None
    if not isinstance(pattern, str):
        return f"parameter {name} has no AllowedPattern: it could be '*'"
    for probe in ("*", "a*", "*a"):
        if re.fullmatch(pattern, probe):
            return f"parameter {name} admits {probe!r}"
    min_length = int(spec.get("MinLength", 0) or 0)
    if min_length < 1 and re.fullmatch(pattern, ""):
        return f"parameter {name} may be empty"
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _guarded_by_condition(
    parameters: Mapping[str, Any], conditions: Mapping[str, Any], condition: Any
) -> Mapping[str, Any]:
    """The parameters as seen inside a resource created only under ``condition``: a condition that
    is ``!Not [!Equals [!Ref P, ""]]`` proves P non-empty there (an optional feature's ARN), and so
    does ``!Not [!Equals [!Join ["", !Ref P], ""]]`` for a list parameter (every item matches P's
    pattern, and they are not all empty). An empty item of a non-empty list is refused by IAM itself
    (an empty Resource is no ARN), never read as a wildcard."""
    definition = conditions.get(condition) if isinstance(condition, str) else None
    negated = definition.get("Fn::Not") if isinstance(definition, Mapping) else None
    equals = (
        negated[0].get("Fn::Equals")
        if isinstance(negated, list) and negated and isinstance(negated[0], Mapping)
        else None
    )
    if not isinstance(equals, list) or len(equals) != 2 or "" not in equals:
        return parameters
    other = equals[0] if equals[1] == "" else equals[1]
    joined = other.get("Fn::Join") if isinstance(other, Mapping) else None
    if isinstance(joined, list) and len(joined) == 2 and joined[0] == "" and isinstance(joined[1], Mapping):
        other = joined[1]
    name = other.get("Ref") if isinstance(other, Mapping) else None
    if not isinstance(name, str) or not isinstance(parameters.get(name), Mapping):
        return parameters
    return {**parameters, name: {**parameters[name], "MinLength": 1}}


def template_problems(template: Mapping[str, Any]) -> list[Problem]:
    """Every problem in a (transformed) template, with its full path from the template's root."""
    parameters = template.get("Parameters") or {}
    problems: list[Problem] = []
    for name, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, Mapping) or resource.get("Type") not in POLICY_RESOURCE_TYPES:
            continue
        properties = resource.get("Properties") or {}
        sam = str(resource["Type"]).startswith("AWS::Serverless::")
        known = _guarded_by_condition(parameters, template.get("Conditions") or {}, resource.get("Condition"))
        for doc_path, document in policy_documents(str(resource["Type"]), properties):
            found = sam_policy_problems(document, known) if sam else document_problems(document, known)
            for path, message in found:
                problems.append((["Resources", name, "Properties", *doc_path, *path], message))
    return problems


class LeastPrivilegeDataAccess(CloudFormationLintRule):  # type: ignore[misc]
    id = "E9101"
    shortdesc = "No wildcard resource on table, secret or KMS statements"
    description = (
        "IAM statements that allow DynamoDB, Secrets Manager or KMS actions name specific resources "
        "(a literal or guarded-parameter name prefix before '*' is allowed) and specific actions."
    )
    source_url = "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html#grant-least-privilege"
    tags: ClassVar[list[str]] = ["iam", "security", "least-privilege"]

    def match(self, cfn: Any) -> list[Any]:
        return [RuleMatch(path, message) for path, message in template_problems(cfn.template)]
