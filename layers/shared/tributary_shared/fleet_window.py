"""The Aggregator's work per invocation: fold a batch into the window's state, or store a closed window.

Contract with Lambda's tumbling windows (Kinesis, TumblingWindowInSeconds, ReportBatchItemFailures):

- every response carries `state` (Lambda treats a response without it as a failed invocation);
- records are folded in sequence order. A poison record is counted (once, however often it is
  re-delivered), never folded, and the records after it are still folded in the same invocation,
  so they are in the figures whatever the mapping does next: retry from the poison record, bisect
  it down to itself, or dead-letter the whole rest of the batch. The lowest failed sequence
  number is the only entry of `batchItemFailures`, so the mapping checkpoints before it and the
  poison record ends at the on-failure destination. A transient failure (registry outage) stops
  folding: the rest of the batch is left for the retry;
- `last` in the state is a high-water mark: a re-delivered batch starts with records at or below
  it, which are skipped (but decoded again, so a poison record among them is reported again until
  the mapping gives up on it). A record below the mark anywhere else cannot be a re-delivery of a
  batch: it is skipped too, with a warning and the RecordsSkippedOutOfOrder metric;
- a failed invocation (an exception) is retried by Lambda with the state from before it, so
  nothing half-done is ever kept: the state is only what the last successful response returned;
- on the final invocation of a window (`isFinalInvokeForWindow`), or when Lambda ends it early
  because the state passed 1 MB (`isWindowTerminatedEarly`; the next invocation continues the same
  window with a fresh state), the state is stored through the sink, marked partial when ended
  early, and an empty state is returned. Storing is idempotent, so a retried final invocation
  neither double-counts nor duplicates;
- the function does not wait for Lambda to end a window early: once the state passes
  SEGMENT_FLUSH_BYTES after a batch, it stores the state itself as a partial segment (its key
  names the segment) and returns an empty state that keeps the high-water marks. If storing fails
  the state is kept and the next invocation tries again with a superset, which overwrites
  whatever was half written. With BatchSize 100 a batch adds at most ~30 KB, so the state never
  nears 1 MB.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tributary_shared.aggregation_sink import PublishReport, WindowKey
from tributary_shared.errors import PoisonRecordError, TransientError
from tributary_shared.invocation import batch_item_failures, kinesis_data, lowest_sequence
from tributary_shared.payloads import decode_payload
from tributary_shared.window_aggregates import WindowState, parse_reading, state_size_bytes

# Past this the state is stored as a partial segment: well below Lambda's 1 MB, with room for a batch.
SEGMENT_FLUSH_BYTES = 800 * 1024


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
    out_of_order: list[str] = field(default_factory=list)
    poison: dict[str, str] = field(default_factory=dict)
    new_poison: int = 0
    transient_sequence: str | None = None
    transient_reason: str | None = None
    not_reached: int = 0

    @property
    def failed_sequence(self) -> str | None:
        """The lowest failed record: where the mapping checkpoints and retries from."""
        return lowest_sequence([*self.poison, *([self.transient_sequence] if self.transient_sequence else [])])


def sequence_of(record: Mapping[str, Any]) -> str:
    kinesis = record.get("kinesis")
    sequence = kinesis.get("sequenceNumber") if isinstance(kinesis, dict) else None
    if not isinstance(sequence, str) or not sequence.isdecimal():
        # Without a sequence number the record cannot be reported: fail the invocation instead.
        raise ValueError(f"record has no decimal kinesis.sequenceNumber: {record!r:.200}")
    return sequence


def fold_batch(state: WindowState, records: Sequence[Mapping[str, Any]]) -> FoldOutcome:
    outcome = FoldOutcome()
    highest_seen: int | None = None
    in_redelivered_prefix = True
    for position, record in enumerate(records):
        sequence_text = sequence_of(record)
        sequence = int(sequence_text)
        ascending = highest_seen is None or sequence > highest_seen
        highest_seen = sequence if highest_seen is None else max(highest_seen, sequence)
        below_mark = state.already_folded(sequence)
        if below_mark and not (ascending and in_redelivered_prefix):
            outcome.out_of_order.append(sequence_text)
            continue
        in_redelivered_prefix = in_redelivered_prefix and below_mark
        try:
            reading = parse_reading(decode_payload(kinesis_data(record)))
        except PoisonRecordError as error:
            outcome.poison[sequence_text] = error.reason
            outcome.new_poison += int(state.count_poison(sequence))
            continue
        except TransientError as error:
            outcome.transient_sequence, outcome.transient_reason = sequence_text, error.reason
            outcome.not_reached = len(records) - position - 1
            return outcome
        if below_mark:
            outcome.redelivered += 1
        else:
            state.fold(reading, sequence)
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
    segment_flushed: bool = False
    flush_deferred: str | None = None
    unicorns: int = 0
    state_bytes: int = 0
    poison_in_window: int = 0
    response: dict[str, Any] = field(default_factory=dict)


def handle_window_event(event: Any, sink: Sink, deadline: float) -> InvocationReport:
    """Fold the event's records; store the window (or a full segment of it); build the response."""
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
    elif report.state_bytes > SEGMENT_FLUSH_BYTES:
        state_json = flush_segment(parsed.key, state, sink, deadline, report).to_json()
    failed = report.fold.failed_sequence
    report.response = {"state": state_json, "batchItemFailures": batch_item_failures([failed] if failed else [])}
    return report


def flush_segment(
    key: WindowKey, state: WindowState, sink: Sink, deadline: float, report: InvocationReport
) -> WindowState:
    """Store a state grown large as a partial segment; the state to carry on with."""
    try:
        report.published = sink.publish(key, state, partial=True, deadline=deadline)
    except TransientError as error:
        # Failing the invocation could let a bisected retry flush a smaller segment under the same
        # key; keeping the state means the next attempt stores a superset over any half-written part.
        report.flush_deferred = error.reason
        return state
    report.segment_flushed, report.partial = True, True
    return state.next_segment()
