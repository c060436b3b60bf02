"""Per-unicorn figures of one tumbling window, kept as compact JSON between invocations.

Lambda hands a tumbling window's `state` back to the next invocation and ends the window early
once the state passes 1 MB per shard, so the state holds one positional row per unicorn instead
of a verbose object (version 2):

    {"v": 2, "first": "<seq>", "last": "<seq>", "poison": [<count>, "<seq>"],
     "u": {"Shadowfax": [count, distance, minMagic, maxMagic, minHealth, maxHealth, firstMs, lastMs]},
     "x": [["<name>", <row as it was found>, "<why it was set aside>"]]}

A row takes about 90 bytes with 16-character names and float distances (over 10,000 unicorns per
shard fit) and about 210 at worst (64-character names, every figure a 17-digit float: 5,000 fit).
Past 800 KB the function stores the state as a partial segment and goes on with an empty one, so
nothing is lost and Lambda's own early end at 1 MB stays a backstop: see `tributary_shared.fleet_window`.

Everything a row holds can be stored, because a reading is checked against what closing the window
will do with it when it is folded, never later (a reading that fails is poison, named by reason):

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

`x` holds rows set aside instead of failing: rows of a version 1 state that could not be stored,
or a row found malformed when a reading for that unicorn arrives (the unicorn then starts afresh).
They are stored as a quarantined item when the window (or segment) is stored.

State versions: 1 (no `x`, rows never range-checked; written before rows were validated at fold
time) is migrated by checking every row once and setting aside the ones that cannot be stored. A
state that cannot be read at all (another shape, a version this function does not know) is an
`UnreadableState`: the caller stores it raw and goes on with a fresh state keeping the high-water
marks it could still read.

First and last StatusTime are the smallest and largest reading times as epoch milliseconds, so
the figures do not depend on the order records arrive in.

`last` is the highest sequence number folded: the ESM delivers a shard's records in sequence order
the first time, so a record at or below it is a re-delivery and is skipped rather than counted
twice. `first` (the lowest sequence number folded) names the state's segment: a window stored in
segments (by the function past 800 KB, or by Lambda's early end) goes on with a fresh state, and
each segment is stored under its own key.
"""

import contextlib
import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any, NamedTuple, Self

from boto3.dynamodb.types import DYNAMODB_CONTEXT as BOTO3_NUMBER_CONTEXT

from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import reject_reported_error

STATE_VERSION = 2
# Written by the aggregator before rows were validated at fold time: same layout, no "x".
UNCHECKED_ROWS_VERSION = 1
MAX_NAME_CHARS = 64
# Lambda's limit on a tumbling window's state per shard; past it the window ends early.
STATE_LIMIT_BYTES = 1024 * 1024
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
# Kinesis' API pattern for a sequence number: 0|([1-9]\d{0,128}).
MAX_SEQUENCE_DIGITS = 129
ROW_LENGTH = 8
# Integers the state writes as JSON numbers (below 2**53, so any JSON reader keeps them exact).
SMALL_INT_LIMIT = 2**53

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


