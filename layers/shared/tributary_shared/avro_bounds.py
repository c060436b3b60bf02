"""Bounds on decoding untrusted Avro, checked before fastavro sees a body.

Writer schemas come from a registry any producer can add a compatible version to, and fastavro
trusts both schema and body: it recurses in C as deep as the body nests (a recursive record
nested 5,000 deep in a 15 KB body kills the process with SIGSEGV) and loops as many times as an
array block claims (2**40 `null` items take zero bytes each, so a 15-byte frame decodes for
minutes while memory grows). This module makes both bounded:

- `body_check(schema)` surveys a writer schema once (the codec keeps the result with the schema
  version). A schema that is not recursive, nests at most `MAX_NESTING_DEPTH` levels, and whose
  arrays and maps hold no free values (below) gets no check at all: every value fastavro builds
  in a collection then costs body bytes, so its work is bounded by the body's length and plain
  schemas pay nothing. Any other schema gets a `BodyWalker`, which skips through each body
  in Python, building nothing, and fails the record with a reason before fastavro runs.
- `read_decimal` replaces fastavro's decimal reader, whose conversion of the unscaled integer
  is quadratic in its length (a 1 MiB `bytes` decimal decodes for minutes) and which silently
  rounds values longer than the schema's precision.

Nesting depth counts records, arrays and maps: a top-level record with a field of type array of
records is three levels deep. Free values take no bytes of the body (`null`, an empty `fixed`, a
record made only of such fields): they are the only way to make fastavro build values the body
does not pay for. Inside arrays and maps, where a block's count multiplies them, a body may hold
one per byte, and never fewer than `FREE_VALUES_FLOOR`, whatever its length. A value chosen by a
union index or keyed by a map key is paid for by that index or key, so it is not free.
"""

from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from tributary_shared.errors import PoisonRecordError

MAX_NESTING_DEPTH = 64
# Far deeper than any usable schema (64 levels of optional records are 256 levels of JSON), and
# shallow enough for fastavro's recursive schema parser on any thread's stack.
MAX_SCHEMA_JSON_DEPTH = 512
# Values taking no bytes that any body may hold inside arrays and maps, however short it is.
FREE_VALUES_FLOOR = 256
# Python's own limit for converting integers to text: a decimal longer than this is refused
# before its quadratic conversion, as untrusted JSON integers are.
MAX_DECIMAL_DIGITS = 4300
# A varint encodes a 64-bit long in at most 10 bytes.
MAX_VARINT_BYTES = 10

PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
RECORD_TYPES = frozenset({"record", "error"})
NAMED_TYPES = RECORD_TYPES | {"enum", "fixed"}

BodyCheck = Callable[[bytes, int], None]


