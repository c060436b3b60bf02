"""KPL aggregated records opened by the layer: the format both ways with AWS's own implementation,
the KCL's plain-record rules, and hostile aggregates that fail one user record at most."""

import base64
import hashlib

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import given
from hypothesis import strategies as st

from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate
from tributary_shared.kinesis_aggregation import (
    AGGREGATE_MAGIC,
    MAX_AGGREGATE_BYTES,
    MAX_USER_RECORDS,
    Aggregate,
    NotAnAggregate,
    aggregated_record_type,
    may_be_aggregate,
    open_aggregate,
    open_encoded,
)
from tributary_shared.kinesis_batch import MAX_SUBSEQUENCE

partition_keys = st.text(min_size=1, max_size=20)
hash_keys = st.integers(min_value=0, max_value=2**128 - 1).map(str)
user_records = st.builds(OutgoingUserRecord, partition_keys, st.binary(max_size=200), st.none() | hash_keys)


def framed(body: bytes) -> bytes:
    """An aggregate's data around a protobuf body: magic bytes, body, MD5 of the body."""
    return AGGREGATE_MAGIC + body + hashlib.md5(body).digest()


def message(keys=("k",), hash_keys=(), records=()):
    """An AggregatedRecord built field by field, so tests can make what the KPL never would."""
    built = aggregated_record_type()()
    built.partition_key_table.extend(keys)
    built.explicit_hash_key_table.extend(hash_keys)
    for fields in records:
        built.records.add(**fields)
    return built


def opened(data: bytes) -> Aggregate:
    result = open_aggregate(data)
    assert isinstance(result, Aggregate), result
    return result


def seen(aggregate: Aggregate) -> list[tuple[int, str | None, str | None, bytes]]:
    return [(u.subsequence_number, u.partition_key, u.explicit_hash_key, u.data) for u in aggregate]


# ------------------------------------------------------------------------------------ the format


@given(st.lists(user_records, min_size=1, max_size=30))
def test_what_is_aggregated_opens_to_the_same_user_records_in_order(records):
    aggregate = opened(encode_aggregate(records))
    assert seen(aggregate) == [
        (index, r.partition_key, r.explicit_hash_key, r.data) for index, r in enumerate(records)
    ]
    assert all(user_record.problem is None for user_record in aggregate)


@given(st.lists(st.tuples(partition_keys, st.binary(max_size=200), st.none() | hash_keys), min_size=1, max_size=30))
def test_aws_kinesis_agg_aggregates_open_here(records):
    """AWS's aggregator packs several keys per aggregate and starts a new one when full."""
    aggregator = RecordAggregator()
    aggregates = []
    for key, data, hash_key in records:
        full = aggregator.add_user_record(key, data, hash_key)
        if full:
            aggregates.append(full)
    if aggregator.get_num_user_records():
        aggregates.append(aggregator.clear_and_get())
    unpacked = []
    for aggregate in aggregates:
        _, _, data = aggregate.get_contents()
        unpacked += [(u.partition_key, u.data, u.explicit_hash_key) for u in opened(data)]
    assert unpacked == records


@given(st.lists(st.builds(OutgoingUserRecord, partition_keys, st.binary(max_size=200)), min_size=1, max_size=30),
       st.none() | hash_keys)  # fmt: skip
def test_our_aggregates_open_with_aws_kinesis_agg(records, hash_key):
    # aws-kinesis-agg gives a user record without an explicit hash key the table's first one, so every
    # record here has the same one, or none.
    records = [OutgoingUserRecord(r.partition_key, r.data, hash_key) for r in records]
    event_record = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "approximateArrivalTimestamp": 1795262400.0,
            "partitionKey": records[0].partition_key,
            "data": base64.b64encode(encode_aggregate(records)).decode(),
        }
    }
    unpacked = [
        (r["kinesis"]["partitionKey"], r["kinesis"]["explicitHashKey"], base64.b64decode(r["kinesis"]["data"]),
         r["kinesis"]["subSequenceNumber"])
        for r in iter_deaggregate_records([event_record])
    ]  # fmt: skip
    assert unpacked == [(r.partition_key, r.explicit_hash_key, r.data, index) for index, r in enumerate(records)]


@given(st.binary(max_size=64))
def test_the_base64_prefix_check_never_misses_an_aggregate(tail):
    encoded = base64.b64encode(AGGREGATE_MAGIC + tail).decode()
    assert may_be_aggregate(encoded)


@given(st.binary(min_size=1, max_size=64))
def test_the_base64_prefix_check_passes_only_data_that_could_start_with_the_magic_bytes(data):
    if may_be_aggregate(base64.b64encode(data).decode()):
        assert data[:3] == AGGREGATE_MAGIC[:3]
    assert not may_be_aggregate(b"84maw")  # only text, as Lambda's event carries it


# ------------------------------------------------------------------------------------ the KCL's rules


def test_a_checksum_that_does_not_match_makes_a_plain_record():
    data = encode_aggregate([OutgoingUserRecord("k", b"a"), OutgoingUserRecord("k", b"b")])
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    assert open_aggregate(tampered) == NotAnAggregate("its MD5 checksum does not match")


