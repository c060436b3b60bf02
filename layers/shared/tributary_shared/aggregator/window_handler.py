"""The Aggregator's work per invocation: fold a batch into the window's state, or store a closed window.

Contract with Lambda's tumbling windows (Kinesis, TumblingWindowInSeconds, ReportBatchItemFailures):

- every response carries `state` (Lambda treats a response without it as a failed invocation);
- records are folded in sequence order, on the Kinesis batch skeleton (`kinesis_batch`) every
  stream function shares. A poison record is counted (once, however often it is
  re-delivered), never folded, and the records after it are still folded in the same invocation,
  so they are in the figures whatever the mapping does next: retry from the poison record, bisect
  it down to itself, or dead-letter the whole rest of the batch. The lowest failed sequence
  number is the only entry of `batchItemFailures`, so the mapping checkpoints before it and the
  poison record ends at the on-failure destination. A transient failure (registry outage) stops
  folding: the rest of the batch is left for the retry;
- `last` in the state is a high-water mark: a re-delivered batch starts with records at or below
  it, which are skipped (but decoded again, so a poison record among them is reported again until
  the mapping gives up on it). In sequence order, every record below the mark is at the start.
  User records of a KPL aggregate are folded one by one, and the mark holds a user record's
  subsequence number too: a failure inside an aggregate makes the mapping deliver the whole
  aggregate again, and the user records already folded are skipped, never counted twice;
- a failed invocation (an exception) is retried by Lambda with the state from before it, so
  nothing half-done is ever kept: the state is only what the last successful response returned;
- on the final invocation of a window (`isFinalInvokeForWindow`), or when Lambda ends it early
  because the state passed 1 MB (`isWindowTerminatedEarly`; the next invocation continues the same
  window with a fresh state), the state is stored through the sink, marked partial when ended
  early, and an empty state is returned. Storing is idempotent, so a retried final invocation
  neither double-counts nor duplicates;
- the function does not wait for Lambda to end a window early: when the state Lambda passes in
  is over SEGMENT_FLUSH_BYTES, it stores that state as a partial segment (its key names the
  segment) before folding the batch, and folds into an empty state that keeps the high-water
  marks. Storing the state as passed in, not after the batch, means a retry or a bisected half
  after a crash stores exactly the same segment: no reading lands in two segments. If storing
  fails the state is kept and the next invocation tries again with a superset, which overwrites
  whatever was half written. With BatchSize 100 a batch adds at most ~30 KB, so the state never
  nears 1 MB;
- no record's content can stall the shard. Whatever closing the window will do with a reading is
  checked when it is folded, so a reading that could not be stored is poison then, never later
  (see `tributary_shared.aggregator.figures`). A state of an earlier version is migrated. A state
  the function cannot read (a version it does not know, another shape) is stored raw as a
  quarantined item (`AggregationSink.quarantine_state`) and the window goes on with a fresh state
  that keeps the high-water mark when it can be read: records at or below it are in the quarantined
  state and are skipped, so nothing is counted twice. Without a readable mark the re-delivered
  records of a retried batch are folded again into the fresh state; the quarantined item says its
  mark is unknown. Rows that cannot be stored are set aside and quarantined when the window closes,
  and the other rows are stored as usual.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tributary_shared.aggregator.readings import parse_reading
from tributary_shared.aggregator.sink import PublishReport, QuarantineReport, WindowKey
from tributary_shared.aggregator.window_state import UnreadableState, WindowState, read_state, state_size_bytes
from tributary_shared.errors import TransientError
from tributary_shared.invocation import batch_item_failures, lowest_sequence
from tributary_shared.kinesis_batch import RECORD_ID_SEPARATOR, BatchLedger, KinesisBatch, KinesisRecord, sequence_of
from tributary_shared.payloads import Decoder, decode_payload

# Past this the state is stored as a partial segment: well below Lambda's 1 MB, with room for a batch.
SEGMENT_FLUSH_BYTES = 800 * 1024


class Sink(Protocol):
    def publish(self, key: WindowKey, state: WindowState, *, partial: bool, deadline: float) -> PublishReport: ...

    def quarantine_state(self, key: WindowKey, unreadable: UnreadableState, deadline: float) -> QuarantineReport: ...


@dataclass(frozen=True)
class WindowEvent:
    key: WindowKey
    records: Sequence[Mapping[str, Any]]
    state: WindowState | UnreadableState
    is_final: bool
    terminated_early: bool

    @property
    def closes_window(self) -> bool:
        return self.is_final or self.terminated_early


def parse_window_event(event: Any) -> WindowEvent:
    """Validate a tumbling-window Kinesis event; ValueError names what is missing.

    The state is not the event's to fail: one the function cannot read comes back as an
    UnreadableState, to be set aside.
    """
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
        state=read_state(event.get("state")),
        is_final=event.get("isFinalInvokeForWindow") is True,
        terminated_early=event.get("isWindowTerminatedEarly") is True,
    )


@dataclass
class FoldOutcome:
    """What became of each record of the batch (user records of KPL aggregates counted one by one).

    `poison` and `transient_sequence` name records by `KinesisRecord.record_id`.
    """

    folded: int = 0
    redelivered: int = 0
    poison: dict[str, str] = field(default_factory=dict)
    new_poison: int = 0
    transient_sequence: str | None = None
    transient_reason: str | None = None
    not_reached: int = 0
    records_in: int = 0
    aggregated_in: int = 0

    @property
    def failed_sequence(self) -> str | None:
        """The lowest failed record's sequence number: where the mapping checkpoints and retries from."""
        failed = [*self.poison, *([self.transient_sequence] if self.transient_sequence else [])]
        return lowest_sequence(sequence_of(record_id) for record_id in failed)


