"""Lanes (virtual shards) and the batches gathered in them, in sequence order.

ParallelizationFactor F gives each shard F lanes; a record goes to lane md5(partition key) mod F
(DynamoDB: the item's Keys), so order holds per key while lanes run concurrently. A lane has one
batch in flight at a time. A batch is invoked when it holds BatchSize records, when
MaximumBatchingWindowInSeconds has passed since the lane began gathering it (0 = at once), or when
the next record would take the event past 6 MB; batches never cross a tumbling-window boundary.
BisectBatchOnFunctionError splits a failed batch of two or more records into halves (the first half
gets len // 2 records and runs first).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field

from tributary.runtime.esm.sources import StreamRecord
from tributary.runtime.esm.windows import OpenWindow, window_start

PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
_EVENT_OVERHEAD_BYTES = 512


def lane_index(lane_key: str, parallelization_factor: int) -> int:
    if parallelization_factor == 1:
        return 0
    digest = hashlib.md5(lane_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big") % parallelization_factor


@dataclass
class PendingBatch:
    records: list[StreamRecord]
    invocations: int = 0
    redelivery: bool = False  # split off a failed batch: its records were delivered before
    function_error: str | None = None
    error_message: str | None = None

    def describe_retry(self, shard_id: str) -> str:
        first, last = self.records[0].sequence_number, self.records[-1].sequence_number
        cause = f"last error: {self.error_message}" if self.error_message else "reported in batchItemFailures"
        return f"{shard_id}: {len(self.records)} records {first}..{last} failed {self.invocations} times, {cause}"


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

    def enqueue(self, record: StreamRecord, now: float) -> None:
        if not self.queue:
            self.gathering_since = now  # the poll's instant: with no batching window the batch goes this poll
        self.queue.append(record)

    # -- gathering a batch

    def take_batch(self, now: float, *, batch_size: int, batching_window_s: float, window_s: int,
                   shard_ended: bool) -> bool:
        """Move the next batch from the queue to `pending` if it is due; whether one was taken."""
        if not self.queue:
            return False
        records, full = self._gather(batch_size, window_s)
        waited = now - (self.gathering_since if self.gathering_since is not None else now)
        window_ended = self.window is not None and now >= self.window.end
        if not (full or window_ended or shard_ended or waited >= batching_window_s):
            return False
        for _ in records:
            self.queue.popleft()
        self.gathering_since = now if self.queue else None
        if window_s and self.window is None:
            self.window = OpenWindow.around(records[0].arrival, window_s)
        self.pending.append(PendingBatch(records))
        return True

    def _gather(self, batch_size: int, window_s: int) -> tuple[list[StreamRecord], bool]:
        """The next batch from the queue, and whether it is full (count, 6 MB or window edge)."""
        records: list[StreamRecord] = []
        size = _EVENT_OVERHEAD_BYTES + (len(json.dumps(self.window.state)) if self.window else 0)
        first_window = window_start(self.queue[0].arrival, window_s) if window_s else None
        for record in self.queue:
            if first_window is not None and window_start(record.arrival, window_s) != first_window:
                return records, True
            if records and size + record.size > PAYLOAD_LIMIT_BYTES:
                return records, True
            records.append(record)
            size += record.size
            if len(records) == batch_size:
                return records, True
        return records, False

    def window_over(self, now: float, *, window_s: int, shard_ended: bool, caught_up: bool) -> bool:
        """Whether the open window is due for its final invoke."""
        if self.window is None:
            return False
        if self.queue:
            return window_start(self.queue[0].arrival, window_s) >= self.window.end
        # A shard read to its tip may still get records of this window; an ended one cannot.
        return shard_ended or (now >= self.window.end and caught_up)

    # -- reshaping the batch in flight

    def split_off_expired(self, now: float, maximum_record_age_s: int) -> list[StreamRecord]:
        """Remove the records of the batch in flight older than the maximum age; drop the batch if none is left."""
        if maximum_record_age_s < 0:
            return []
        batch = self.pending[0]
        expired = [record for record in batch.records if now - record.arrival > maximum_record_age_s]
        if not expired:
            return []
        # Arrival order is sequence order within a shard, so the expired records lead the batch.
        batch.records = batch.records[len(expired):]
        if not batch.records:
            self.pending.popleft()
        return expired

    def bisect(self) -> None:
        """Replace the batch in flight by its two halves, the first half first."""
        records = self.pending.popleft().records
        middle = len(records) // 2
        self.pending.appendleft(PendingBatch(records[middle:], redelivery=True))
        self.pending.appendleft(PendingBatch(records[:middle], redelivery=True))

    def redeliver_from(self, failed_from: int) -> None:
        """Replace the batch in flight by its records from `failed_from` on, as a new batch."""
        self.pending[0] = PendingBatch(self.pending[0].records[failed_from:], redelivery=True)

    def window_waiting_for_clock(self, now: float) -> bool:
        """An open window with nothing left to do but wait for the clock to pass its end."""
        return self.window is not None and not self.queue and not self.pending and now < self.window.end