@dataclass(frozen=True, slots=True)
class UnicornFigures:
    """What the Flink job reported per unicorn and window, plus the count and time span."""

    count: int
    distance: Decimal
    min_magic_points: Decimal
    max_magic_points: Decimal
    min_health_points: Decimal
    max_health_points: Decimal
    first_status_ms: int
    last_status_ms: int

    @classmethod
    def of(cls, reading: Reading) -> Self:
        return cls(
            1,
            reading.distance,
            reading.magic_points,
            reading.magic_points,
            reading.health_points,
            reading.health_points,
            reading.status_time_ms,
            reading.status_time_ms,
        )

    def merge(self, other: "UnicornFigures") -> "UnicornFigures":
        """Both parts combined; the distance sum is exact, however many digits it takes."""
        return UnicornFigures(
            self.count + other.count,
            EXACT_CONTEXT.add(self.distance, other.distance),
            min(self.min_magic_points, other.min_magic_points),
            max(self.max_magic_points, other.max_magic_points),
            min(self.min_health_points, other.min_health_points),
            max(self.max_health_points, other.max_health_points),
            min(self.first_status_ms, other.first_status_ms),
            max(self.last_status_ms, other.last_status_ms),
        )

    def to_row(self) -> list[int | str]:
        decimals = (
            self.distance,
            self.min_magic_points,
            self.max_magic_points,
            self.min_health_points,
            self.max_health_points,
        )
        return [
            self.count,
            *(_compact_number(number) for number in decimals),
            self.first_status_ms,
            self.last_status_ms,
        ]

    @classmethod
    def from_row(cls, row: Any) -> Self:
        """A state row → figures; ValueError unless every figure can be stored and formatted."""
        if not isinstance(row, list) or len(row) != ROW_LENGTH:
            raise ValueError(f"unicorn row must be a list of {ROW_LENGTH} figures, got {describe_value(row)}")
        count, first_ms, last_ms = row[0], row[6], row[7]
        if not all(_is_int(value) for value in (count, first_ms, last_ms)) or count < 1:
            raise ValueError(
                f"a unicorn row's count must be a positive integer and its times integers, got {describe_value(row)}"
            )
        if not (MIN_STATUS_MS <= first_ms <= MAX_STATUS_MS and MIN_STATUS_MS <= last_ms <= MAX_STATUS_MS):
            raise ValueError(
                f"unicorn row's StatusTimes {first_ms}..{last_ms} (epoch ms) are {status_time_range_problem()}"
            )
        if first_ms > last_ms:
            raise ValueError(f"unicorn row's first StatusTime {first_ms} is after its last {last_ms}")
        distance, min_magic, max_magic, min_health, max_health = (_state_number(value) for value in row[1:6])
        return cls(count, distance, min_magic, max_magic, min_health, max_health, first_ms, last_ms)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _compact_number(number: Decimal) -> int | str:
    # An integral Decimal becomes a JSON integer (no quotes, no exponent); others keep every digit.
    if number == number.to_integral_value() and number.copy_abs() < SMALL_INT_LIMIT:
        return int(number)
    return str(number)


