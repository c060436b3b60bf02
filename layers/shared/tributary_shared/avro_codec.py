"""Registry-framed Avro: the AWS Glue Schema Registry and Confluent wire formats, both ways.

Glue:      0x03 | compression (0x00 none, 0x05 zlib of the body) | 16-byte schema-version UUID | body
Confluent: 0x00 | 4-byte big-endian schema id | body

The body is schemaless Avro binary. `RegistryDeserializer` decodes either framing: it looks the
writer schema up once per schema id (bounded per-process cache), reads the body with fastavro,
optionally projects it onto a configured reader schema (a consumer built for v1 keeps working
when producers move to v2), and turns every way a record can be bad into a PoisonRecordError
that says what is wrong. Before fastavro reads a body, its depth and the item counts it claims
are bounded (see tributary_shared.avro_bounds): a hostile writer schema or body fails that record
with a reason instead of crashing or exhausting the function. A reader schema that cannot read
a writer schema is a configuration problem, not the record's: that is a TransientError naming
the fields, so the batch waits for the fix instead of records being discarded. A schema id the
registry does not know is remembered for a short while, so a burst of such records costs one
registry call, not one each.
Per Glue record, plain or zlib, the codec adds one slice and one dict lookup (header version,
compression byte and schema version checked at once) and one check for bytes left over to
fastavro, plus a bounded inflate for zlib bodies; only the rare schemas that need it (recursive,
deeper than the bound, or with arrays of values that take no bytes) also pay for a walk through
the body, and only reader schemas and temporal or uuid values pay for converting the record.

Values come back as fastavro reads them, except temporal and uuid logical types, which become
ISO-8601 strings and str so records are JSON-printable and storable in DynamoDB; `decimal`
stays `decimal.Decimal` (exact, and DynamoDB's number type): importing this module installs
`avro_bounds.read_decimal` as fastavro's decimal reader, in this process, so a decimal longer than
its precision is refused instead of rounded, or converted for minutes.
"""

import io
import json
import os
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from time import monotonic
from typing import Any
from uuid import UUID

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import LOGICAL_READERS, SchemaResolutionError

from tributary_shared.avro_bounds import (
    MAX_SCHEMA_JSON_DEPTH,
    RECORD_TYPES,
    BodyCheck,
    body_check,
    read_decimal,
    schema_too_deep,
)
from tributary_shared.errors import PoisonRecordError, TransientError

GLUE_HEADER_VERSION = 0x03
COMPRESSION_NONE = 0x00
COMPRESSION_ZLIB = 0x05
GLUE_HEADER_SIZE = 18
CONFLUENT_MAGIC = 0x00
CONFLUENT_HEADER_SIZE = 5
# A Kinesis record is at most 1 MiB, and so is a zlib body: compression never lets a record cost
# more to decode than the largest uncompressed one. fastavro can build ~70 bytes of objects per
# body byte (an array of empty arrays): a 4 KB frame inflating to 4 MiB took 300 MB, one to 16 MiB
# 1.2 GB and 20 s, past the function's memory; 1 MiB bounds a record at ~75 MB and half a second.
MAX_DECOMPRESSED_BYTES = 1024 * 1024
DEFAULT_CACHE_SIZE = 1000
# How long a schema id the registry said it does not have is answered from memory. Short: a
# producer may register the version a moment later, but a burst of poison records costs one call.
DEFAULT_UNKNOWN_ID_TTL = 30.0
PORTABLE_LOGICAL_TYPES = frozenset(
    {
        "timestamp-millis",
        "timestamp-micros",
        "local-timestamp-millis",
        "local-timestamp-micros",
        "date",
        "time-millis",
        "time-micros",
        "uuid",
    }
)

# (writer schema, reader schema or None, whether values need making portable, the walk its
# bodies need before fastavro reads them or None)
ReadPlan = tuple[Any, Any, bool, BodyCheck | None]
# What one whole Glue header (version, compression byte, schema version) says about the body:
# (writer schema, whether the body is zlib, the ReadPlan when fastavro alone does not read the body
# into the finished record, else None: the common case, read inline)
HeaderPlan = tuple[Any, bool, ReadPlan | None]
GlueLookup = Callable[[UUID], str]
ConfluentLookup = Callable[[int], str]

_parsed_schemas: dict[str, Any] = {}

