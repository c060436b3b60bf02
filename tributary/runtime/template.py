"""SAM template loading: CloudFormation short tags, parameters, conditions, intrinsics and Globals.

This resolves what a local run needs, not everything CloudFormation does: `Ref`, `Fn::GetAtt`,
`Fn::Sub`, `Fn::If`/`Equals`/`And`/`Or`/`Not`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
`Fn::FindInMap`, `Fn::Base64`, `Fn::GetAZs`, `Fn::ToJsonString` and the pseudo parameters.
Physical names are the template's name properties or, like CloudFormation, generated from the
stack name and logical id. Attributes only known once a resource exists (a queue's URL, a table's
stream ARN) are filled in by `tributary.runtime.resources` through `Template.record_attributes`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
DEFAULT_STACK_NAME = "tributary"


class TemplateError(ValueError):
    """The template or a parameter override cannot be understood; the message names what."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ---------------------------------------------------------------- YAML with CloudFormation short tags


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


# ---------------------------------------------------------------- the template model


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict
    metadata: dict = field(default_factory=dict)


@dataclass
class FunctionSpec:
    """An AWS::Serverless::Function with Globals applied; events and environment left unresolved."""

    logical_id: str
    properties: dict


# Name property of each type whose physical name the template may choose (path for nested ones).
NAME_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::Kinesis::Stream": ("Name",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName",),
    "AWS::Glue::Registry": ("Name",),
    "AWS::Glue::Schema": ("Name",),
    "AWS::Glue::Database": ("DatabaseInput", "Name"),
    "AWS::Glue::Table": ("TableInput", "Name"),
    "AWS::Serverless::Function": ("FunctionName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Serverless::LayerVersion": ("LayerName",),
    "AWS::Lambda::LayerVersion": ("LayerName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::Athena::NamedQuery": ("Name",),
    "AWS::Athena::WorkGroup": ("Name",),
    "AWS::Serverless::StateMachine": ("Name",),
    "AWS::StepFunctions::StateMachine": ("StateMachineName",),
    "AWS::SMSVOICE::OptOutList": ("OptOutListName",),
}
_LOWERCASE_NAME_TYPES = {"AWS::S3::Bucket", "AWS::Glue::Database", "AWS::Glue::Table"}


class Template:
    """A SAM template with parameters, conditions and Globals applied; `resolve` evaluates intrinsics."""

    def __init__(
        self,
        document: dict,
        base_dir: Path,
        overrides: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
    ) -> None:
        self.document = document
        self.base_dir = base_dir
        self.stack_name = stack_name
        self.parameters = self._parameters(overrides or {})
        self.mappings: dict = document.get("Mappings") or {}
        self.conditions: dict[str, bool] = {}
        self._condition_definitions: dict = document.get("Conditions") or {}
        for name in self._condition_definitions:
            self.condition(name)
        self.all_resources: dict[str, dict] = document.get("Resources") or {}
        self.resources: dict[str, Resource] = {}
        self.skipped_by_condition: list[str] = []
        for logical_id, definition in self.all_resources.items():
            condition = definition.get("Condition")
            if condition and not self.condition(condition):
                self.skipped_by_condition.append(logical_id)
                continue
            self.resources[logical_id] = Resource(
                logical_id,
                definition.get("Type", ""),
                definition.get("Properties") or {},
                definition.get("Metadata") or {},
            )
        self._created: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, str] | None = None) -> Template:
        template_path = Path(path)
        try:
            text = template_path.read_text()
        except OSError as error:
            raise TemplateError(f"cannot read template {template_path}: {error.strerror}") from error
        return cls(load_yaml(text), template_path.resolve().parent, overrides)

    # ------------------------------------------------------------ parameters and conditions

    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict = self.document.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"parameter overrides name parameters the template lacks: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                value = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default: pass --parameter-overrides {name}=VALUE")
            value = "" if value is None else str(value) if not isinstance(value, list) else value
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(item) for item in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            if str(spec.get("Type", "")).startswith("CommaDelimitedList") or str(spec.get("Type", "")).startswith(
                "List<"
            ):
                value = value if isinstance(value, list) else [part.strip() for part in value.split(",")]
            values[name] = value
        return values

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            if name not in self._condition_definitions:
                raise TemplateError(f"condition {name} is not defined in Conditions")
            self.conditions[name] = bool(self.resolve(self._condition_definitions[name]))
        return self.conditions[name]

    # ------------------------------------------------------------ physical names and attributes

    def record_attributes(self, logical_id: str, attributes: Mapping[str, Any]) -> None:
        """Remember what a created resource really is (its `Ref` under key "Ref" and any attributes)."""
        self._created.setdefault(logical_id, {}).update(attributes)

    def physical_name(self, logical_id: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"no resource {logical_id} (or its condition is false)")
        path = NAME_PROPERTIES.get(resource.type)
        if path:
            value: Any = resource.properties
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                return str(self.resolve(value))
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
        name = f"{self.stack_name}-{logical_id}-{digest}"
        if resource.type in _LOWERCASE_NAME_TYPES:
            name = name.lower()
        return name[:63] if resource.type == "AWS::S3::Bucket" else name

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self._pseudo_parameter(name)
        if pseudo is not None:
            return pseudo
        created = self._created.get(name, {})
        if "Ref" in created:
            return created["Ref"]
        resource = self.resources.get(name)
        if resource is None:
            if name in self.skipped_by_condition:
                self.warnings.append(f"Ref {name}: its condition is false")
                return NO_VALUE
            return self._implicit_ref(name)
        return _predicted_ref(resource.type, self.physical_name(name))

    def get_att(self, logical_id: str, attribute: str) -> Any:
        created = self._created.get(logical_id, {})
        if attribute in created:
            return created[attribute]
        resource = self.resources.get(logical_id)
        if resource is None:
            return self._implicit_attribute(logical_id, attribute)
        return _predicted_attribute(resource.type, self.physical_name(logical_id), attribute, self.stack_name)

    def _implicit_ref(self, name: str) -> str:
        # SAM-generated resources (e.g. <Function>Role) exist only after the transform.
        self.warnings.append(f"Ref {name}: not declared in the template (SAM-generated?); used its name")
        return name

    def _implicit_attribute(self, logical_id: str, attribute: str) -> str:
        if logical_id.endswith("Role") and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{self.stack_name}-{logical_id}"
        self.warnings.append(f"GetAtt {logical_id}.{attribute}: not declared in the template")
        return f"{logical_id}.{attribute}"

    def _pseudo_parameter(self, name: str) -> Any:
        return {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }.get(name)

    # ------------------------------------------------------------ intrinsic functions

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic function in `value`; `AWS::NoValue` removes keys and list items."""
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {key: self.resolve(item) for key, item in argument[1].items()}
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
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(expression))

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _get_att(self, argument: Any) -> Any:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
        else:
            logical_id, attribute = argument[0], self.resolve(argument[1])
        return self.get_att(logical_id, attribute)

    def _if(self, argument: list) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _find_in_map(self, argument: list) -> Any:
        map_name, top_key, second_key = (self.resolve(item) for item in argument[:3])
        try:
            return self.mappings[map_name][top_key][second_key]
        except KeyError as error:
            raise TemplateError(f"FindInMap {map_name}/{top_key}/{second_key}: no such entry") from error

    # ------------------------------------------------------------ SAM

    def functions(self) -> list[FunctionSpec]:
        """Every AWS::Serverless::Function with Globals.Function merged in as SAM merges them."""
        global_properties = ((self.document.get("Globals") or {}).get("Function")) or {}
        return [
            FunctionSpec(resource.logical_id, merge_globals(global_properties, resource.properties))
            for resource in self.resources.values()
            if resource.type == "AWS::Serverless::Function"
        ]

    def layer_directories(self, layers: list) -> list[Path]:
        """Content directories of the layers a function lists that the template builds itself."""
        directories: list[Path] = []
        for layer in layers:
            logical_id = layer.get("Ref") if isinstance(layer, dict) else None
            resource = self.resources.get(logical_id or "")
            if resource is None:
                self.warnings.append(f"layer {layer!r} is not built by this template; not on the import path")
                continue
            content = resource.properties.get("ContentUri") or resource.properties.get("Content")
            if isinstance(content, str):
                directories.append(self.base_dir / content)
            else:
                self.warnings.append(f"layer {logical_id} has no local ContentUri; not on the import path")
        return directories

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, output in (self.document.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition and not self.condition(condition):
                continue
            result[name] = self.resolve(output.get("Value"))
        return result


def merge_globals(global_properties: Mapping[str, Any], properties: Mapping[str, Any]) -> dict:
    """SAM's rule: the function's scalars win, maps are merged (recursively), lists are appended."""
    merged: dict[str, Any] = dict(global_properties)
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: dict) -> bool:
    return len(value) == 1 and next(iter(value)) in _INTRINSICS


def _equals(template: Template, argument: list) -> bool:
    left, right = (template.resolve(item) for item in argument)
    return str(left) == str(right)


def _select(template: Template, argument: list) -> Any:
    index, items = template.resolve(argument[0]), template.resolve(argument[1])
    return items[int(index)]


def _split(template: Template, argument: list) -> list[str]:
    return str(template.resolve(argument[1])).split(argument[0])


def _join(template: Template, argument: list) -> str:
    return str(argument[0]).join(str(item) for item in template.resolve(argument[1]))


_INTRINSICS: dict[str, Any] = {
    "Ref": lambda template, argument: template.ref(argument),
    "Condition": lambda template, argument: template.condition(argument),
    "Fn::GetAtt": Template._get_att,
    "Fn::Sub": Template._sub,
    "Fn::If": Template._if,
    "Fn::FindInMap": Template._find_in_map,
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


def _predicted_ref(resource_type: str, name: str) -> str:
    if resource_type == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"
    if resource_type in {"AWS::Glue::Registry", "AWS::Glue::Schema"}:
        return _predicted_attribute(resource_type, name, "Arn", DEFAULT_STACK_NAME)
    if resource_type in {"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"}:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:1"
    if resource_type == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"
    return name


_ARN_FORMATS: dict[str, str] = {
    "AWS::Kinesis::Stream": "arn:aws:kinesis:{r}:{a}:stream/{n}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{n}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{n}",
    "AWS::S3::Bucket": "arn:aws:s3:::{n}",
    "AWS::KinesisFirehose::DeliveryStream": "arn:aws:firehose:{r}:{a}:deliverystream/{n}",
    "AWS::Glue::Registry": "arn:aws:glue:{r}:{a}:registry/{n}",
    "AWS::Serverless::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
}


def _predicted_attribute(resource_type: str, name: str, attribute: str, stack_name: str) -> Any:
    arn = _ARN_FORMATS.get(resource_type, "arn:aws:{s}:{r}:{a}:{n}").format(
        r=REGION, a=ACCOUNT_ID, n=name, s=resource_type.split("::")[1].lower() if "::" in resource_type else "x"
    )
    if attribute in {"Arn", "TopicArn"}:
        return arn
    if attribute == "StreamArn" and resource_type == "AWS::DynamoDB::Table":
        return f"{arn}/stream/pending"
    if attribute in {"QueueName", "TopicName", "Name"}:
        return name
    if attribute == "QueueUrl":
        return _predicted_ref(resource_type, name)
    if attribute in {"DomainName", "RegionalDomainName"}:
        return f"{name}.s3.amazonaws.com"
    return f"{name}.{attribute}"
