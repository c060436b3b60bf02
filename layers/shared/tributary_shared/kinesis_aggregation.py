"""KPL aggregated records: one Kinesis record carrying many user records, opened for the functions.

The Kinesis Producer Library (and `tributary produce --aggregate`) packs small user records into
one Kinesis record, which lifts a shard's 1,000 records/s limit. Its data is

    F3 89 9A C2 | a protobuf AggregatedRecord | the 16-byte MD5 of the protobuf bytes

where AggregatedRecord holds `partition_key_table` and `explicit_hash_key_table` (repeated
strings) and `records` (each a `partition_key_index`, an optional `explicit_hash_key_index`,
`data` and `tags`). Lambda hands such a record to a function as it is; the Kinesis batch skeleton
opens it here. The rules are the KCL's:

- a record is an aggregate only if its data starts with the magic bytes, a protobuf body follows,
  the MD5 matches and the body parses with every field the format requires. Anything else is a
  *plain* record: its data as it came, decoded as usual. (Starting with 0xF3, it matches none of
  Tributary's framings, so it fails as poison, and the reason says why it was not de-aggregated.)
- user record i of the aggregate keeps its own partition key and explicit hash key (from the
  tables), the aggregate's sequence number with subsequence number i, and the aggregate's arrival
  time. A user record whose key index points outside its table, or whose key is not UTF-8, fails
  alone, as poison; the other user records of its aggregate are handled (the KCL would throw and
  stop the whole shard).
- bounded: an aggregate over Kinesis' 1 MiB record limit is not opened (it is a plain record), so
  one aggregate expands to at most 1 MiB of user data and at most 174,762 user records (each costs
  at least 6 bytes of protobuf). A hostile body (lengths past its end, groups nested past the
  parser's depth limit) does not parse, so it is a plain record too.

The body is parsed by Google's protobuf runtime (its C parser, upb), imported at the first
aggregate: a function that never receives one never loads it. AWS's `aws-kinesis-agg` is not used
in the layer: importing it puts its own directory first on `sys.path`; a user record without an
explicit hash key gets the table's first one; and an index outside the table ends the aggregate
with a line on stderr, silently dropping the user records after it. The tests check this module
against it both ways.
"""

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterator
from typing import Any, NamedTuple

AGGREGATE_MAGIC = b"\xf3\x89\x9a\xc2"
# Base64 turns the first 30 bits of data into its first 5 characters: every aggregate's text starts so.
AGGREGATE_MAGIC_BASE64 = base64.b64encode(AGGREGATE_MAGIC + b"\0\0").decode()[:5]
DIGEST_BYTES = hashlib.md5(usedforsecurity=False).digest_size
# Kinesis' limit on one record's data: no aggregate Kinesis delivered is larger.
MAX_AGGREGATE_BYTES = 1024 * 1024
# A user record costs at least 6 protobuf bytes: field tag and length, then the key index and data.
MIN_USER_RECORD_BYTES = 6
MAX_USER_RECORDS = MAX_AGGREGATE_BYTES // MIN_USER_RECORD_BYTES
PROTOBUF_PACKAGE = "aws.kinesis.protobuf"


class UserRecord(NamedTuple):
    """One user record of an aggregate; `problem` says why it cannot be used (it then fails alone).

    A NamedTuple, not a frozen dataclass: one is built per user record, in less than half the time.
    """

    subsequence_number: int
    partition_key: str | None
    explicit_hash_key: str | None
    data: bytes
    problem: str | None = None


class UnusableUserRecord(ValueError):
    """A user record of an opened aggregate that cannot be used (a key index outside its table, a key not UTF-8)."""


class NotAnAggregate(NamedTuple):
    """Why a record that starts with the magic bytes is handled as a plain record (the KCL's rule)."""

    reason: str

    @property
    def note(self) -> str:
        return f"the data starts with the KPL aggregation magic bytes but {self.reason}: handled as a plain record"


class Aggregate:
    """An opened aggregate: its user records by subsequence number, each built when it is asked for."""

    def __init__(self, message: Any) -> None:
        self._records = message.records
        self._keys = _table(message.partition_key_table)
        self._hash_keys = _table(message.explicit_hash_key_table)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[UserRecord]:
        keys = self._keys
        for subsequence, record in enumerate(self._records):
            index = record.partition_key_index
            key = keys[index] if index < len(keys) else None
            if key is None or record.HasField("explicit_hash_key_index"):
                yield self._user_record(subsequence, record)  # checked in full, and said what is wrong
            else:
                yield UserRecord(subsequence, key, None, record.data)  # the KPL's usual record

    def __getitem__(self, subsequence: int) -> UserRecord:
        return self._user_record(subsequence, self._records[subsequence])

    def data_of(self, subsequence: int) -> bytes:
        """User record `subsequence`'s data; UnusableUserRecord, saying why, if it cannot be used.

        What the batch skeleton reads, instead of building a UserRecord per user record: the usual
        record (its key in the table, no explicit hash key) costs a few attribute reads.
        """
        record = self._records[subsequence]
        keys = self._keys
        index = record.partition_key_index
        if index < len(keys) and keys[index] is not None and not record.HasField("explicit_hash_key_index"):
            return record.data
        user_record = self._user_record(subsequence, record)
        if user_record.problem is not None:
            raise UnusableUserRecord(user_record.problem)
        return user_record.data

    def _user_record(self, subsequence: int, record: Any) -> UserRecord:
        key, problem = _entry(self._keys, record.partition_key_index, "partition key")
        hash_key = None
        if record.HasField("explicit_hash_key_index"):
            hash_key, hash_key_problem = _entry(self._hash_keys, record.explicit_hash_key_index, "explicit hash key")
            problem = problem or hash_key_problem
        return UserRecord(subsequence, key, hash_key, record.data, problem)