def _state_number(value: Any) -> Decimal:
    if _is_int(value) and -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT:
        return Decimal(value)  # how the state keeps most figures: always a DynamoDB number
    if not _is_int(value) and not isinstance(value, str):
        raise ValueError(f"state figure must be an integer or a decimal string, got {describe_value(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"state figure {describe_value(value)} is not a decimal") from error
    problem = dynamodb_number_problem(number)
    if problem:
        raise ValueError(f"state figure {describe_value(value)} {problem}")
    return number


def merge_fleet(left: Mapping[str, UnicornFigures], right: Mapping[str, UnicornFigures]) -> dict[str, UnicornFigures]:
    """Per-unicorn figures of two parts of a window (two shards, two segments) combined."""
    merged = dict(left)
    for name, figures in right.items():
        merged[name] = merged[name].merge(figures) if name in merged else figures
    return merged


class SetAsideRow(NamedTuple):
    """A row the window could not store, kept as it was found with the reason."""

    name: str
    row: Any
    reason: str

    def to_json(self) -> list[Any]:
        return [self.name, self.row, self.reason]


@dataclass(frozen=True)
class ClosingFigures:
    """What a stored window (or segment) holds: the storable figures, and the rows set aside."""

    figures: dict[str, UnicornFigures]
    set_aside: list[SetAsideRow]


@dataclass
class WindowState:
    """One shard's running aggregate of one window (or window segment).

    Rows stay in their JSON form and only the unicorns a batch touches are decoded, so an
    invocation costs time in proportion to its batch, not to the thousands of unicorns in the state.
    """

    rows: dict[str, list[int | str]] = field(default_factory=dict)
    first_sequence: int | None = None
    last_sequence: int | None = None
    poison_count: int = 0
    last_poison_sequence: int | None = None
    set_aside: list[SetAsideRow] = field(default_factory=list)

    @property
    def unicorns(self) -> dict[str, UnicornFigures]:
        """Every unicorn's figures, each row validated (ValueError names a malformed one)."""
        return {name: UnicornFigures.from_row(row) for name, row in self.rows.items()}

    def closing_figures(self) -> ClosingFigures:
        """Every row that can be stored as figures; every other row set aside with its reason."""
        figures: dict[str, UnicornFigures] = {}
        set_aside = list(self.set_aside)
        for name, row in self.rows.items():
            try:
                figures[name] = storable_figures(name, row)
            except ValueError as error:
                set_aside.append(SetAsideRow(name, row, str(error)))
        return ClosingFigures(figures, set_aside)

    def already_folded(self, sequence: int) -> bool:
        """True for a re-delivered record: the shard's records come in sequence order first time."""
        return self.last_sequence is not None and sequence <= self.last_sequence

    def fold(self, reading: Reading, sequence: int) -> None:
        """Add a reading to its unicorn's row; PoisonRecordError if the row could not store the result."""
        figures = UnicornFigures.of(reading)
        current = self._current_figures(reading.name)
        if current is not None:
            figures = current.merge(figures)
            problem = dynamodb_number_problem(figures.distance)
            if problem:
                raise PoisonRecordError(
                    f"Distance {reading.distance} cannot be added to the window's Distance sum for "
                    f"{describe_value(reading.name)} ({current.distance}): the sum {problem}"
                )
        self.rows[reading.name] = figures.to_row()
        if self.first_sequence is None:
            self.first_sequence = sequence
        self.last_sequence = sequence

    def _current_figures(self, name: str) -> UnicornFigures | None:
        """The unicorn's figures so far; a malformed row is set aside and the unicorn starts afresh."""
        row = self.rows.get(name)
        if row is None:
            return None
        try:
            return UnicornFigures.from_row(row)
        except ValueError as error:
            self.set_aside.append(SetAsideRow(name, self.rows.pop(name), str(error)))
            return None

    def next_segment(self) -> "WindowState":
        """An empty state for the rest of the window, keeping the high-water marks (re-deliveries stay skipped)."""
        return WindowState(
            last_sequence=self.last_sequence,
            poison_count=self.poison_count,
            last_poison_sequence=self.last_poison_sequence,
        )

    def count_poison(self, sequence: int) -> bool:
        """Count a poison record once, however often the ESM re-delivers it; True if it was new."""
        if self.last_poison_sequence is not None and sequence <= self.last_poison_sequence:
            return False
        self.poison_count += 1
        self.last_poison_sequence = sequence
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "first": _optional_sequence(self.first_sequence),
            "last": _optional_sequence(self.last_sequence),
            "poison": [self.poison_count, _optional_sequence(self.last_poison_sequence)],
            "u": self.rows,
            "x": [entry.to_json() for entry in self.set_aside],
        }

    @classmethod
    def from_json(cls, state: Any) -> "WindowState":
        """The `state` Lambda passed back, migrated to this version; `{}` or null (a window's first
        invocation) is empty. ValueError names what makes a state unreadable."""
        if state is None or state == {}:
            return cls()
        if not isinstance(state, dict):
            raise ValueError(f"window state must be a JSON object, got {describe_value(state)}")
        version = state.get("v")
        if _is_int(version) and version == STATE_VERSION:
            return cls._read(state, _parse_set_aside(state.get("x")))
        if _is_int(version) and version == UNCHECKED_ROWS_VERSION:
            return cls._read(state, [])._with_unstorable_rows_set_aside()
        raise ValueError(
            f"window state version {describe_value(version)} is not one this function reads "
            f"({UNCHECKED_ROWS_VERSION} or {STATE_VERSION})"
        )

    @classmethod
    def _read(cls, state: dict[str, Any], set_aside: list[SetAsideRow]) -> "WindowState":
        poison_count, last_poison = _parse_poison(state.get("poison"))
        rows = state.get("u")
        if not isinstance(rows, dict) or not all(isinstance(row, list) for row in rows.values()):
            raise ValueError("window state has no unicorn rows ('u': {name: [figures]})")
        if not all(isinstance(name, str) for name in rows):
            raise ValueError("window state's unicorn names must be strings")
        read = cls(
            rows=dict(rows),  # rows may be set aside: the caller's event is left as it was
            first_sequence=_parse_sequence(state.get("first")),
            last_sequence=_parse_sequence(state.get("last")),
            poison_count=poison_count,
            last_poison_sequence=last_poison,
            set_aside=set_aside,
        )
        read._check_marks()
        return read

    def _check_marks(self) -> None:
        holds_rows = bool(self.rows or self.set_aside)
        if holds_rows and (self.first_sequence is None or self.last_sequence is None):
            raise ValueError("window state holds rows but not the sequence numbers folded into them")
        if self.first_sequence is not None and (self.last_sequence is None or self.first_sequence > self.last_sequence):
            raise ValueError(
                f"window state's first sequence number {self.first_sequence} is above its last {self.last_sequence}"
            )

    def _with_unstorable_rows_set_aside(self) -> "WindowState":
        for name, row in list(self.rows.items()):
            try:
                storable_figures(name, row)
            except ValueError as error:
                self.set_aside.append(SetAsideRow(name, self.rows.pop(name), str(error)))
        return self


