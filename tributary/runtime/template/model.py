"""A SAM template with parameters, conditions and Globals applied, and intrinsic functions resolved on demand.

This resolves what a local run needs, not everything CloudFormation does (intrinsics.py lists the
functions); physical names and ARNs follow naming.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tributary.runtime.template.documents import TemplateError, load_yaml
from tributary.runtime.template.intrinsics import INTRINSICS, NO_VALUE, is_intrinsic
from tributary.runtime.template.naming import (
    ACCOUNT_ID,
    DEFAULT_STACK_NAME,
    NAME_PROPERTIES,
    REGION,
    generated_name,
    predicted_attribute,
    predicted_ref,
)


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
        return generated_name(self.stack_name, logical_id, resource.type)

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
        return predicted_ref(resource.type, self.physical_name(name))

    def get_att(self, logical_id: str, attribute: str) -> Any:
        created = self._created.get(logical_id, {})
        if attribute in created:
            return created[attribute]
        resource = self.resources.get(logical_id)
        if resource is None:
            return self._implicit_attribute(logical_id, attribute)
        return predicted_attribute(resource.type, self.physical_name(logical_id), attribute)

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
            handler = INTRINSICS.get(key)
            if handler is not None:
                return handler(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

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
        if isinstance(current, dict) and isinstance(value, dict) and not is_intrinsic(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged
