"""The event-source-mapping engine: reads a stream's shards and invokes one function with their records.

One `poll()` is one step, per shard and in sequence order: the shard list is checked for children
(shards.py), each shard is read once, records matching no FilterCriteria pattern are dropped and
counted (filtering.py), the rest queue in their lanes (lanes.py), and each lane makes at most one
invocation: a tumbling window's final invoke (windows.py) or its batch in flight. Before every
invocation, records older than MaximumRecordAgeInSeconds are split off and discarded. What the
function returned (responses.py) decides the lane's next step: move its checkpoint, retry after
`retry_delay_s` (other lanes carry on meanwhile), bisect, or discard on-failure (discards.py).
Enabled false: nothing is read and the mapping counts as drained. The contract hosts code against is
in the package's docstring (tributary.runtime.esm).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tributary.runtime import destinations as dest
from tributary.runtime.esm.config import MappingConfig
from tributary.runtime.esm.discards import Discards
from tributary.runtime.esm.filtering import matches_any
from tributary.runtime.esm.lanes import Lane, PendingBatch
from tributary.runtime.esm.responses import (
    ERROR,
    PARTIAL,
    SUCCESS,
    AfterFailure,
    Outcome,
    after_failure,
    checkpoint_after,
    invoke,
    judge,
    judge_final,
)
from tributary.runtime.esm.shards import ShardReader, Shards
from tributary.runtime.esm.sources import StreamRecord, StreamSource, stream_source
from tributary.runtime.esm.stats import MappingStats
from tributary.runtime.invocation import Invoker
from tributary.runtime.trace import TraceWriter


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
        self.invoker = invoker
        self.trace = trace
        self.clock = clock
        self.retry_delay_s = retry_delay_s
        self.stats = MappingStats()
        self.uuid = str(uuid.uuid4())
        self.shards = Shards(stream_source(config.source_arn, config.execution_role_arn), config,
                             idle_read_interval_s)
        self.discards = Discards(config, self.uuid)
        self._workers = max_workers or config.parallelization_factor
        self._pool: ThreadPoolExecutor | None = None
        self._started = False

    @property
    def source(self) -> StreamSource:
        return self.shards.source

    @source.setter
    def source(self, source: StreamSource) -> None:
        self.shards.source = source

    # -- lifecycle

    def start(self) -> None:
        if self._started or not self.config.enabled:
            return
        self.shards.start()
        self._started = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def poll(self) -> bool:
        if not self.config.enabled:
            return False
        self.start()
        now = self.clock()
        worked = self.shards.discover_children()
        for reader in self.shards:
            records = self.shards.fetch(reader, now)
            self._accept(reader, records, now)
            worked |= bool(records)
        return any(self._run_lanes(self.shards.lanes(), now)) or worked

    def is_drained(self) -> bool:
        if not self.config.enabled:
            return True
        return self._started and self.shards.drained()

    def wake(self) -> None:
        self.shards.wake()

    def stuck(self) -> list[str]:
        """Why the mapping is not drained: each batch being retried and each open window, per lane."""
        reasons = []
        for _, lane in self.shards.lanes():
            if lane.pending and lane.pending[0].invocations:
                reasons.append(lane.pending[0].describe_retry(lane.shard_id))
            elif lane.window is not None and lane.window.final_attempts:
                reasons.append(lane.window.describe_final_retry(lane.shard_id))
        return reasons + self.waiting_windows()

    def waiting_windows(self) -> list[str]:
        """Open windows with nothing left to do but wait for the clock to pass their end."""
        now = self.clock()
        return [
            lane.window.describe_wait(self.config.function_name, lane.shard_id)
            for reader, lane in self.shards.lanes()
            if reader.caught_up and not reader.ended and lane.window is not None
            and lane.window_waiting_for_clock(now)
        ]

    def _accept(self, reader: ShardReader, records: list[StreamRecord], now: float) -> None:
        for record in records:
            self.stats.add("records_in", 1)
            if matches_any(self.config.filter_patterns, record.filter_subject):
                reader.route(record, now)
            else:
                self.stats.add("records_filtered_out", 1)

    def _run_lanes(self, lanes: list[tuple[ShardReader, Lane]], now: float) -> list[bool]:
        if self._workers <= 1 or len(lanes) <= 1:
            return [self._step(reader, lane, now) for reader, lane in lanes]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="esm-lane")
        futures = [self._pool.submit(self._step, reader, lane, now) for reader, lane in lanes]
        return [future.result() for future in futures]

    # -- one lane step: at most one invocation

    def _step(self, reader: ShardReader, lane: Lane, now: float) -> bool:
        if now < lane.retry_at:
            return False
        if lane.window is not None and lane.window.terminated_early:
            return self._invoke_final(lane, now)
        if not lane.pending:
            window_s = self.config.window_s
            if lane.window_over(now, window_s=window_s, shard_ended=reader.ended, caught_up=reader.caught_up):
                return self._invoke_final(lane, now)
            if not lane.take_batch(now, batch_size=self.config.batch_size, window_s=window_s,
                                   batching_window_s=self.config.maximum_batching_window_s,
                                   shard_ended=reader.ended):
                return False
        return self._invoke_pending(lane, now)

    def _invoke_pending(self, lane: Lane, now: float) -> bool:
        batch = lane.pending[0]
        expired = lane.split_off_expired(now, self.config.maximum_record_age_s)
        if expired:
            self._discard(lane, expired, dest.RECORD_AGE_EXCEEDED, batch, now)
            return True
        outcome = self._invoke(lane, batch)
        if outcome.kind == SUCCESS:
            self._succeeded(lane, batch.records)
            lane.pending.popleft()
        elif outcome.kind == PARTIAL:
            self._partially_failed(lane, batch, outcome.failed_from, now)
        else:
            self._failed(lane, batch, now)
        return True

    def _invoke(self, lane: Lane, batch: PendingBatch) -> Outcome:
        if batch.invocations:
            self.stats.add("retries", 1)
        if batch.invocations or batch.redelivery:
            self.stats.add("records_retried", len(batch.records))
        batch.invocations += 1
        self.stats.add("invocations", 1)
        event = self._event(lane, batch.records)
        result = invoke(self.invoker, event)
        outcome = judge(result, batch.records, self.config)
        if outcome.kind == ERROR:
            batch.function_error = outcome.function_error
            batch.error_message = outcome.error
            self._note_error(outcome)
        elif outcome.kind == PARTIAL:
            self.stats.add("partial_failures", 1)
        if outcome.kind != ERROR and lane.window is not None:
            lane.window.keep_state(result.response["state"])
        self.stats.iterator_age_ms = max(0, int((self.clock() - batch.records[-1].arrival) * 1000))
        checkpoint = checkpoint_after(batch.records, outcome, lane.checkpoint)
        self._trace_invocation(lane, event, batch.invocations, outcome, checkpoint, final=False)
        return outcome

    def _succeeded(self, lane: Lane, records: list[StreamRecord]) -> None:
        self.stats.add("records_succeeded", len(records))
        lane.checkpoint = records[-1].sequence_number

    def _partially_failed(self, lane: Lane, batch: PendingBatch, failed_from: int, now: float) -> None:
        if failed_from > 0:
            self._succeeded(lane, batch.records[:failed_from])
        if self.config.bisect_on_function_error and failed_from > 0:
            lane.redeliver_from(failed_from)
            self.stats.add("bisections", 1)
            return
        batch.records = batch.records[failed_from:]
        self._failed(lane, batch, now)

    def _failed(self, lane: Lane, batch: PendingBatch, now: float) -> None:
        action = after_failure(batch.records, batch.invocations, self.config)
        if action is AfterFailure.BISECT:
            lane.bisect()
            self.stats.add("bisections", 1)
        elif action is AfterFailure.DISCARD:
            lane.pending.popleft()
            self._discard(lane, batch.records, dest.RETRY_ATTEMPTS_EXHAUSTED, batch, now)
        else:
            self._retry_later(lane, now)

    def _invoke_final(self, lane: Lane, now: float) -> bool:
        window = lane.window
        assert window is not None
        event = self._event(lane, [], final=True)
        window.final_attempts += 1
        if window.final_attempts > 1:
            self.stats.add("retries", 1)
        self.stats.add("invocations", 1)
        outcome = judge_final(invoke(self.invoker, event))
        if outcome.kind == ERROR:
            window.final_error = outcome.error
            self._note_error(outcome)
            self._retry_later(lane, now)
        self._trace_invocation(lane, event, window.final_attempts, outcome, lane.checkpoint, final=True)
        if outcome.kind == SUCCESS:
            self.stats.add("windows_closed", 1)
            lane.window = window.after_final_invoke()
        return True

    def _retry_later(self, lane: Lane, now: float) -> None:
        lane.retry_at = now + self.retry_delay_s

    def _note_error(self, outcome: Outcome) -> None:
        self.stats.last_error = outcome.error
        if outcome.function_error:
            self.stats.add("function_errors", 1)

    # -- events, discards, trace

    def _event(self, lane: Lane, records: list[StreamRecord], *, final: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {"Records": [record.event_record for record in records]}
        if lane.window is not None:
            event.update(lane.window.event_fields(lane.shard_id, self.source.arn, final=final))
        return event

    def _discard(self, lane: Lane, records: list[StreamRecord], condition: str, batch: PendingBatch,
                 now: float) -> None:
        delivery = self.discards.deliver(
            self.source, lane.shard_id, records, condition=condition, invocations=batch.invocations,
            function_error=batch.function_error, event=self._event(lane, records), now=now,
        )
        if delivery["location"] is not None:
            self.stats.add("records_to_destination", len(records))
        self.stats.add("records_discarded", len(records))
        self.stats.deliveries.append(delivery)
        lane.checkpoint = records[-1].sequence_number
        if self.trace is not None:
            self.trace.delivery(function=self.config.function_name, mapping=self.uuid, **delivery)

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


def _sequence_of(event_record: dict[str, Any]) -> str:
    if "kinesis" in event_record:
        return event_record["kinesis"]["sequenceNumber"]
    return event_record["dynamodb"]["SequenceNumber"]
