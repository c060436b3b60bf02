"""Hostile Avro through the registry codec: every frame decodes or fails alone, quickly, with a reason.

Random bytes after valid Glue and Confluent headers, mutated valid frames, crafted block counts,
and random writer schemas (recursive ones too) with random and valid bodies. The codec may only
return a record or raise PoisonRecordError / TransientError, each example within a time bound; a
valid body it accepts decodes exactly as fastavro reads it.
"""

import faulthandler
import io
import itertools
import json
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st
from support import definition

from tributary.avro_encoding import avro_body
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_schemas import parse_definition
from tributary_shared.errors import PoisonRecordError, TransientError

# Every example finishes well within this; a regression that loops in C cannot be interrupted,
# so a watchdog ends the whole run (with every thread's traceback) rather than let CI hang.
EXAMPLE_SECONDS = 2.0
WATCHDOG_SECONDS = 60.0
VERSION_ID = UUID(int=7)
SCHEMA_ID = 7


def record_schema(name: str, fields: list[tuple[str, Any]]) -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]})


FIXED_SCHEMAS = {
    "payment": definition("payment_event_v2"),
    "unicorn": definition("unicorn_status"),
    "linked list": record_schema("Node", [("value", "int"), ("next", ["null", "Node"])]),
    "tree": record_schema("Tree", [("label", "string"), ("children", {"type": "array", "items": "Tree"})]),
    "map tree": record_schema("M", [("kids", {"type": "map", "values": "M"})]),
    "nulls": record_schema("N", [("id", "long"), ("nulls", {"type": "array", "items": "null"})]),
    "zero records": record_schema(
        "Z",
        [
            ("items", {"type": "array", "items": {"type": "record", "name": "Empty", "fields": []}}),
            ("fixed", {"type": "array", "items": {"type": "fixed", "name": "None0", "size": 0}}),
        ],
    ),
    "records holding nulls": record_schema(
        "H",
        [
            (
                "rows",
                {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Row",
                        "fields": [
                            {"name": "gap", "type": "null"},
                            {"name": "on", "type": "boolean"},
                        ],
                    },
                },
            ),
            ("named", {"type": "map", "values": "Row"}),
        ],
    ),
}


@contextmanager
def bounded_time() -> Iterator[None]:
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    started = time.perf_counter()
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - started
    assert elapsed < EXAMPLE_SECONDS, f"one frame took {elapsed:.2f} s to decode or refuse"


def decode(schema: str, frame: bytes) -> dict[str, Any] | PoisonRecordError | TransientError:
    """The codec's answer for one frame: a record, or the error that fails that record alone."""
    deserializer = RegistryDeserializer(lambda _: schema, lambda _: schema)
    with bounded_time():
        try:
            record = deserializer(frame)
        except (PoisonRecordError, TransientError) as error:
            assert error.reason
            return error
    assert type(record) is dict
    return record


def frame(framing: str, body: bytes) -> bytes:
    if framing == "glue":
        return b"\x03\x00" + VERSION_ID.bytes + body
    if framing == "glue zlib":
        return b"\x03\x05" + VERSION_ID.bytes + zlib.compress(body)
    return b"\x00" + SCHEMA_ID.to_bytes(4, "big") + body


