"""Registry-framed Avro decoded into records: the AWS Glue Schema Registry and Confluent framings.

`RegistryDeserializer` decodes either framing (`avro_framing`): it looks the writer schema up once
per schema id (bounded per-process cache), reads the body with fastavro (`avro_reading`),
optionally projects it onto a configured reader schema (a consumer built for v1 keeps working
when producers move to v2), and turns every way a record can be bad into a PoisonRecordError
that says what is wrong. Before fastavro reads a body, its depth and the item counts it claims
are bounded (see tributary_shared.avro_bounds): a hostile writer schema or body fails that record
with a reason instead of crashing or exhausting the function. A schema id the registry does not
know is remembered for a short while, so a burst of such records costs one registry call, not one
each.

Per Glue record, plain or zlib, the codec adds one slice and one dict lookup (header version,
compression byte and schema version checked at once) and one check for bytes left over to
fastavro, plus a bounded inflate for zlib bodies; only the rare schemas that need it (recursive,
deeper than the bound, or with arrays of values that take no bytes) also pay for a walk through
the body, and only reader schemas and temporal or uuid values pay for converting the record.
Encoding is the producer's, in the development package (`tributary.avro_encoding`).
"""

import io
import json
import zlib
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any
from uuid import UUID

from fastavro import schemaless_reader

from tributary_shared.avro_bounds import body_check
from tributary_shared.avro_framing import (
    COMPRESSION_NONE,
    COMPRESSION_ZLIB,
    CONFLUENT_HEADER_SIZE,
    CONFLUENT_MAGIC,
    GLUE_HEADER_SIZE,
    GLUE_HEADER_VERSION,
)
from tributary_shared.avro_reading import (
    SMALL_ZLIB_BODY_BYTES,
    ReadPlan,
    fastavro_alone_reads,
    inflate,
    inflate_bounded,
    leftovers,
    mismatch,
    read_body,
)
from tributary_shared.avro_schemas import canonical_definition, has_portable_types, parse_definition
from tributary_shared.errors import ConfigurationError, PoisonRecordError
from tributary_shared.schema_registry import (
    DEFAULT_CACHE_SIZE,
    ConfluentSchemaRegistry,
    GlueSchemaRegistry,
    RegistrySettings,
)

# How long a schema id the registry said it does not have is answered from memory. Short: a
# producer may register the version a moment later, but a burst of poison records costs one call.
DEFAULT_UNKNOWN_ID_TTL = 30.0
# The per-record path's zlib functions, one name lookup each instead of two.
_zlib_decompress, _adler32 = zlib.decompress, zlib.adler32
SMALL_ZLIB_RECORD_BYTES = GLUE_HEADER_SIZE + SMALL_ZLIB_BODY_BYTES

# What one whole Glue header (version, compression byte, schema version) says about the body:
# (writer schema, whether the body is zlib, the ReadPlan when fastavro alone does not read the body
# into the finished record, else None: the common case, read inline)
HeaderPlan = tuple[Any, bool, ReadPlan | None]
GlueLookup = Callable[[UUID], str]
ConfluentLookup = Callable[[int], str]


