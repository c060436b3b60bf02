"""Avro records encoded and framed for producing: the registry wire formats' writing side.

The functions only ever decode (`tributary_shared.avro_codec`); encoding is for producers, the
demo and the tests, so it lives here, outside the deployed layer. The framings are the layer's own
(`tributary_shared.avro_framing`), so what is written here is exactly what the functions read.
"""

import io
import zlib
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from fastavro import schemaless_writer

from tributary_shared.avro_framing import COMPRESSION_NONE, COMPRESSION_ZLIB, CONFLUENT_MAGIC, GLUE_HEADER_VERSION


def avro_body(record: Mapping[str, Any], schema: Any) -> bytes:
    """The schemaless Avro binary of `record` under the parsed `schema`."""
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
