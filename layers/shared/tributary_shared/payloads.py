"""Decode a record's bytes into a dict, detecting its framing from the first byte.

- `{`: a JSON object (other JSON values are refused as what they are);
- `0x03`: AWS Glue Schema Registry framed Avro; `0x00`: Confluent framed Avro. Both go to the
  registry codec, imported on the first framed record so JSON-only functions never load it;
- anything else: a permanent error naming the byte.
"""

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from tributary_shared.errors import ConfigurationError, PoisonRecordError

GLUE_HEADER_VERSION = 0x03
CONFLUENT_MAGIC_BYTE = 0x00
# An object, or something else JSON so the error can say what it is instead of naming a byte.
JSON_OPENERS = frozenset(b'{["0123456789-tfn \t\r\n')
FRAMED_FIRST_BYTES = frozenset((GLUE_HEADER_VERSION, CONFLUENT_MAGIC_BYTE))

ERROR_REPORT_FIELD = "InputData"

# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

FramedDecoder = Callable[[bytes], dict[str, Any]]
_framed_decoder: FramedDecoder | None = None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number DynamoDB or JSON consumers can store")


def parse_json(data: bytes | str, what: str = "record") -> Any:
    """Parse untrusted JSON with exact decimals (DynamoDB has no floats); every failure is `what`'s poison.

    NaN and Infinity are refused; nesting too deep for the parser (RecursionError) and integers
    longer than Python's 4,300-digit conversion limit fail this input alone, naming the problem.
    """
    try:
        # Decoded as UTF-8 first: json.loads would also take UTF-16 and UTF-32 bytes, which no producer means.
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError as error:
        raise PoisonRecordError(f"{what} is not UTF-8 JSON: {error.reason} at byte {error.start}") from error
    except RecursionError as error:
        raise PoisonRecordError(f"{what} is JSON nested too deeply to parse") from error
    except ValueError as error:
        raise PoisonRecordError(f"{what} is not valid JSON: {error}") from error
    except ArithmeticError as error:  # decimal.InvalidOperation: an exponent no Decimal can hold
        raise PoisonRecordError(f"{what} has a number with an exponent too large to hold") from error
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if SURROGATE_ESCAPE.search(raw):
        reject_lone_surrogates(value, what)
    return value


def reject_lone_surrogates(value: Any, what: str = "record") -> None:
    """A string that is not valid Unicode (a lone surrogate such as "\\ud800") cannot be stored or re-encoded."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as error:
                raise PoisonRecordError(
                    f"{what} holds a lone UTF-16 surrogate ({node[error.start]!r}), which is not valid Unicode"
                ) from None


def decode_json_object(data: bytes, what: str = "record") -> dict[str, Any]:
    """A JSON object (see `parse_json`); any other JSON value is refused as what it is."""
    value = parse_json(data, what)
    if not isinstance(value, dict):
        raise PoisonRecordError(f"{what} is JSON {type(value).__name__}, expected an object")
    return value


def set_framed_decoder(decoder: FramedDecoder | None) -> None:
    """Plug in the registry codec (tests, or a function with its own registry client)."""
    global _framed_decoder
    _framed_decoder = decoder


def _registry_decoder() -> FramedDecoder:
    global _framed_decoder
    if _framed_decoder is None:
        # Imported here so functions that only ever see JSON never load Avro.
        from tributary_shared.avro_codec import RegistryDeserializer

        try:
            # The bound method, not the instance: calling an instance goes through its type's
            # __call__ slot, about 0.1 µs (3%) more per record.
            _framed_decoder = RegistryDeserializer.from_env().decode
        except (ValueError, RuntimeError) as error:  # READER_SCHEMA, SCHEMA_CACHE_SIZE...
            raise ConfigurationError(f"schema registry settings are invalid: {error}") from error
    return _framed_decoder


def reject_reported_error(record: Mapping[str, Any]) -> None:
    """A record its producer marked as an error is poison, never data.

    The Wild Rydes workshop's producer, and `tributary produce --error`, inject poison pills as an
    otherwise valid reading with an `InputData` field containing "error".
    """
    report = record.get(ERROR_REPORT_FIELD)
    if isinstance(report, str) and "error" in report:
        raise PoisonRecordError(f"{ERROR_REPORT_FIELD} reports an error: {report!r:.80}")


def decode_payload(data: bytes) -> dict[str, Any]:
    if not data:
        raise PoisonRecordError("record is empty")
    first = data[0]
    if first in FRAMED_FIRST_BYTES:
        return (_framed_decoder or _registry_decoder())(data)
    if first in JSON_OPENERS:
        return decode_json_object(data)
    raise PoisonRecordError(
        f"unknown record framing: first byte 0x{first:02x} is neither JSON ('{{'), "
        "Glue Schema Registry (0x03) nor Confluent (0x00)"
    )