def storable_figures(name: str, row: Any) -> UnicornFigures:
    """A state row as figures its items and summary can be built from; ValueError says why not."""
    problem = unicorn_name_problem(name)
    if problem:
        raise ValueError(f"unicorn name {problem}")
    return UnicornFigures.from_row(row)


@dataclass(frozen=True)
class UnreadableState:
    """A `state` this function cannot read: to be stored raw, while the window goes on with `fresh`."""

    raw: Any
    reason: str
    # No rows; the high-water marks that could still be read, so re-delivered records the raw
    # state already holds are not counted again.
    fresh: WindowState


def read_state(raw: Any) -> WindowState | UnreadableState:
    """The window state Lambda passed back, or what to do instead when it cannot be read."""
    try:
        return WindowState.from_json(raw)
    except ValueError as error:
        return UnreadableState(raw, str(error), _recoverable_marks(raw))


def _recoverable_marks(raw: Any) -> WindowState:
    if not isinstance(raw, dict):
        return WindowState()
    fresh = WindowState(last_sequence=_sequence_or_none(raw.get("last")))
    # The poison count only feeds a log line: when it cannot be read, starting it again loses nothing.
    with contextlib.suppress(ValueError):
        fresh.poison_count, fresh.last_poison_sequence = _parse_poison(raw.get("poison"))
    return fresh


def _sequence_or_none(value: Any) -> int | None:
    try:
        return _parse_sequence(value)
    except ValueError:
        return None


def _parse_poison(poison: Any) -> tuple[int, int | None]:
    if not isinstance(poison, list) or len(poison) != 2 or not _is_int(poison[0]) or poison[0] < 0:
        raise ValueError(f"window state's poison entry must be [count, sequence], got {describe_value(poison)}")
    return poison[0], _parse_sequence(poison[1])


def _parse_set_aside(entries: Any) -> list[SetAsideRow]:
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(_is_set_aside_entry(entry) for entry in entries):
        raise ValueError(f"window state's set-aside rows must be [[name, row, reason]], got {describe_value(entries)}")
    return [SetAsideRow(*entry) for entry in entries]


def _is_set_aside_entry(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[2], str)


def _optional_sequence(sequence: int | None) -> str | None:
    # Sequence numbers pass 2**53: strings keep them exact in any JSON reader.
    return None if sequence is None else str(sequence)


def _parse_sequence(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.isdecimal() or len(value) > MAX_SEQUENCE_DIGITS:
        raise ValueError(f"sequence number in window state must be a decimal string, got {describe_value(value)}")
    return int(value)


def state_size_bytes(state_json: Mapping[str, Any]) -> int:
    """Bytes of the state as compact JSON: what counts against Lambda's 1 MB per shard."""
    # surrogatepass: a lone surrogate in a row set aside still has a size instead of failing the batch.
    return len(json.dumps(state_json, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
