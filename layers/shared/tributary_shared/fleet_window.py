"""The Aggregator's work per invocation: fold a batch into the window's state, or store a closed window.

Contract with Lambda's tumbling windows (Kinesis, TumblingWindowInSeconds, ReportBatchItemFailures):

- every response carries `state` (Lambda treats a response without it as a failed invocation);
- records are folded in sequence order; folding stops at the first record that cannot be used.
  Its sequence number is the only entry of `batchItemFailures`, so the mapping checkpoints before
  it, hands the returned state (everything before it) to the next invocation and re-delivers from
  it; with bisect on, a poison record ends up alone, exhausts MaximumRetryAttempts and goes to the
  on-failure destination while the window carries on. Poison records are counted once in the
  state (however often they are re-delivered) and never folded into the figures;
- a record at or below the highest sequence number already folded is a re-delivery: skipped;
- a failed invocation (an exception) is retried by Lambda with the state from before it, so
  nothing half-done is ever kept: the state is only what the last successful response returned;
- on the final invocation of a window (`isFinalInvokeForWindow`), or when Lambda ends it early
  because the state passed 1 MB (`isWindowTerminatedEarly`; the next invocation continues the same
  window with a fresh state), the state is stored through the sink, marked partial when ended
  early, and an empty state is returned. Storing is idempotent, so a retried final invocation
  neither double-counts nor duplicates.
"""

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tributary_shared.aggregation_sink import PublishReport, WindowKey
from tributary_shared.errors import PoisonRecordError, TransientError
from tributary_shared.payloads import decode_payload
from tributary_shared.window_aggregates import STATE_LIMIT_BYTES, WindowState, parse_reading, state_size_bytes

# Above this share of Lambda's state limit the window is likely to be ended early: worth a warning.
STATE_WARNING_RATIO = 0.8


class Sink(Protocol):
    def publish(self, key: WindowKey, state: WindowState, *, partial: bool, deadline: float) -> PublishReport: ...


@dataclass(frozen=True)
class WindowEvent:
    key: WindowKey
    records: Sequence[Mapping[str, Any]]
    state: WindowState
    is_final: bool
    terminated_early: bool

    @property
    def closes_window(self) -> bool:
        return self.is_final or self.terminated_early


def parse_window_event(event: Any) -> WindowEvent:
    """Validate a tumbling-window Kinesis event; ValueError names what is missing."""
    if not isinstance(event, dict):
        raise ValueError(f"event must be a JSON object, got {type(event).__name__}")
    window = event.get("window")
    if not isinstance(window, dict):
        raise ValueError("event has no 'window': is TumblingWindowInSeconds set on the event source mapping?")
    records = event.get("Records") or []
    if not isinstance(records, list):
        raise ValueError("event 'Records' must be a list")
    return WindowEvent(
        key=WindowKey.parse(window.get("start"), window.get("end"), event.get("shardId")),
        records=records,
        state=WindowState.from_json(event.get("state")),
        is_final=event.get("isFinalInvokeForWindow") is True,
        terminated_early=event.get("isWindowTerminatedEarly") is True,
    )


@dataclass
class FoldOutcome:
    """What became of each record of the batch."""

    folded: int = 0
    redelivered: int = 0
    new_poison: int = 0
    failed_sequence: str | None = None
    failure_reason: str | None = None
    failure_permanent: bool = False
    not_reached: int = 0


def sequence_of(record: Mapping[str, Any]) -> str:
    kinesis = record.get("kinesis")
    sequence = kinesis.get("sequenceNumber") if isinstance(kinesis, dict) else None
    if not isinstance(sequence, str) or not sequence.isdecimal():
        # Without a sequence number the record cannot be reported: fail the invocation instead.
        raise ValueError(f"record has no decimal kinesis.sequenceNumber: {record!r:.200}")
    return sequence


def record_bytes(record: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(record["kinesis"]["data"], validate=True)
    except (KeyError, TypeError, binascii.Error) as error:
        raise PoisonRecordError(f"record data is not base64: {error}") from error


def fold_batch(state: WindowState, records: Sequence[Mapping[str, Any]]) -> FoldOutcome:
    outcome = FoldOutcome()
    for position, record in enumerate(records):
        sequence = sequence_of(record)
        if state.already_folded(int(sequence)):
            outcome.redelivered += 1
            continue
        try:
            reading = parse_reading(decode_payload(record_bytes(record)))
        except (PoisonRecordError, TransientError) as error:
            outcome.failed_sequence, outcome.failure_reason = sequence, error.reason
            outcome.failure_permanent = error.permanent
            outcome.new_poison = int(error.permanent and state.count_poison(int(sequence)))
            outcome.not_reached = len(records) - position - 1
            return outcome
        state.fold(reading, int(sequence))
        outcome.folded += 1
    return outcome


@dataclass
class InvocationReport:
    """Everything the handler logs and turns into metrics."""

    window: WindowKey
    fold: FoldOutcome
    closed: bool = False
    partial: bool = False
    published: PublishReport | None = None
    unicorns: int = 0
    state_bytes: int = 0
    poison_in_window: int = 0
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def state_near_limit(self) -> bool:
        return self.state_bytes > STATE_WARNING_RATIO * STATE_LIMIT_BYTES


def handle_window_event(event: Any, sink: Sink, deadline: float) -> InvocationReport:
    """Fold the event's records; store the window if this invocation closes it; build the response."""
    parsed = parse_window_event(event)
    state = parsed.state
    report = InvocationReport(window=parsed.key, fold=fold_batch(state, parsed.records))
    report.unicorns, report.poison_in_window = len(state.rows), state.poison_count
    state_json = state.to_json()
    report.state_bytes = state_size_bytes(state_json)
    if parsed.closes_window:
        report.closed, report.partial = True, parsed.terminated_early
        report.published = sink.publish(parsed.key, state, partial=parsed.terminated_early, deadline=deadline)
        state_json = {}  # the next window (or the rest of this one, after an early end) starts afresh
    failures = [{"itemIdentifier": report.fold.failed_sequence}] if report.fold.failed_sequence else []
    report.response = {"state": state_json, "batchItemFailures": failures}
    return report
