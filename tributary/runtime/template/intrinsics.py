"""CloudFormation's intrinsic functions, as far as a local run needs them.

`Ref`, `Condition`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If`/`Equals`/`And`/`Or`/`Not`, `Fn::Join`,
`Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::Base64`, `Fn::GetAZs`, `Fn::ToJsonString` and
`Fn::Length`. Each takes the template it is evaluated in (for references, conditions and mappings)
and its unresolved argument. `NO_VALUE` is what `AWS::NoValue` resolves to: the caller removes it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from tributary.runtime.template.documents import TemplateError
from tributary.runtime.template.naming import REGION


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class Resolver(Protocol):
    """What an intrinsic function needs of the template it is evaluated in."""

    mappings: dict

    def resolve(self, value: Any) -> Any: ...

    def ref(self, name: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...

    def condition(self, name: str) -> bool: ...


def is_intrinsic(value: dict) -> bool:
    return len(value) == 1 and next(iter(value)) in INTRINSICS


def _sub(template: Resolver, argument: Any) -> str:
    if isinstance(argument, list):
        text, variables = argument[0], {key: template.resolve(item) for key, item in argument[1].items()}
    else:
        text, variables = argument, {}

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("!"):
            return "${" + expression[1:] + "}"
        if expression in variables:
            return str(variables[expression])
        if "." in expression and not expression.startswith("AWS::"):
            logical_id, _, attribute = expression.partition(".")
            return str(template.get_att(logical_id, attribute))
        return str(template.ref(expression))

    return re.sub(r"\$\{([^}]+)\}", substitute, text)


def _get_att(template: Resolver, argument: Any) -> Any:
    if isinstance(argument, str):
        logical_id, _, attribute = argument.partition(".")
    else:
        logical_id, attribute = argument[0], template.resolve(argument[1])
    return template.get_att(logical_id, attribute)


def _if(template: Resolver, argument: list) -> Any:
    name, when_true, when_false = argument
    return template.resolve(when_true if template.condition(name) else when_false)


def _find_in_map(template: Resolver, argument: list) -> Any:
    map_name, top_key, second_key = (template.resolve(item) for item in argument[:3])
    try:
        return template.mappings[map_name][top_key][second_key]
    except KeyError as error:
        raise TemplateError(f"FindInMap {map_name}/{top_key}/{second_key}: no such entry") from error


def _equals(template: Resolver, argument: list) -> bool:
    left, right = (template.resolve(item) for item in argument)
    return str(left) == str(right)


def _select(template: Resolver, argument: list) -> Any:
    index, items = template.resolve(argument[0]), template.resolve(argument[1])
    return items[int(index)]


def _split(template: Resolver, argument: list) -> list[str]:
    return str(template.resolve(argument[1])).split(argument[0])


def _join(template: Resolver, argument: list) -> str:
    return str(argument[0]).join(str(item) for item in template.resolve(argument[1]))


INTRINSICS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": lambda template, argument: template.ref(argument),
    "Condition": lambda template, argument: template.condition(argument),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::If": _if,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": _equals,
    "Fn::Not": lambda template, argument: not template.resolve(argument[0]),
    "Fn::And": lambda template, argument: all(template.resolve(item) for item in argument),
    "Fn::Or": lambda template, argument: any(template.resolve(item) for item in argument),
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::Base64": lambda template, argument: base64.b64encode(str(template.resolve(argument)).encode()).decode(),
    "Fn::GetAZs": lambda template, argument: [f"{REGION}a", f"{REGION}b", f"{REGION}c"],
    "Fn::ToJsonString": lambda template, argument: json.dumps(template.resolve(argument), separators=(",", ":")),
    "Fn::Length": lambda template, argument: len(template.resolve(argument)),
}
