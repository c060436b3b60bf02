"""Lambda event filtering: EventBridge pattern matching over stream records.

Emulates the FilterCriteria of an event source mapping ("Control which events Lambda sends to your
function"). Supported pattern syntax:

- exact values: strings, numbers (compared numerically), booleans and null, listed as alternatives;
- nested objects (every key must match) and arrays in the record (any element may match);
- ``{"prefix": "..."}``, ``{"suffix": "..."}``, ``{"equals-ignore-case": "..."}``;
- ``{"numeric": [">", 0, "<=", 5]}`` (operators ``= < <= > >=``);
- ``{"exists": true|false}``;
- ``{"anything-but": value | [values] | {"prefix": ...} | {"suffix": ...}}``;
- ``{"$or": [pattern, ...]}``.

Not supported (a pattern using them raises ``ValueError``): ``cidr``, ``wildcard``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

_ABSENT = object()
_NUMERIC_OPERATORS = {
    "=": lambda value, bound: value == bound,
    "<": lambda value, bound: value < bound,
    "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound,
    ">=": lambda value, bound: value >= bound,
}


def kinesis_filter_subject(data: bytes, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a Kinesis filter sees: the record's metadata and `data` parsed as JSON.

    AWS ("Filtering with Kinesis" / "Properly filtering Kinesis messages"): when the data is not valid
    JSON, a pattern on `data` drops the record, while a pattern on the other (metadata) properties
    still filters on those. So non-JSON data is left out of the subject, and `matches_any` fails every
    pattern that names `data` for it.
    """
    subject = {key: value for key, value in (metadata or {}).items() if key != "data"}
    with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
        subject["data"] = json.loads(data)
    return subject


def matches_any(patterns: Sequence[dict[str, Any]], subject: dict[str, Any]) -> bool:
    """A record is delivered when it matches at least one pattern (or there are none)."""
    return not patterns or any(_matches_pattern(pattern, subject) for pattern in patterns)


def _matches_pattern(pattern: dict[str, Any], subject: dict[str, Any]) -> bool:
    # A `data` rule on a Kinesis record whose data is not JSON: Lambda drops the record, whatever
    # the rule (even {"exists": false}).
    if isinstance(pattern, dict) and "data" in pattern and "data" not in subject:
        return False
    return matches(pattern, subject)


def matches(pattern: dict[str, Any], subject: Any) -> bool:
    if not isinstance(pattern, dict):
        raise ValueError(f"a filter pattern must be a JSON object, got {pattern!r}")
    for key, rule in pattern.items():
        if key == "$or":
            if not any(matches(alternative, subject) for alternative in rule):
                return False
            continue
        value = subject.get(key, _ABSENT) if isinstance(subject, dict) else _ABSENT
        if not _matches_rule(rule, value):
            return False
    return True


def _matches_rule(rule: Any, value: Any) -> bool:
    if isinstance(rule, dict):
        return value is not _ABSENT and _matches_nested(rule, value)
    if not isinstance(rule, list):
        raise ValueError(f"a filter rule must be an object or a list of matchers, got {rule!r}")
    return any(_matches_matcher(matcher, value) for matcher in rule)


def _matches_nested(rule: dict[str, Any], value: Any) -> bool:
    if isinstance(value, list):
        return any(_matches_nested(rule, element) for element in value)
    return isinstance(value, dict) and matches(rule, value)


def _matches_matcher(matcher: Any, value: Any) -> bool:
    if isinstance(matcher, dict) and "exists" in matcher:
        present = value is not _ABSENT and not isinstance(value, dict)
        return present == bool(matcher["exists"])
    if value is _ABSENT:
        return False
    if isinstance(value, list):
        return any(_matches_matcher(matcher, element) for element in value)
    if isinstance(matcher, dict):
        return _matches_operator(matcher, value)
    return _equal(matcher, value)


def _equal(expected: Any, value: Any) -> bool:
    # True == 1 in Python; EventBridge keeps booleans, numbers and strings apart.
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if _is_number(expected) and _is_number(value):
        return float(expected) == float(value)
    return type(expected) is type(value) and expected == value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches_operator(matcher: dict[str, Any], value: Any) -> bool:
    if len(matcher) != 1:
        raise ValueError(f"a filter matcher takes exactly one operator, got {matcher!r}")
    operator, argument = next(iter(matcher.items()))
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(_text(argument))
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(_text(argument))
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == str(argument).casefold()
    if operator == "numeric":
        return _is_number(value) and _in_numeric_range(argument, value)
    if operator == "anything-but":
        return not _anything_but_excludes(argument, value)
    raise ValueError(f"unsupported filter operator {operator!r}")


def _text(argument: Any) -> str:
    # EventBridge also accepts {"prefix": {"equals-ignore-case": ...}}; only plain strings here.
    if not isinstance(argument, str):
        raise ValueError(f"prefix/suffix takes a string, got {argument!r}")
    return argument


def _in_numeric_range(conditions: list[Any], value: float) -> bool:
    if len(conditions) % 2 or not conditions:
        raise ValueError(f"numeric takes operator/value pairs, got {conditions!r}")
    pairs = zip(conditions[::2], conditions[1::2], strict=True)
    for operator, bound in pairs:
        if operator not in _NUMERIC_OPERATORS or not _is_number(bound):
            raise ValueError(f"bad numeric condition {operator!r} {bound!r}")
        if not _NUMERIC_OPERATORS[operator](value, bound):
            return False
    return True


def _anything_but_excludes(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        return _matches_operator(argument, value)
    excluded = argument if isinstance(argument, list) else [argument]
    return any(_equal(item, value) for item in excluded)
