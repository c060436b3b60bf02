"""`tributary produce --aggregate` and `tributary consume` with KPL aggregated records: packing within
Kinesis' limits, per-key order, the counts it prints, and the consumer showing user records (or, with
--raw, the records as stored)."""

import base64
import json
from collections import defaultdict

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary import consumer, producer
from tributary.kpl_aggregation import KeyAggregator, OutgoingUserRecord, encode_aggregate, record_entry_bytes
from tributary_shared.kinesis_aggregation import Aggregate, open_aggregate
from tributary_shared.kinesis_put import MAX_RECORD_BYTES, record_size


def consume(capsys, *options: str) -> tuple[list[dict], list[dict]]:
    argv = ["--from", "TRIM_HORIZON", "--poll-interval", "0", "--idle-exit", "0", *options]
    assert consumer.main("consume", argv) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], [json.loads(line) for line in err.splitlines()]


def unpacked(packed) -> list[tuple[str, bytes]]:
    """The user records of packed Kinesis records, in order, each with its partition key."""
    records = []
    for record in packed:
        opened = open_aggregate(record.data)
        if isinstance(opened, Aggregate):
            assert record.user_records == len(opened) > 1
            records += [(user_record.partition_key, user_record.data) for user_record in opened]
        else:
            assert record.user_records == 1
            records.append((record.partition_key, record.data))
    return records


def per_key(records: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    by_key: dict[str, list[bytes]] = defaultdict(list)
    for key, data in records:
        by_key[key].append(data)
    return dict(by_key)


# ------------------------------------------------------------------------------------ packing


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "ü" * 40]), st.binary(max_size=3000)), max_size=60),
       st.integers(2_000, 20_000))  # fmt: skip
def test_packing_keeps_every_keys_records_in_order_one_key_per_record_within_the_limit(entries, limit):
    packed = KeyAggregator(max_record_bytes=limit).pack(entries)
    assert per_key(unpacked(packed)) == per_key(entries)
    for record in packed:
        assert record.user_records == 1 or record_size(record.partition_key, record.data) <= limit
        opened = open_aggregate(record.data)
        if isinstance(opened, Aggregate):
            assert {user_record.partition_key for user_record in opened} == {record.partition_key}


def test_aggregates_fill_up_to_exactly_the_1_mib_record_limit():
    data = b"x" * 1000
    packed = KeyAggregator().pack([("Shadowfax", data)] * 3000)
    sizes = [record_size(record.partition_key, record.data) for record in packed]
    per_full_aggregate = packed[0].user_records
    assert sizes[0] <= MAX_RECORD_BYTES < sizes[0] + record_entry_bytes(len(data))  # not one more would fit
    assert len(encode_aggregate([OutgoingUserRecord("Shadowfax", data)] * per_full_aggregate)) == len(packed[0].data)
    assert sum(record.user_records for record in packed) == 3000 and len(packed) == 3


def test_a_record_too_large_to_share_an_aggregate_is_put_plain_in_its_place():
    big = b"B" * (MAX_RECORD_BYTES - 10)
    packed = KeyAggregator().pack([("k", b"1"), ("k", b"2"), ("k", big), ("k", b"3"), ("j", b"alone")])
    assert [(record.partition_key, record.user_records) for record in packed] == [
        ("k", 2), ("k", 1), ("k", 1), ("j", 1)
    ]  # fmt: skip
    assert packed[1].data == big and packed[2].data == b"3" and packed[3].data == b"alone"  # lone records go plain


def test_chunks_for_aggregation_are_larger_than_one_request():
    chunks = list(producer.paced([("k", b"x")] * 25_000, 0, chunk_records=producer.AGGREGATED_CHUNK_RECORDS))
    assert [len(chunk) for chunk in chunks] == [10_000, 10_000, 5_000]


# ------------------------------------------------------------------------------------ produce and consume


