"""Per-unicorn figures of one tumbling window, and their compact row in the window's state.

A row is `[count, distance, minMagic, maxMagic, minHealth, maxHealth, firstMs, lastMs]`. Integral
figures are kept as JSON integers, others as decimal strings, so every digit survives the state's
JSON; the distance sum is exact (never rounded). First and last StatusTime are the smallest and
largest reading times as epoch milliseconds, so the figures do not depend on the order records
arrive in.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Self

from tributary_shared.aggregator.readings import (
    EXACT_CONTEXT,
    MAX_STATUS_MS,
    MIN_STATUS_MS,
    Reading,
    describe_value,
    dynamodb_number_problem,
    status_time_range_problem,
    unicorn_name_problem,
)

ROW_LENGTH = 8
# Integers the state writes as JSON numbers (below 2**53, so any JSON reader keeps them exact).
SMALL_INT_LIMIT = 2**53


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
        if not all(is_int(value) for value in (count, first_ms, last_ms)) or count < 1:
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


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _compact_number(number: Decimal) -> int | str:
    # An integral Decimal becomes a JSON integer (no quotes, no exponent); others keep every digit.
    if number == number.to_integral_value() and number.copy_abs() < SMALL_INT_LIMIT:
        return int(number)
    return str(number)


def _state_number(value: Any) -> Decimal:
    if is_int(value) and -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT:
        return Decimal(value)  # how the state keeps most figures: always a DynamoDB number
    if not is_int(value) and not isinstance(value, str):
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


def storable_figures(name: str, row: Any) -> UnicornFigures:
    """A state row as figures its items and summary can be built from; ValueError says why not."""
    problem = unicorn_name_problem(name)
    if problem:
        raise ValueError(f"unicorn name {problem}")
    return UnicornFigures.from_row(row)