# fastavro's own decimal reader rounds to the precision and is quadratic in the value's length.
LOGICAL_READERS["bytes-decimal"] = LOGICAL_READERS["fixed-decimal"] = read_decimal


def parse_definition(definition: str | Mapping[str, Any] | list[Any]) -> Any:
    """A fastavro-parsed schema; definitions given as text are parsed once per process.

    A definition nesting deeper than `MAX_SCHEMA_JSON_DEPTH` is refused (ValueError) before
    fastavro's recursive parser sees it.
    """
    if not isinstance(definition, str):
        return _parse_schema(definition)
    parsed = _parsed_schemas.get(definition)
    if parsed is None:
        if len(_parsed_schemas) >= DEFAULT_CACHE_SIZE:
            del _parsed_schemas[next(iter(_parsed_schemas))]
        parsed = _parsed_schemas[definition] = _parse_schema(json.loads(definition))
    return parsed


def _parse_schema(definition: Mapping[str, Any] | list[Any] | str) -> Any:
    if schema_too_deep(definition):
        raise ValueError(f"schema JSON nests deeper than {MAX_SCHEMA_JSON_DEPTH} levels")
    return parse_schema(definition)


def canonical_definition(schema: Mapping[str, Any] | str) -> str:
    """Compact, key-order-preserving JSON: the one text a producer registers and looks up by."""
    value = json.loads(schema) if isinstance(schema, str) else schema
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------------ encoding


def avro_body(record: Mapping[str, Any], schema: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def encode_glue(record: Mapping[str, Any], schema: Any, version_id: UUID, *, compress: bool = False) -> bytes:
    """Glue wire format; `compress` zlib-compresses the body (compression byte 0x05)."""
    body = avro_body(record, schema)
    if compress:
        return bytes((GLUE_HEADER_VERSION, COMPRESSION_ZLIB)) + version_id.bytes + zlib.compress(body)
    return bytes((GLUE_HEADER_VERSION, COMPRESSION_NONE)) + version_id.bytes + body


def encode_confluent(record: Mapping[str, Any], schema: Any, schema_id: int) -> bytes:
    """Confluent wire format: magic byte 0x00 and the 4-byte big-endian schema id."""
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"Confluent schema ids are unsigned 32-bit, got {schema_id}")
    return bytes((CONFLUENT_MAGIC,)) + schema_id.to_bytes(4, "big") + avro_body(record, schema)


# ------------------------------------------------------------------------------------ decoding