def test_produce_aggregate_puts_few_records_and_consume_shows_every_user_record_in_order(stream, capsys):
    stream()
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "2000", "--rate", "0", "--unicorns", "5", "--aggregate"]
    assert producer.main("produce", argv) == 0
    err = capsys.readouterr().err
    assert "sent 5, retried 0, failed 0" in err  # Kinesis records
    assert "user records sent 2000, failed 0; Kinesis records put 5; PutRecords calls 1" in err

    lines, errors = consume(capsys, "--stream", "wildrydes")
    assert len(lines) == 2000 and not errors
    times: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        times[line["Name"]].append(line["StatusTime"])
    assert all(seen == sorted(seen) and len(seen) == 400 for seen in times.values())

    raw, _ = consume(capsys, "--stream", "wildrydes", "--raw")
    assert len(raw) == 5 and sum(line["kplUserRecords"] for line in raw) == 2000
    assert {line["partitionKey"] for line in raw} == {f"Unicorn-{n}" for n in range(1, 6)}
    assert all(line["bytes"] == len(base64.b64decode(line["data"])) for line in raw)


def test_a_key_with_more_than_a_record_holds_keeps_its_order_across_aggregates_and_requests(stream, capsys):
    stream(shards=1)
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "14000", "--rate", "0", "--name", "Shadowfax", "--aggregate"]
    assert producer.main("produce", argv) == 0
    summary = capsys.readouterr().err.splitlines()[-1]
    assert summary.startswith("user records sent 14000, failed 0; Kinesis records put ")
    put, calls = (int(part.split()[-1]) for part in summary.split(";")[1:])
    assert 2 <= put == calls < 10  # one record of a key per request
    lines, _ = consume(capsys, "--stream", "wildrydes")
    assert [line["StatusTime"] for line in lines] == sorted(line["StatusTime"] for line in lines)
    assert len(lines) == 14000


def test_poison_pills_inside_aggregates_are_reported_with_their_subsequence_number(stream, capsys):
    stream(shards=1)
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "40", "--rate", "0", "--name", "Shadowfax", "--error",
            "--aggregate"]
    assert producer.main("produce", argv) == 0
    capsys.readouterr()
    lines, errors = consume(capsys, "--stream", "wildrydes")
    assert len(lines) == 38 and sum("InputData" in line for line in lines) == 2
    assert [error["subsequenceNumber"] for error in errors] == [19, 39]
    assert all("not valid JSON" in error["error"] and error["partitionKey"] == "Shadowfax" for error in errors)


def test_a_corrupted_aggregate_is_shown_as_stored_and_why_it_was_not_opened(stream, capsys):
    stream(shards=1)
    data = encode_aggregate([OutgoingUserRecord("k", b"{}")] * 2)
    boto3.client("kinesis").put_record(StreamName="wildrydes", PartitionKey="k", Data=data[:-1] + b"\0")
    lines, errors = consume(capsys, "--stream", "wildrydes")
    assert lines == [] and "MD5 checksum does not match: handled as a plain record" in errors[0]["error"]
    raw, _ = consume(capsys, "--stream", "wildrydes", "--raw")
    assert "kplUserRecords" not in raw[0] and "MD5" in raw[0]["kplNote"]


class StopsOnSecondPut:
    def __init__(self, kinesis) -> None:
        self.kinesis = kinesis
        self.calls = 0

    def put_records(self, **request):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return self.kinesis.put_records(**request)


def test_an_aborted_aggregated_run_counts_the_user_records_it_did_not_send(stream, capsys, monkeypatch):
    stream(shards=1)
    kinesis = StopsOnSecondPut(boto3.client("kinesis"))
    monkeypatch.setattr(producer, "aws_client", lambda service, endpoint_url: kinesis)
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "1000", "--rate", "0", "--unicorns", "2", "--aggregate"]
    # One chunk: two aggregates of 500, one per key; a request holds both, so stop the first put instead.
    kinesis.calls = 1
    with pytest.raises(KeyboardInterrupt):  # after the counts; the `tributary` command turns it into exit 130
        producer.main("produce", argv)
    assert "user records sent 0, failed 1000; Kinesis records put 0; PutRecords calls 1" in capsys.readouterr().err