def varint(value: int) -> bytes:
    """Avro's zig-zag varint of a 64-bit long."""
    zigzag = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while zigzag >= 0x80:
        out.append(zigzag & 0x7F | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


framings = st.sampled_from(["glue", "glue zlib", "confluent"])
fixed_schemas = st.sampled_from(sorted(FIXED_SCHEMAS))


# ------------------------------------------------------------------------------------ random schemas


@st.composite
def avro_schemas(draw: Callable[[st.SearchStrategy[Any]], Any]) -> dict[str, Any]:
    """A record schema of random shape: nested records, unions, collections, recursion, zero-byte types."""
    serial = itertools.count()

    def named(prefix: str) -> str:
        return f"{prefix}{next(serial)}"

    def avro_type(depth: int, enclosing: tuple[str, ...]) -> Any:
        kinds = ["primitive", "primitive", "enum", "fixed", "decimal"]
        if depth < 4:
            kinds += ["array", "map", "union", "record"]
        if enclosing:
            kinds += ["recursion"]
        kind = draw(st.sampled_from(kinds))
        if kind == "primitive":
            return draw(st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes", "string"]))
        if kind == "enum":
            return {"type": "enum", "name": named("E"), "symbols": [f"S{i}" for i in range(draw(st.integers(1, 3)))]}
        if kind == "fixed":
            return {"type": "fixed", "name": named("F"), "size": draw(st.integers(0, 3))}
        if kind == "decimal":
            precision = draw(st.integers(1, 20))
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": precision,
                "scale": draw(st.integers(0, precision)),
            }
        if kind == "array":
            return {"type": "array", "items": avro_type(depth + 1, enclosing)}
        if kind == "map":
            return {"type": "map", "values": avro_type(depth + 1, enclosing)}
        if kind == "union":
            return ["null", draw(st.sampled_from(["int", "string"])), record(depth + 1, enclosing)]
        if kind == "record":
            return record(depth + 1, enclosing)
        target = draw(st.sampled_from(enclosing))  # recursion: always with a way out
        return draw(
            st.sampled_from([["null", target], {"type": "array", "items": target}, {"type": "map", "values": target}])
        )

    def record(depth: int, enclosing: tuple[str, ...]) -> dict[str, Any]:
        name = named("R")
        fields = [
            {"name": f"f{i}", "type": avro_type(depth, (*enclosing, name))} for i in range(draw(st.integers(0, 3)))
        ]
        return {"type": "record", "name": name, "fields": fields}

    return record(0, ())


def values(schema: Any, named: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Valid data for a schema; past a few levels collections are empty and unions take null."""
    if isinstance(schema, str) and schema in PRIMITIVE_VALUES:
        return PRIMITIVE_VALUES[schema]
    if isinstance(schema, str):
        return values(named[schema], named, depth)
    if isinstance(schema, list):
        if depth >= 4:
            return st.none()
        return st.one_of([values(branch, named, depth) for branch in schema])
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"], named, depth + 1) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array" or kind == "map":
        if depth >= 4:
            return st.just([] if kind == "array" else {})
        if kind == "array":
            return st.lists(values(schema["items"], named, depth + 1), max_size=3)
        return st.dictionaries(st.text(max_size=3), values(schema["values"], named, depth + 1), max_size=3)
    if schema.get("logicalType") == "decimal":
        places, whole = schema["scale"], schema["precision"] - schema["scale"]
        bound = Decimal(10) ** whole - Decimal(1).scaleb(-places)
        return st.decimals(-bound, bound, places=places, allow_nan=False, allow_infinity=False)
    return PRIMITIVE_VALUES[kind]  # other logical types take their underlying type's values


PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=6),
    "string": st.text(max_size=6),
}


def named_definitions(schema: Any, named: dict[str, Any]) -> dict[str, Any]:
    """Every named type a schema defines, by name, for values() to resolve references to."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            if "name" in node and node["type"] in ("record", "enum", "fixed"):
                named[node["name"]] = node
            pending.extend(f["type"] for f in node.get("fields", []))
            pending.extend(node[key] for key in ("items", "values") if key in node)
    return named


# ------------------------------------------------------------------------------------ properties


@settings(max_examples=300)
@given(schema=fixed_schemas, framing=framings, body=st.binary(max_size=96))
def test_random_bytes_after_a_valid_header_decode_or_fail_alone(schema, framing, body):
    decode(FIXED_SCHEMAS[schema], frame(framing, body))


@settings(max_examples=150)
@given(schema=avro_schemas(), framing=framings, data=st.data())
def test_valid_bodies_of_random_schemas_decode_exactly_as_fastavro_reads_them(schema, framing, data):
    text = json.dumps(schema)
    record = data.draw(values(schema, named_definitions(schema, {})))
    body = avro_body(record, parse_definition(text))
    expected = schemaless_reader(io.BytesIO(body), parse_definition(text))
    assert decode(text, frame(framing, body)) == expected


@settings(max_examples=200)
@given(schema=avro_schemas(), framing=framings, body=st.binary(max_size=64))
def test_random_bodies_of_random_schemas_decode_or_fail_alone(schema, framing, body):
    decode(json.dumps(schema), frame(framing, body))


@st.composite
def mutated(draw: Callable[[st.SearchStrategy[Any]], Any], body: bytes) -> bytes:
    """A valid body with bits flipped, cut short, extended, or a stretch of it repeated."""
    edit = draw(st.sampled_from(["flip", "truncate", "extend", "repeat"]))
    if edit == "flip" and body:
        mutable = bytearray(body)
        for position in draw(st.lists(st.integers(0, len(body) - 1), min_size=1, max_size=4)):
            mutable[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(mutable)
    if edit == "truncate":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if edit == "repeat" and body:
        start = draw(st.integers(0, len(body) - 1))
        return body[:start] + body[start:] * draw(st.integers(2, 50))
    return body + draw(st.binary(min_size=1, max_size=16))


@settings(max_examples=200)
@given(
    schema=st.one_of(fixed_schemas.map(FIXED_SCHEMAS.__getitem__), avro_schemas().map(json.dumps)),
    framing=framings,
    data=st.data(),
)
def test_mutated_valid_frames_decode_or_fail_alone(schema, framing, data):
    record = data.draw(values(json.loads(schema), named_definitions(json.loads(schema), {})))
    body = avro_body(record, parse_definition(schema))
    decode(schema, frame(framing, data.draw(mutated(body))))


BLOCK_SCHEMAS = {
    item: record_schema("B", [("id", "int"), ("items", {"type": "array", "items": item}), ("tail", "string")])
    for item in ("null", "int", "string", "boolean")
} | {
    "map": record_schema("B", [("id", "int"), ("items", {"type": "map", "values": "null"}), ("tail", "string")]),
    "empty record": record_schema(
        "B",
        [
            ("id", "int"),
            (
                "items",
                {
                    "type": "array",
                    "items": {"type": "record", "name": "Nothing", "fields": [{"name": "n", "type": "null"}]},
                },
            ),
            ("tail", "string"),
        ],
    ),
}
block_counts = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**40, -(2**40), 2**63 - 1, -(2**63), 2**31, 257, 256, -1, 1]),
    st.integers(-300, 300),
)


@settings(max_examples=250)
@given(
    item=st.sampled_from(sorted(BLOCK_SCHEMAS)),
    framing=framings,
    blocks=st.lists(st.tuples(block_counts, block_counts), min_size=1, max_size=3),
    filler=st.binary(max_size=24),
)
def test_crafted_block_counts_decode_or_fail_alone(item, framing, blocks, filler):
    """Blocks of any count (a negative one followed by any byte size), then a few bytes of items."""
    headers = b"".join(varint(count) + (varint(size) if count < 0 else b"") for count, size in blocks)
    outcome = decode(BLOCK_SCHEMAS[item], frame(framing, varint(1) + headers + filler + varint(0) + varint(0)))
    if item in ("null", "empty record") and max(abs(count) for count, _ in blocks) > 10**6:
        assert isinstance(outcome, PoisonRecordError)
