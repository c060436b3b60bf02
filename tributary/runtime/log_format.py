"""The function log's lines, and what `tributary logs` reads out of them.

The runtime writes one line to the function log per line a function prints (function_output.py), as
`sam logs` prints CloudWatch's (stream, time, message):

    <function logical id> <UTC time, ISO 8601, milliseconds>Z <the line exactly as printed>

A logical id and the time hold no spaces, so everything after the second space is the function's own
text, whatever it is. Reading it back (`entry`), a line is one of:
- a Powertools (or similar JSON) log record: level, message, the keys beyond Powertools' own
  (correlation ids, shard, sequence number, counts: what the function added) and any exception's traceback;
- an EMF document (`_aws.CloudWatchMetrics`): metrics, which `MetricSummary` adds up per function;
- anything else (print(), tracebacks the runtime prints for an unhandled error), shown as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tributary.runtime.emf import parse_emf_line

# Where `up`, `run` and `demo` write the functions' output unless `--logs FILE` says otherwise (gitignored).
FUNCTION_LOG_DIRECTORY = Path(".tributary") / "logs"

_LABELLED_LINE = re.compile(r"(?P<function>\S+) (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<text>.*)", re.S)
# What Powertools' Logger writes on every record (and Lambda context injection adds): not worth a column each.
POWERTOOLS_KEYS = frozenset({
    "level", "location", "message", "timestamp", "service", "sampling_rate", "xray_trace_id",
    "cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id",
    "exception", "exception_name", "stack_trace",
})  # fmt: skip
FIELD_VALUE_LIMIT = 200  # characters of one k=v value; the log file keeps the whole of it


def labelled_line(function: str, when_s: float, text: str) -> str:
    """The function log's line for `text` (one line, without its newline) written by `function` at `when_s`."""
    stamp = datetime.fromtimestamp(when_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{function} {stamp} {text}\n"


@dataclass(frozen=True)
class LogLine:
    """A line of the function log; `function` and `time` are None for a line the runtime did not label."""

    text: str
    function: str | None = None
    time: datetime | None = None


def parse_log_line(line: str) -> LogLine:
    """One line of the function log (its newline, if any, is not part of the text)."""
    line = line.removesuffix("\n")
    match = _LABELLED_LINE.fullmatch(line)
    if match is None:
        return LogLine(line)
    return LogLine(match["text"], match["function"], datetime.fromisoformat(match["time"]))


@dataclass(frozen=True)
class LogRecord:
    """A structured (JSON) log record, as a reader wants it: level, message, extra fields, traceback."""

    level: str
    message: str
    fields: tuple[tuple[str, str], ...] = ()
    trace: str | None = None

    def fields_text(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.fields)


def json_object(text: str) -> dict[str, Any] | None:
    """`text` as a JSON object, or None; cheap for the common line that is not one."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        document = json.loads(stripped)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def is_metric_document(document: dict[str, Any]) -> bool:
    metadata = document.get("_aws")
    return isinstance(metadata, dict) and "CloudWatchMetrics" in metadata


def log_record(document: dict[str, Any]) -> LogRecord | None:
    """A JSON log record (Powertools' shape: `level` and/or `message`), or None for other JSON."""
    if "message" not in document and "level" not in document:
        return None
    message = document.get("message", "")
    trace = document.get("exception")
    return LogRecord(
        level=str(document.get("level", "")),
        message=message if isinstance(message, str) else _compact(message),
        fields=tuple((key, _field_value(value)) for key, value in document.items() if key not in POWERTOOLS_KEYS),
        trace=trace if isinstance(trace, str) and trace else None,
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _field_value(value: Any) -> str:
    text = value if isinstance(value, str) and value and not any(c.isspace() for c in value) else _compact(value)
    return text if len(text) <= FIELD_VALUE_LIMIT else text[: FIELD_VALUE_LIMIT - 1] + "…"


@dataclass
class MetricTotal:
    unit: str
    total: float = 0.0
    count: int = 0  # values, as CloudWatch's SampleCount


@dataclass
class MetricSummary:
    """The EMF metrics of a log, added up per function and metric (namespace, name, unit)."""

    totals: dict[tuple[str, str, str, str], MetricTotal] = field(default_factory=dict)

    def add(self, function: str, text: str) -> None:
        # A metric is published once per dimension set: counted once per document here.
        seen: set[tuple[str, str, str, str]] = set()
        for metric in parse_emf_line(text):
            key = (function, metric.key.namespace, metric.key.name, metric.unit)
            if key in seen:
                continue
            seen.add(key)
            total = self.totals.setdefault(key, MetricTotal(metric.unit))
            total.total += sum(metric.values)
            total.count += len(metric.values)

    def lines(self) -> list[str]:
        """`function  namespace/name  sum=… count=… unit`, by function then metric; [] when there are none."""
        rows = sorted(self.totals.items())
        width = max((len(key[0]) for key, _ in rows), default=0)
        return [
            f"{function:<{width}}  {namespace}/{name}  sum={_number(total.total)} count={total.count} {unit}".rstrip()
            for (function, namespace, name, unit), total in rows
        ]


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.6g}"
