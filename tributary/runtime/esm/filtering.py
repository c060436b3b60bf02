"""Lambda event filtering: EventBridge pattern matching over stream records.

Emulates the FilterCriteria of an event source mapping ("Control which events Lambda sends to your
function"): records matching no pattern are dropped and counted, never delivered. Kinesis patterns
see the record's metadata (partitionKey, sequenceNumber, ...) and ``data`` parsed as JSON; when the
data is not JSON a pattern on ``data`` drops the record (AWS), one on other keys still applies.
DynamoDB patterns see the whole stream record. Supported pattern syntax:

- exact values: strings, numbers (compared numerically), booleans and null, listed as alternatives;
- nested objects (every key must match) and arrays in the record (any element may match, at any
  depth of nested arrays);
- ``{"prefix": "..."}``, ``{"suffix": "..."}``, ``{"equals-ignore-case": "..."}``;
- ``{"numeric": [">", 0, "<=", 5]}`` (operators ``= < <= > >=``);
- ``{"exists": true|false}``;
- ``{"anything-but": value | [values] | {"prefix": ...} | {"suffix": ...} | {"equals-ignore-case": ...}}``;
- ``{"$or": [pattern, ...]}``.

A pattern is checked once, when the mapping is created (`validate_pattern`): anything else, ``cidr``
and ``wildcard`` included, raises `FilterPatternError` naming the problem, so evaluating a valid
pattern against a record cannot fail. Evaluation never recurses on the record's own depth, and
record data that cannot be parsed (not JSON, not UTF-8, nested too deep, an integer too long to
convert) simply has no `data` for the filter, as AWS treats data that is not JSON.
"""

from __future__ import annotations

import contextlib
import math
import reprlib
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import parse_json

# Lambda's API limit on one FilterCriteria pattern (Filter.Pattern, "Maximum length of 4096").
MAX_PATTERN_LENGTH = 4096
# This emulation's limit (AWS documents only the length): the matcher recurses along the pattern's
# nesting, and no pattern anyone writes comes near it, while a 4,096-character one could nest ~800 deep.
MAX_PATTERN_DEPTH = 64

_ABSENT = object()
_NUMERIC_OPERATORS = {
    "=": lambda value, bound: value == bound,
    "<": lambda value, bound: value < bound,
    "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound,
    ">=": lambda value, bound: value >= bound,
}
_STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case")
_UNSUPPORTED_OPERATORS = ("cidr", "wildcard")
_SHORT = reprlib.Repr(maxstring=60)


class FilterPatternError(ValueError):
    """A FilterCriteria pattern this emulation refuses, as Lambda refuses an invalid one at creation."""


# ---------------------------------------------------------------- subjects


