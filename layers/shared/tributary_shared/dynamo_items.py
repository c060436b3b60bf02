"""Python values in DynamoDB's typed wire form, checked as DynamoDB checks them, in one pass.

The writer serializes every item itself (`serialize_item`), so botocore's parameter validation
can be off; an item that cannot be stored fails alone, described in words that name the problem.
"""

from collections.abc import Sequence
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Rounded
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeSerializer

# What serializing an item raises when DynamoDB could not store it.
SERIALIZATION_ERRORS = (TypeError, ValueError, ArithmeticError, RecursionError)

_serializer = TypeSerializer()


def to_dynamodb_value(value: Any) -> Any:
    """Python value → a value TypeSerializer accepts: floats become Decimals, exactly as printed."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: to_dynamodb_value(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamodb_value(inner) for inner in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def serialize_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed wire form (`{"S": ...}`, `{"N": ...}`).

    Equal to boto3's TypeSerializer over `to_dynamodb_value(item)`, in one pass: the common types a
    decoded record holds are typed here directly (numbers checked in boto3's own decimal context);
    anything else (sets, bytes, Binary) goes to TypeSerializer. Per record this is a hot path.
    """
    return {name: _typed(value) for name, value in item.items()}


def _typed(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is Decimal:
        return {"N": _number(value)}
    if kind is float:
        return {"N": _number(Decimal(repr(value)))}
    if value is None:
        return {"NULL": True}
    if kind is dict:
        return {"M": {key: _typed(inner) for key, inner in value.items()}}
    if kind is list or kind is tuple:
        return {"L": [_typed(inner) for inner in value]}
    return _serializer.serialize(to_dynamodb_value(value))


def _number(value: int | Decimal) -> str:
    # boto3's rule: exact in DynamoDB's context (38 digits, its exponent range), never NaN or Infinity;
    # trailing zeros are not digits DynamoDB keeps (1.000...0 with 42 digits is 1), so they go first.
    try:
        number = str(DYNAMODB_CONTEXT.create_decimal(value))
    except Rounded:
        number = str(DYNAMODB_CONTEXT.create_decimal(_without_trailing_zeros(Decimal(value))))
    if number in ("Infinity", "-Infinity", "NaN", "sNaN", "-NaN", "-sNaN"):
        raise TypeError("Infinity and NaN not supported")
    return number


def _without_trailing_zeros(number: Decimal) -> Decimal:
    """The same value with trailing zeros dropped, exactly (a context wide enough never to round)."""
    digits = len(number.as_tuple().digits)
    return number.normalize(Context(prec=max(digits, 1), Emax=MAX_EMAX, Emin=MIN_EMIN))


def describe_unstorable(error: Exception) -> str:
    """Why an item cannot be serialized for DynamoDB, in words that name the problem."""
    if isinstance(error, ArithmeticError):
        # decimal's traps (Inexact, Rounded, Overflow, Underflow) say nothing a reader can use.
        return "a number has more than 38 significant digits or is outside DynamoDB's range (1E-130 to 9.99E+125)"
    if isinstance(error, RecursionError):
        return "the item is nested too deeply"
    return f"{type(error).__name__}: {error}"


def normalized_key(typed_item: dict[str, Any], key_attributes: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """A typed item's key, comparable however DynamoDB spells a number ("1.50" and "1.5" are one key)."""
    parts = []
    for name in key_attributes:
        ((type_name, value),) = typed_item.get(name, {"NULL": True}).items()
        parts.append((type_name, Decimal(value).normalize() if type_name == "N" else value))
    return tuple(parts)
