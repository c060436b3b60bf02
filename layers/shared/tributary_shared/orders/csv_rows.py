"""Order CSV files read as a stream of lines, each row checked and typed for the OrderTransactions table.

Nothing here holds more than one line (at most MAX_LINE_BYTES of it) in memory, so a file of any
size streams through. Every line keeps its 1-based number and the byte offsets where it starts and
ends, so a load can report bad rows by line and resume at any line boundary with a ranged GET.

A row is one physical line: quoted fields may hold commas but not line breaks.

Files are untrusted: whatever a line holds, `parse_row` returns an item DynamoDB can store or a
RejectedRow naming the problem, and `parse_header` returns the column order or raises HeaderError
naming it (missing, unknown or repeated columns, bad UTF-8, an overlong line). Reasons quote at
most a short excerpt of the text.
"""

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tributary_shared.orders.images import QUOTE_CHARS, format_timestamp, parse_number

ORDER_COLUMNS = (
    "order_id",
    "item_id",
    "customer_id",
    "product",
    "amount",
    "currency",
    "time_stamp",
    "transaction_date",
)
KEY_COLUMNS = ("order_id", "item_id")
OPTIONAL_COLUMNS = frozenset({"customer_id", "product"})
MAX_LINE_BYTES = 64 * 1024
# DynamoDB's key size limits in UTF-8 bytes: partition key (order_id) 2048, sort key (item_id) 1024.
MAX_KEY_BYTES = {"order_id": 2048, "item_id": 1024}
# Column names a header error lists before it says how many more there are.
MAX_NAMES_LISTED = 5
# The lake stores amount as decimal(12,2): ten integer digits, two decimal places.
AMOUNT_LIMIT = Decimal(10) ** 10
CENT = Decimal("0.01")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
REJECT_TEXT_CHARS = 200


@dataclass(frozen=True)
class Line:
    """One physical line of the object, without its line break."""

    number: int
    start_byte: int
    end_byte: int
    text: bytes
    too_long: bool = False


@dataclass(frozen=True)
class RejectedRow:
    """A line that is not a valid order row, and why."""

    line: int
    reason: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "text": self.text}


class HeaderError(ValueError):
    """The first line does not name exactly the order columns."""


def iter_lines(chunks: Iterable[bytes], start_byte: int = 0, start_line: int = 1) -> Iterator[Line]:
    """Split a byte stream into lines, tracking numbers and offsets; the last line may lack a newline.

    A line longer than MAX_LINE_BYTES is yielded truncated with `too_long` set, its remainder
    skipped, so one runaway line cannot exhaust memory.
    """
    buffer = bytearray()
    line_start, number = start_byte, start_line
    overflow = 0  # bytes of the current line dropped past MAX_LINE_BYTES
    for chunk in chunks:
        buffer += chunk
        position = 0
        while (newline := buffer.find(b"\n", position)) >= 0:
            text = bytes(buffer[position:newline])
            length = overflow + newline - position + 1
            yield Line(number, line_start, line_start + length, text[:MAX_LINE_BYTES], length > MAX_LINE_BYTES + 1)
            line_start += length
            number += 1
            position, overflow = newline + 1, 0
        del buffer[:position]
        if len(buffer) > MAX_LINE_BYTES:
            overflow += len(buffer) - MAX_LINE_BYTES
            del buffer[MAX_LINE_BYTES:]
    if buffer or overflow:
        length = overflow + len(buffer)
        yield Line(number, line_start, line_start + length, bytes(buffer), overflow > 0)


def decode(line: Line) -> str:
    text = line.text.decode("utf-8")
    if line.number == 1:
        text = text.removeprefix("\ufeff")
    return text.removesuffix("\r")


def split_fields(text: str) -> list[str]:
    """The fields of one CSV line; csv.Error if its quoting is broken."""
    return next(csv.reader([text], strict=True), [])


def parse_header(line: Line) -> tuple[str, ...]:
    """The column order of a file: its header must name each order column exactly once."""
    if line.too_long:
        raise HeaderError(f"header is longer than {MAX_LINE_BYTES} bytes")
    try:
        names = tuple(name.strip() for name in split_fields(decode(line)))
    except UnicodeDecodeError as error:
        raise HeaderError(f"header is not valid UTF-8: {error.reason} at byte {error.start}") from None
    except csv.Error as error:
        raise HeaderError(f"header is not valid CSV: {error}") from None
    missing = [name for name in ORDER_COLUMNS if name not in names]
    unknown = sorted(set(names) - set(ORDER_COLUMNS))
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if missing or unknown or repeated:
        raise HeaderError(
            f"header must name the columns {','.join(ORDER_COLUMNS)} once each (missing: {_listed(missing)},"
            f" unknown: {_listed(unknown)}, repeated: {_listed(repeated)})"
        )
    return names


