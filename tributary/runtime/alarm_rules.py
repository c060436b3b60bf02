"""How CloudWatch decides a metric alarm's state, for the alarms a template declares.

Datapoints fall into periods aligned on multiples of `Period` seconds since the epoch; each period's
value is the `Statistic` over its datapoints (none: the period is missing). The evaluation range is
the `EvaluationPeriods` most recent periods, the one in progress included, so a local run sees an
alarm fire within the period that breaches (CloudWatch evaluates about once a minute). The alarm is
in ALARM when at least `DatapointsToAlarm` (default `EvaluationPeriods`) periods breach; missing
periods count by `TreatMissingData`: `notBreaching` as within the threshold, `breaching` as over it,
`missing` and `ignore` not at all, and when every period is missing, `missing` gives
INSUFFICIENT_DATA and `ignore` keeps the previous state. CloudWatch's look-back beyond the range for
older datapoints (with `missing`) is not emulated.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tributary.runtime.emf import MetricKey

ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"

STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "Sum": math.fsum,
    "Maximum": max,
    "Minimum": min,
    "Average": lambda values: math.fsum(values) / len(values),
    "SampleCount": lambda values: float(len(values)),
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


class AlarmDefinitionError(ValueError):
    """An alarm this runtime cannot evaluate as declared (metric math, a percentile, an anomaly band)."""


@dataclass(frozen=True)
class AlarmSpec:
    logical_id: str
    name: str
    metric: MetricKey
    statistic: str
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"


@dataclass(frozen=True)
class Evaluation:
    state: str
    breaching_periods: int  # periods over the threshold in the evaluation range (missing ones excluded)
    periods_with_data: int


def alarm_spec(logical_id: str, properties: dict[str, Any]) -> AlarmSpec:
    """An AWS::CloudWatch::Alarm's resolved properties; AlarmDefinitionError for forms not evaluated here."""
    for unsupported in ("Metrics", "ExtendedStatistic", "ThresholdMetricId"):
        if unsupported in properties:
            raise AlarmDefinitionError(f"{unsupported} is not evaluated locally")
    statistic = properties.get("Statistic")
    comparison = properties.get("ComparisonOperator")
    treatment = properties.get("TreatMissingData", "missing")
    if statistic not in STATISTICS:
        raise AlarmDefinitionError(f"Statistic {statistic!r} is not one of {', '.join(STATISTICS)}")
    if comparison not in COMPARISONS:
        raise AlarmDefinitionError(f"ComparisonOperator {comparison!r} is not evaluated locally")
    if treatment not in TREATMENTS:
        raise AlarmDefinitionError(f"TreatMissingData {treatment!r} is not one of {', '.join(TREATMENTS)}")
    try:
        evaluation_periods = int(properties["EvaluationPeriods"])
        spec = AlarmSpec(
            logical_id=logical_id,
            name=str(properties.get("AlarmName") or logical_id),
            metric=MetricKey(str(properties["Namespace"]), str(properties["MetricName"]), frozenset(
                (str(item["Name"]), str(item["Value"])) for item in properties.get("Dimensions") or [])),
            statistic=statistic,
            period_s=int(properties["Period"]),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(properties.get("DatapointsToAlarm", evaluation_periods)),
            threshold=float(properties["Threshold"]),
            comparison=comparison,
            treat_missing_data=treatment,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise AlarmDefinitionError(f"not a valid metric alarm: {type(error).__name__}: {error}") from error
    if spec.period_s <= 0 or not 1 <= spec.datapoints_to_alarm <= spec.evaluation_periods:
        raise AlarmDefinitionError("Period must be positive and 1 <= DatapointsToAlarm <= EvaluationPeriods")
    return spec


def period_values(spec: AlarmSpec, datapoints: Iterable[tuple[float, float]], now: float) -> list[float | None]:
    """The statistic of each period of the evaluation range, oldest first; None for a missing period."""
    current = math.floor(now / spec.period_s)
    first = current - spec.evaluation_periods + 1
    buckets: list[list[float]] = [[] for _ in range(spec.evaluation_periods)]
    for timestamp, value in datapoints:
        index = math.floor(timestamp / spec.period_s) - first
        if 0 <= index < spec.evaluation_periods:
            buckets[index].append(value)
    statistic = STATISTICS[spec.statistic]
    return [statistic(bucket) if bucket else None for bucket in buckets]


def evaluate(spec: AlarmSpec, datapoints: Iterable[tuple[float, float]], now: float,
             previous_state: str = INSUFFICIENT_DATA) -> Evaluation:  # fmt: skip
    """The alarm's state at `now` from (timestamp, value) datapoints of its metric."""
    values = period_values(spec, datapoints, now)
    present = [value for value in values if value is not None]
    missing = len(values) - len(present)
    breaching = sum(COMPARISONS[spec.comparison](value, spec.threshold) for value in present)
    if not present and spec.treat_missing_data in ("missing", "ignore"):
        state = INSUFFICIENT_DATA if spec.treat_missing_data == "missing" else previous_state
        return Evaluation(state, 0, 0)
    counted = breaching + (missing if spec.treat_missing_data == "breaching" else 0)
    return Evaluation(ALARM if counted >= spec.datapoints_to_alarm else OK, breaching, len(present))
