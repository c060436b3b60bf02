"""A unicorn reading, checked against what closing its window will do with it.

Everything a window's row holds can be stored, because a reading is checked when it is folded,
never later (a reading that fails is poison, named by reason):

- `Name`: a string of 1..64 characters that UTF-8 can encode (no lone surrogates);
- `Distance`, `MagicPoints`, `HealthPoints`: numbers (not booleans or strings), 0 or of magnitude
  1e-130..1e15, at most 38 significant digits (DynamoDB's precision) and none finer than 1e-165
  (boto3 sends no finer digit);
- `StatusTime`: an ISO 8601 / "YYYY-MM-DD HH:MM:SS.mmm" timestamp (naive means UTC) that falls,
  in UTC, between 1970-01-01 00:00:00.000 and 9999-12-31 23:59:59.999: the range the window can
  format back. Times are kept as epoch milliseconds (finer digits are dropped);
- the window's `Distance` sum per unicorn is exact (never rounded) and must stay a number DynamoDB
  stores exactly (the same digit rules, magnitude 1e-130..9.99e125): a reading whose addition would
  take the sum outside that is poison, and the sum stays what it was without it. Integral figures
  are kept as JSON integers, others as decimal strings, so every digit survives the state's JSON.
"""

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT as BOTO3_NUMBER_CONTEXT

from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import reject_reported_error

MAX_NAME_CHARS = 64
FIGURE_FIELDS = ("Distance", "MagicPoints", "HealthPoints")
# DynamoDB numbers: 38 significant digits, magnitudes 1e-130 to 9.99...e125.
DYNAMODB_DIGITS = 38
DYNAMODB_MIN_MAGNITUDE = Decimal("1e-130")
DYNAMODB_MAX_MAGNITUDE = Decimal("9.9999999999999999999999999999999999999e125")
# Wide enough that adding any two DynamoDB numbers is exact; whether the sum fits is checked apart.
EXACT_CONTEXT = Context(prec=DYNAMODB_DIGITS + 130 + 126 + 2)
MIN_ABS_FIGURE = DYNAMODB_MIN_MAGNITUDE
MAX_ABS_FIGURE = Decimal("1e15")
FLINK_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_STATUS_MS = 0
MAX_STATUS_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)

# Python will not print an integer of more than 4,300 digits; far fewer are enough to say what it was.
MAX_QUOTED_INT_BITS = 256


class _BoundedRepr(reprlib.Repr):
    """Error messages quote hostile values: bounded however big or deep the value is."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > MAX_QUOTED_INT_BITS:
            return f"<integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_quote = _BoundedRepr(maxlevel=3, maxstring=80, maxother=80, maxlong=80, maxlist=4, maxdict=4, maxtuple=4)


def describe_value(value: Any) -> str:
    """A short, printable rendering of any value for an error message."""
    return _quote.repr(value)


@dataclass(frozen=True, slots=True)
class Reading:
    """One unicorn telemetry record, validated."""

    name: str
    distance: Decimal
    magic_points: Decimal
    health_points: Decimal
    status_time_ms: int


def parse_reading(payload: Mapping[str, Any]) -> Reading:
    """A decoded wildrydes record → Reading; PoisonRecordError names whatever is wrong with it."""
    name = payload.get("Name")
    problem = unicorn_name_problem(name)
    if problem:
        raise PoisonRecordError(f"Name {problem}")
    reject_reported_error(payload)
    distance, magic, health = (_figure(payload, field_name) for field_name in FIGURE_FIELDS)
    return Reading(name, distance, magic, health, parse_status_time(payload.get("StatusTime")))


def unicorn_name_problem(name: Any) -> str | None:
    """Why `name` cannot name a unicorn's items and summaries, or None if it can."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        return f"must be a string of 1..{MAX_NAME_CHARS} characters, got {describe_value(name)}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"{describe_value(name)} has a lone surrogate {name[error.start]!r} at {error.start}, "
            "which UTF-8 cannot encode"
        )
    return None


def _figure(payload: Mapping[str, Any], field_name: str) -> Decimal:
    value = payload.get(field_name)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PoisonRecordError(f"{field_name} must be a number, got {describe_value(value)}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number.copy_abs() > MAX_ABS_FIGURE or (number and number.copy_abs() < MIN_ABS_FIGURE):
        raise PoisonRecordError(
            f"{field_name} must be 0 or a finite number of magnitude {MIN_ABS_FIGURE}..{MAX_ABS_FIGURE}, "
            f"got {describe_value(value)}"
        )
    problem = dynamodb_number_problem(number)
    if problem:
        raise PoisonRecordError(f"{field_name} {describe_value(value)} {problem}")
    return number


def _has_too_many_digits(number: Decimal) -> bool:
    """More significant digits than DynamoDB keeps (trailing zeros of the coefficient do not count)."""
    digits = number.as_tuple().digits
    if len(digits) <= DYNAMODB_DIGITS:  # the common case, without counting
        return False
    trailing_zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
    return len(digits) - trailing_zeros > DYNAMODB_DIGITS


def dynamodb_number_problem(number: Decimal) -> str | None:
    """Why DynamoDB could not store `number` exactly, or None if it can."""
    if not number.is_finite():
        return "is not a finite number"
    if _has_too_many_digits(number):
        return f"needs more than {DYNAMODB_DIGITS} significant digits"
    if number and not DYNAMODB_MIN_MAGNITUDE <= number.copy_abs() <= DYNAMODB_MAX_MAGNITUDE:
        return f"is outside DynamoDB's magnitude range {DYNAMODB_MIN_MAGNITUDE}..{DYNAMODB_MAX_MAGNITUDE}"
    try:
        BOTO3_NUMBER_CONTEXT.create_decimal(number)
    except ArithmeticError:
        # boto3 sends numbers through a context whose smallest digit is 1E-165: DynamoDB never sees
        # 1.2345678901234567890123456789012345678E-130, though it is in DynamoDB's range.
        return "has a digit below 1E-165, which boto3 will not send to DynamoDB"
    return None


def parse_status_time(value: Any) -> int:
    """Parse "2026-11-21 12:00:00.123" (or ISO 8601; naive means UTC) into epoch milliseconds.

    Only times the window can format back are accepted: 1970-01-01 00:00:00.000 to
    9999-12-31 23:59:59.999 UTC (so "9999-12-31 23:59:59.999-01:00", in year 10000 UTC, is refused).
    """
    if not isinstance(value, str):
        raise PoisonRecordError(f"StatusTime must be a timestamp string, got {describe_value(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise PoisonRecordError(f"StatusTime {describe_value(value)} is not a timestamp") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch_ms = (moment - EPOCH) // timedelta(milliseconds=1)
    if not MIN_STATUS_MS <= epoch_ms <= MAX_STATUS_MS:
        raise PoisonRecordError(f"StatusTime {describe_value(value)} is {status_time_range_problem()}")
    return epoch_ms


def status_time_range_problem() -> str:
    return (
        f"outside {format_status_time(MIN_STATUS_MS)}..{format_status_time(MAX_STATUS_MS)} UTC, "
        "the range a window can store"
    )


def format_status_time(epoch_ms: int) -> str:
    """Epoch milliseconds → the wildrydes format "YYYY-MM-DD HH:MM:SS.mmm" (UTC)."""
    if not MIN_STATUS_MS <= epoch_ms <= MAX_STATUS_MS:
        raise ValueError(f"epoch milliseconds {epoch_ms} are outside years 1970..9999")
    moment = EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment.strftime(FLINK_TIME_FORMAT)}.{epoch_ms % 1000:03d}"