def _table(entries: Any) -> list[str | None]:
    # Proto2 strings are not checked as UTF-8 on parsing: such an entry comes back as bytes.
    return [entry if isinstance(entry, str) else None for entry in entries]


def _entry(table: list[str | None], index: int, what: str) -> tuple[str | None, str | None]:
    if index >= len(table):
        return None, f"KPL user record's {what} index {index} is outside the aggregate's table of {len(table)}"
    entry = table[index]
    if entry is None:
        return None, f"KPL user record's {what} (entry {index} of the aggregate's table) is not UTF-8"
    return entry, None


def may_be_aggregate(encoded_data: object) -> bool:
    """Whether a record's base64 data can hold an aggregate: a prefix check, nothing decoded."""
    return isinstance(encoded_data, str) and encoded_data.startswith(AGGREGATE_MAGIC_BASE64)


def open_encoded(encoded_data: str) -> Aggregate | NotAnAggregate:
    """The aggregate a Lambda event record's base64 data holds, or why it is a plain record."""
    if len(encoded_data) > 4 * -(-MAX_AGGREGATE_BYTES // 3):
        return NotAnAggregate(f"it is larger than {MAX_AGGREGATE_BYTES} bytes, Kinesis' record limit")
    try:
        # Strict in C: what base64.b64decode(validate=True) checks with a regular expression first.
        data = binascii.a2b_base64(encoded_data, strict_mode=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        return NotAnAggregate("it is not valid base64")
    return open_aggregate(data)


def open_aggregate(data: bytes) -> Aggregate | NotAnAggregate:
    """The aggregate `data` holds, or why it is a plain record (see the module docstring)."""
    if not data.startswith(AGGREGATE_MAGIC):
        return NotAnAggregate("it does not start with them")
    if len(data) > MAX_AGGREGATE_BYTES:
        return NotAnAggregate(f"it is larger than {MAX_AGGREGATE_BYTES} bytes, Kinesis' record limit")
    if len(data) <= len(AGGREGATE_MAGIC) + DIGEST_BYTES:
        return NotAnAggregate("no protobuf body follows them")
    body, digest = data[len(AGGREGATE_MAGIC) : -DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.md5(body, usedforsecurity=False).digest() != digest:
        return NotAnAggregate("its MD5 checksum does not match")
    message = aggregated_record_type()()
    try:
        message.ParseFromString(body)
    except Exception as error:  # google.protobuf.message.DecodeError, without importing protobuf here
        return NotAnAggregate(f"its protobuf does not parse ({type(error).__name__})")
    if not message.IsInitialized():
        return NotAnAggregate("its protobuf lacks a field the format requires")
    return Aggregate(message)


@functools.cache
def aggregated_record_type() -> Any:
    """The protobuf message class of AggregatedRecord (the KPL's `messages.proto`), built once.

    Declared here rather than generated by protoc, in a descriptor pool of its own, so it cannot
    clash with another copy of the same definition (the tests load aws-kinesis-agg's).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    # (name, number, label, type, message type): the KPL's messages.proto, AggregatedRecord and its parts.
    messages = {
        "Tag": [
            ("key", 1, field.LABEL_REQUIRED, field.TYPE_STRING, None),
            ("value", 2, field.LABEL_OPTIONAL, field.TYPE_STRING, None),
        ],
        "Record": [
            ("partition_key_index", 1, field.LABEL_REQUIRED, field.TYPE_UINT64, None),
            ("explicit_hash_key_index", 2, field.LABEL_OPTIONAL, field.TYPE_UINT64, None),
            ("data", 3, field.LABEL_REQUIRED, field.TYPE_BYTES, None),
            ("tags", 4, field.LABEL_REPEATED, field.TYPE_MESSAGE, "Tag"),
        ],
        "AggregatedRecord": [
            ("partition_key_table", 1, field.LABEL_REPEATED, field.TYPE_STRING, None),
            ("explicit_hash_key_table", 2, field.LABEL_REPEATED, field.TYPE_STRING, None),
            ("records", 3, field.LABEL_REPEATED, field.TYPE_MESSAGE, "Record"),
        ],
    }
    definition = descriptor_pb2.FileDescriptorProto(
        name="tributary_kpl_messages.proto", package=PROTOBUF_PACKAGE, syntax="proto2"
    )
    for name, fields in messages.items():
        declared = definition.message_type.add(name=name)
        for field_name, number, label, kind, message_type in fields:
            declared.field.add(name=field_name, number=number, label=label, type=kind)
            if message_type:
                declared.field[-1].type_name = f".{PROTOBUF_PACKAGE}.{message_type}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(definition)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PROTOBUF_PACKAGE}.AggregatedRecord"))
