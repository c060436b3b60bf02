"""Per-unicorn figures of one tumbling window, kept as compact JSON between invocations.

Lambda hands a tumbling window's `state` back to the next invocation and ends the window early
once the state passes 1 MB per shard, so the state holds one positional row per unicorn instead
of a verbose object:

    {"v": 1, "first": "<seq>", "last": "<seq>", "poison": [<count>, "<seq>"],
     "u": {"Shadowfax": [count, distance, minMagic, maxMagic, minHealth, maxHealth, firstMs, lastMs]}}

A row takes about 90 bytes with 16-character names and float distances (over 10,000 unicorns per
shard fit) and about 210 at worst (64-character names, every figure a 17-digit float: 5,000 fit).
Past 800 KB the function stores the state as a partial segment and goes on with an empty one, so
nothing is lost and Lambda's own early end at 1 MB stays a backstop: see `tributary_shared.fleet_window`.
Numbers are decimals with DynamoDB's precision: each figure has at most 38 significant digits (a
reading with more is poison, DynamoDB could not store it) and sums are taken in a 38-digit context,
so they are exact (and merging associative) as long as DynamoDB can hold the result; integral
values are kept as JSON integers, others as decimal strings.
First and last StatusTime are the smallest and largest reading times as epoch milliseconds, so
the figures do not depend on the order records arrive in.

`last` is the highest sequence number folded: the ESM delivers a shard's records in sequence order
the first time, so a record at or below it is a re-delivery and is skipped rather than counted
twice. `first` (the lowest sequence number folded) names the state's segment: a window stored in
segments (by the function past 800 KB, or by Lambda's early end) goes on with a fresh state, and
each segment is stored under its own key.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Self

from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import reject_reported_error

STATE_VERSION = 1
MAX_NAME_CHARS = 64
# Lambda's limit on a tumbling window's state per shard; past it the window ends early.
STATE_LIMIT_BYTES = 1024 * 1024
FIGURE_FIELDS = ("Distance", "MagicPoints", "HealthPoints")
# DynamoDB numbers: 38 significant digits, magnitudes from 1e-130. Python's default context has 28
# digits, so sums use a context of their own.
DYNAMODB_DIGITS = 38
DYNAMODB_CONTEXT = Context(prec=DYNAMODB_DIGITS)
MIN_ABS_FIGURE = Decimal("1e-130")
MAX_ABS_FIGURE = Decimal("1e15")
FLINK_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise PoisonRecordError(f"Name must be a string of 1..{MAX_NAME_CHARS} characters, got {name!r:.80}")
    reject_reported_error(payload)
    distance, magic, health = (_figure(payload, field_name) for field_name in FIGURE_FIELDS)
    return Reading(name, distance, magic, health, parse_status_time(payload.get("StatusTime")))


def _figure(payload: Mapping[str, Any], field_name: str) -> Decimal:
    value = payload.get(field_name)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PoisonRecordError(f"{field_name} must be a number, got {value!r:.80}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or abs(number) > MAX_ABS_FIGURE or (number and abs(number) < MIN_ABS_FIGURE):
        raise PoisonRecordError(
            f"{field_name} must be 0 or a finite number of magnitude {MIN_ABS_FIGURE}..{MAX_ABS_FIGURE}, "
            f"got {value!s:.80}"
        )
    if _significant_digits(number) > DYNAMODB_DIGITS:
        raise PoisonRecordError(f"{field_name} has more than {DYNAMODB_DIGITS} significant digits: {value!s:.80}")
    return number


def _significant_digits(number: Decimal) -> int:
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    return len(digits)


def parse_status_time(value: Any) -> int:
    """Parse "2026-11-21 12:00:00.123" (or ISO 8601; naive means UTC) into epoch milliseconds."""
    if not isinstance(value, str):
        raise PoisonRecordError(f"StatusTime must be a timestamp string, got {value!r:.80}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise PoisonRecordError(f"StatusTime {value!r:.80} is not a timestamp") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def format_status_time(epoch_ms: int) -> str:
    """Epoch milliseconds → the wildrydes format "YYYY-MM-DD HH:MM:SS.mmm" (UTC)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC).strftime(FLINK_TIME_FORMAT)}.{millis:03d}"


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
        return UnicornFigures(
            self.count + other.count,
            DYNAMODB_CONTEXT.add(self.distance, other.distance),
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
        if not isinstance(row, list) or len(row) != 8:
            raise ValueError(f"unicorn row must be a list of 8 figures, got {row!r:.120}")
        count, first_ms, last_ms = row[0], row[6], row[7]
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in (count, first_ms, last_ms)):
            raise ValueError(f"count and times of a unicorn row must be integers, got {row!r:.120}")
        distance, min_magic, max_magic, min_health, max_health = (_state_number(value) for value in row[1:6])
        return cls(count, distance, min_magic, max_magic, min_health, max_health, first_ms, last_ms)


