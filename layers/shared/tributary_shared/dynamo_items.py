"""Python values in DynamoDB's typed wire form, checked as DynamoDB checks them, in one pass.

The writer serializes every item itself (`serialize_item`), so botocore's parameter validation
can be off; an item that cannot be stored fails alone, described in words that name the problem.

A version-guarded writer goes one step further: it keeps each item only as the JSON DynamoDB
receives (`encode_item`, a fifth of the typed dict's memory) and sends a transaction's items as
an `EncodedJson` parameter, which a client given `send_encoded_json` puts into the request body as
it is. botocore would otherwise walk every value against the service model to serialize it
(measured: 39 µs an item of a 100-item transaction, more than the rest of the write path) and
evaluate an endpoint parameter over every item (18 µs); the JSON encoder in C takes about 5 µs.
"""

import base64
import json
from collections.abc import Sequence
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Rounded
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeSerializer

# What serializing an item raises when DynamoDB could not store it.
SERIALIZATION_ERRORS = (TypeError, ValueError, ArithmeticError, RecursionError)

_serializer = TypeSerializer()
# Integers of at most 38 digits are DynamoDB numbers exactly as Python prints them.
_EXACT_INTEGERS = 10**38


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
    if kind is int and -_EXACT_INTEGERS < value < _EXACT_INTEGERS:
        return {"N": str(value)}  # what the decimal context would give, without building a Decimal
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


def _wire_blob(value: Any) -> str:
    """Binary values go base64-encoded in DynamoDB's JSON, as botocore sends a blob."""
    if isinstance(value, Binary):
        value = value.value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not a DynamoDB wire value")


# Compact, ASCII-only (so text and bytes have one length), no cycle check: a typed item is a tree.
_encode_wire_json = json.JSONEncoder(separators=(",", ":"), default=_wire_blob, check_circular=False).encode


def encode_item(typed_item: dict[str, Any]) -> bytes:
    """A typed item (`serialize_item`) as the JSON botocore would send for it."""
    return _encode_wire_json(typed_item).encode("ascii")


def encode_text(text: str) -> bytes:
    """A string as a JSON string."""
    return _encode_wire_json(text).encode("ascii")


class EncodedJson:
    """A request parameter already in its JSON wire form (the concatenation of `parts`), sent as it is.

    botocore validates the request and resolves its endpoint with `stand_in` in the parameter's
    place (a small value of the same shape, such as one entry naming the table), then the body
    gets `parts` instead. A client not given `send_encoded_json` (a test's fake) gets this object.
    """

    __slots__ = ("parts", "stand_in")

    def __init__(self, parts: list[bytes], stand_in: Any) -> None:
        self.parts = parts
        self.stand_in = stand_in

    def decoded(self) -> Any:
        """The parameter's value as JSON data (for fakes and tests; blobs stay base64 text)."""
        return json.loads(b"".join(self.parts))


_SET_ASIDE = "tributary_shared.encoded_json"


def _set_aside_encoded(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # Before botocore validates, resolves the endpoint and serializes: none of them walks the items.
    encoded = {name: value for name, value in params.items() if type(value) is EncodedJson}
    if encoded:
        params.update((name, value.stand_in) for name, value in encoded.items())
        context[_SET_ASIDE] = encoded


def _splice_encoded(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # botocore's body: a small JSON object of the other parameters and the stand-ins, which go.
    encoded: dict[str, EncodedJson] | None = context.pop(_SET_ASIDE, None)
    if not encoded:
        return
    others = {name: value for name, value in json.loads(params["body"]).items() if name not in encoded}
    parts = [encode_item(others)[:-1]]
    for name, value in encoded.items():
        parts += [b"," if len(parts) > 1 or others else b"", encode_text(name), b":", *value.parts]
    parts.append(b"}")
    params["body"] = b"".join(parts)


def send_encoded_json(client: Any) -> None:
    """Make a DynamoDB client send `EncodedJson` parameters as they are (idempotent)."""
    if client.meta.service_model.protocol != "json":  # the body spliced here is JSON
        raise TypeError(f"{client.meta.service_model.service_name} does not speak the JSON protocol")
    events = client.meta.events
    events.register("before-parameter-build.dynamodb", _set_aside_encoded, unique_id=f"{_SET_ASIDE}.set-aside")
    events.register("before-call.dynamodb", _splice_encoded, unique_id=f"{_SET_ASIDE}.splice")
