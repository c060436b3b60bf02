"""EMULATION of Amazon Data Firehose's record format conversion: JSON records to Parquet.

The schema is the Glue table's named in `SchemaConfiguration` (its Hive column types, nested ones
included, mapped to Arrow); records are matched to columns as the OpenX JSON SerDe does (column
names are case-insensitive, values coerced to the column types). Compression follows the
`ParquetSerDe` setting (SNAPPY by default).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa


def parquet_schema(conversion: dict) -> pa.Schema | None:
    if str(conversion.get("Enabled", "false")).lower() != "true":
        return None
    schema_configuration = conversion["SchemaConfiguration"]
    table = boto3.client("glue").get_table(
        DatabaseName=schema_configuration["DatabaseName"], Name=schema_configuration["TableName"]
    )["Table"]
    columns = table["StorageDescriptor"]["Columns"]
    return pa.schema([pa.field(column["Name"], glue_type_to_arrow(column["Type"])) for column in columns])


def parquet_compression(conversion: dict) -> str:
    serializer = (conversion.get("OutputFormatConfiguration") or {}).get("Serializer") or {}
    compression = (serializer.get("ParquetSerDe") or {}).get("Compression", "SNAPPY")
    return {"UNCOMPRESSED": "none"}.get(compression, compression.lower())


_SIMPLE_GLUE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("ms"),
    "binary": pa.binary(),
}


def glue_type_to_arrow(glue_type: str) -> pa.DataType:
    """Map a Glue (Hive) column type, nested ones included, to an Arrow type."""
    arrow_type, rest = _parse_type(glue_type.replace(" ", "").lower())
    if rest:
        raise ValueError(f"cannot parse Glue type {glue_type!r}")
    return arrow_type


def _parse_type(text: str) -> tuple[pa.DataType, str]:
    name = re.match(r"[a-z]+", text)
    if name is None:
        raise ValueError(f"cannot parse Glue type at {text!r}")
    base, rest = name.group(0), text[name.end() :]
    if base == "decimal":
        match = re.match(r"\((\d+),(\d+)\)", rest)
        precision, scale = (int(match.group(1)), int(match.group(2))) if match else (10, 0)
        return pa.decimal128(precision, scale), rest[match.end() :] if match else rest
    if base in {"varchar", "char"} and rest.startswith("("):
        rest = rest[rest.index(")") + 1 :]
    if base == "array":
        item, rest = _parse_type(rest[1:])
        return pa.list_(item), rest[1:]
    if base == "map":
        key, rest = _parse_type(rest[1:])
        value, rest = _parse_type(rest[1:])
        return pa.map_(key, value), rest[1:]
    if base == "struct":
        fields, rest = [], rest[1:]
        while True:
            field_name, _, rest = rest.partition(":")
            field_type, rest = _parse_type(rest)
            fields.append(pa.field(field_name, field_type))
            separator, rest = rest[0], rest[1:]
            if separator == ">":
                return pa.struct(fields), rest
    if base not in _SIMPLE_GLUE_TYPES:
        raise ValueError(f"unsupported Glue type {base!r}")
    return _SIMPLE_GLUE_TYPES[base], rest


def row_for_schema(row: dict, schema: pa.Schema) -> dict:
    """OpenX JSON SerDe semantics: case-insensitive column names; values coerced to the column types."""
    lowered = {key.lower(): value for key, value in row.items()}
    return {field.name: _coerce(lowered.get(field.name.lower()), field.type) for field in schema}


def _coerce(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_string(arrow_type):
        return value if isinstance(value, str) else json.dumps(value)
    if pa.types.is_integer(arrow_type):
        return int(value)
    if pa.types.is_floating(arrow_type):
        return float(value)
    if pa.types.is_boolean(arrow_type):
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if pa.types.is_decimal(arrow_type):
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-arrow_type.scale))
    if pa.types.is_date(arrow_type):
        return dt.date.fromisoformat(str(value)[:10])
    if pa.types.is_timestamp(arrow_type):
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if pa.types.is_list(arrow_type):
        return [_coerce(item, arrow_type.value_type) for item in value]
    if pa.types.is_struct(arrow_type):
        return row_for_schema(value, pa.schema(list(arrow_type)))
    if pa.types.is_map(arrow_type):
        return [(key, _coerce(item, arrow_type.item_type)) for key, item in value.items()]
    return value