class BatchFold:
    """One batch folded into a window state, record by record, in sequence order."""

    def __init__(self, state: WindowState, decode: Decoder = decode_payload) -> None:
        self.state = state
        self.decode = decode
        self.outcome = FoldOutcome()

    def fold_reading(self, payload: Mapping[str, Any], sequence: int, subsequence: int | None = None) -> None:
        """Fold one decoded reading, or count it re-delivered; PoisonRecordError says why it cannot be.

        In sequence order, records at or below the high-water mark are the re-delivered start of a
        retried batch: the state already holds them. `subsequence`: a KPL user record's place in
        its aggregate (None for a plain record).
        """
        reading = parse_reading(payload)
        if self.state.already_folded(sequence, subsequence):
            self.outcome.redelivered += 1
            return
        self.state.fold(reading, sequence, subsequence)
        self.outcome.folded += 1

    def fold_record(self, record: KinesisRecord) -> None:
        subsequence = record.subsequence_number if record.aggregated else None
        self.fold_reading(self.decode(record.data()), int(record.sequence_number), subsequence)

    def settle(self, ledger: BatchLedger) -> FoldOutcome:
        """Take the failures the batch skeleton recorded (in sequence order) into the outcome."""
        for record_id, reason in ledger.failed_permanent.items():
            self.outcome.poison[record_id] = reason
            self.outcome.new_poison += int(self.state.count_poison(*_position(record_id)))
        for record_id, reason in ledger.failed_transient.items():
            self.outcome.transient_sequence, self.outcome.transient_reason = record_id, reason
        self.outcome.not_reached = ledger.not_reached
        self.outcome.records_in, self.outcome.aggregated_in = ledger.records_in, ledger.aggregated_in
        return self.outcome


def _position(record_id: str) -> tuple[int, int | None]:
    """(sequence, subsequence) of a record's id; the subsequence is None for a plain record."""
    sequence, separator, subsequence = record_id.partition(RECORD_ID_SEPARATOR)
    return int(sequence), int(subsequence) if separator else None


def fold_batch(
    state: WindowState, records: list[Any], deadline: float = math.inf, decode: Decoder = decode_payload
) -> FoldOutcome:
    """Fold a batch on the Kinesis batch skeleton: poison fails alone, a transient failure stops the fold.

    `decode` reads each record's bytes (the function's `PayloadDecoder`; JSON alone by default).
    """
    batch = KinesisBatch.of_records(records, deadline)
    fold = BatchFold(state, decode)
    for _ in batch.each(fold.fold_record):
        pass
    return fold.settle(batch.ledger)


@dataclass
class InvocationReport:
    """Everything the handler logs and turns into metrics."""

    window: WindowKey
    fold: FoldOutcome = field(default_factory=FoldOutcome)
    closed: bool = False
    partial: bool = False
    published: PublishReport | None = None
    segment_flushed: bool = False
    flush_deferred: str | None = None
    unicorns: int = 0
    state_bytes: int = 0
    poison_in_window: int = 0
    # The state Lambda passed could not be read: where it was stored instead.
    state_quarantined: QuarantineReport | None = None
    response: dict[str, Any] = field(default_factory=dict)


def handle_window_event(
    event: Any, sink: Sink, deadline: float, *, decode: Decoder = decode_payload
) -> InvocationReport:
    """Fold the event's records (read by `decode`); store the window (or a full segment of it); build the response."""
    parsed = parse_window_event(event)
    report = InvocationReport(window=parsed.key)
    state = usable_state(parsed, sink, deadline, report)
    if not parsed.closes_window and state_size_bytes(state.to_json()) > SEGMENT_FLUSH_BYTES:
        # Stored as Lambda passed it, before this batch is folded: a retry or a bisected half of this
        # batch gets the same state and stores the same segment, so no reading is in two segments.
        state = flush_segment(parsed.key, state, sink, deadline, report)
    report.fold = fold_batch(state, list(parsed.records), deadline, decode)
    report.unicorns, report.poison_in_window = len(state.rows), state.poison_count
    state_json = state.to_json()
    report.state_bytes = state_size_bytes(state_json)
    if parsed.closes_window:
        report.closed, report.partial = True, parsed.terminated_early
        report.published = sink.publish(parsed.key, state, partial=parsed.terminated_early, deadline=deadline)
        state_json = {}  # the next window (or the rest of this one, after an early end) starts afresh
    failed = report.fold.failed_sequence
    report.response = {"state": state_json, "batchItemFailures": batch_item_failures([failed] if failed else [])}
    return report


def usable_state(parsed: WindowEvent, sink: Sink, deadline: float, report: InvocationReport) -> WindowState:
    """The event's state, or (when it cannot be read) a fresh one once the raw state is stored.

    If it cannot be stored yet the TransientError fails the invocation: Lambda retries it with the
    same state, so nothing is dropped.
    """
    if isinstance(parsed.state, WindowState):
        return parsed.state
    report.state_quarantined = sink.quarantine_state(parsed.key, parsed.state, deadline)
    return parsed.state.fresh


def flush_segment(
    key: WindowKey, state: WindowState, sink: Sink, deadline: float, report: InvocationReport
) -> WindowState:
    """Store a state grown large as a partial segment; the state to carry on with."""
    try:
        report.published = sink.publish(key, state, partial=True, deadline=deadline)
    except TransientError as error:
        # The batch is folded into the state as it is; the next invocation stores a superset under
        # the same key, over any half-written part.
        report.flush_deferred = error.reason
        return state
    report.segment_flushed, report.partial = True, True
    return state.next_segment()
