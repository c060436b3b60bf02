"""DynamoDB typed images (`{"S": ...}`, `{"N": ...}`) → flat rows typed for the lake's Glue table.

The lake table's columns are declared once here (`ORDER_LAKE_COLUMNS`) and in the template's
`OrderLakeTable`; a test keeps the two identical. Values are rendered the way Firehose's OpenX
JSON SerDe reads them for Parquet: strings, JSON numbers for decimals, ISO 8601 UTC timestamps.

Images arrive in change records, so they are untrusted: `deserialize_image` accepts exactly what
DynamoDB can hold and names the attribute and the problem otherwise. Numbers stay exact (all 38
digits, never through float or a 28-digit context, except amounts, whose decimal(12,2) values a
float prints exactly); binary values go into string columns as base64 text.
"""

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_DECIMAL_TYPE = re.compile(r"decimal\((\d+),(\d+)\)")
# DynamoDB's number syntax in ASCII digits (Decimal alone would also take "1_000", "NaN" and other scripts' digits).
_NUMBER = re.compile(r"[+-]?(?P<integer>[0-9]*)(?:\.(?P<fraction>[0-9]*))?(?:[eE][+-]?[0-9]{1,9})?")
MAX_SIGNIFICANT_DIGITS = 38
# Powers of ten of the smallest and largest magnitudes DynamoDB stores: 1E-130 and 9.99...E+125.
MIN_NUMBER_EXPONENT, MAX_NUMBER_EXPONENT = -130, 125
MAX_NESTING_LEVELS = 32
# Values quoted in an error are cut to this: a reason names the problem, it does not echo the record.
QUOTE_CHARS = 60


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


def parse_number(text: Any, what: str) -> Decimal:
    """A number DynamoDB can store, exactly as written; ValueError naming `what` and the problem otherwise.

    Up to 38 significant digits (leading and trailing zeros do not count) and a magnitude from
    1E-130 to 9.99...E+125, or zero. Negative zero is zero: DynamoDB has no sign on zero.
    """
    match = _NUMBER.fullmatch(text) if isinstance(text, str) else None
    if match is None or not (match["integer"] or match["fraction"]):
        raise ValueError(f"{what} {text!r:.{QUOTE_CHARS}} is not a number")
    number = Decimal(text)  # exact: the constructor applies no context
    if not number:
        return number.copy_abs()
    significant = len((match["integer"] + (match["fraction"] or "")).strip("0"))
    if significant > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(
            f"{what} {text!r:.{QUOTE_CHARS}} has {significant} significant digits, more than DynamoDB's 38"
        )
    if not MIN_NUMBER_EXPONENT <= number.adjusted() <= MAX_NUMBER_EXPONENT:
        raise ValueError(f"{what} {text!r:.{QUOTE_CHARS}} is outside DynamoDB's range 1E-130 to 9.99E+125")
    return number


def deserialize_image(typed: Any, image_name: str = "image") -> dict[str, Any]:
    """Python values of a typed image; ValueError naming the attribute and the problem if DynamoDB could not hold it.

    S → str, N → Decimal (exact), B → bytes, BOOL → bool, NULL → None, SS/NS/BS → set, L → list,
    M → dict. Each value has exactly one type key and a payload of that type's JSON shape; maps and
    lists nest at most 32 levels. (Lone surrogates never get this far: `payloads.parse_json` refuses them.)
    """
    if not isinstance(typed, Mapping):
        raise ValueError(f"{image_name} is a {type(typed).__name__}, not a map of attribute names to typed values")
    return {name: _typed_value(value, str(name), 1) for name, value in typed.items()}


def _typed_value(value: Any, path: str, depth: int) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise _invalid(path, f"{value!r:.{QUOTE_CHARS}} is not an object with exactly one type key")
    [(kind, payload)] = value.items()
    decode = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decode is None:
        raise _invalid(path, f"unknown type {kind!r:.{QUOTE_CHARS}}")
    return decode(payload, path, depth)


def _invalid(path: str, problem: str) -> ValueError:
    return ValueError(f"attribute {path!r:.{QUOTE_CHARS * 2}} is not a valid DynamoDB typed value: {problem}")


def _string(payload: Any, path: str, _depth: int = 0) -> str:
    if not isinstance(payload, str):
        raise _invalid(path, f"S holds a {type(payload).__name__}, not a string")
    return payload


def _number(payload: Any, path: str, _depth: int = 0) -> Decimal:
    try:
        return parse_number(payload, "N")
    except ValueError as error:
        raise _invalid(path, str(error)) from None


def _binary(payload: Any, path: str, _depth: int = 0) -> bytes:
    if isinstance(payload, str):
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:  # binascii.Error, or characters outside ASCII
            pass
    raise _invalid(path, f"B holds {payload!r:.{QUOTE_CHARS}}, not base64")


def _boolean(payload: Any, path: str, _depth: int) -> bool:
    if not isinstance(payload, bool):
        raise _invalid(path, f"BOOL holds {payload!r:.{QUOTE_CHARS}}, not true or false")
    return payload