class RegistryDeserializer:
    """Callable decoder of Glue- and Confluent-framed Avro records into dicts.

    `glue_lookup(version_uuid)` and `confluent_lookup(schema_id)` return a writer schema's
    definition (see tributary_shared.schema_registry) and raise PoisonRecordError or
    TransientError themselves; a framing with no lookup configured is a poison record.
    """

    def __init__(
        self,
        glue_lookup: GlueLookup | None = None,
        confluent_lookup: ConfluentLookup | None = None,
        *,
        reader_schema: str | Mapping[str, Any] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        unknown_id_ttl: float = DEFAULT_UNKNOWN_ID_TTL,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._glue_lookup = glue_lookup
        self._confluent_lookup = confluent_lookup
        self._reader_definition, self._reader = _reader_schema(reader_schema)
        self._cache_size = cache_size
        self._unknown_id_ttl = unknown_id_ttl
        self._clock = clock
        # Schema ids the registry does not have: (framing, id) -> (until when, the registry's answer).
        self._unknown_ids: dict[tuple[str, UUID | int], tuple[float, PoisonRecordError]] = {}
        self._glue_plans: dict[bytes, ReadPlan] = {}  # by schema-version UUID
        # By the whole 18-byte header of Glue records, plain and zlib: one slice and one lookup
        # check the header version, the compression byte and the schema version at once.
        self._header_plans: dict[bytes, HeaderPlan] = {}
        self._confluent_plans: dict[int, ReadPlan] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "RegistryDeserializer":
        """Build from the function's configuration (all optional):

        GLUE_REGISTRY_NAME             only accept writer schemas from this Glue registry
        CONFLUENT_REGISTRY_URL         base URL of a Confluent-compatible registry (for 0x00 records)
        CONFLUENT_REGISTRY_AUTH_SECRET Secrets Manager secret id holding basic-auth credentials
                                       ({"username": ..., "password": ...} or "user:password")
        READER_SCHEMA                  Avro schema JSON to project every record onto
        SCHEMA_CACHE_SIZE              writer schemas kept per framing (default 1000)
        """
        from tributary_shared.schema_registry import (
            ConfluentSchemaRegistry,
            GlueSchemaRegistry,
            secret_credentials,
        )

        glue = GlueSchemaRegistry(environ.get("GLUE_REGISTRY_NAME") or None)
        confluent = None
        if url := environ.get("CONFLUENT_REGISTRY_URL"):
            secret_id = environ.get("CONFLUENT_REGISTRY_AUTH_SECRET")
            auth = (lambda: secret_credentials(secret_id)) if secret_id else None
            confluent = ConfluentSchemaRegistry(url, auth=auth).schema_definition
        try:
            return cls(
                glue.schema_definition,
                confluent,
                reader_schema=environ.get("READER_SCHEMA") or None,
                cache_size=int(environ.get("SCHEMA_CACHE_SIZE", DEFAULT_CACHE_SIZE)),
            )
        except ValueError as error:  # fail the cold start: no record is to blame for a bad setting
            raise ValueError(f"bad schema registry configuration: {error}") from error

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record in `data`, a Glue- or Confluent-framed Avro record; PoisonRecordError says why not.

        Also the instance's `__call__`. Per-record callers should hold this bound method: calling
        an instance goes through its type's `__call__` slot, about 0.1 µs a record more.
        """
        # Glue records with a header seen before are read here, inlined: this runs per record.
        known = self._header_plans.get(data[:GLUE_HEADER_SIZE])
        if known is None:
            return self._decode_uncached(data)
        writer, compressed, plan = known
        if plan is not None:
            return _read(_inflate(data), 0, plan) if compressed else _read(data, GLUE_HEADER_SIZE, plan)
        body = io.BytesIO(_inflate(data) if compressed else data[GLUE_HEADER_SIZE:])
        try:
            record = schemaless_reader(body, writer)
        except PoisonRecordError:  # a bounded logical-type reader refused the value, saying why
            raise
        except Exception as error:  # EOFError, UnicodeDecodeError, IndexError...
            raise _mismatch(error) from error
        if body.read(1):
            raise _leftovers(body)
        return record

    __call__ = decode

    def _decode_uncached(self, data: bytes) -> dict[str, Any]:
        first = data[0] if data else None
        if first == GLUE_HEADER_VERSION:
            return self._decode_glue(data)
        if first == CONFLUENT_MAGIC:
            return self._decode_confluent(data)
        if first is None:
            raise PoisonRecordError("record is empty")
        raise PoisonRecordError(f"not a registry-framed record: first byte 0x{first:02x} (Glue 0x03, Confluent 0x00)")

    def _decode_glue(self, data: bytes) -> dict[str, Any]:
        if len(data) < GLUE_HEADER_SIZE:
            raise PoisonRecordError(f"truncated Glue header: {len(data)} bytes, the header alone is {GLUE_HEADER_SIZE}")
        compression = data[1]
        if compression == COMPRESSION_ZLIB:
            body, start = _inflate(data), 0
        elif compression == COMPRESSION_NONE:
            body, start = data, GLUE_HEADER_SIZE
        else:
            raise PoisonRecordError(f"unknown Glue compression byte 0x{compression:02x} (0x00 none, 0x05 zlib)")
        key = data[2:GLUE_HEADER_SIZE]
        plan = self._glue_plans.get(key) or self._glue_plan(key)
        header_plan = (plan[0], compression == COMPRESSION_ZLIB, None if _fastavro_alone_reads(plan) else plan)
        _remember(self._header_plans, data[:GLUE_HEADER_SIZE], header_plan, self._cache_size)
        return _read(body, start, plan)

    def _decode_confluent(self, data: bytes) -> dict[str, Any]:
        if len(data) < CONFLUENT_HEADER_SIZE:
            raise PoisonRecordError(
                f"truncated Confluent header: {len(data)} bytes, the header alone is {CONFLUENT_HEADER_SIZE}"
            )
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
        plan = self._confluent_plans.get(schema_id) or self._confluent_plan(schema_id)
        return _read(data, CONFLUENT_HEADER_SIZE, plan)

    def _glue_plan(self, key: bytes) -> ReadPlan:
        version_id = UUID(bytes=key)
        if self._glue_lookup is None:
            raise PoisonRecordError(f"Glue-framed record (schema version {version_id}) but no Glue registry")
        definition = self._look_up("glue", version_id, self._glue_lookup)
        plan = self._plan(definition, f"schema version {version_id}")
        return _remember(self._glue_plans, key, plan, self._cache_size)

    def _confluent_plan(self, schema_id: int) -> ReadPlan:
        if self._confluent_lookup is None:
            raise PoisonRecordError(
                f"Confluent-framed record (schema id {schema_id}) but no Confluent registry is configured"
            )
        definition = self._look_up("confluent", schema_id, self._confluent_lookup)
        plan = self._plan(definition, f"schema id {schema_id}")
        return _remember(self._confluent_plans, schema_id, plan, self._cache_size)

    def _look_up[I: (UUID, int)](self, framing: str, schema_id: I, lookup: Callable[[I], str]) -> str:
        """The registry's definition for `schema_id`, or its recent "no such schema" again."""
        now = self._clock()
        known_unknown = self._unknown_ids.get((framing, schema_id))
        if known_unknown is not None:
            until, error = known_unknown
            if now < until:
                raise PoisonRecordError(f"{error.reason} (remembered for {self._unknown_id_ttl:g} s)")
            del self._unknown_ids[(framing, schema_id)]
        try:
            return lookup(schema_id)
        except PoisonRecordError as error:
            if len(self._unknown_ids) >= self._cache_size:
                del self._unknown_ids[next(iter(self._unknown_ids))]
            self._unknown_ids[(framing, schema_id)] = (now + self._unknown_id_ttl, error)
            raise

    def _plan(self, writer_definition: str, subject: str) -> ReadPlan:
        """How to read bodies of one writer schema; a schema unfit to read any is every record's poison."""
        try:
            writer = parse_definition(writer_definition)
            same_as_reader = canonical_definition(writer_definition) == self._reader_definition
            check = body_check(writer)
        except Exception as error:  # fastavro raises several types for a schema it cannot use
            raise PoisonRecordError(f"writer schema of {subject} is not usable Avro: {error}") from error
        output = self._reader_definition or writer_definition
        return writer, None if same_as_reader else self._reader, _has_portable_types(json.loads(output)), check


def _reader_schema(reader_schema: str | Mapping[str, Any] | None) -> tuple[str | None, Any]:
    """(canonical definition, parsed schema) of the configured reader schema, or (None, None)."""
    if reader_schema is None:
        return None, None
    try:
        definition = canonical_definition(reader_schema)
        return definition, parse_definition(definition)
    except Exception as error:  # invalid JSON, or JSON fastavro cannot use as a schema
        raise ValueError(f"reader schema (READER_SCHEMA) is not a usable Avro schema: {error}") from error


def _remember[K, P](plans: dict[K, P], key: K, plan: P, limit: int) -> P:
    if len(plans) >= limit:
        del plans[next(iter(plans))]  # oldest first: ids are immutable, so any eviction is safe
    plans[key] = plan
    return plan


def _fastavro_alone_reads(plan: ReadPlan) -> bool:
    """Whether fastavro's value for this plan's bodies, once all bytes are used, is the finished record.

    So: no reader schema to project onto, no walk before reading, no values to make portable, and a
    writer schema that is a record (so the value is a dict).
    """
    writer, reader, portable, check = plan
    is_record = isinstance(writer, dict) and writer.get("type") in RECORD_TYPES
    return reader is None and check is None and not portable and is_record


def _inflate(data: bytes) -> bytes:
    """The zlib body of a Glue record, inflated to at most MAX_DECOMPRESSED_BYTES.

    zlib.decompress is cheaper (it keeps no window) but can neither bound its output (a bomb) nor
    say where the stream ended (bytes after it); a decompressor can, for about 0.2 µs a record.
    Checking the stream's Adler-32 trailer after zlib.decompress measured no cheaper. The input is
    a slice, not a memoryview: copying a body costs less than the view (another 0.2 µs), and one
    test covers the common case.
    """
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[GLUE_HEADER_SIZE:], MAX_DECOMPRESSED_BYTES)
    except zlib.error as error:
        raise PoisonRecordError(f"zlib-compressed body does not inflate: {error}") from error
    if inflater.eof and not inflater.unused_data:
        return body
    raise _not_inflated(inflater)