def test_a_truncated_protobuf_makes_a_plain_record():
    body = message(records=[{"partition_key_index": 0, "data": b"x" * 50}]).SerializeToString()
    result = open_aggregate(framed(body[:-10]))
    assert isinstance(result, NotAnAggregate) and "does not parse" in result.reason


def test_a_record_missing_a_required_field_makes_a_plain_record():
    body = message(records=[{"data": b"no key index"}]).SerializePartialToString()
    assert open_aggregate(framed(body)) == NotAnAggregate("its protobuf lacks a field the format requires")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (AGGREGATE_MAGIC, "no protobuf body follows them"),
        (framed(b""), "no protobuf body follows them"),
        (b"\xf3\x89\x9a\xc3" + b"x" * 20, "it does not start with them"),
        (framed(b"\x1a" + b"\x01" * (MAX_AGGREGATE_BYTES - 20)), "larger than 1048576 bytes"),
        (framed(b"\x23" * 200 + b"\x24" * 200), "does not parse"),  # groups nested past the parser's limit
    ],
)
def test_other_data_after_the_magic_bytes_is_a_plain_record(data, reason):
    result = open_aggregate(data)
    assert isinstance(result, NotAnAggregate) and reason in result.reason
    assert "handled as a plain record" in result.note


def test_base64_that_is_not_valid_is_a_plain_record_too():
    assert open_encoded("84mawg==!!") == NotAnAggregate("it is not valid base64")
    assert open_encoded("84mawgé=") == NotAnAggregate("it is not valid base64")
    huge = base64.b64encode(framed(b"\x0a\x01k" * (MAX_AGGREGATE_BYTES // 3))).decode()
    assert "larger than" in open_encoded(huge).reason  # refused before it is decoded


def test_an_aggregate_without_user_records_opens_empty():
    aggregate = opened(framed(message(keys=["k"]).SerializeToString()))
    assert len(aggregate) == 0 and list(aggregate) == []


# ------------------------------------------------------------------------------------ hostile aggregates


def test_a_key_index_outside_its_table_fails_that_user_record_only():
    records = [
        {"partition_key_index": 0, "data": b"before"},
        {"partition_key_index": 2**64 - 1, "data": b"bad key"},
        {"partition_key_index": 1, "data": b"bad hash key", "explicit_hash_key_index": 3},
        {"partition_key_index": 1, "data": b"after", "explicit_hash_key_index": 0},
    ]
    aggregate = opened(framed(message(["a", "b"], ["42"], records).SerializeToString()))
    problems = [user_record.problem for user_record in aggregate]
    assert problems[0] is None and problems[3] is None
    assert "partition key index 18446744073709551615 is outside the aggregate's table of 2" in problems[1]
    assert "explicit hash key index 3 is outside the aggregate's table of 1" in problems[2]
    assert seen(aggregate)[3] == (3, "b", "42", b"after")


def test_a_key_that_is_not_utf8_fails_the_user_records_naming_it():
    body = bytes.fromhex("0a02fffe") + message(["ok"], records=[]).SerializeToString()  # keys ["\xff\xfe", "ok"]
    body += message([], records=[{"partition_key_index": 0, "data": b"x"}, {"partition_key_index": 1, "data": b"y"}]
                    ).SerializeToString()  # fmt: skip
    aggregate = opened(framed(body))
    assert "not UTF-8" in aggregate[0].problem and aggregate[1].problem is None and aggregate[1].partition_key == "ok"


@given(st.binary(max_size=300))
def test_any_body_with_a_valid_checksum_opens_or_is_a_plain_record(body):
    result = open_aggregate(framed(body))
    if isinstance(result, Aggregate):
        for user_record in result:  # every user record can be read: fine, or with a problem
            assert isinstance(user_record.data, bytes)
            assert user_record.problem is not None or isinstance(user_record.partition_key, str)
    else:
        assert result.reason


@given(st.lists(st.tuples(st.integers(0, 4), st.binary(max_size=20), st.none() | st.integers(0, 3)), min_size=1,
                max_size=20),
       st.lists(st.text(max_size=5), max_size=3), st.lists(hash_keys, max_size=2))  # fmt: skip
def test_indexes_anywhere_fail_only_the_records_they_belong_to(records, keys, hashes):
    fields = [
        {"partition_key_index": key, "data": data}
        | ({} if hash_key is None else {"explicit_hash_key_index": hash_key})
        for key, data, hash_key in records
    ]
    aggregate = opened(framed(message(keys, hashes, fields).SerializeToString()))
    assert len(aggregate) == len(records)
    for user_record, (key, data, hash_key) in zip(aggregate, records, strict=True):
        valid = key < len(keys) and (hash_key is None or hash_key < len(hashes))
        assert (user_record.problem is None) == valid
        assert user_record.data == data


def test_one_aggregate_expands_to_at_most_its_1_mib_and_a_bounded_count():
    # The smallest user record a 1 MiB aggregate can hold, as many as fit.
    count = (MAX_AGGREGATE_BYTES - len(AGGREGATE_MAGIC) - 16 - 3) // 6
    body = message(["k"], records=[{"partition_key_index": 0, "data": b""}] * count).SerializeToString()
    aggregate = opened(framed(body))
    assert len(aggregate) == count <= MAX_USER_RECORDS <= MAX_SUBSEQUENCE + 1
    assert aggregate[count - 1].subsequence_number == count - 1
