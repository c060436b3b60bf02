"""Reading a template and its parameter overrides: YAML with CloudFormation's short tags, `Key=Value` pairs."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tributary.user_errors import UserError


class TemplateError(UserError, ValueError):
    """The template or a parameter override cannot be understood; the message names what."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(text: str) -> dict:
    document = yaml.load(text, Loader=_CfnLoader)
    if not isinstance(document, dict):
        raise TemplateError("template is not a YAML/JSON mapping")
    return document


def parse_parameter_overrides(items: list[str]) -> dict[str, str]:
    """`Key=Value` pairs as `sam deploy --parameter-overrides` takes them (also `ParameterKey=K,ParameterValue=V`)."""
    overrides: dict[str, str] = {}
    for item in items:
        for pair in _split_override(item):
            match = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", pair)
            key, sep, value = (match.group(1), "=", match.group(2)) if match else pair.partition("=")
            if not sep or not key:
                raise TemplateError(f"parameter override {pair!r} is not Key=Value")
            overrides[key] = value
    return overrides


def _split_override(item: str) -> list[str]:
    if item.startswith("ParameterKey="):
        return [item]
    return [part for part in item.split() if part]