def _compact_number(number: Decimal) -> int | str:
    # An integral Decimal becomes a JSON integer (no quotes, no exponent); others keep every digit.
    if number == number.to_integral_value() and abs(number) < 2**53:
        return int(number)
    return str(number)


def _state_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"state figure must be an integer or a decimal string, got {value!r:.40}")
    try:
        number = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"state figure {value!r:.40} is not a decimal") from error
    if not number.is_finite():
        raise ValueError(f"state figure {value!r:.40} is not finite")
    return number


def merge_fleet(left: Mapping[str, UnicornFigures], right: Mapping[str, UnicornFigures]) -> dict[str, UnicornFigures]:
    """Per-unicorn figures of two parts of a window (two shards, two segments) combined."""
    merged = dict(left)
    for name, figures in right.items():
        merged[name] = merged[name].merge(figures) if name in merged else figures
    return merged


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

    @property
    def unicorns(self) -> dict[str, UnicornFigures]:
        """Every unicorn's figures, each row validated (ValueError names a malformed one)."""
        return {name: UnicornFigures.from_row(row) for name, row in self.rows.items()}

    def already_folded(self, sequence: int) -> bool:
        """True for a re-delivered record: the shard's records come in sequence order first time."""
        return self.last_sequence is not None and sequence <= self.last_sequence

    def fold(self, reading: Reading, sequence: int) -> None:
        figures = UnicornFigures.of(reading)
        row = self.rows.get(reading.name)
        self.rows[reading.name] = (figures if row is None else UnicornFigures.from_row(row).merge(figures)).to_row()
        if self.first_sequence is None:
            self.first_sequence = sequence
        self.last_sequence = sequence

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
        }

    @classmethod
    def from_json(cls, state: Any) -> "WindowState":
        """The `state` Lambda passed back; `{}` or null (a window's first invocation) is empty."""
        if not state:
            return cls()
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            raise ValueError(f"window state is not version {STATE_VERSION} aggregator state: {state!r:.200}")
        poison = state.get("poison")
        if not isinstance(poison, list) or len(poison) != 2 or not isinstance(poison[0], int):
            raise ValueError(f"window state's poison entry must be [count, sequence], got {poison!r:.80}")
        rows = state.get("u")
        if not isinstance(rows, dict) or not all(isinstance(row, list) for row in rows.values()):
            raise ValueError("window state has no unicorn rows ('u': {name: [figures]})")
        return cls(
            rows=rows,
            first_sequence=_parse_sequence(state.get("first")),
            last_sequence=_parse_sequence(state.get("last")),
            poison_count=poison[0],
            last_poison_sequence=_parse_sequence(poison[1]),
        )


def _optional_sequence(sequence: int | None) -> str | None:
    # Sequence numbers pass 2**53: strings keep them exact in any JSON reader.
    return None if sequence is None else str(sequence)


def _parse_sequence(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isdecimal():
        raise ValueError(f"sequence number in window state must be a decimal string, got {value!r:.80}")
    return int(value)


def state_size_bytes(state_json: Mapping[str, Any]) -> int:
    """Bytes of the state as compact JSON: what counts against Lambda's 1 MB per shard."""
    return len(json.dumps(state_json, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