def schema_too_deep(definition: Any) -> bool:
    """Whether a schema's JSON nests deeper than `MAX_SCHEMA_JSON_DEPTH` (checked without recursing)."""
    pending = [(definition, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_SCHEMA_JSON_DEPTH:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def body_check(schema: Any) -> BodyCheck | None:
    """The pre-scan bodies of this fastavro-parsed writer schema need, or None when none is needed."""
    named = _named_types(schema)
    try:
        _Survey(named).shape(schema, 0)
    except _NeedsWalk:
        return BodyWalker(schema, named)
    return None


def _named_types(schema: Any) -> dict[str, dict[str, Any]]:
    """Every record, enum and fixed a parsed schema defines, by full name (found without recursing)."""
    named: dict[str, dict[str, Any]] = {}
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            kind = node["type"]
            if kind in NAMED_TYPES:
                named[node["name"]] = node
                if kind in RECORD_TYPES:
                    pending.extend(field["type"] for field in node["fields"])
            elif kind == "array":
                pending.append(node["items"])
            elif kind == "map":
                pending.append(node["values"])
            else:  # a primitive carrying a logical type, or a nested type definition
                pending.append(kind)
    return named


# ------------------------------------------------------------------------------ schema survey


class _NeedsWalk(Exception):
    """The schema lets a body drive fastavro past a bound: its bodies must be walked first."""


class _Shape(NamedTuple):
    height: int  # records, arrays and maps nested in a value of the type, itself included
    zero_bytes: bool  # every value of the type encodes in zero bytes
    holds_free: bool  # a value holds a record field that takes zero bytes


_LEAF = _Shape(0, zero_bytes=False, holds_free=False)
_NOTHING = _Shape(0, zero_bytes=True, holds_free=False)  # null, fixed of size 0


class _Survey:
    """Walks a schema's types once, stopping at the first reason its bodies need walking.

    Named types are measured once (a schema reusing a type everywhere is not re-walked), and the
    survey never descends more than `MAX_NESTING_DEPTH` levels, so its own recursion is bounded.
    """

    def __init__(self, named: Mapping[str, dict[str, Any]]) -> None:
        self._named = named
        self._shapes: dict[str, _Shape] = {}
        self._measuring: set[str] = set()

    def shape(self, schema: Any, level: int) -> _Shape:
        """The shape of `schema` found `level` records, arrays and maps deep."""
        if isinstance(schema, str):
            if schema in PRIMITIVE_TYPES:
                return _NOTHING if schema == "null" else _LEAF
            return self._named_shape(schema, level)
        if isinstance(schema, list):  # the index pays for the branch; only what it holds can be free
            branches = [self.shape(branch, level) for branch in schema]
            height = max((branch.height for branch in branches), default=0)
            return _Shape(height, zero_bytes=False, holds_free=any(branch.holds_free for branch in branches))
        kind = schema["type"]
        if kind in NAMED_TYPES:
            return self._named_shape(schema["name"], level)
        if kind == "array" or kind == "map":
            return self._collection_shape(schema, level)
        return self.shape(kind, level)

    def _collection_shape(self, collection: Mapping[str, Any], level: int) -> _Shape:
        if level >= MAX_NESTING_DEPTH:
            raise _NeedsWalk
        is_array = collection["type"] == "array"
        entry = self.shape(collection["items"] if is_array else collection["values"], level + 1)
        # A map entry's key takes bytes, so only a value holding free fields multiplies for nothing.
        if entry.holds_free or (is_array and entry.zero_bytes):
            raise _NeedsWalk
        return _Shape(entry.height + 1, zero_bytes=False, holds_free=False)

    def _named_shape(self, name: str, level: int) -> _Shape:
        shape = self._shapes.get(name)
        if shape is None:
            if name in self._measuring:  # recursive: its depth is the body's to choose
                raise _NeedsWalk
            self._measuring.add(name)
            shape = self._shapes[name] = self._definition_shape(self._named[name], level)
            self._measuring.discard(name)
        if level + shape.height > MAX_NESTING_DEPTH:
            raise _NeedsWalk
        return shape

    def _definition_shape(self, definition: Mapping[str, Any], level: int) -> _Shape:
        kind = definition["type"]
        if kind == "enum":
            return _LEAF
        if kind == "fixed":
            return _NOTHING if definition["size"] == 0 else _LEAF
        if level >= MAX_NESTING_DEPTH:
            raise _NeedsWalk
        fields = [self.shape(field["type"], level + 1) for field in definition["fields"]]
        zero_bytes = all(field.zero_bytes for field in fields)
        return _Shape(
            1 + max((field.height for field in fields), default=0),
            zero_bytes=zero_bytes,
            holds_free=zero_bytes or any(field.zero_bytes or field.holds_free for field in fields),
        )


# ------------------------------------------------------------------------------ body walk


class BodyWalker:
    """Checks one body against the bounds by skipping through it as fastavro would read it.

    Nothing is built; work is bounded by the body's length and `MAX_NESTING_DEPTH`. Anything
    that is not valid Avro for the schema fails too (fastavro is stricter on some points than
    on others, the walk on all of them): a union or enum index out of range, a length past the
    end, a varint longer than 10 bytes, a body that ends inside a value.
    """

    def __init__(self, schema: Any, named: Mapping[str, dict[str, Any]]) -> None:
        self._schema = schema
        self._named = named

    def __call__(self, data: bytes, start: int) -> None:
        """Raise PoisonRecordError unless the body `data[start:]` stays within the bounds."""
        walk = _Walk(self._named, data, start)
        try:
            walk.skip(self._schema, start, 0)
        except IndexError as error:  # read past the end of `data`
            raise _mismatch("it ends inside a value") from error


class _Walk:
    """The state of walking one body: where it ends and how many free values it has used."""

    __slots__ = ("_data", "_end", "_free_limit", "_free_used", "_in_items", "_named", "_size")

    def __init__(self, named: Mapping[str, dict[str, Any]], data: bytes, start: int) -> None:
        self._named = named
        self._data = data
        self._end = len(data)
        self._size = self._end - start
        self._free_limit = max(self._size, FREE_VALUES_FLOOR)
        self._free_used = 0
        self._in_items = 0  # how many arrays or maps enclose the value being walked

    def skip(self, schema: Any, pos: int, level: int) -> int:
        """Skip one value of `schema` at `pos`, `level` records, arrays and maps deep; its end."""
        while True:
            if type(schema) is str:
                if schema in PRIMITIVE_TYPES:
                    return self._skip_primitive(schema, pos)
                schema = self._named[schema]
            elif type(schema) is list:
                index, pos = self._varint(pos)
                if not 0 <= index < len(schema):
                    raise _mismatch(f"union branch {index} does not exist (the union has {len(schema)})")
                schema = schema[index]
            else:
                kind = schema["type"]
                if kind in RECORD_TYPES:
                    return self._skip_record(schema, pos, level)
                if kind == "array" or kind == "map":
                    return self._skip_blocks(schema, pos, level)
                if kind == "enum":
                    return self._skip_enum(schema, pos)
                if kind == "fixed":
                    return self._skip_bytes(pos, schema["size"])
                schema = kind

    def _skip_primitive(self, kind: str, pos: int) -> int:
        if kind == "int" or kind == "long":
            return self._varint(pos)[1]
        if kind == "string" or kind == "bytes":
            length, pos = self._varint(pos)
            if length < 0:
                raise _mismatch(f"a {kind} claims a negative length ({length})")
            return self._skip_bytes(pos, length)
        if kind == "null":
            return pos
        return self._skip_bytes(pos, 1 if kind == "boolean" else 4 if kind == "float" else 8)

    def _skip_bytes(self, pos: int, length: int) -> int:
        if length > self._end - pos:
            raise _mismatch(f"a value of {length} bytes runs past the end of the body")
        return pos + length

    def _skip_enum(self, enum: Mapping[str, Any], pos: int) -> int:
        index, pos = self._varint(pos)
        if not 0 <= index < len(enum["symbols"]):
            raise _mismatch(f"enum {enum['name']} has no symbol {index}")
        return pos

    def _skip_record(self, record: Mapping[str, Any], pos: int, level: int) -> int:
        level += 1
        if level > MAX_NESTING_DEPTH:
            raise _too_deep()
        for field in record["fields"]:
            end = self.skip(field["type"], pos, level)
            if end == pos and self._in_items:
                self._use_free(1)
            pos = end
        return pos

    def _skip_blocks(self, collection: Mapping[str, Any], pos: int, level: int) -> int:
        """An array or map: blocks of items, each block a count (negative: then its byte size)."""
        level += 1
        if level > MAX_NESTING_DEPTH:
            raise _too_deep()
        kind = collection["type"]
        entry = collection["items"] if kind == "array" else collection["values"]
        self._in_items += 1
        while True:
            count, pos = self._varint(pos)
            if count == 0:
                self._in_items -= 1
                return pos
            if count < 0:  # a block that says its size, for readers that skip it; the walk reads it
                count = -count
                pos = self._varint(pos)[1]
            pos = self._skip_block(kind, entry, count, pos, level)

    def _skip_block(self, kind: str, entry: Any, count: int, pos: int, level: int) -> int:
        first = pos
        free_before = self._free_used
        pos = self._skip_entry(kind, entry, pos, level)
        if pos == first:  # a type that always takes zero bytes: every item is alike, none need walking
            self._use_free(1)
            free_per_item = self._free_used - free_before
            if (count - 1) * free_per_item > self._free_limit - self._free_used:
                raise PoisonRecordError(f"Avro {kind} block claims {count} items but the body has {self._size} bytes")
            self._free_used += (count - 1) * free_per_item
            return pos
        if count > self._end - first:  # every item takes at least one byte
            raise PoisonRecordError(
                f"Avro {kind} block claims {count} items but only {self._end - first} bytes of the body are left"
            )
        for _ in range(count - 1):
            pos = self._skip_entry(kind, entry, pos, level)
        return pos

    def _skip_entry(self, kind: str, entry: Any, pos: int, level: int) -> int:
        if kind == "map":
            pos = self._skip_primitive("string", pos)
        return self.skip(entry, pos, level)

    def _use_free(self, values: int) -> None:
        self._free_used += values
        if self._free_used > self._free_limit:
            raise PoisonRecordError(
                f"Avro body of {self._size} bytes holds more than {self._free_limit} values that take no bytes "
                "(nulls, empty records or fixed) inside arrays and maps"
            )

    def _varint(self, pos: int) -> tuple[int, int]:
        """The zig-zag varint at `pos` and the position after it."""
        data = self._data
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return (value >> 1) ^ -(value & 1), pos
            shift += 7
        raise _mismatch(f"a varint runs past {MAX_VARINT_BYTES} bytes")


def _too_deep() -> PoisonRecordError:
    return PoisonRecordError(f"Avro body nests deeper than {MAX_NESTING_DEPTH} levels")


def _mismatch(detail: str) -> PoisonRecordError:
    return PoisonRecordError(f"Avro body does not match its schema: {detail}")


# ------------------------------------------------------------------------------ decimals


def read_decimal(data: bytes, writer_schema: Mapping[str, Any], reader_schema: Any = None) -> Decimal:
    """fastavro's `bytes`/`fixed` decimal reader, bounded and exact.

    The unscaled integer may not need more bytes, nor have more digits, than the writer schema's
    precision allows (capped at `MAX_DECIMAL_DIGITS`); the result is the exact value, never
    rounded to a context. Installed in fastavro's LOGICAL_READERS by the codec.
    """
    precision = writer_schema["precision"]
    digits_read = min(precision, MAX_DECIMAL_DIGITS)
    if len(data) > _decimal_bytes(digits_read):
        raise PoisonRecordError(
            f"Avro decimal of {len(data)} bytes is longer than precision {precision} allows"
            + ("" if precision == digits_read else f" (at most {MAX_DECIMAL_DIGITS} digits are read)")
        )
    sign, digits, _ = Decimal(int.from_bytes(data, "big", signed=True)).as_tuple()
    if len(digits) > precision:
        raise PoisonRecordError(f"Avro decimal has {len(digits)} digits, more than its precision {precision}")
    return Decimal((sign, digits, -writer_schema.get("scale", 0)))


@lru_cache(maxsize=64)
def _decimal_bytes(precision: int) -> int:
    """Bytes of two's complement the largest unscaled value of `precision` digits needs."""
    return ((10**precision - 1).bit_length() + 1 + 7) // 8
