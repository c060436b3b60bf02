"""Decode a record's bytes into a dict, detecting its framing from the first byte.

- `{`: a JSON object (other JSON values are refused as what they are);
- `0x03`: AWS Glue Schema Registry framed Avro; `0x00`: Confluent framed Avro. Both go to the
  registry codec a `PayloadDecoder` is given, or builds from its registry settings at the first
  framed record, so functions that only ever see JSON never load Avro;
- anything else: a permanent error naming the byte.
"""

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tributary_shared.avro_framing import CONFLUENT_MAGIC, GLUE_HEADER_VERSION
from tributary_shared.errors import PoisonRecordError

if TYPE_CHECKING:  # a JSON-only function (the Firehose transform, the opt-in updater) loads no registry code
    from tributary_shared.schema_registry import RegistrySettings

# An object, or something else JSON so the error can say what it is instead of naming a byte.
JSON_OPENERS = frozenset(b'{["0123456789-tfn \t\r\n')
FRAMED_FIRST_BYTES = frozenset((GLUE_HEADER_VERSION, CONFLUENT_MAGIC))

ERROR_REPORT_FIELD = "InputData"

# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

Decoder = Callable[[bytes], dict[str, Any]]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number DynamoDB or JSON consumers can store")


# One decoder for every record: `json.loads` with arguments builds a new one per call, which costs
# as much as parsing a small record.
_JSON_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def parse_json(data: bytes | str, what: str = "record") -> Any:
    """Parse untrusted JSON with exact decimals (DynamoDB has no floats); every failure is `what`'s poison.

    NaN and Infinity are refused; nesting too deep for the parser (RecursionError) and integers
    longer than Python's 4,300-digit conversion limit fail this input alone, naming the problem.
    """
    try:
        # Decoded as UTF-8 first: json.loads would also take UTF-16 and UTF-32 bytes, which no producer means.
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if text.startswith("\ufeff"):  # refused as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _JSON_DECODER.decode(text)
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


def reject_reported_error(record: Mapping[str, Any]) -> None:
    """A record its producer marked as an error is poison, never data.

    The Wild Rydes workshop's producer, and `tributary produce --error`, inject poison pills as an
    otherwise valid reading with an `InputData` field containing "error".
    """
    report = record.get(ERROR_REPORT_FIELD)
    if isinstance(report, str) and "error" in report:
        raise PoisonRecordError(f"{ERROR_REPORT_FIELD} reports an error: {report!r:.80}")


class PayloadDecoder:
    """A record's bytes → a dict, by the framing its first byte names (see the module docstring).

    Framed records go to `framed` when given (a test's codec, a tool's), else to the registry codec
    built from `registry` at the first framed record. With neither, a framed record is poison: no
    registry is configured to read it.

    `decode` is the entry point. Once the registry codec is built, it is the codec's own `decode`,
    which hands unframed records back to this decoder: a framed record then costs one Python call,
    not two (measured: 0.15 µs, 3% of a small zlib record). So a per-record caller should look
    `decode` up on the decoder each time; a reference taken earlier keeps working, one call slower.
    """

    def __init__(self, framed: Decoder | None = None, *, registry: "RegistrySettings | None" = None) -> None:
        self._framed = framed
        self._registry = registry
        self.decode: Decoder = self._decode

    def __call__(self, data: bytes) -> dict[str, Any]:
        return self.decode(data)

    def _decode(self, data: bytes) -> dict[str, Any]:
        if data and data[0] in FRAMED_FIRST_BYTES:
            return (self._framed or self._registry_codec())(data)
        return self._decode_unframed(data)

    def _decode_unframed(self, data: bytes) -> dict[str, Any]:
        if not data:
            raise PoisonRecordError("record is empty")
        first = data[0]
        if first in JSON_OPENERS:
            return decode_json_object(data)
        raise PoisonRecordError(
            f"unknown record framing: first byte 0x{first:02x} is neither JSON ('{{'), "
            "Glue Schema Registry (0x03) nor Confluent (0x00)"
        )

    def _registry_codec(self) -> Decoder:
        if self._registry is None:
            raise PoisonRecordError("record is registry-framed Avro, but no schema registry is configured")
        # Imported here so functions that only ever see JSON never load Avro.
        from tributary_shared.avro_codec import RegistryDeserializer

        # Bound methods, not the instance: calling an instance goes through its type's __call__
        # slot, about 0.1 µs (3%) more per record. A ConfigurationError fails the invocation.
        codec = RegistryDeserializer.from_settings(self._registry, unframed=self._decode_unframed)
        self._framed = self.decode = codec.decode
        return self._framed


# For readers of JSON streams (the development tools): a registry-framed record is refused as poison.
decode_payload = PayloadDecoder().decode
