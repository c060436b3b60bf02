"""The template's CloudWatch alarms, evaluated over what the local runtime observes.

Metrics come from three places, each the way CloudWatch would get them:
- the functions' own metrics: the EMF documents they write to their output (`emf`), at the
  document's timestamp;
- AWS/Lambda `Invocations`, `Errors` and `IteratorAge` (dimension FunctionName) from every
  invocation the runtime makes: one invocation, an error if it failed (exception, timeout, crash,
  malformed response), and for a stream event the age of its last record when the invocation ends,
  in milliseconds, as Lambda measures it;
- AWS/SQS `ApproximateNumberOfMessages{Visible,NotVisible,Delayed}` (dimension QueueName) sampled
  from the emulator at each evaluation, as CloudWatch samples a queue.

An alarm on anything else (Firehose delivery, S3 request metrics, Step Functions, Throttles: the
runtime enforces no concurrency limit, so it never throttles) is listed as not evaluated locally
with the reason, never shown as OK. The rules are in `alarm_rules`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tributary.runtime.alarm_rules import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmDefinitionError,
    AlarmSpec,
    Evaluation,
    alarm_spec,
    evaluate,
)
from tributary.runtime.emf import MetricKey, parse_emf_line
from tributary.runtime.invocation import InvocationResult
from tributary.runtime.template import Template

LAMBDA_METRICS = ("Invocations", "Errors", "IteratorAge")
SQS_ATTRIBUTES = {  # CloudWatch's SQS metric -> the queue attribute it samples
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
}
_STREAM_ARRIVAL = {  # eventSource -> where a record of that source says when it arrived, in seconds
    "aws:kinesis": ("kinesis", "approximateArrivalTimestamp"),
    "aws:dynamodb": ("dynamodb", "ApproximateCreationDateTime"),
}
QueueDepth = Callable[[str, str], float | None]  # (queue name, attribute) -> its value; None if no such queue


class MetricStore:
    """Datapoints per metric, kept for `retention_s` (the longest evaluation range is enough)."""

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self._datapoints: dict[MetricKey, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()  # functions' threads and the runtime's write concurrently

    def put(self, key: MetricKey, timestamp: float, values: Iterable[float]) -> None:
        with self._lock:
            points = self._datapoints.setdefault(key, deque())
            points.extend((timestamp, value) for value in values)
            while points and points[0][0] < timestamp - self.retention_s:
                points.popleft()

    def datapoints(self, key: MetricKey) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._datapoints.get(key, ()))

    def keys(self) -> list[MetricKey]:
        with self._lock:
            return list(self._datapoints)


@dataclass(frozen=True)
class AlarmStatus:
    spec: AlarmSpec
    evaluation: Evaluation

    @property
    def state(self) -> str:
        return self.evaluation.state

    def describe(self) -> str:
        spec, evaluation = self.spec, self.evaluation
        return (f"{spec.name}: {evaluation.state} ({spec.metric.name} {spec.statistic} breached in "
                f"{evaluation.breaching_periods} of {spec.evaluation_periods} periods of {spec.period_s} s, "
                f"{spec.datapoints_to_alarm} to alarm)")  # fmt: skip


@dataclass
class AlarmReport:
    statuses: list[AlarmStatus] = field(default_factory=list)
    not_evaluated: dict[str, str] = field(default_factory=dict)  # alarm name -> why

    def named(self, state: str) -> list[str]:
        return [status.spec.name for status in self.statuses if status.state == state]

    def summary(self) -> dict[str, Any]:
        """What the live display and the demo show: the names in ALARM and how many are in each state."""
        return {
            "in_alarm": self.named(ALARM),
            "ok": len(self.named(OK)),
            "insufficient_data": len(self.named(INSUFFICIENT_DATA)),
            "not_evaluated": len(self.not_evaluated),
        }


def summary_line(summary: Mapping[str, Any]) -> str:
    in_alarm = summary["in_alarm"]
    names = f" ({', '.join(in_alarm)})" if in_alarm else ""
    insufficient = f", {summary['insufficient_data']} INSUFFICIENT_DATA" if summary["insufficient_data"] else ""
    return (f"alarms: {len(in_alarm)} in ALARM{names}; {summary['ok']} OK{insufficient}, "
            f"{summary['not_evaluated']} not evaluated locally")  # fmt: skip


class AlarmBoard:
    """The template's alarms and the metrics observed for them; `evaluate()` gives their states now."""

    def __init__(self, specs: Iterable[AlarmSpec], not_evaluated: Mapping[str, str], *, local_functions: Iterable[str],
                 queue_depth: QueueDepth, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.not_evaluated = dict(not_evaluated)
        self.clock = clock
        self._queue_depth = queue_depth
        functions = frozenset(local_functions)
        self.specs: list[AlarmSpec] = []
        for spec in specs:
            reason = unobservable_reason(spec, functions)
            if reason is None:
                self.specs.append(spec)
            else:
                self.not_evaluated[spec.name] = reason
        longest = max((spec.period_s * (spec.evaluation_periods + 1) for spec in self.specs), default=0)
        self.store = MetricStore(retention_s=longest)
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def observe_output_line(self, function_name: str, line: str) -> None:
        """A line a function wrote: its EMF metrics, if it is an EMF document."""
        for metric in parse_emf_line(line):
            timestamp = metric.timestamp_s if metric.timestamp_s is not None else self.clock()
            self.store.put(metric.key, timestamp, metric.values)

    def observe_invocation(self, function_name: str, event: Any, result: InvocationResult) -> None:
        """Lambda's own metrics for one invocation of `function_name` with `event`."""
        now = self.clock()
        dimensions = frozenset({("FunctionName", function_name)})
        self.store.put(MetricKey("AWS/Lambda", "Invocations", dimensions), now, [1.0])
        self.store.put(MetricKey("AWS/Lambda", "Errors", dimensions), now, [float(result.function_error is not None)])
        arrival = last_record_arrival(event)
        if arrival is not None:
            age_ms = max(0.0, (now - arrival) * 1000)
            self.store.put(MetricKey("AWS/Lambda", "IteratorAge", dimensions), now, [age_ms])

    def evaluate(self) -> AlarmReport:
        now = self.clock()
        self._sample_queues(now)
        report = AlarmReport(not_evaluated=dict(self.not_evaluated))
        with self._lock:  # `ignore` keeps the previous state: one evaluation at a time
            for spec in self.specs:
                evaluation = evaluate(spec, self.store.datapoints(spec.metric), now,
                                      self._states.get(spec.name, INSUFFICIENT_DATA))  # fmt: skip
                self._states[spec.name] = evaluation.state
                report.statuses.append(AlarmStatus(spec, evaluation))
        return report

    def _sample_queues(self, now: float) -> None:
        for spec in self.specs:
            if spec.metric.namespace != "AWS/SQS":
                continue
            queue = dict(spec.metric.dimensions)["QueueName"]
            depth = self._queue_depth(queue, SQS_ATTRIBUTES[spec.metric.name])
            if depth is not None:  # a queue that does not exist publishes nothing
                self.store.put(spec.metric, now, [depth])


def unobservable_reason(spec: AlarmSpec, local_functions: frozenset[str]) -> str | None:
    """Why the runtime cannot observe the alarm's metric; None when it can."""
    metric = spec.metric
    dimensions = dict(metric.dimensions)
    if metric.namespace == "AWS/Lambda":
        if metric.name == "Throttles":
            return "the runtime enforces no concurrency limit, so it never throttles an invocation"
        if metric.name not in LAMBDA_METRICS or set(dimensions) != {"FunctionName"}:
            return f"AWS/Lambda {metric.name} by {sorted(dimensions)} is not observed locally"
        if dimensions["FunctionName"] not in local_functions:
            return f"function {dimensions['FunctionName']} is not run locally"
        return None
    if metric.namespace == "AWS/SQS":
        if metric.name not in SQS_ATTRIBUTES or set(dimensions) != {"QueueName"}:
            return f"AWS/SQS {metric.name} by {sorted(dimensions)} is not observed locally"
        return None
    if metric.namespace.startswith("AWS/"):
        return f"{metric.namespace} {metric.name} is not observed locally"
    return None  # a custom namespace: the functions' EMF output


def last_record_arrival(event: Any) -> float | None:
    """When the last record of a stream event arrived (epoch seconds); None for any other event."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records or not isinstance(records[-1], dict):
        return None
    location = _STREAM_ARRIVAL.get(str(records[-1].get("eventSource")))
    if location is None:
        return None
    section, attribute = location
    arrival = (records[-1].get(section) or {}).get(attribute)
    return float(arrival) if isinstance(arrival, int | float) and not isinstance(arrival, bool) else None


def template_alarms(template: Template) -> tuple[list[AlarmSpec], dict[str, str]]:
    """The template's metric alarms (intrinsics resolved, so after deployment), and the rest with the reason."""
    specs: list[AlarmSpec] = []
    refused: dict[str, str] = {}
    for resource in template.resources.values():
        if resource.type != "AWS::CloudWatch::Alarm":
            continue
        properties = template.resolve(resource.properties)
        try:
            specs.append(alarm_spec(resource.logical_id, properties))
        except AlarmDefinitionError as error:
            refused[str(properties.get("AlarmName") or resource.logical_id)] = str(error)
    return specs, refused


def sqs_queue_depth(sqs: Any) -> QueueDepth:
    """A QueueDepth reading the emulator's queues through `sqs` (the runtime's own client: never faulted)."""

    def depth(queue_name: str, attribute: str) -> float | None:
        try:
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"]
        except sqs.exceptions.QueueDoesNotExist:
            return None
        return float(attributes.get(attribute, 0))

    return depth
