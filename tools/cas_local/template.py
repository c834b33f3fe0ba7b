"""What the local stack takes from ``template.yaml`` rather than restating it.

* the DynamoDB tables (``AWS::DynamoDB::Table`` resources): key schema, attribute definitions,
  indexes, billing mode and TTL become ``CreateTable``/``UpdateTimeToLive`` requests;
* the download function (the ``AWS::Serverless::Function`` whose ``Handler`` is
  ``cas_download.handlers.download.lambda_handler``): its environment variables, with each parameter
  at its default and each table at its local name, and its timeout.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DOWNLOAD_HANDLER = "cas_download.handlers.download.lambda_handler"
TABLE_TYPE = "AWS::DynamoDB::Table"
FUNCTION_TYPE = "AWS::Serverless::Function"
LOCAL_TABLE_PREFIX = "cas-local-"

# CreateTable takes these CloudFormation properties in the very same shape.
_CREATE_TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "LocalSecondaryIndexes",
)
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


class TemplateError(ValueError):
    """template.yaml does not say what the local stack needs."""


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml as plain data (a fresh copy each call: callers may modify it)."""
    return copy.deepcopy(_load(path.resolve()))


@cache
def _load(path: Path) -> dict[str, Any]:
    """Read by cfn-lint's own decoder (short-form tags become ``Ref``/``Fn::*``): the repository's one
    CloudFormation reader, for the local stack, the template tests and the package check."""
    from cfnlint.decode.decode import decode  # type: ignore[import-untyped]  # noqa: PLC0415 - a dev tool

    decoded, problems = decode(str(path))
    if problems or not isinstance(decoded, dict):
        detail = problems[0].message if problems else "not a mapping"
        raise TemplateError(f"{path} could not be read: {detail}")
    # cfn-lint's nodes carry their source marks; plain dicts, lists and strings are what callers expect
    loaded: dict[str, Any] = json.loads(json.dumps(decoded))
    if not isinstance(loaded.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template with Resources")
    return loaded


def function_properties(document: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties as SAM deploys them: ``Globals.Function`` merged in by SAM's own
    translator (a function's value wins, its ``Layers`` come after the shared ones, its variables join
    the shared ones). The one Globals merge of the repository: the local stack, the template tests and
    the package check use it."""
    from samtranslator.plugins.globals.globals import (  # type: ignore[import-untyped]  # noqa: PLC0415 - a dev tool
        Globals,
    )

    resource = document["Resources"][logical_id]
    if resource.get("Type") != FUNCTION_TYPE:
        raise TemplateError(f"{logical_id} is not an {FUNCTION_TYPE}")
    merged: dict[str, Any] = Globals(copy.deepcopy(document)).merge(
        FUNCTION_TYPE, copy.deepcopy(resource.get("Properties") or {}), logical_id
    )
    return merged


def local_table_name(logical_id: str) -> str:
    """``BackendsTable`` -> ``cas-local-backends``: fixed names, so events/env.json can name them."""
    stem = logical_id.removesuffix("Table") or logical_id
    return LOCAL_TABLE_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "-", stem).lower()


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    name: str
    create_request: dict[str, Any]
    ttl: dict[str, Any] | None


@dataclass(frozen=True)
class Template:
    path: Path
    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> Template:
        resolved = (path or TEMPLATE_PATH).resolve()
        return cls(resolved, _load(resolved))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.document["Resources"])

    def tables(self) -> list[TableDefinition]:
        """Every DynamoDB table of the template, with its local name."""
        found = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != TABLE_TYPE:
                continue
            props = resource.get("Properties") or {}
            name = local_table_name(logical_id)
            request: dict[str, Any] = {"TableName": name}
            for key in _CREATE_TABLE_PROPERTIES:
                if key in props:
                    request[key] = _literal(props[key], f"{logical_id}.{key}")
            if "GlobalSecondaryIndexes" in props:
                indexes = _literal(props["GlobalSecondaryIndexes"], f"{logical_id}.GlobalSecondaryIndexes")
                request["GlobalSecondaryIndexes"] = [
                    {k: v for k, v in index.items() if k in _INDEX_KEYS} for index in indexes
                ]
            if "KeySchema" not in request or "AttributeDefinitions" not in request:
                raise TemplateError(f"table {logical_id} has no KeySchema/AttributeDefinitions")
            if "StreamSpecification" in props:
                # CloudFormation names the view only; CreateTable also wants the stream switched on.
                stream = _literal(props["StreamSpecification"], f"{logical_id}.StreamSpecification")
                request["StreamSpecification"] = {"StreamEnabled": True, **stream}
            ttl = props.get("TimeToLiveSpecification")
            found.append(
                TableDefinition(
                    logical_id, name, request, _literal(ttl, f"{logical_id}.TimeToLiveSpecification")
                )
            )
        if not found:
            raise TemplateError(f"{self.path} defines no {TABLE_TYPE}")
        return found

    def download_function(self) -> tuple[str, dict[str, Any]]:
        """(logical id, properties with ``Globals.Function`` merged) of the download function."""
        for logical_id, resource in self.resources.items():
            props = resource.get("Properties") or {}
            if resource.get("Type") == FUNCTION_TYPE and props.get("Handler") == DOWNLOAD_HANDLER:
                return logical_id, function_properties(self.document, logical_id)
        raise TemplateError(f"{self.path} has no function with Handler {DOWNLOAD_HANDLER}")

    def function_timeout_seconds(self) -> int:
        return int(self.download_function()[1].get("Timeout", 3))

    def function_environment(self) -> dict[str, str]:
        """The download function's variables as the local stack runs it: a ``!Ref`` to a parameter
        is that parameter's default, a ``!Ref`` to a table is the table's local name."""
        logical_id, props = self.download_function()
        variables = ((props.get("Environment") or {}).get("Variables")) or {}
        parameters = self.document.get("Parameters") or {}
        tables = {t.logical_id: t.name for t in self.tables()}
        # Another function (the verifier, asked by the download function): its logical id is its
        # local name (cas_local.verifier answers Invoke for it).
        functions = {k for k, r in self.resources.items() if r.get("Type") == FUNCTION_TYPE}
        env: dict[str, str] = {}
        for name, value in variables.items():
            if isinstance(value, dict) and set(value) == {"Ref"}:
                target = value["Ref"]
                if target in tables:
                    env[name] = tables[target]
                elif target in functions:
                    env[name] = target
                elif target in parameters and "Default" in parameters[target]:
                    env[name] = str(parameters[target]["Default"])
                else:
                    raise TemplateError(
                        f"{logical_id} variable {name}: !Ref {target} has no local value "
                        "(neither a table nor a parameter with a default)"
                    )
            elif isinstance(value, str | int | float | bool):
                env[name] = str(value).lower() if isinstance(value, bool) else str(value)
            else:
                raise TemplateError(f"{logical_id} variable {name}: {value!r} has no local value")
        return env


def _literal(value: Any, where: str) -> Any:
    """A property value without intrinsic functions (the local stack does not evaluate them)."""
    if isinstance(value, dict):
        if any(key == "Ref" or key.startswith("Fn::") for key in value):
            raise TemplateError(f"{where} uses an intrinsic function; the local stack needs a literal")
        return {k: _literal(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v, where) for v in value]
    return value