def _null(payload: Any, path: str, _depth: int) -> None:
    if payload is not True:
        raise _invalid(path, f"NULL holds {payload!r:.{QUOTE_CHARS}}, not true")


def _set_of(member: Callable[[Any, str], Any], kind: str) -> Callable[[Any, str, int], set[Any]]:
    def decode(payload: Any, path: str, _depth: int) -> set[Any]:
        if not isinstance(payload, list):
            raise _invalid(path, f"{kind} holds a {type(payload).__name__}, not a list")
        return {member(item, f"{path}[{index}]") for index, item in enumerate(payload)}

    return decode


def _list(payload: Any, path: str, depth: int) -> list[Any]:
    if not isinstance(payload, list):
        raise _invalid(path, f"L holds a {type(payload).__name__}, not a list")
    _check_depth(path, depth)
    return [_typed_value(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(payload)]


def _map(payload: Any, path: str, depth: int) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise _invalid(path, f"M holds a {type(payload).__name__}, not an object")
    _check_depth(path, depth)
    return {name: _typed_value(value, f"{path}.{name}", depth + 1) for name, value in payload.items()}


def _check_depth(path: str, depth: int) -> None:
    # DynamoDB refuses deeper documents, so deeper nesting is malformed; the bound also keeps recursion short.
    if depth > MAX_NESTING_LEVELS:
        raise _invalid(path, f"nested more than DynamoDB's {MAX_NESTING_LEVELS} levels")


_DECODERS: dict[str, Callable[[Any, str, int], Any]] = {
    "S": _string,
    "N": _number,
    "B": _binary,
    "BOOL": _boolean,
    "NULL": _null,
    "SS": _set_of(_string, "SS"),
    "NS": _set_of(_number, "NS"),
    "BS": _set_of(_binary, "BS"),
    "L": _list,
    "M": _map,
}


def image_to_row(image: Mapping[str, Any], columns: tuple[LakeColumn, ...]) -> dict[str, Any]:
    """The declared columns of a deserialized image (absent → null); attributes not declared are dropped."""
    return {column.name: coerce(image.get(column.name), column) for column in columns}


def coerce(value: Any, column: LakeColumn) -> Any:
    """A JSON value of the column's type; ValueError naming the column if the value cannot be one."""
    if value is None:
        return None
    try:
        return _coerce(value, column.type)
    except (ValueError, ArithmeticError, OSError) as error:  # OSError: epoch out of the platform's range
        raise ValueError(f"column {column.name} ({column.type}): {error}") from None


def _coerce(value: Any, column_type: str) -> Any:
    if isinstance(value, set | list | dict):
        raise ValueError(f"a {type(value).__name__} value cannot be stored in this column")
    if column_type == "string":
        return _to_string(value)
    if isinstance(value, bytes):
        raise ValueError("a binary value can only be stored in a string column (as base64)")
    if column_type == "timestamp":
        return _to_timestamp(value)
    if column_type in {"bigint", "int"}:
        return int(_to_decimal(value, integral=True))
    if column_type == "double":
        return float(_to_decimal(value))
    if column_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r:.{QUOTE_CHARS}} is not a boolean")
        return value
    if match := _DECIMAL_TYPE.fullmatch(column_type):
        return _to_fixed_point(value, int(match[1]), int(match[2]))
    raise ValueError(f"unsupported column type {column_type}")


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _plain_number(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _plain_number(number: Decimal) -> str:
    """Every digit DynamoDB holds, in positional notation without trailing zeros; no context, so no rounding."""
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _to_decimal(value: Any, integral: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str):
        raise ValueError(f"{value!r:.{QUOTE_CHARS}} is not a number")
    number = value if isinstance(value, Decimal) else parse_number(value.strip(), "text")
    if integral and number != number.to_integral_value():
        raise ValueError(f"{value!r:.{QUOTE_CHARS}} is not an integer")
    return number


def _to_fixed_point(value: Any, precision: int, scale: int) -> float:
    number = _to_decimal(value)
    if number.copy_abs() >= Decimal(10) ** (precision - scale):
        raise ValueError(f"{value!r:.{QUOTE_CHARS}} does not fit decimal({precision},{scale})")
    quantized = number.quantize(Decimal(1).scaleb(-scale))
    if quantized != number:
        raise ValueError(f"{value!r:.{QUOTE_CHARS}} has more than {scale} decimal places")
    # A JSON number: float's shortest repr prints these (at most 15 significant digits) exactly.
    return float(quantized)


def _to_timestamp(value: Any) -> str:
    """ISO 8601 strings (naive = UTC) or epoch milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    if isinstance(value, Decimal):
        moment = datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r:.{QUOTE_CHARS}} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return format_timestamp(moment)


def format_timestamp(moment: datetime) -> str:
    """The timestamp form Firehose's OpenX JSON SerDe parses (`yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`)."""
    # isoformat, unlike strftime's %Y, always writes the year with four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
