"""Reading one schemaless Avro body into a record, every way it can be bad turned into a reason.

A `ReadPlan` is what the codec knows about one writer schema: (writer schema, reader schema or
None, whether values need making portable, the walk its bodies need before fastavro reads them or
None). Values come back as fastavro reads them, except temporal and uuid logical types, which
become ISO-8601 strings and str so records are JSON-printable and storable in DynamoDB; `decimal`
stays `decimal.Decimal` (exact, and DynamoDB's number type): importing this module installs
`avro_bounds.read_decimal` as fastavro's decimal reader, in this process, so a decimal longer than
its precision is refused instead of rounded, or converted for minutes.

A reader schema that cannot read a writer schema is a configuration problem, not the record's:
that is a TransientError naming the fields, so the batch waits for the fix instead of records
being discarded. Everything else wrong with a body is the record's PoisonRecordError.
"""

import io
import zlib
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

from fastavro import schemaless_reader
from fastavro.read import LOGICAL_READERS, SchemaResolutionError

from tributary_shared.avro_bounds import RECORD_TYPES, BodyCheck, read_decimal
from tributary_shared.avro_framing import GLUE_HEADER_SIZE
from tributary_shared.errors import PoisonRecordError, TransientError

# A Kinesis record is at most 1 MiB, and so is a zlib body: compression never lets a record cost
# more to decode than the largest uncompressed one. fastavro can build ~70 bytes of objects per
# body byte (an array of empty arrays): a 4 KB frame inflating to 4 MiB took 300 MB, one to 16 MiB
# 1.2 GB and 20 s, past the function's memory; 1 MiB bounds a record at ~75 MB and half a second.
MAX_DECOMPRESSED_BYTES = 1024 * 1024
# Deflate expands at most 1032:1 (a 258-byte match in under 2 bits): a body this small cannot pass the bound.
SMALL_ZLIB_BODY_BYTES = MAX_DECOMPRESSED_BYTES // 1032

ReadPlan = tuple[Any, Any, bool, BodyCheck | None]

# fastavro's own decimal reader rounds to the precision and is quadratic in the value's length.
LOGICAL_READERS["bytes-decimal"] = LOGICAL_READERS["fixed-decimal"] = read_decimal


def fastavro_alone_reads(plan: ReadPlan) -> bool:
    """Whether fastavro's value for this plan's bodies, once all bytes are used, is the finished record.

    So: no reader schema to project onto, no walk before reading, no values to make portable, and a
    writer schema that is a record (so the value is a dict).
    """
    writer, reader, portable, check = plan
    is_record = isinstance(writer, dict) and writer.get("type") in RECORD_TYPES
    return reader is None and check is None and not portable and is_record


def inflate(data: bytes) -> bytes:
    """The zlib body of a Glue record, inflated to at most MAX_DECOMPRESSED_BYTES; PoisonRecordError says why not.

    A body of at most SMALL_ZLIB_BODY_BYTES cannot inflate past the bound (deflate expands at most
    1032:1), so zlib.decompress inflates it: it finishes the stream without the 32 KiB window a
    decompressor allocates, 3,800 instructions a record (10% of decoding one; callgrind). It does not
    say whether bytes follow the stream, so the record must end with the stream's Adler-32 trailer;
    only bytes after the stream that end with that same checksum pass (and the record then decodes to
    what its stream holds). Anything else, and every larger body, goes through the bounded
    decompressor, which also names what is wrong.
    """
    if len(data) - GLUE_HEADER_SIZE <= SMALL_ZLIB_BODY_BYTES:
        try:
            body = zlib.decompress(data[GLUE_HEADER_SIZE:])
        except zlib.error:
            return inflate_bounded(data)
        if data.endswith(zlib.adler32(body).to_bytes(4)):
            return body
    return inflate_bounded(data)


def inflate_bounded(data: bytes) -> bytes:
    """`inflate` through a decompressor: bounded output, and the stream's end located exactly."""
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[GLUE_HEADER_SIZE:], MAX_DECOMPRESSED_BYTES)
    except zlib.error as error:
        raise not_inflating(error) from error
    if inflater.eof and not inflater.unused_data:
        return body
    raise not_inflated(inflater)


def not_inflating(error: zlib.error) -> PoisonRecordError:
    return PoisonRecordError(f"zlib-compressed body does not inflate: {error}")


def not_inflated(inflater: Any) -> PoisonRecordError:
    """Why a body that inflated without an error is refused (a stream that ended leaves no unconsumed tail)."""
    if inflater.unconsumed_tail:
        return PoisonRecordError(f"zlib-compressed body inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    if not inflater.eof:
        return PoisonRecordError("zlib-compressed body is truncated")
    return PoisonRecordError(f"{len(inflater.unused_data)} bytes of garbage after the zlib-compressed body")


def read_body(data: bytes, start: int, plan: ReadPlan) -> dict[str, Any]:
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
        raise mismatch(error) from error
    if body.tell() != len(data):
        raise leftovers(body)
    if type(record) is not dict:
        raise PoisonRecordError(f"Avro value is a {type(record).__name__}, expected a record")
    return _portable(record) if portable else record


def mismatch(error: Exception) -> PoisonRecordError:
    return PoisonRecordError(
        f"Avro body does not match its schema (truncated, corrupt or written with another schema): "
        f"{type(error).__name__}: {error}"
    )


def leftovers(body: io.BytesIO) -> PoisonRecordError:
    """Bytes left after the record: the schema is not the body's."""
    unread = len(body.getbuffer()) - body.tell()
    return PoisonRecordError(f"Avro body does not match its schema: {unread} bytes left after the record")


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