def kinesis_filter_subject(data: bytes, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a Kinesis filter sees: the record's metadata and `data` parsed as JSON.

    AWS ("Filtering with Kinesis" / "Properly filtering Kinesis messages"): when the data is not valid
    JSON, a pattern on `data` drops the record, while a pattern on the other (metadata) properties
    still filters on those. So data that does not parse (by `parse_json`'s rules: also bad UTF-8, JSON
    nested too deep for the parser, an integer over 4,300 digits, NaN) is left out of the subject, and
    `matches_any` fails every pattern that names `data` for it.
    """
    subject = {key: value for key, value in (metadata or {}).items() if key != "data"}
    with contextlib.suppress(PoisonRecordError):  # not JSON to a filter: only metadata patterns can match it
        subject["data"] = parse_json(data, "record data")
    return subject


# ---------------------------------------------------------------- validation


def parse_pattern(pattern: Any) -> dict[str, Any]:
    """A FilterCriteria `Pattern` (the JSON text, or already parsed), validated."""
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise FilterPatternError(f"a filter pattern is at most {MAX_PATTERN_LENGTH} characters, got {len(pattern)}")
        try:
            pattern = parse_json(pattern, "filter pattern")
        except PoisonRecordError as error:
            raise FilterPatternError(error.reason) from error
    validate_pattern(pattern)
    return pattern


def validate_pattern(pattern: Any) -> None:
    """Raise `FilterPatternError` unless `pattern` is a pattern this module evaluates (see the module doc)."""
    if not isinstance(pattern, dict):
        raise FilterPatternError(f"a filter pattern must be a JSON object, got {_show(pattern)}")
    # Iterative: a hostile pattern must be refused by its depth, not by the interpreter's stack.
    pending: list[tuple[dict[str, Any], int]] = [(pattern, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_PATTERN_DEPTH:
            raise FilterPatternError(f"a filter pattern nests objects more than {MAX_PATTERN_DEPTH} levels deep")
        for key, rule in node.items():
            pending += [(child, depth + 1) for child in _children(key, rule)]


def _children(key: str, rule: Any) -> list[dict[str, Any]]:
    """The objects nested under one key of a pattern, after checking the key's own rule."""
    if key == "$or":
        if not isinstance(rule, list) or not rule or not all(isinstance(item, dict) for item in rule):
            raise FilterPatternError(f"$or takes a non-empty list of patterns, got {_show(rule)}")
        return rule
    if isinstance(rule, dict):
        return [rule]
    if not isinstance(rule, list):
        raise FilterPatternError(
            f"the rule for {_show(key)} must be an object or a list of matchers, got {_show(rule)}"
        )
    for matcher in rule:
        _check_matcher(matcher)
    return []


def _check_matcher(matcher: Any) -> None:
    if _is_scalar(matcher):
        return
    if not isinstance(matcher, dict):
        raise FilterPatternError(f"a filter matcher is a value or an operator object, got {_show(matcher)}")
    if len(matcher) != 1:
        raise FilterPatternError(f"a filter matcher takes exactly one operator, got {len(matcher)}: {sorted(matcher)}")
    operator, argument = next(iter(matcher.items()))
    if operator == "exists":
        if not isinstance(argument, bool):
            raise FilterPatternError(f"exists takes true or false, got {_show(argument)}")
    elif operator in _STRING_OPERATORS:
        _check_text_argument(operator, argument)
    elif operator == "numeric":
        _check_numeric(argument)
    elif operator == "anything-but":
        _check_anything_but(argument)
    elif operator in _UNSUPPORTED_OPERATORS:
        raise FilterPatternError(f"the filter operator {operator!r} is not supported by this emulation")
    else:
        raise FilterPatternError(f"unsupported filter operator {_show(operator)}")


def _check_text_argument(operator: str, argument: Any) -> None:
    # EventBridge also accepts {"prefix": {"equals-ignore-case": ...}}; only plain strings here.
    if not isinstance(argument, str):
        raise FilterPatternError(f"{operator} takes a string, got {_show(argument)}")


def _check_numeric(conditions: Any) -> None:
    if not isinstance(conditions, list) or not conditions or len(conditions) % 2:
        raise FilterPatternError(f"numeric takes operator/value pairs, got {_show(conditions)}")
    for operator, bound in zip(conditions[::2], conditions[1::2], strict=True):
        if not isinstance(operator, str) or operator not in _NUMERIC_OPERATORS or not _is_number(bound):
            raise FilterPatternError(
                f"bad numeric condition {_show(operator)} {_show(bound)}: "
                f"an operator of {' '.join(_NUMERIC_OPERATORS)} and a number"
            )


def _check_anything_but(argument: Any) -> None:
    if isinstance(argument, dict):
        if len(argument) != 1 or next(iter(argument)) not in _STRING_OPERATORS:
            raise FilterPatternError(f"anything-but takes one of {', '.join(_STRING_OPERATORS)} as an operator")
        operator, text = next(iter(argument.items()))
        _check_text_argument(operator, text)
        return
    excluded = argument if isinstance(argument, list) else [argument]
    if not excluded or not all(_is_scalar(item) for item in excluded):
        raise FilterPatternError(f"anything-but takes a value, a list of values or an operator, got {_show(argument)}")


# ---------------------------------------------------------------- evaluation


def matches_any(patterns: Sequence[dict[str, Any]], subject: dict[str, Any]) -> bool:
    """A record is delivered when it matches at least one pattern (or there are none).

    The patterns must have passed `validate_pattern` (MappingConfig checks them); then this never raises.
    """
    return not patterns or any(_matches_pattern(pattern, subject) for pattern in patterns)


def matches(pattern: dict[str, Any], subject: Any) -> bool:
    """Whether `subject` matches `pattern`; `FilterPatternError` if the pattern is not valid."""
    validate_pattern(pattern)
    return _matches_object(pattern, subject)


def _matches_pattern(pattern: dict[str, Any], subject: dict[str, Any]) -> bool:
    # A `data` rule on a Kinesis record whose data is not JSON: Lambda drops the record, whatever
    # the rule (even {"exists": false}).
    if "data" in pattern and "data" not in subject:
        return False
    return _matches_object(pattern, subject)


def _matches_object(pattern: dict[str, Any], subject: Any) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not any(_matches_object(alternative, subject) for alternative in rule):
                return False
            continue
        value = subject.get(key, _ABSENT) if isinstance(subject, dict) else _ABSENT
        if not _matches_rule(rule, value):
            return False
    return True


def _matches_rule(rule: dict[str, Any] | list[Any], value: Any) -> bool:
    if isinstance(rule, dict):
        return value is not _ABSENT and any(
            isinstance(element, dict) and _matches_object(rule, element) for element in _elements(value)
        )
    return any(_matches_matcher(matcher, value) for matcher in rule)


def _elements(value: Any) -> Iterator[Any]:
    """A value of the record, or each element of an array, however deeply arrays nest (without recursion)."""
    if not isinstance(value, list):
        yield value
        return
    stack = [iter(value)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                stack.append(iter(element))
                break
            yield element
        else:
            stack.pop()


def _matches_matcher(matcher: Any, value: Any) -> bool:
    if isinstance(matcher, dict) and "exists" in matcher:
        present = value is not _ABSENT and not isinstance(value, dict)
        return present == matcher["exists"]
    if value is _ABSENT:
        return False
    if isinstance(matcher, dict):
        return any(_matches_operator(matcher, element) for element in _elements(value))
    return any(_equal(matcher, element) for element in _elements(value))


def _matches_operator(matcher: dict[str, Any], value: Any) -> bool:
    operator, argument = next(iter(matcher.items()))
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == argument.casefold()
    if operator == "numeric":
        return _is_number(value) and _in_numeric_range(argument, value)
    # anything-but, the only other operator validate_pattern lets through
    if isinstance(argument, dict):
        return not _matches_operator(argument, value)
    excluded = argument if isinstance(argument, list) else [argument]
    return not any(_equal(item, value) for item in excluded)


def _equal(expected: Any, value: Any) -> bool:
    # True == 1 in Python; EventBridge keeps booleans, numbers and strings apart.
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if _is_number(expected) and _is_number(value):
        return _same_number(expected, value)
    return type(expected) is type(value) and expected == value


def _in_numeric_range(conditions: list[Any], value: int | float | Decimal) -> bool:
    number = _as_float(value)
    pairs = zip(conditions[::2], conditions[1::2], strict=True)
    return all(_NUMERIC_OPERATORS[operator](number, _as_float(bound)) for operator, bound in pairs)


def _same_number(expected: int | float | Decimal, value: int | float | Decimal) -> bool:
    """Equal as doubles (25 matches 25.0, 0.1 matches 0.1), exactly when either is beyond a double's range."""
    left, right = _as_float(expected), _as_float(value)
    if math.isinf(left) or math.isinf(right):
        return expected == value  # int, float and Decimal compare exactly, at any size
    return left == right


def _as_float(number: int | float | Decimal) -> float:
    """The number as a double; past a double's range, infinity of its sign (an int would raise instead)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _show(value: Any) -> str:
    """A short description for an error message; never a repr of a whole (possibly huge or deep) structure."""
    if isinstance(value, str):
        return _SHORT.repr(value)
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if _is_number(value):
        return "a number"
    return {dict: "an object", list: "an array"}.get(type(value), type(value).__name__)
