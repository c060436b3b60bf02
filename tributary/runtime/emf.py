"""CloudWatch's embedded metric format (EMF): the metrics a function writes to its output, as CloudWatch reads them.

A log line is an EMF document when it is a JSON object whose `_aws.CloudWatchMetrics` is a list of
directives, each naming a `Namespace`, `Dimensions` (a list of dimension sets, each a list of keys of
the document) and `Metrics` (`Name`, optional `Unit`). A metric's values are the document's member of
that name: a number or a list of numbers. Each metric is published once per dimension set, with the
dimension values read from the document (an empty set means no dimensions). `_aws.Timestamp` is
milliseconds since the epoch.

CloudWatch drops a document it cannot read rather than part of one, so a malformed directive (a
dimension key the document lacks or holds a non-string in, a value that is not a number) yields no
metric from that document; a line that is not JSON, or JSON without `_aws`, is an ordinary log line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MetricDimensions = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class MetricKey:
    """A CloudWatch metric: namespace, name and the exact set of dimensions it is published under."""

    namespace: str
    name: str
    dimensions: MetricDimensions = frozenset()


@dataclass(frozen=True)
class EmfMetric:
    key: MetricKey
    unit: str
    values: tuple[float, ...]
    timestamp_s: float | None  # None when the document carries no valid `_aws.Timestamp`


class EmfError(ValueError):
    """A document with `_aws` that CloudWatch would reject."""


def parse_emf_line(line: str) -> list[EmfMetric]:
    """The metrics of one output line; [] for an ordinary log line or a document CloudWatch would drop."""
    text = line.strip()
    if not text.startswith("{") or '"_aws"' not in text:
        return []  # the common case, a plain log line, without parsing it
    try:
        document = json.loads(text)
        return emf_metrics(document) if isinstance(document, dict) and "_aws" in document else []
    except (ValueError, EmfError):
        return []


def emf_metrics(document: dict[str, Any]) -> list[EmfMetric]:
    """Every metric an EMF document publishes; EmfError if any directive is malformed."""
    metadata = document["_aws"]
    if not isinstance(metadata, dict) or not isinstance(metadata.get("CloudWatchMetrics"), list):
        raise EmfError("_aws.CloudWatchMetrics is not a list")
    timestamp = metadata.get("Timestamp")
    timestamp_s = timestamp / 1000 if _is_number(timestamp) else None
    metrics: list[EmfMetric] = []
    for directive in metadata["CloudWatchMetrics"]:
        metrics += _directive_metrics(document, directive, timestamp_s)
    return metrics


def _directive_metrics(document: dict[str, Any], directive: Any, timestamp_s: float | None) -> list[EmfMetric]:
    if not isinstance(directive, dict):
        raise EmfError("a CloudWatchMetrics directive is not an object")
    namespace = directive.get("Namespace")
    dimension_sets = directive.get("Dimensions", [[]])
    definitions = directive.get("Metrics")
    if not isinstance(namespace, str) or not namespace or not isinstance(definitions, list):
        raise EmfError("a directive needs a Namespace and a list of Metrics")
    if not isinstance(dimension_sets, list):
        raise EmfError("Dimensions is not a list of dimension sets")
    dimension_values = [_dimension_set(document, keys) for keys in dimension_sets] or [frozenset()]
    metrics = []
    for definition in definitions:
        name, unit = _definition(definition)
        values = _values(document.get(name), name)
        metrics += [EmfMetric(MetricKey(namespace, name, dimensions), unit, values, timestamp_s)
                    for dimensions in dimension_values]  # fmt: skip
    return metrics


def _dimension_set(document: dict[str, Any], keys: Any) -> MetricDimensions:
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise EmfError("a dimension set is not a list of keys")
    values = {key: document.get(key) for key in keys}
    if not all(isinstance(value, str) for value in values.values()):
        raise EmfError(f"dimension keys {keys} need string members of the document")
    return frozenset((key, str(value)) for key, value in values.items())


def _definition(definition: Any) -> tuple[str, str]:
    if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
        raise EmfError("a metric definition needs a Name")
    unit = definition.get("Unit", "None")
    return definition["Name"], unit if isinstance(unit, str) else "None"


def _values(member: Any, name: str) -> tuple[float, ...]:
    values = member if isinstance(member, list) else [member]
    if not values or not all(_is_number(value) for value in values):
        raise EmfError(f"metric {name} has no numeric value")
    return tuple(float(value) for value in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
