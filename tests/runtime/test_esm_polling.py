"""Reading the stream: starting positions, batch size, batching window, 6 MB, parallelization, DynamoDB."""

import base64
import hashlib
import json
import re
import threading

import boto3
import pytest
from esm_support import (
    FUNCTION_ARN,
    FakeClock,
    Recorder,
    arrivals_follow,
    create_queue,
    create_stream,
    mapping,
    put_numbers,
    queue_messages,
    run_until_drained,
)

from tributary.runtime.esm import PAYLOAD_LIMIT_BYTES, EventSourceMapping, MappingConfig
from tributary.runtime.invocation import InvocationResult


def test_latest_reads_only_what_arrives_after_the_mapping_starts(aws):
    stream = create_stream()
    put_numbers([1, 2, 3])
    function = Recorder()
    esm = mapping(stream, function, starting_position="LATEST")
    esm.start()
    put_numbers([4, 5])

    run_until_drained(esm)

    assert function.batches == [[4, 5]]


def test_trim_horizon_reads_from_the_oldest_record(aws):
    stream = create_stream()
    put_numbers([1, 2, 3])
    function = Recorder()
    esm = mapping(stream, function, starting_position="TRIM_HORIZON")
    esm.start()
    put_numbers([4, 5])

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3, 4, 5]]


def test_at_timestamp_reads_from_the_first_record_at_or_after_it(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2, 3])
    clock.advance(10)
    put_numbers([4, 5])
    function = Recorder()
    esm = mapping(stream, function, starting_position="AT_TIMESTAMP",
                  starting_position_timestamp=clock.now - 5, clock=clock)

    run_until_drained(esm)

    assert function.batches == [[4, 5]]


def test_batch_size_caps_every_batch(aws):
    stream = create_stream()
    put_numbers(range(1, 8))
    function = Recorder()

    run_until_drained(mapping(stream, function, batch_size=3))

    assert function.batches == [[1, 2, 3], [4, 5, 6], [7]]


def test_the_batching_window_waits_for_a_full_batch_or_the_window_end(aws):
    stream = create_stream()
    clock = FakeClock()
    function = Recorder()
    esm = mapping(stream, function, batch_size=3, maximum_batching_window_s=10, clock=clock)
    put_numbers([1, 2, 3, 4])

    esm.poll()
    assert function.batches == [[1, 2, 3]]  # full: no waiting
    clock.advance(9)
    esm.poll()
    assert function.batches == [[1, 2, 3]]  # record 4 waits for the window
    clock.advance(1)
    esm.poll()
    assert function.batches == [[1, 2, 3], [4]]


def test_an_event_never_passes_six_megabytes(aws):
    stream = create_stream()
    kinesis = boto3.client("kinesis")
    for n in range(8):
        kinesis.put_record(StreamName="events", Data=bytes([n]) * 700_000, PartitionKey="k")
    events = []

    def measure(event):
        events.append(len(json.dumps(event)))
        return InvocationResult()

    esm = mapping(stream, measure, batch_size=100)
    run_until_drained(esm)

    assert len(events) == 2
    assert all(size <= PAYLOAD_LIMIT_BYTES for size in events)
    assert esm.stats.records_succeeded == 8


def lane_of(key: str, factor: int) -> int:
    return int.from_bytes(hashlib.md5(key.encode()).digest(), "big") % factor


def test_parallelization_keeps_order_per_partition_key_and_runs_lanes_concurrently(aws):
    stream = create_stream()
    keys = ["unicorn-a", "unicorn-b", "unicorn-c", "unicorn-d", "unicorn-e", "unicorn-f"]
    kinesis = boto3.client("kinesis")
    for n in range(30):
        key = keys[n % len(keys)]
        kinesis.put_record(StreamName="events", Data=json.dumps({"n": n, "key": key}).encode(), PartitionKey=key)
    lanes_in_use = {lane_of(key, 3) for key in keys}
    first_calls = threading.Barrier(len(lanes_in_use), timeout=10)
    lock = threading.Lock()
    batches: list[list[tuple[str, int]]] = []
    seen_threads: set[int] = set()

    def invoke(event):
        batch = [(r["kinesis"]["partitionKey"], json.loads(base64.b64decode(r["kinesis"]["data"]))["n"])
                 for r in event["Records"]]
        with lock:
            batches.append(batch)
            first = threading.get_ident() not in seen_threads and len(seen_threads) < len(lanes_in_use)
            seen_threads.add(threading.get_ident())
        if first:
            first_calls.wait()  # only passes if every lane's first batch is in flight at the same time
        return InvocationResult()

    esm = mapping(stream, invoke, batch_size=2, parallelization_factor=3)
    run_until_drained(esm)
    esm.close()

    assert len(lanes_in_use) > 1
    assert sum(len(batch) for batch in batches) == 30
    for batch in batches:
        assert len({lane_of(key, 3) for key, _ in batch}) == 1
    for key in keys:
        seen = [n for batch in batches for record_key, n in batch if record_key == key]
        assert seen == sorted(seen)
        assert len(seen) == 5