class RegistryDeserializer:
    """Callable decoder of Glue- and Confluent-framed Avro records into dicts.

    `glue_lookup(version_uuid)` and `confluent_lookup(schema_id)` return a writer schema's
    definition (see tributary_shared.schema_registry) and raise PoisonRecordError or
    TransientError themselves; a framing with no lookup configured is a poison record. A reader
    schema that is not usable Avro is a ConfigurationError. A record framed neither way goes to
    `unframed` when given (`PayloadDecoder` passes its JSON path), else it is a poison record.
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
        unframed: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        if cache_size < 1:
            raise ConfigurationError(f"the schema cache size (SCHEMA_CACHE_SIZE) must be at least 1, got {cache_size}")
        self._glue_lookup = glue_lookup
        self._confluent_lookup = confluent_lookup
        self._reader_definition, self._reader = _reader_schema(reader_schema)
        self._cache_size = cache_size
        self._unknown_id_ttl = unknown_id_ttl
        self._clock = clock
        self._unframed = unframed
        # Schema ids the registry does not have: (framing, id) -> (until when, the registry's answer).
        self._unknown_ids: dict[tuple[str, UUID | int], tuple[float, PoisonRecordError]] = {}
        self._glue_plans: dict[bytes, ReadPlan] = {}  # by schema-version UUID
        # By the whole 18-byte header of Glue records, plain and zlib: one slice and one lookup
        # check the header version, the compression byte and the schema version at once.
        self._header_plans: dict[bytes, HeaderPlan] = {}
        self._confluent_plans: dict[int, ReadPlan] = {}

    @classmethod
    def from_settings(
        cls, settings: RegistrySettings, unframed: Callable[[bytes], dict[str, Any]] | None = None
    ) -> "RegistryDeserializer":
        """The codec a function's registry settings describe; ConfigurationError names what is wrong."""
        try:
            confluent = ConfluentSchemaRegistry.from_settings(settings) if settings.confluent_url else None
            return cls(
                GlueSchemaRegistry(settings.glue_registry_name).schema_definition,
                confluent.schema_definition if confluent else None,
                reader_schema=settings.reader_schema,
                cache_size=settings.cache_size,
                unframed=unframed,
            )
        except ConfigurationError as error:  # fail the invocation: no record is to blame for a bad setting
            raise ConfigurationError(f"schema registry settings are invalid: {error}") from error

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
            return read_body(inflate(data), 0, plan) if compressed else read_body(data, GLUE_HEADER_SIZE, plan)
        if compressed:  # avro_reading.inflate, inlined for its common case
            if len(data) <= SMALL_ZLIB_RECORD_BYTES:
                try:
                    inflated = _zlib_decompress(data[GLUE_HEADER_SIZE:])
                except zlib.error:
                    inflated = inflate_bounded(data)  # raises, naming the problem
                if not data.endswith(_adler32(inflated).to_bytes(4)):
                    inflated = inflate_bounded(data)
            else:
                inflated = inflate_bounded(data)
            body, size = io.BytesIO(inflated), len(inflated)
        else:
            body, size = io.BytesIO(data[GLUE_HEADER_SIZE:]), len(data) - GLUE_HEADER_SIZE
        try:
            record = schemaless_reader(body, writer)
        except PoisonRecordError:  # a bounded logical-type reader refused the value, saying why
            raise
        except Exception as error:  # EOFError, UnicodeDecodeError, IndexError...
            raise mismatch(error) from error
        if body.tell() != size:  # cheaper than reading a byte to see there is none
            raise leftovers(body)
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
        if self._unframed is not None:
            return self._unframed(data)
        raise PoisonRecordError(f"not a registry-framed record: first byte 0x{first:02x} (Glue 0x03, Confluent 0x00)")

    def _decode_glue(self, data: bytes) -> dict[str, Any]:
        if len(data) < GLUE_HEADER_SIZE:
            raise PoisonRecordError(f"truncated Glue header: {len(data)} bytes, the header alone is {GLUE_HEADER_SIZE}")
        compression = data[1]
        if compression == COMPRESSION_ZLIB:
            body, start = inflate(data), 0
        elif compression == COMPRESSION_NONE:
            body, start = data, GLUE_HEADER_SIZE
        else:
            raise PoisonRecordError(f"unknown Glue compression byte 0x{compression:02x} (0x00 none, 0x05 zlib)")
        key = data[2:GLUE_HEADER_SIZE]
        plan = self._glue_plans.get(key) or self._glue_plan(key)
        header_plan = (plan[0], compression == COMPRESSION_ZLIB, None if fastavro_alone_reads(plan) else plan)
        _remember(self._header_plans, data[:GLUE_HEADER_SIZE], header_plan, self._cache_size)
        return read_body(body, start, plan)

    def _decode_confluent(self, data: bytes) -> dict[str, Any]:
        if len(data) < CONFLUENT_HEADER_SIZE:
            raise PoisonRecordError(
                f"truncated Confluent header: {len(data)} bytes, the header alone is {CONFLUENT_HEADER_SIZE}"
            )
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
        plan = self._confluent_plans.get(schema_id) or self._confluent_plan(schema_id)
        return read_body(data, CONFLUENT_HEADER_SIZE, plan)

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
        return writer, None if same_as_reader else self._reader, has_portable_types(json.loads(output)), check


def _reader_schema(reader_schema: str | Mapping[str, Any] | None) -> tuple[str | None, Any]:
    """(canonical definition, parsed schema) of the configured reader schema, or (None, None)."""
    if reader_schema is None:
        return None, None
    try:
        definition = canonical_definition(reader_schema)
        return definition, parse_definition(definition)
    except Exception as error:  # invalid JSON, or JSON fastavro cannot use as a schema
        raise ConfigurationError(f"reader schema (READER_SCHEMA) is not a usable Avro schema: {error}") from error


def _remember[K, P](plans: dict[K, P], key: K, plan: P, limit: int) -> P:
    if len(plans) >= limit:
        del plans[next(iter(plans))]  # oldest first: ids are immutable, so any eviction is safe
    plans[key] = plan
    return plan
