"""One shard's running aggregate of a tumbling window, kept as compact JSON between invocations.

Lambda hands a tumbling window's `state` back to the next invocation and ends the window early
once the state passes 1 MB per shard, so the state holds one positional row per unicorn instead
of a verbose object (version 2):

    {"v": 2, "first": "<seq>", "last": "<seq>", "poison": [<count>, "<seq>"],
     "u": {"Shadowfax": [count, distance, minMagic, maxMagic, minHealth, maxHealth, firstMs, lastMs]},
     "x": [["<name>", <row as it was found>, "<why it was set aside>"]],
     "firstSub": <n>, "lastSub": <n>, "poisonSub": <n>}

A row takes about 90 bytes with 16-character names and float distances (over 10,000 unicorns per
shard fit) and about 210 at worst (64-character names, every figure a 17-digit float: 5,000 fit).
Past 800 KB the function stores the state as a partial segment and goes on with an empty one, so
nothing is lost and Lambda's own early end at 1 MB stays a backstop: see `window_handler`. What a
reading must be before it is folded is in `readings`; a row's figures in `figures`.

`x` holds rows set aside instead of failing: rows of a version 1 state that could not be stored,
or a row found malformed when a reading for that unicorn arrives (the unicorn then starts afresh).
They are stored as a quarantined item when the window (or segment) is stored.

State versions: 1 (no `x`, rows never range-checked; written before rows were validated at fold
time) is migrated by checking every row once and setting aside the ones that cannot be stored. A
state that cannot be read at all (another shape, a version this function does not know) is an
`UnreadableState`: the caller stores it raw and goes on with a fresh state keeping the high-water
marks it could still read.

`last` is the highest sequence number folded: the ESM delivers a shard's records in sequence order
the first time, so a record at or below it is a re-delivery and is skipped rather than counted
twice. `first` (the lowest sequence number folded) names the state's segment: a window stored in
segments (by the function past 800 KB, or by Lambda's early end) goes on with a fresh state, and
each segment is stored under its own key.

User records of a KPL aggregate share their aggregate's sequence number, and a failure among them
makes the mapping deliver the whole aggregate again: so a mark that falls inside an aggregate
carries the user record's subsequence number too (`firstSub`, `lastSub`, `poisonSub`, written only
then), and records compare by (sequence, subsequence). A mark without one covers its whole record:
a plain record has no other user record, and a state written before aggregates were opened (when
an aggregate was one poison record) reads as it always did. The fields are optional, so the state
stays version 2: a function of the previous release reads these states too.
"""

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tributary_shared.aggregator.figures import UnicornFigures, is_int, storable_figures
from tributary_shared.aggregator.readings import Reading, describe_value, dynamodb_number_problem
from tributary_shared.errors import PoisonRecordError
from tributary_shared.kinesis_batch import MAX_SUBSEQUENCE, RECORD_ID_SEPARATOR, record_version

