"""CloudWatch metrics: the one way every function publishes them.

A pipeline adds the figures of one invocation through `publish`, in Powertools' `MetricUnit`; the
handler's `@metrics.log_metrics` writes them as one EMF line when the invocation ends. Metric names
are part of the interface: dashboards, alarms, the README and the tests name them.
"""

from collections.abc import Mapping
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit


class MetricsLike(Protocol):
    """Powertools' `Metrics`, or anything that collects metrics the same way."""

    def add_metric(self, name: str, unit: MetricUnit, value: float) -> None: ...


def publish(metrics: MetricsLike | None, values: Mapping[str, float], unit: MetricUnit = MetricUnit.Count) -> None:
    """Add each named value to this invocation's metrics; nothing when no metrics are collected."""
    if metrics is None:
        return
    for name, value in values.items():
        metrics.add_metric(name=name, unit=unit, value=value)
