"""Plain rows as DynamoDB items and back, with boto3's own TypeSerializer: the one encoding of the
Chainloop sync, cas-admin, the local demo and the tests. An attribute whose value is None is left out
(the spec reads a missing optional attribute as absent); a float travels as a Decimal."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_value(value: Any) -> dict[str, Any]:
    """One plain value (str, bool, number, bytes, list, mapping, None) as a DynamoDB attribute value."""
    serialized: dict[str, Any] = dict(
        _serializer.serialize(Decimal(str(value)) if isinstance(value, float) else value)
    )
    return serialized


def to_item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_value(value) for name, value in row.items() if value is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}