STATE_VERSION = 2
# Written by the aggregator before rows were validated at fold time: same layout, no "x".
UNCHECKED_ROWS_VERSION = 1
# Lambda's limit on a tumbling window's state per shard; past it the window ends early.
STATE_LIMIT_BYTES = 1024 * 1024
# Kinesis' API pattern for a sequence number: 0|([1-9]\d{0,128}).
MAX_SEQUENCE_DIGITS = 129


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
    # Subsequence numbers of marks inside a KPL aggregate; None: the mark covers its whole record.
    first_subsequence: int | None = None
    last_subsequence: int | None = None
    last_poison_subsequence: int | None = None

    @property
    def segment(self) -> str | None:
        """What names the state's segment in its items' keys: the first record folded."""
        return _position_text(self.first_sequence, self.first_subsequence)

    @property
    def high_water_mark(self) -> str | None:
        return _position_text(self.last_sequence, self.last_subsequence)

    @property
    def version(self) -> str | None:
        """`record_version` of the high-water mark: the last record folded into the state."""
        if self.last_sequence is None:
            return None
        return record_version(str(self.last_sequence), self.last_subsequence or 0)

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

    def already_folded(self, sequence: int, subsequence: int | None = None) -> bool:
        """True for a re-delivered record: the shard's records come in sequence order first time.

        `subsequence`: a user record's place in its KPL aggregate (None for a plain record).
        """
        return _at_or_below(sequence, subsequence, self.last_sequence, self.last_subsequence)

    def fold(self, reading: Reading, sequence: int, subsequence: int | None = None) -> None:
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
            self.first_sequence, self.first_subsequence = sequence, subsequence
        self.last_sequence, self.last_subsequence = sequence, subsequence

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
            last_subsequence=self.last_subsequence,
            last_poison_subsequence=self.last_poison_subsequence,
        )

    def count_poison(self, sequence: int, subsequence: int | None = None) -> bool:
        """Count a poison record once, however often the ESM re-delivers it; True if it was new."""
        if _at_or_below(sequence, subsequence, self.last_poison_sequence, self.last_poison_subsequence):
            return False
        self.poison_count += 1
        self.last_poison_sequence, self.last_poison_subsequence = sequence, subsequence
        return True

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "v": STATE_VERSION,
            "first": _optional_sequence(self.first_sequence),
            "last": _optional_sequence(self.last_sequence),
            "poison": [self.poison_count, _optional_sequence(self.last_poison_sequence)],
            "u": self.rows,
            "x": [entry.to_json() for entry in self.set_aside],
        }
        for name, subsequence in self._subsequences().items():
            if subsequence is not None:
                state[name] = subsequence
        return state

    def _subsequences(self) -> dict[str, int | None]:
        return {
            "firstSub": self.first_subsequence,
            "lastSub": self.last_subsequence,
            "poisonSub": self.last_poison_subsequence,
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
        if is_int(version) and version == STATE_VERSION:
            return cls._read(state, _parse_set_aside(state.get("x")))
        if is_int(version) and version == UNCHECKED_ROWS_VERSION:
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
            first_subsequence=_parse_subsequence(state, "firstSub"),
            last_subsequence=_parse_subsequence(state, "lastSub"),
            last_poison_subsequence=_parse_subsequence(state, "poisonSub"),
        )
        read._check_marks()
        return read

    def _check_marks(self) -> None:
        marks = {"firstSub": self.first_sequence, "lastSub": self.last_sequence, "poisonSub": self.last_poison_sequence}
        for name, subsequence in self._subsequences().items():
            if subsequence is not None and marks[name] is None:
                raise ValueError(f"window state has {name} without the sequence number it belongs to")
        holds_rows = bool(self.rows or self.set_aside)
        if holds_rows and (self.first_sequence is None or self.last_sequence is None):
            raise ValueError("window state holds rows but not the sequence numbers folded into them")
        if self.first_sequence is not None and (
            self.last_sequence is None
            or not _at_or_below(self.first_sequence, self.first_subsequence, self.last_sequence, self.last_subsequence)
        ):
            raise ValueError(f"window state's first record {self.segment} is above its last {self.high_water_mark}")

    def _with_unstorable_rows_set_aside(self) -> "WindowState":
        for name, row in list(self.rows.items()):
            try:
                storable_figures(name, row)
            except ValueError as error:
                self.set_aside.append(SetAsideRow(name, self.rows.pop(name), str(error)))
        return self


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
    with contextlib.suppress(ValueError):
        # Without its subsequence a mark covers its whole record: re-delivered user records are skipped.
        fresh.last_subsequence = _parse_subsequence(raw, "lastSub") if fresh.last_sequence is not None else None
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
    if not isinstance(poison, list) or len(poison) != 2 or not is_int(poison[0]) or poison[0] < 0:
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


def _parse_subsequence(state: dict[str, Any], name: str) -> int | None:
    value = state.get(name)
    if value is None:
        return None
    if not is_int(value) or not 0 <= value <= MAX_SUBSEQUENCE:
        raise ValueError(
            f"window state's {name} must be a subsequence number 0..{MAX_SUBSEQUENCE}, got {describe_value(value)}"
        )
    return value


def _at_or_below(sequence: int, subsequence: int | None, mark: int | None, mark_subsequence: int | None) -> bool:
    """Whether a record is at or below a mark. A mark without a subsequence covers its whole record,
    and so does a plain record's position (a sequence number is either plain or an aggregate)."""
    if mark is None or sequence != mark:
        return mark is not None and sequence < mark
    return mark_subsequence is None or subsequence is None or subsequence <= mark_subsequence


def _position_text(sequence: int | None, subsequence: int | None) -> str | None:
    """A position as `KinesisRecord.record_id` writes it: "<sequence>", or "<sequence>:<subsequence>"."""
    if sequence is None:
        return None
    return str(sequence) if subsequence is None else f"{sequence}{RECORD_ID_SEPARATOR}{subsequence}"


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
