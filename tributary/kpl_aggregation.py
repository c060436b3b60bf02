"""Producer-side KPL aggregation: user records packed into aggregated Kinesis records, per-key order kept.

The format is the KPL's (`tributary_shared.kinesis_aggregation`, which the functions open it with):
the magic bytes, a protobuf AggregatedRecord, the MD5 of the protobuf bytes.

Which user records may share an aggregate. Kinesis routes an aggregate by its own partition key
(or explicit hash key), never by its user records' keys, and keeps order only within a shard. The
KPL packs the records of many keys that it predicts hash to one shard, using a shard map it must
keep current; a reshard between its prediction and the put sends a key's records to two shards,
where nothing orders them. Here an aggregate holds the records of one partition key only, in the
order given, and is put under that key: it lands on the shard a plain record of that key would,
under any resharding, so a key's records are never reordered. Aggregation then pays off for keys
with many records in a chunk (a fleet of unicorns, each reporting often), not for a chunk of
distinct keys, which stays one Kinesis record per key: a key alone in a chunk is put plain, as the
KPL puts a lone record.

Limits: an aggregate's data plus its partition key stays within Kinesis' 1 MiB record limit
(`kinesis_put` then packs records into requests of at most 500 records and 5 MiB, one record per
key per request). A user record too large to share an aggregate is put plain, after the key's
aggregate before it; one too large even alone is left to `put_records` to refuse.
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tributary_shared.kinesis_aggregation import AGGREGATE_MAGIC, Aggregate, aggregated_record_type, open_aggregate
from tributary_shared.kinesis_put import MAX_RECORD_BYTES, record_size

# The fixed part of an aggregate: magic bytes and MD5.
FRAME_BYTES = len(AGGREGATE_MAGIC) + hashlib.md5(usedforsecurity=False).digest_size
# A protobuf field's tag, for the field numbers (1..15) the format uses.
TAG_BYTES = 1


@dataclass(frozen=True)
class OutgoingUserRecord:
    """One user record as its producer means it: a partition key, data, and optionally an explicit hash key."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None


def varint_bytes(value: int) -> int:
    """Bytes a protobuf varint takes for `value`."""
    return max(1, -(-value.bit_length() // 7))


def length_delimited_bytes(length: int) -> int:
    """Bytes a protobuf bytes/string/message field takes for a payload of `length` bytes."""
    return TAG_BYTES + varint_bytes(length) + length


def record_entry_bytes(data_length: int, key_index: int = 0) -> int:
    """Bytes one user record adds to an aggregate's protobuf (no explicit hash key, no tags)."""
    inner = TAG_BYTES + varint_bytes(key_index) + length_delimited_bytes(data_length)
    return length_delimited_bytes(inner)


def encode_aggregate(user_records: Sequence[OutgoingUserRecord]) -> bytes:
    """The KPL aggregated record of `user_records`, in order, each key and hash key stored once."""
    message = aggregated_record_type()()
    key_index: dict[str, int] = {}
    hash_key_index: dict[str, int] = {}
    for user_record in user_records:
        entry = message.records.add(
            partition_key_index=_index(key_index, message.partition_key_table, user_record.partition_key),
            data=user_record.data,
        )
        if user_record.explicit_hash_key is not None:
            table = message.explicit_hash_key_table
            entry.explicit_hash_key_index = _index(hash_key_index, table, user_record.explicit_hash_key)
    body = message.SerializeToString()
    return AGGREGATE_MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest()


def _index(indexes: dict[str, int], table: list[str], value: str) -> int:
    if value not in indexes:
        indexes[value] = len(table)
        table.append(value)
    return indexes[value]


def user_records_in(data: bytes) -> int:
    """How many user records a Kinesis record's data carries: an aggregate's count, else one."""
    opened = open_aggregate(data)
    return len(opened) if isinstance(opened, Aggregate) else 1


@dataclass
class _OpenAggregate:
    """The records of one key gathered so far, and the bytes their aggregate would take."""

    partition_key: str
    size: int
    records: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class PackedRecord:
    """One Kinesis record to put: an aggregate, or a user record put plain."""

    partition_key: str
    data: bytes
    user_records: int


class KeyAggregator:
    """Packs (partition key, data) user records into Kinesis records, one key per aggregate, in order."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.max_record_bytes = max_record_bytes

    def pack(self, entries: Iterable[tuple[str, bytes]]) -> list[PackedRecord]:
        """The Kinesis records for `entries`: each key's records in their order, across as few records as fit.

        A key's aggregates come out in order (a full one before the one it makes room for); keys
        interleave freely, since Kinesis orders only within a key's shard.
        """
        packed: list[PackedRecord] = []
        open_by_key: dict[str, _OpenAggregate] = {}
        for partition_key, data in entries:
            current = open_by_key.get(partition_key)
            if current is None:
                current = open_by_key[partition_key] = self._empty(partition_key)
            added = record_entry_bytes(len(data))
            if current.size + added > self.max_record_bytes and current.records:
                packed.append(self._close(current))
                current = open_by_key[partition_key] = self._empty(partition_key)
            if current.size + added > self.max_record_bytes:
                # Too large to share an aggregate: put plain, in its place among the key's records.
                packed.append(PackedRecord(partition_key, data, 1))
                continue
            current.records.append(data)
            current.size += added
        packed += [self._close(current) for current in open_by_key.values() if current.records]
        return packed

    def _empty(self, partition_key: str) -> _OpenAggregate:
        key_bytes = len(partition_key.encode("utf-8"))
        # Kinesis counts the partition key against the record's 1 MiB, beside the data.
        fixed = record_size(partition_key, b"") + FRAME_BYTES + length_delimited_bytes(key_bytes)
        return _OpenAggregate(partition_key, fixed)

    @staticmethod
    def _close(current: _OpenAggregate) -> PackedRecord:
        key = current.partition_key
        if len(current.records) == 1:
            return PackedRecord(key, current.records[0], 1)
        data = encode_aggregate([OutgoingUserRecord(key, data) for data in current.records])
        return PackedRecord(key, data, len(current.records))