def _not_inflated(inflater: Any) -> PoisonRecordError:
    """Why a body that inflated without an error is refused (a stream that ended leaves no unconsumed tail)."""
    if inflater.unconsumed_tail:
        return PoisonRecordError(f"zlib-compressed body inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    if not inflater.eof:
        return PoisonRecordError("zlib-compressed body is truncated")
    return PoisonRecordError(f"{len(inflater.unused_data)} bytes of garbage after the zlib-compressed body")


def _read(data: bytes, start: int, plan: ReadPlan) -> dict[str, Any]:
    """Decode the body `data[start:]` (a position, not a slice: no copy of a large body)."""
    writer, reader, portable, check = plan
    if check is not None:
        check(data, start)
    body = io.BytesIO(data)
    if start:
        body.seek(start)
    try:
        record = schemaless_reader(body, writer, reader)
    except SchemaResolutionError as error:
        raise _unresolvable(error, writer, reader) from error
    except PoisonRecordError:  # a bounded logical-type reader refused the value, saying why
        raise
    except Exception as error:  # EOFError, UnicodeDecodeError, IndexError...
        raise _mismatch(error) from error
    if body.read(1):
        raise _leftovers(body)
    if type(record) is not dict:
        raise _not_a_record(record)
    return _portable(record) if portable else record


def _mismatch(error: Exception) -> PoisonRecordError:
    return PoisonRecordError(
        f"Avro body does not match its schema (truncated, corrupt or written with another schema): "
        f"{type(error).__name__}: {error}"
    )


def _unresolvable(error: SchemaResolutionError, writer: Any, reader: Any) -> TransientError:
    """The configured reader schema cannot read this writer schema: fix the configuration, keep the record."""
    fields = ", ".join(_unresolvable_fields(writer, reader)) or "see detail"
    return TransientError(
        f"reader schema cannot read records written with writer schema {writer.get('name')!r} "
        f"(a configuration problem, not the record's): fields {fields}; fastavro: {error}"
    )


def _unresolvable_fields(writer: Any, reader: Any) -> list[str]:
    """Reader fields the writer lacks with no default, or has with another type (top level)."""
    if not (isinstance(writer, dict) and isinstance(reader, dict)):
        return []
    if writer.get("name") != reader.get("name"):
        return [f"<record name {writer.get('name')!r} vs {reader.get('name')!r}>"]
    written = {}
    for field in writer.get("fields", []):
        for name in (field["name"], *field.get("aliases", [])):
            written[name] = field
    problems = []
    for field in reader.get("fields", []):
        match = next((written[n] for n in (field["name"], *field.get("aliases", [])) if n in written), None)
        if match is None and "default" not in field:
            problems.append(f"{field['name']} (not written, no default)")
        elif match is not None and match["type"] != field["type"]:
            written_as, read_as = _type_name(match["type"]), _type_name(field["type"])
            problems.append(f"{field['name']} (written as {written_as}, read as {read_as})")
    return problems


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("name") or avro_type.get("type"))
    if isinstance(avro_type, list):
        return "[" + ", ".join(_type_name(branch) for branch in avro_type) + "]"
    return str(avro_type)


def _leftovers(body: io.BytesIO) -> PoisonRecordError:
    """Bytes left after the record (one already read to notice them): the schema is not the body's."""
    unread = len(body.getbuffer()) - body.tell() + 1
    return PoisonRecordError(f"Avro body does not match its schema: {unread} bytes left after the record")


def _not_a_record(value: Any) -> PoisonRecordError:
    return PoisonRecordError(f"Avro value is a {type(value).__name__}, expected a record")


def _has_portable_types(schema: Any) -> bool:
    """Whether a schema's JSON names a logical type `_portable` converts (searched without recursing)."""
    pending = [schema]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if value.get("logicalType") in PORTABLE_LOGICAL_TYPES:
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _portable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item) for item in value]
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _iso_datetime(value: datetime) -> str:
    timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    if value.tzinfo is None:  # local-timestamp-*: no zone to name
        return value.isoformat(timespec=timespec)
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