def test_a_disabled_mapping_reads_nothing(aws):
    stream = create_stream()
    put_numbers([1])
    function = Recorder()
    esm = mapping(stream, function, enabled=False)

    run_until_drained(esm)

    assert function.batches == []
    assert esm.is_drained()


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_size": 0},
        {"maximum_record_age_s": 30},
        {"parallelization_factor": 11},
        {"starting_position": "AT_TIMESTAMP"},
        {"filter_patterns": ({},) * 6},
    ],
)
def test_settings_out_of_aws_ranges_are_refused(settings):
    with pytest.raises(ValueError):
        MappingConfig("f", FUNCTION_ARN, "arn:aws:kinesis:us-east-1:123456789012:stream/s", **settings)


def test_dynamodb_stream_sources_get_lambdas_dynamodb_event(aws):
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.create_table(
        TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    stream_arn = table["LatestStreamArn"]
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "o-1"}, "amount": {"N": "12.5"}})
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "o-2"}, "amount": {"N": "3"}})
    events = []
    config = MappingConfig("f", FUNCTION_ARN, stream_arn, starting_position="TRIM_HORIZON",
                           filter_patterns=({"dynamodb": {"NewImage": {"amount": {"N": [{"prefix": "12"}]}}}},))
    esm = EventSourceMapping(config, lambda event: events.append(event) or InvocationResult())

    run_until_drained(esm)

    [event] = events
    [record] = event["Records"]
    assert record["eventName"] == "INSERT"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == stream_arn
    assert record["dynamodb"]["Keys"] == {"id": {"S": "o-1"}}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    assert esm.stats.records_filtered_out == 1


def test_dynamodb_discards_are_described_by_ddb_stream_batch_info(aws):
    dynamodb = boto3.client("dynamodb")
    stream_arn = dynamodb.create_table(
        TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "o-1"}})
    queue = create_queue()
    config = MappingConfig("f", FUNCTION_ARN, stream_arn, starting_position="TRIM_HORIZON",
                           maximum_retry_attempts=0, on_failure_destination_arn=queue)
    esm = EventSourceMapping(config, lambda event: InvocationResult(function_error="Unhandled"))

    run_until_drained(esm)

    [record] = queue_messages("failed-records")
    info = record["DDBStreamBatchInfo"]
    assert info["streamArn"] == stream_arn
    assert info["batchSize"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["approximateArrivalOfFirstRecord"])


class CountingReads:
    """Wraps a mapping's source to count GetRecords calls."""

    def __init__(self, esm) -> None:
        self.calls = 0
        self._read = esm.source.read
        esm.source.read = self

    def __call__(self, *arguments):
        self.calls += 1
        return self._read(*arguments)


def test_an_idle_shard_is_read_again_only_after_the_idle_interval(aws):
    clock = FakeClock()
    stream = create_stream()
    esm = mapping(stream, Recorder(), clock=clock, idle_read_interval_s=1.0)
    reads = CountingReads(esm)

    for _ in range(10):
        esm.poll()
    assert reads.calls == 1  # one empty read, then the shard backs off
    clock.advance(1.0)
    esm.poll()
    assert reads.calls == 2


def test_draining_still_sees_records_put_while_a_shard_backs_off(aws):
    clock = FakeClock()
    stream = create_stream()
    function = Recorder()
    esm = mapping(stream, function, clock=clock, idle_read_interval_s=1.0)
    esm.poll()  # empty: the shard backs off, and the clock never moves
    put_numbers([1, 2])

    run_until_drained(esm)

    assert function.batches == [[1, 2]]


def test_a_record_alone_over_the_payload_limit_still_makes_a_batch_of_one(aws, monkeypatch):
    stream = create_stream()
    put_numbers([1, 2])
    monkeypatch.setattr("tributary.runtime.esm.lanes.PAYLOAD_LIMIT_BYTES", 10)
    function = Recorder()
    esm = mapping(stream, function)

    run_until_drained(esm)

    assert function.batches == [[1], [2]]
