"""DynamoDB typed images (`{"S": ...}`, `{"N": ...}`) → flat rows typed for the lake's Glue table.

The lake table's columns are declared once here (`ORDER_LAKE_COLUMNS`) and in the template's
`OrderLakeTable`; a test keeps the two identical. Values are rendered the way Firehose's OpenX
JSON SerDe reads them for Parquet: strings, JSON numbers for decimals, ISO 8601 UTC timestamps.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer

_deserializer = TypeDeserializer()
_DECIMAL_TYPE = re.compile(r"decimal\((\d+),(\d+)\)")


@dataclass(frozen=True)
class LakeColumn:
    """One column of the Glue table: its name and Hive type."""

    name: str
    type: str


# Columns copied from the item image, then the change metadata every row carries.
ORDER_IMAGE_COLUMNS = (
    LakeColumn("order_id", "string"),
    LakeColumn("item_id", "string"),
    LakeColumn("customer_id", "string"),
    LakeColumn("product", "string"),
    LakeColumn("amount", "decimal(12,2)"),
    LakeColumn("currency", "string"),
    LakeColumn("time_stamp", "timestamp"),
)
CHANGE_COLUMNS = (
    LakeColumn("change_type", "string"),
    LakeColumn("change_time", "timestamp"),
    LakeColumn("change_sequence", "string"),
)
ORDER_LAKE_COLUMNS = ORDER_IMAGE_COLUMNS + CHANGE_COLUMNS
PARTITION_COLUMN = LakeColumn("transaction_date", "string")


def deserialize_image(typed: Mapping[str, Any]) -> dict[str, Any]:
    """Python values of a typed image (N → Decimal, NULL → None, B → bytes); ValueError if malformed."""
    if not isinstance(typed, Mapping):
        raise ValueError("image is not a map of attribute names to typed values")
    values: dict[str, Any] = {}
    for name, value in typed.items():
        try:
            values[name] = _deserializer.deserialize(value)
        except (TypeError, ValueError, AttributeError, InvalidOperation) as error:
            raise ValueError(f"attribute {name!r} is not a valid DynamoDB typed value: {value!r}") from error
    return values


def image_to_row(image: Mapping[str, Any], columns: tuple[LakeColumn, ...]) -> dict[str, Any]:
    """The declared columns of a deserialized image (absent → null); attributes not declared are dropped."""
    return {column.name: coerce(image.get(column.name), column) for column in columns}


def coerce(value: Any, column: LakeColumn) -> Any:
    """A JSON value of the column's type; ValueError naming the column if the value cannot be one."""
    if value is None:
        return None
    try:
        return _coerce(value, column.type)
    except (ValueError, InvalidOperation, OverflowError, OSError) as error:  # OSError: epoch out of range
        raise ValueError(f"column {column.name} ({column.type}): {error}") from None


def _coerce(value: Any, column_type: str) -> Any:
    if isinstance(value, set | list | dict | Binary | bytes | bytearray):
        raise ValueError(f"a {type(value).__name__} value cannot be stored in this column")
    if column_type == "string":
        return _to_string(value)
    if column_type == "timestamp":
        return _to_timestamp(value)
    if column_type in {"bigint", "int"}:
        return int(_to_decimal(value, integral=True))
    if column_type == "double":
        return float(_to_decimal(value))
    if column_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if match := _DECIMAL_TYPE.fullmatch(column_type):
        return _to_fixed_point(value, int(match[1]), int(match[2]))
    raise ValueError(f"unsupported column type {column_type}")


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _to_decimal(value: Any, integral: bool = False) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if integral and number != number.to_integral_value():
        raise ValueError(f"{value!r} is not an integer")
    return number


def _to_fixed_point(value: Any, precision: int, scale: int) -> float:
    number = _to_decimal(value)
    if abs(number) >= Decimal(10) ** (precision - scale):
        raise ValueError(f"{value} does not fit decimal({precision},{scale})")
    quantized = number.quantize(Decimal(1).scaleb(-scale))
    if quantized != number:
        raise ValueError(f"{value} has more than {scale} decimal places")
    # A JSON number: float's shortest repr prints these (at most 15 significant digits) exactly.
    return float(quantized)


def _to_timestamp(value: Any) -> str:
    """ISO 8601 strings (naive = UTC) or epoch milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    if isinstance(value, Decimal):
        moment = datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    else:
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return format_timestamp(moment)


def format_timestamp(moment: datetime) -> str:
    """The timestamp form Firehose's OpenX JSON SerDe parses (`yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`)."""
    # isoformat, unlike strftime's %Y, always writes the year with four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
