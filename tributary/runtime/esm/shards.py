"""The shards of a mapping's stream: where each is read from, what was read, and when it has ended.

StartingPosition LATEST / TRIM_HORIZON / AT_TIMESTAMP (Kinesis only) applies to the shards there at
the start; shards that appear later (resharding) are read from TRIM_HORIZON once their parents are
done. Each read takes at most twice what the shard's lanes can hold, ahead of the batch in flight as
Lambda's poller reads, so batching windows start on time; after a read that returned nothing, the
shard is not read again for the idle interval (Lambda polls a shard about once a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tributary.runtime.esm.config import MappingConfig
from tributary.runtime.esm.lanes import Lane, lane_index
from tributary.runtime.esm.sources import ReadResult, ShardInfo, StreamRecord, StreamSource

_REDISCOVER_EVERY_POLLS = 100
_MAX_RECORDS_PER_READ = 10_000


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

    def drained(self) -> bool:
        return (self.exhausted or self.caught_up) and not any(lane.busy() for lane in self.lanes)

    def route(self, record: StreamRecord, now: float) -> None:
        """Queue a record in the lane its key belongs to."""
        self.lanes[lane_index(record.lane_key, len(self.lanes))].enqueue(record, now)


class Shards:
    """Every shard of one mapping's source, read in sequence order."""

    def __init__(self, source: StreamSource, config: MappingConfig, idle_read_interval_s: float) -> None:
        self.source = source
        self.config = config
        self.idle_read_interval_s = idle_read_interval_s
        self.readers: dict[str, ShardReader] = {}
        self._polls = 0

    def __iter__(self) -> Iterator[ShardReader]:
        return iter(list(self.readers.values()))

    def lanes(self) -> list[tuple[ShardReader, Lane]]:
        return [(reader, lane) for reader in self.readers.values() for lane in reader.lanes]

    def start(self) -> None:
        """Take an iterator at the starting position for every shard there now."""
        for shard in self.source.shards():
            self._add(shard, self.config.starting_position)

    def wake(self) -> None:
        """Forget idle back-offs: the next fetch reads every shard."""
        for reader in self.readers.values():
            reader.next_read_at = 0.0

    def drained(self) -> bool:
        return all(reader.drained() for reader in self.readers.values())

    def _add(self, shard: ShardInfo, position: str) -> None:
        timestamp = self.config.starting_position_timestamp if position == "AT_TIMESTAMP" else None
        iterator = self.source.iterator(shard.shard_id, position, timestamp)
        lanes = [Lane(shard.shard_id, index) for index in range(self.config.parallelization_factor)]
        self.readers[shard.shard_id] = ShardReader(shard.shard_id, shard.parent_ids, iterator, lanes,
                                                   ending_sequence=shard.ending_sequence)

    def discover_children(self) -> bool:
        """Once per poll: shards created by resharding start at TRIM_HORIZON once their parents are processed."""
        self._polls += 1
        newly_finished = [s for s in self.readers.values() if s.finished() and not s.children_checked]
        # moto never ends a closed shard's iterators: learn that a shard was closed from the shard list,
        # read again whenever a shard has just been caught up.
        newly_caught_up = [s for s in self.readers.values() if s.caught_up and s.ending_sequence is None
                           and not s.closure_checked]
        if not (newly_finished or newly_caught_up) and self._polls % _REDISCOVER_EVERY_POLLS:
            return False
        for reader in newly_finished:
            reader.children_checked = True
        for reader in newly_caught_up:
            reader.closure_checked = True
        added = False
        for shard in self.source.shards():
            if shard.shard_id in self.readers:
                self.readers[shard.shard_id].ending_sequence = shard.ending_sequence
                continue
            parents = [self.readers.get(parent) for parent in shard.parent_ids]
            if all(parent is None or parent.finished() for parent in parents):
                self._add(shard, "TRIM_HORIZON")
                added = True
        return added

    def fetch(self, reader: ShardReader, now: float) -> list[StreamRecord]:
        """The shard's next records, unless it is exhausted, backing off, or its lanes are full."""
        if reader.exhausted or now < reader.next_read_at:
            return []
        capacity = self.config.batch_size * len(reader.lanes)
        if sum(len(lane.queue) for lane in reader.lanes) >= capacity:
            return []
        result = self._read(reader, min(2 * capacity, _MAX_RECORDS_PER_READ))
        reader.iterator = result.next_iterator
        if result.records:
            reader.closure_checked = False
            reader.last_read = result.records[-1].sequence_number
        reader.caught_up = not result.records
        reader.next_read_at = now + self.idle_read_interval_s if reader.caught_up else 0.0
        return result.records

    def _read(self, reader: ShardReader, limit: int) -> ReadResult:
        assert reader.iterator is not None
        try:
            return self.source.read(reader.shard_id, reader.iterator, limit)
        except Exception as error:
            if "ExpiredIterator" not in type(error).__name__ and "ExpiredIterator" not in str(error):
                raise
            reader.iterator = self.source.iterator(reader.shard_id, self.config.starting_position,
                                                   self.config.starting_position_timestamp,
                                                   after_sequence=reader.last_read)
            return self.source.read(reader.shard_id, reader.iterator, limit)
