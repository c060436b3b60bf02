"""Event-source-mapping engine: an emulation of Lambda's Kinesis / DynamoDB-streams poller, run against moto.

CONTRACT (the host codes against these names):

    MappingConfig(function_name, function_arn, source_arn, batch_size=100, maximum_batching_window_s=0,
                  starting_position="LATEST", starting_position_timestamp=None, maximum_retry_attempts=-1,
                  maximum_record_age_s=-1, bisect_on_function_error=False, report_batch_item_failures=False,
                  parallelization_factor=1, tumbling_window_s=None, filter_patterns=(),
                  on_failure_destination_arn=None, enabled=True, role_arn=None)
        ``source_arn``: a Kinesis stream ARN or a DynamoDB stream ARN (…:table/T/stream/LABEL).
        ``filter_patterns``: parsed EventBridge patterns (``filtering.parse_pattern`` of each FilterCriteria
        Pattern). Invalid values raise ``ValueError`` naming the parameter (AWS's documented ranges), an
        invalid pattern ``filtering.FilterPatternError`` (a ValueError), so evaluating one never fails.
    InvocationResult(response=None, function_error=None, error_message=None)
        ``function_error``: "Unhandled" when the handler raised or timed out, or a description of
        malformed output; any non-None value is a function error.
    Invoker = Callable[[dict], InvocationResult]
        The host enforces the function's Timeout. With parallelization_factor > 1 the engine calls the
        invoker from several threads at once (one per virtual shard) unless ``max_workers=1`` is passed.
    EventSourceMapping(config, invoker, *, trace=None, clock=time.time, max_workers=None,
                       retry_delay_s=1.0, idle_read_interval_s=1.0)
        ``retry_delay_s``: how long a lane waits before invoking the same records again after a
        function error (Lambda does not retry at once). ``idle_read_interval_s``: after a read that
        returned nothing, the shard is not read again for this long (Lambda polls a shard about once a
        second). Both are measured with ``clock``.
        .uuid                    the mapping's UUID (S3 destination keys use it)
        .start() -> None         read the shard list and take shard iterators now (LATEST means "from
                                 here"); poll() calls it on first use
        .poll() -> bool          one step: one GetRecords per shard, at most one invocation per
                                 (virtual) shard; True if it did any work
        .is_drained() -> bool    every shard read to its end, nothing queued, retried or windowed
        .wake() -> None          forget idle back-offs: the next poll reads every shard
        .stuck() -> list[str]    what keeps it from being drained: the sequence range, attempts and
                                 last function error of each batch being retried, open windows
        .waiting_windows() -> list[str]  windows whose lane waits for the clock to pass their end
        .stats: MappingStats     counters; records_in == records_filtered_out + records_succeeded +
                                 records_discarded once drained; records_retried counts deliveries
                                 after a failure (a retried batch, a bisected half)
        .close() -> None         stop the worker threads
    drain(pollables, *, timeout_s, sleep=time.sleep, notify=None) -> None
        poll everything (anything with poll() and is_drained()) until a full round does no work and all
        are drained (then once more with idle back-offs woken, to be sure); raises TimeoutError naming
        what is not drained and why (stuck()); calls notify(text) once per window it waits for.
    TraceWriter(path_or_text_stream)  (tributary.runtime.trace): one JSON line per invocation and per
        on-failure delivery; see that module for the line shapes.

Semantics (AWS Lambda developer guide: "Using Lambda with Kinesis", "partial batch response", "tumbling
windows", "Retain discarded batch records", "event filtering"), per shard and in sequence order:

- StartingPosition LATEST / TRIM_HORIZON / AT_TIMESTAMP (Kinesis only); shards that appear later
  (resharding) are read from TRIM_HORIZON once their parent is done.
- A batch is invoked when it holds BatchSize records, when MaximumBatchingWindowInSeconds has passed
  since the lane began gathering it (0 = at once), or when the next record would take the event past
  6 MB. Batches never cross a tumbling-window boundary.
- A function error (InvocationResult.function_error) fails the whole batch; the lane waits and
  retries the same records. MaximumRetryAttempts N allows N retries (N + 1 invocations); -1 = forever.
  Before every invocation, records older than MaximumRecordAgeInSeconds are split off and discarded.
  Discarded records go to the on-failure destination (RetryAttemptsExhausted / RecordAgeExceeded) and
  the lane moves on. A retry waits ``retry_delay_s`` first; other lanes carry on meanwhile.
- BisectBatchOnFunctionError: a failed batch of two or more records is split into halves (the first
  half gets len // 2 records and runs first), recursively; splitting does not consume the retry quota,
  so retries are only counted (and exhausted) on single-record batches.
- ReportBatchItemFailures: success = null response, empty response, null or empty batchItemFailures;
  whole-batch failure = an itemIdentifier that is null, empty, under a wrong key, or not a sequence
  number of this batch (also a non-object response or a non-list batchItemFailures). Otherwise the
  lowest sequence number returned is the checkpoint: the records before it are done. Without bisect
  the rest is retried as a retry of the batch (consuming the quota); with bisect the batch is split at
  that record and the rest is a new batch (no quota consumed); if the lowest failed record is the
  first of the batch nothing was split off, so it counts as a whole-batch failure (and bisects).
- TumblingWindowInSeconds: records are grouped per (virtual) shard into windows of
  floor(arrival / W) * W; the event gains window/state/shardId/eventSourceARN/isFinalInvokeForWindow/
  isWindowTerminatedEarly. A response without a ``state`` object is a function error. The final
  invoke (no records, isFinalInvokeForWindow true) happens once a record of a later window is read, or
  the clock has passed the window end and the shard is read to its current tip, or at once when
  the shard has ended (closed by resharding and read to its end: AWS considers the window closed and
  the child shards start their own windows); it is retried until it succeeds (AWS: "pauses further
  processing until a successful invocation"). A returned state over 1 MB ends the window early: a
  final invoke with isWindowTerminatedEarly true, then the same window continues with a fresh state.
- ParallelizationFactor F: each shard has F lanes (virtual shards); a record goes to lane
  md5(partition key) mod F (DynamoDB: the item's Keys), so order holds per key; lanes run concurrently.
- FilterCriteria: records matching no pattern are dropped and counted, never delivered. Kinesis
  patterns see the record's metadata (partitionKey, sequenceNumber, ...) and ``data`` parsed as JSON;
  when the data is not JSON a pattern on ``data`` drops the record (AWS), one on other keys still
  applies. DynamoDB patterns see the whole stream record. Operators: see tributary.runtime.filtering.
- Enabled false: nothing is read; the mapping counts as drained.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from tributary.runtime import destinations as dest
from tributary.runtime.filtering import FilterPatternError, matches_any, validate_pattern
from tributary.runtime.sources import (
    DynamoDBStreamSource,
    KinesisSource,
    ReadResult,
    ShardInfo,
    StreamRecord,
    StreamSource,
    arn_account,
    is_dynamodb_stream,
)
from tributary.runtime.trace import TraceWriter

PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
STATE_LIMIT_BYTES = 1024 * 1024
_EVENT_OVERHEAD_BYTES = 512
_REDISCOVER_EVERY_POLLS = 100
_STARTING_POSITIONS = {"LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"}

__all__ = [
    "EventSourceMapping",
    "InvocationResult",
    "Invoker",
    "MappingConfig",
    "MappingStats",
    "TraceWriter",
    "drain",
]


@dataclass(frozen=True)
class MappingConfig:
    function_name: str
    function_arn: str
    source_arn: str
    batch_size: int = 100
    maximum_batching_window_s: float = 0
    starting_position: str = "LATEST"
    starting_position_timestamp: float | None = None
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    bisect_on_function_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    tumbling_window_s: int | None = None
    filter_patterns: tuple[dict, ...] = ()
    on_failure_destination_arn: str | None = None
    enabled: bool = True
    role_arn: str | None = None

    def __post_init__(self) -> None:
        _check_range("BatchSize", self.batch_size, 1, 10_000)
        _check_range("MaximumBatchingWindowInSeconds", self.maximum_batching_window_s, 0, 300)
        _check_range("MaximumRetryAttempts", self.maximum_retry_attempts, -1, 10_000)
        if self.maximum_record_age_s != -1:
            _check_range("MaximumRecordAgeInSeconds", self.maximum_record_age_s, 60, 604_800)
        _check_range("ParallelizationFactor", self.parallelization_factor, 1, 10)
        if self.tumbling_window_s is not None:
            _check_range("TumblingWindowInSeconds", self.tumbling_window_s, 0, 900)
        if len(self.filter_patterns) > 5:
            raise ValueError(f"FilterCriteria takes at most 5 patterns, got {len(self.filter_patterns)}")
        for position, pattern in enumerate(self.filter_patterns, 1):
            try:
                validate_pattern(pattern)
            except FilterPatternError as error:
                raise FilterPatternError(f"FilterCriteria pattern {position}: {error}") from error
        if self.starting_position not in _STARTING_POSITIONS:
            raise ValueError(f"StartingPosition must be one of {sorted(_STARTING_POSITIONS)}")
        if (self.starting_position == "AT_TIMESTAMP") != (self.starting_position_timestamp is not None):
            raise ValueError("StartingPositionTimestamp is required with, and only with, AT_TIMESTAMP")
        if is_dynamodb_stream(self.source_arn) and self.starting_position == "AT_TIMESTAMP":
            raise ValueError("DynamoDB streams support LATEST and TRIM_HORIZON only")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class InvocationResult:
    response: Any = None
    function_error: str | None = None
    error_message: str | None = None


Invoker = Callable[[dict], InvocationResult]


@dataclass
class MappingStats:
    records_in: int = 0
    records_filtered_out: int = 0
    records_succeeded: int = 0
    records_discarded: int = 0
    records_to_destination: int = 0
    invocations: int = 0
    retries: int = 0
    records_retried: int = 0  # records delivered again after a failure: retried batches and bisected halves
    function_errors: int = 0
    partial_failures: int = 0
    bisections: int = 0
    windows_closed: int = 0
    iterator_age_ms: int = 0
    last_error: str | None = None
    deliveries: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- per-shard state


@dataclass
class PendingBatch:
    records: list[StreamRecord]
    invocations: int = 0
    redelivery: bool = False  # split off a failed batch: its records were delivered before
    function_error: str | None = None
    error_message: str | None = None


@dataclass
class OpenWindow:
    start: float
    end: float
    state: dict[str, Any] = field(default_factory=dict)
    terminated_early: bool = False
    final_attempts: int = 0
    final_error: str | None = None


@dataclass
class Lane:
    """A virtual shard: one batch in flight at a time, records in sequence order."""

    shard_id: str
    index: int
    queue: deque[StreamRecord] = field(default_factory=deque)
    gathering_since: float | None = None
    pending: deque[PendingBatch] = field(default_factory=deque)
    checkpoint: str | None = None
    window: OpenWindow | None = None
    retry_at: float = 0.0  # after a function error: no invocation before this instant

    def busy(self) -> bool:
        return bool(self.queue or self.pending or self.window)


@dataclass
class ShardReader:
    shard_id: str
    parent_ids: tuple[str, ...]
    iterator: str | None
    lanes: list[Lane]
    ending_sequence: str | None = None  # set once the shard is closed (resharding)
    last_read: str | None = None
    caught_up: bool = False
    children_checked: bool = False
    closure_checked: bool = False  # the shard list was read since this shard was last caught up
    next_read_at: float = 0.0  # idle back-off after an empty read

    @property
    def exhausted(self) -> bool:
        return self.iterator is None

    @property
    def ended(self) -> bool:
        """Closed and read to its end: no record can arrive any more (unlike a shard read to its tip).

        AWS returns no next iterator at the end of a closed shard; moto keeps returning one, so a
        closed shard whose latest read came back empty has ended too.
        """
        return self.exhausted or (self.ending_sequence is not None and self.caught_up)

    def finished(self) -> bool:
        return self.ended and not any(lane.busy() for lane in self.lanes)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "success" | "partial" | "error"
    failed_from: int = 0
    error: str | None = None
    function_error: str | None = None


_INVALID = -1


# ---------------------------------------------------------------- the mapping


class EventSourceMapping:
    def __init__(
        self,
        config: MappingConfig,
        invoker: Invoker,
        *,
        trace: TraceWriter | None = None,
        clock: Callable[[], float] = time.time,
        max_workers: int | None = None,
        retry_delay_s: float = 1.0,
        idle_read_interval_s: float = 1.0,
    ) -> None:
        self.config = config
        self.retry_delay_s = retry_delay_s
        self.idle_read_interval_s = idle_read_interval_s
        self.invoker = invoker
        self.trace = trace
        self.clock = clock
        self.stats = MappingStats()
        self.uuid = str(uuid.uuid4())
        role_arn = config.role_arn or f"arn:aws:iam::{arn_account(config.function_arn)}:role/lambda-role"
        self.source: StreamSource = (
            DynamoDBStreamSource(config.source_arn) if is_dynamodb_stream(config.source_arn)
            else KinesisSource(config.source_arn, role_arn)
        )
        self.destination = (
            dest.OnFailureDestination(config.on_failure_destination_arn)
            if config.on_failure_destination_arn else None
        )
        self._window_s = config.tumbling_window_s or 0
        self._workers = max_workers or config.parallelization_factor
        self._pool: ThreadPoolExecutor | None = None
        self._shards: dict[str, ShardReader] = {}
        self._started = False
        self._polls = 0
        self._stats_lock = threading.Lock()

    def _count(self, counter: str, amount: int) -> None:
        # Lanes of one mapping run on several threads when ParallelizationFactor > 1.
        with self._stats_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + amount)

    # -- lifecycle

    def start(self) -> None:
        if self._started or not self.config.enabled:
            return
        for shard in self.source.shards():
            self._add_shard(shard, self.config.starting_position)
        self._started = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def poll(self) -> bool:
        if not self.config.enabled:
            return False
        self.start()
        self._polls += 1
        now = self.clock()
        worked = self._discover_children()
        for shard in list(self._shards.values()):
            worked |= self._fetch(shard, now)
        lanes = [(shard, lane) for shard in self._shards.values() for lane in shard.lanes]
        return any(self._run_lanes(lanes, now)) or worked

    def is_drained(self) -> bool:
        if not self.config.enabled:
            return True
        if not self._started:
            return False
        return all((shard.exhausted or shard.caught_up) and not any(lane.busy() for lane in shard.lanes)
                   for shard in self._shards.values())

    def wake(self) -> None:
        for shard in self._shards.values():
            shard.next_read_at = 0.0

    def stuck(self) -> list[str]:
        """Why the mapping is not drained: each batch being retried and each open window, per lane."""
        reasons = []
        for shard in self._shards.values():
            for lane in shard.lanes:
                if lane.pending and lane.pending[0].invocations:
                    reasons.append(_describe_retry(lane.shard_id, lane.pending[0]))
                elif lane.window is not None and lane.window.final_attempts:
                    reasons.append(f"{lane.shard_id}: final invoke of window ending "
                                   f"{dest.iso_seconds(lane.window.end)}, attempt {lane.window.final_attempts}, "
                                   f"last error: {lane.window.final_error}")
        return reasons + self.waiting_windows()

    def waiting_windows(self) -> list[str]:
        """Open windows with nothing left to do but wait for the clock to pass their end."""
        now = self.clock()
        return [
            f"window {dest.iso_seconds(lane.window.start)}..{dest.iso_seconds(lane.window.end)} of "
            f"{self.config.function_name} on {lane.shard_id} to end at "
            f"{time.strftime('%H:%M:%S', time.localtime(lane.window.end))}"
            for shard in self._shards.values() if shard.caught_up and not shard.ended
            for lane in shard.lanes
            if lane.window is not None and not lane.queue and not lane.pending and now < lane.window.end
        ]

    def _run_lanes(self, lanes: list[tuple[ShardReader, Lane]], now: float) -> list[bool]:
        if self._workers <= 1 or len(lanes) <= 1:
            return [self._step(shard, lane, now) for shard, lane in lanes]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="esm-lane")
        futures = [self._pool.submit(self._step, shard, lane, now) for shard, lane in lanes]
        return [future.result() for future in futures]

    # -- shards

    def _add_shard(self, shard: ShardInfo, position: str) -> None:
        timestamp = self.config.starting_position_timestamp if position == "AT_TIMESTAMP" else None
        iterator = self.source.iterator(shard.shard_id, position, timestamp)
        lanes = [Lane(shard.shard_id, index) for index in range(self.config.parallelization_factor)]
        self._shards[shard.shard_id] = ShardReader(shard.shard_id, shard.parent_ids, iterator, lanes,
                                                   ending_sequence=shard.ending_sequence)

    def _discover_children(self) -> bool:
        """Shards created by resharding start at TRIM_HORIZON once their parents are processed."""
        newly_finished = [s for s in self._shards.values() if s.finished() and not s.children_checked]
        # moto never ends a closed shard's iterators: learn that a shard was closed from the shard list,
        # read again whenever a shard has just been caught up.
        newly_caught_up = [s for s in self._shards.values() if s.caught_up and s.ending_sequence is None
                           and not s.closure_checked]
        if not (newly_finished or newly_caught_up) and self._polls % _REDISCOVER_EVERY_POLLS:
            return False
        for shard in newly_finished:
            shard.children_checked = True
        for shard in newly_caught_up:
            shard.closure_checked = True
        added = False
        for shard in self.source.shards():
            if shard.shard_id in self._shards:
                self._shards[shard.shard_id].ending_sequence = shard.ending_sequence
                continue
            parents = [self._shards.get(parent) for parent in shard.parent_ids]
            if all(parent is None or parent.finished() for parent in parents):
                self._add_shard(shard, "TRIM_HORIZON")
                added = True
        return added

    def _fetch(self, shard: ShardReader, now: float) -> bool:
        if shard.exhausted or now < shard.next_read_at:
            return False
        capacity = self.config.batch_size * len(shard.lanes)
        if sum(len(lane.queue) for lane in shard.lanes) >= capacity:
            return False
        # Read ahead of the batch in flight, as Lambda's poller does, so batching windows start on time.
        result = self._read(shard, min(2 * capacity, 10_000))
        shard.iterator = result.next_iterator
        if result.records:
            shard.closure_checked = False
        shard.caught_up = not result.records
        shard.next_read_at = now + self.idle_read_interval_s if shard.caught_up else 0.0
        for record in result.records:
            shard.last_read = record.sequence_number
            self._accept(shard, record, now)
        return bool(result.records)

    def _read(self, shard: ShardReader, limit: int) -> ReadResult:
        assert shard.iterator is not None
        try:
            return self.source.read(shard.shard_id, shard.iterator, limit)
        except Exception as error:
            if "ExpiredIterator" not in type(error).__name__ and "ExpiredIterator" not in str(error):
                raise
            shard.iterator = self.source.iterator(shard.shard_id, self.config.starting_position,
                                                  self.config.starting_position_timestamp,
                                                  after_sequence=shard.last_read)
            return self.source.read(shard.shard_id, shard.iterator, limit)

    def _accept(self, shard: ShardReader, record: StreamRecord, now: float) -> None:
        self._count("records_in", 1)
        if not self._passes_filters(record):
            self._count("records_filtered_out", 1)
            return
        lane = shard.lanes[self._lane_index(record)]
        if not lane.queue:
            lane.gathering_since = now  # the poll's instant: with no batching window the batch goes this poll
        lane.queue.append(record)

    def _passes_filters(self, record: StreamRecord) -> bool:
        return matches_any(self.config.filter_patterns, record.filter_subject)

    def _lane_index(self, record: StreamRecord) -> int:
        factor = self.config.parallelization_factor
        if factor == 1:
            return 0
        digest = hashlib.md5(record.lane_key.encode(), usedforsecurity=False).digest()
        return int.from_bytes(digest, "big") % factor

    # -- one lane step: at most one invocation

    def _step(self, shard: ShardReader, lane: Lane, now: float) -> bool:
        if now < lane.retry_at:
            return False
        if lane.window is not None and lane.window.terminated_early:
            return self._invoke_final(lane, now)
        if not lane.pending:
            if self._window_over(shard, lane, now):
                return self._invoke_final(lane, now)
            batch = self._take_batch(shard, lane, now)
            if batch is None:
                return False
            lane.pending.append(PendingBatch(batch))
        return self._invoke_pending(lane, now)

    def _window_start(self, record: StreamRecord) -> float:
        return math.floor(record.arrival / self._window_s) * self._window_s

    def _window_over(self, shard: ShardReader, lane: Lane, now: float) -> bool:
        if lane.window is None:
            return False
        if lane.queue:
            return self._window_start(lane.queue[0]) >= lane.window.end
        # A shard read to its tip may still get records of this window; an ended one cannot.
        return shard.ended or (now >= lane.window.end and shard.caught_up)

    def _take_batch(self, shard: ShardReader, lane: Lane, now: float) -> list[StreamRecord] | None:
        if not lane.queue:
            return None
        records, full = self._gather(lane)
        waited = now - (lane.gathering_since if lane.gathering_since is not None else now)
        window_ended = lane.window is not None and now >= lane.window.end
        if not (full or window_ended or shard.ended or waited >= self.config.maximum_batching_window_s):
            return None
        for _ in records:
            lane.queue.popleft()
        lane.gathering_since = now if lane.queue else None
        if self._window_s and lane.window is None:
            start = self._window_start(records[0])
            lane.window = OpenWindow(start, start + self._window_s)
        return records

    def _gather(self, lane: Lane) -> tuple[list[StreamRecord], bool]:
        """The next batch from the lane's queue, and whether it is full (count, 6 MB or window edge)."""
        records: list[StreamRecord] = []
        size = _EVENT_OVERHEAD_BYTES + (len(json.dumps(lane.window.state)) if lane.window else 0)
        first_window = self._window_start(lane.queue[0]) if self._window_s else None
        for record in lane.queue:
            if first_window is not None and self._window_start(record) != first_window:
                return records, True
            if records and size + record.size > PAYLOAD_LIMIT_BYTES:
                return records, True
            records.append(record)
            size += record.size
            if len(records) == self.config.batch_size:
                return records, True
        return records, False

    def _invoke_pending(self, lane: Lane, now: float) -> bool:
        batch = lane.pending[0]
        if self._discard_expired(lane, batch, now):
            return True
        event = self._event(lane, batch.records)
        outcome = self._invoke(lane, batch, event)
        if outcome.kind == "success":
            self._succeeded(lane, batch.records)
            lane.pending.popleft()
        elif outcome.kind == "partial":
            self._partially_failed(lane, batch, outcome.failed_from, now)
        else:
            self._failed(lane, batch, now)
        return True

    def _retry_later(self, lane: Lane, now: float) -> None:
        lane.retry_at = now + self.retry_delay_s

    def _discard_expired(self, lane: Lane, batch: PendingBatch, now: float) -> bool:
        max_age = self.config.maximum_record_age_s
        if max_age < 0:
            return False
        expired = [record for record in batch.records if now - record.arrival > max_age]
        if not expired:
            return False
        # Arrival order is sequence order within a shard, so the expired records lead the batch.
        batch.records = batch.records[len(expired):]
        if not batch.records:
            lane.pending.popleft()
        self._discard(lane, expired, dest.RECORD_AGE_EXCEEDED, batch, now)
        return True

    def _invoke(self, lane: Lane, batch: PendingBatch, event: dict[str, Any]) -> Outcome:
        if batch.invocations:
            self._count("retries", 1)
        if batch.invocations or batch.redelivery:
            self._count("records_retried", len(batch.records))
        batch.invocations += 1
        self._count("invocations", 1)
        result = self._call(event)
        outcome = self._judge(result, batch.records)
        if outcome.kind == "error":
            batch.function_error = outcome.function_error
            batch.error_message = outcome.error
            self.stats.last_error = outcome.error
            if outcome.function_error:
                self._count("function_errors", 1)
        elif outcome.kind == "partial":
            self._count("partial_failures", 1)
        if outcome.kind != "error" and lane.window is not None:
            lane.window.state = result.response["state"]
            lane.window.terminated_early = _json_size(lane.window.state) > STATE_LIMIT_BYTES
        self.stats.iterator_age_ms = max(0, int((self.clock() - batch.records[-1].arrival) * 1000))
        checkpoint_after = self._checkpoint_after(lane, batch, outcome)
        self._trace_invocation(lane, event, batch.invocations, outcome, checkpoint_after, final=False)
        return outcome

    def _call(self, event: dict[str, Any]) -> InvocationResult:
        try:
            return self.invoker(event)
        except Exception as error:
            # An invoker is expected to report errors itself; an escaping one is still a function error.
            return InvocationResult(function_error="Unhandled", error_message=f"{type(error).__name__}: {error}")

    def _judge(self, result: InvocationResult, records: list[StreamRecord]) -> Outcome:
        if result.function_error:
            return Outcome("error", error=result.error_message or result.function_error,
                           function_error=result.function_error)
        response = result.response
        if self._window_s and not (isinstance(response, dict) and isinstance(response.get("state"), dict)):
            return Outcome("error", error="tumbling-window functions must return {'state': {...}}",
                           function_error="Unhandled")
        if not self.config.report_batch_item_failures:
            return Outcome("success")
        failed_from = _first_failed_index(response, records)
        if failed_from is None:
            return Outcome("success")
        if failed_from == _INVALID:
            return Outcome("error", error=f"invalid batchItemFailures response: {_clip(response)}")
        return Outcome("partial", failed_from=failed_from)

    def _checkpoint_after(self, lane: Lane, batch: PendingBatch, outcome: Outcome) -> str | None:
        if outcome.kind == "success":
            return batch.records[-1].sequence_number
        if outcome.kind == "partial" and outcome.failed_from > 0:
            return batch.records[outcome.failed_from - 1].sequence_number
        return lane.checkpoint

    def _succeeded(self, lane: Lane, records: list[StreamRecord]) -> None:
        self._count("records_succeeded", len(records))
        lane.checkpoint = records[-1].sequence_number

    def _partially_failed(self, lane: Lane, batch: PendingBatch, failed_from: int, now: float) -> None:
        if failed_from > 0:
            self._succeeded(lane, batch.records[:failed_from])
        rest = batch.records[failed_from:]
        if self.config.bisect_on_function_error and failed_from > 0:
            lane.pending[0] = PendingBatch(rest, redelivery=True)
            self._count("bisections", 1)
            return
        batch.records = rest
        self._failed(lane, batch, now)

    def _failed(self, lane: Lane, batch: PendingBatch, now: float) -> None:
        if self.config.bisect_on_function_error and len(batch.records) > 1:
            middle = len(batch.records) // 2
            lane.pending.popleft()
            lane.pending.appendleft(PendingBatch(batch.records[middle:], redelivery=True))
            lane.pending.appendleft(PendingBatch(batch.records[:middle], redelivery=True))
            self._count("bisections", 1)
            return
        max_retries = self.config.maximum_retry_attempts
        if max_retries >= 0 and batch.invocations > max_retries:
            lane.pending.popleft()
            self._discard(lane, batch.records, dest.RETRY_ATTEMPTS_EXHAUSTED, batch, now)
        else:
            self._retry_later(lane, now)

    # -- windows

    def _invoke_final(self, lane: Lane, now: float) -> bool:
        window = lane.window
        assert window is not None
        event = self._event(lane, [], final=True)
        window.final_attempts += 1
        if window.final_attempts > 1:
            self._count("retries", 1)
        self._count("invocations", 1)
        result = self._call(event)
        outcome = (Outcome("error", error=result.error_message or result.function_error,
                           function_error=result.function_error)
                   if result.function_error else Outcome("success"))
        if outcome.function_error:
            self._count("function_errors", 1)
            window.final_error = outcome.error
            self.stats.last_error = outcome.error
            self._retry_later(lane, now)
        self._trace_invocation(lane, event, window.final_attempts, outcome, lane.checkpoint, final=True)
        if outcome.kind == "success":
            self._close_window(lane, window)
        return True

    def _close_window(self, lane: Lane, window: OpenWindow) -> None:
        self._count("windows_closed", 1)
        if window.terminated_early:
            lane.window = OpenWindow(window.start, window.end)
        else:
            lane.window = None

    # -- events, discards, trace

    def _event(self, lane: Lane, records: list[StreamRecord], *, final: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {"Records": [record.event_record for record in records]}
        window = lane.window
        if window is not None:
            event.update(
                window={"start": dest.iso_seconds(window.start), "end": dest.iso_seconds(window.end)},
                state=window.state,
                shardId=lane.shard_id,
                eventSourceARN=self.config.source_arn,
                isFinalInvokeForWindow=final,
                isWindowTerminatedEarly=final and window.terminated_early,
            )
        return event

    def _discard(self, lane: Lane, records: list[StreamRecord], condition: str, batch: PendingBatch,
                 now: float) -> None:
        batch_info = self._batch_info(lane.shard_id, records)
        record = dest.invocation_record(
            function_arn=self.config.function_arn, condition=condition, invoke_count=batch.invocations,
            function_error=batch.function_error, request_id=str(uuid.uuid4()),
            batch_info_key=self.source.batch_info_key, batch_info=batch_info, now=now,
        )
        delivery: dict[str, Any] = {
            "condition": condition, "shard": lane.shard_id, "records": len(records),
            "destination": self.destination.arn if self.destination else None,
            "location": None, "error": None, "batchInfo": batch_info,
        }
        if self.destination is not None:
            try:
                delivery["location"] = self.destination.send(
                    record, self._event(lane, records), mapping_uuid=self.uuid, shard_id=lane.shard_id, now=now
                )
                self._count("records_to_destination", len(records))
            except Exception as error:
                delivery["error"] = f"{type(error).__name__}: {error}"
        self._count("records_discarded", len(records))
        self.stats.deliveries.append(delivery)
        lane.checkpoint = records[-1].sequence_number
        if self.trace is not None:
            self.trace.delivery(function=self.config.function_name, mapping=self.uuid, **delivery)

    def _batch_info(self, shard_id: str, records: list[StreamRecord]) -> dict[str, Any]:
        return {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": self.source.format_arrival(records[0].arrival),
            "approximateArrivalOfLastRecord": self.source.format_arrival(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": self.config.source_arn,
        }

    def _trace_invocation(self, lane: Lane, event: dict[str, Any], attempt: int, outcome: Outcome,
                          checkpoint: str | None, *, final: bool) -> None:
        if self.trace is None:
            return
        self.trace.invocation(
            function=self.config.function_name, mapping=self.uuid, shard=lane.shard_id, lane=lane.index,
            sequenceNumbers=[_sequence_of(record) for record in event["Records"]], attempt=attempt,
            window=event.get("window"), final=final, outcome=outcome.kind, error=outcome.error,
            checkpoint=checkpoint,
        )


def _describe_retry(shard_id: str, batch: PendingBatch) -> str:
    first, last = batch.records[0].sequence_number, batch.records[-1].sequence_number
    cause = f"last error: {batch.error_message}" if batch.error_message else "reported in batchItemFailures"
    return f"{shard_id}: {len(batch.records)} records {first}..{last} failed {batch.invocations} times, {cause}"


def _sequence_of(event_record: dict[str, Any]) -> str:
    if "kinesis" in event_record:
        return event_record["kinesis"]["sequenceNumber"]
    return event_record["dynamodb"]["SequenceNumber"]


def _first_failed_index(response: Any, records: list[StreamRecord]) -> int | None:
    """Index of the lowest reported sequence number; None = success; _INVALID = whole batch failed."""
    if response is None or response == {} or response == "":
        return None
    if not isinstance(response, dict):
        return _INVALID
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        return _INVALID
    positions = {record.sequence: index for index, record in enumerate(records)}
    indexes = [_failure_index(item, positions) for item in failures]
    return _INVALID if _INVALID in indexes else min(indexes)  # type: ignore[type-var]


def _failure_index(item: Any, positions: dict[int, int]) -> int:
    identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
    if not isinstance(identifier, str) or not identifier.strip().isdigit():
        return _INVALID
    return positions.get(int(identifier), _INVALID)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _clip(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------- draining


class Pollable(Protocol):
    def poll(self) -> bool: ...

    def is_drained(self) -> bool: ...


def drain(pollables: Sequence[Pollable], *, timeout_s: float, sleep: Callable[[float], None] = time.sleep,
          notify: Callable[[str], None] | None = None) -> None:
    """Poll until a whole round does no work and everything is drained."""
    deadline = time.monotonic() + timeout_s
    announced: set[str] = set()
    while True:
        worked = _poll_round(pollables)
        if not worked and all(pollable.is_drained() for pollable in pollables):
            _wake(pollables)  # shards backing off since an empty read may have been written to since
            worked = _poll_round(pollables)
            if not worked and all(pollable.is_drained() for pollable in pollables):
                return
        if time.monotonic() > deadline:
            stuck = [_describe(pollable) for pollable in pollables if not pollable.is_drained()]
            raise TimeoutError(f"not drained after {timeout_s} s: {'; '.join(stuck) or 'still working'}")
        if notify is not None:
            _announce_windows(pollables, announced, notify)
        if not worked:
            sleep(0.05)


def _poll_round(pollables: Sequence[Pollable]) -> bool:
    worked = False
    for pollable in pollables:
        worked |= pollable.poll()
    return worked


def _wake(pollables: Sequence[Pollable]) -> None:
    for pollable in pollables:
        if isinstance(pollable, EventSourceMapping):
            pollable.wake()


def _announce_windows(pollables: Sequence[Pollable], announced: set[str], notify: Callable[[str], None]) -> None:
    for pollable in pollables:
        if isinstance(pollable, EventSourceMapping):
            for window in pollable.waiting_windows():
                if window not in announced:
                    announced.add(window)
                    notify(f"waiting for {window}")


def _describe(pollable: Pollable) -> str:
    if isinstance(pollable, EventSourceMapping):
        config = pollable.config
        reasons = pollable.stuck()
        return f"{config.function_name} <- {config.source_arn}" + (f" ({'; '.join(reasons)})" if reasons else "")
    return repr(pollable)

