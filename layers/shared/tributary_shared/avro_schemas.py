"""Avro schema definitions as the codec uses them: parsed once, compared by one canonical text.

A definition nesting deeper than `avro_bounds.MAX_SCHEMA_JSON_DEPTH` is refused (ValueError)
before fastavro's recursive parser sees it.
"""

import json
from collections.abc import Mapping
from typing import Any

from fastavro import parse_schema

from tributary_shared.avro_bounds import MAX_SCHEMA_JSON_DEPTH, schema_too_deep

# Definitions kept parsed per process: as many as the codec's default cache of writer schemas.
MAX_PARSED_DEFINITIONS = 1000
# Logical types whose values are made JSON-printable and storable on reading (`avro_reading`).
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

_parsed_schemas: dict[str, Any] = {}


def parse_definition(definition: str | Mapping[str, Any] | list[Any]) -> Any:
    """A fastavro-parsed schema; definitions given as text are parsed once per process."""
    if not isinstance(definition, str):
        return _parse_schema(definition)
    parsed = _parsed_schemas.get(definition)
    if parsed is None:
        if len(_parsed_schemas) >= MAX_PARSED_DEFINITIONS:
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


def has_portable_types(schema: Any) -> bool:
    """Whether a schema's JSON names a logical type made portable on reading (searched without recursing)."""
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