def _listed(names: list[str]) -> str:
    """Names for an error message: a few, each cut short, however many a hostile header holds."""
    if not names:
        return "none"
    shown = ", ".join(f"{name!r:.{QUOTE_CHARS // 2}}" for name in names[:MAX_NAMES_LISTED])
    more = len(names) - MAX_NAMES_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def is_blank(line: Line) -> bool:
    return not line.text.strip()


def parse_row(line: Line, columns: tuple[str, ...]) -> dict[str, Any] | RejectedRow:
    """The OrderTransactions item of one line, or the reason it cannot be one."""
    if line.too_long:
        return reject(line, f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        fields = split_fields(decode(line))
    except UnicodeDecodeError:
        return reject(line, "line is not valid UTF-8")
    except csv.Error as error:
        return reject(line, f"broken quoting ({error}); fields cannot span lines")
    if len(fields) != len(columns):
        return reject(line, f"expected {len(columns)} fields, found {len(fields)}")
    try:
        return to_item(dict(zip(columns, fields, strict=True)))
    except ValueError as error:
        return reject(line, str(error))


def reject(line: Line, reason: str) -> RejectedRow:
    text = line.text[:REJECT_TEXT_CHARS].decode("utf-8", errors="replace").removesuffix("\r")
    return RejectedRow(line.number, reason, text)


def to_item(raw: dict[str, str]) -> dict[str, Any]:
    """Typed item from one row's fields; ValueError naming the field that is wrong."""
    values = {name: value.strip() for name, value in raw.items()}
    for name in KEY_COLUMNS:
        if not values[name]:
            raise ValueError(f"missing key {name}")
        if len(values[name].encode()) > MAX_KEY_BYTES[name]:
            raise ValueError(f"{name} is longer than DynamoDB's {MAX_KEY_BYTES[name]} bytes for this key")
    item: dict[str, Any] = {name: values[name] for name in KEY_COLUMNS}
    item.update({name: values[name] for name in OPTIONAL_COLUMNS if values[name]})
    item["amount"] = parse_amount(values["amount"])
    item["currency"] = parse_currency(values["currency"])
    item["time_stamp"] = parse_time_stamp(values["time_stamp"])
    item["transaction_date"] = parse_transaction_date(values["transaction_date"])
    return item


def parse_amount(text: str) -> Decimal:
    """The amount as the lake's decimal(12,2) holds it; -0 is 0."""
    amount = parse_number(text, "amount")  # ASCII digits, finite, DynamoDB's precision and range
    if amount.copy_abs() >= AMOUNT_LIMIT:
        raise ValueError(f"amount {text!r:.{QUOTE_CHARS}} does not fit decimal(12,2)")
    cents = amount.quantize(CENT)  # below AMOUNT_LIMIT at most 12 digits: the context's 28 always suffice
    if cents != amount:
        raise ValueError(f"amount {text!r:.{QUOTE_CHARS}} has more than 2 decimal places")
    return cents


def parse_currency(text: str) -> str:
    if not CURRENCY_PATTERN.fullmatch(text):
        raise ValueError(f"currency {text!r:.{QUOTE_CHARS}} is not a three-letter ISO 4217 code")
    return text


def parse_time_stamp(text: str) -> str:
    """ISO 8601 date-time → UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` (naive times are taken as UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time_stamp {text!r:.{QUOTE_CHARS}} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return format_timestamp(moment)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"time_stamp {text!r:.{QUOTE_CHARS}} is outside the years 1 to 9999 in UTC") from None


def parse_transaction_date(text: str) -> str:
    """A calendar date written YYYY-MM-DD, nothing else ISO 8601 allows (week dates, ordinal dates)."""
    try:
        if DATE_PATTERN.fullmatch(text) and date.fromisoformat(text).isoformat() == text:
            return text
    except ValueError:
        pass
    raise ValueError(f"transaction_date {text!r:.{QUOTE_CHARS}} is not a YYYY-MM-DD date")
