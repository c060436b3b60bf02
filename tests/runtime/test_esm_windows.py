"""Tumbling windows: boundaries by arrival time, state between invocations, final invokes, early end."""

import base64
import json
import time

from esm_support import FakeClock, Recorder, arrivals_follow, create_stream, mapping, numbers_of, put_numbers

from tributary.runtime.esm import STATE_LIMIT_BYTES, drain
from tributary.runtime.esm.sources import ReadResult, ShardInfo, StreamRecord
from tributary.runtime.invocation import InvocationResult


def summing(event, numbers):
    if event["isFinalInvokeForWindow"]:
        return InvocationResult(response=None)
    return InvocationResult(response={"state": {"sum": event["state"].get("sum", 0) + sum(numbers)}})


def window_view(event):
    return (
        numbers_of(event),
        event["window"]["start"],
        event["window"]["end"],
        event["state"],
        event["isFinalInvokeForWindow"],
        event["isWindowTerminatedEarly"],
    )


def test_windows_group_by_arrival_and_end_with_a_final_invoke_carrying_the_state(aws, monkeypatch):
    clock = FakeClock()  # 2027-01-15T08:00:00Z
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2])
    clock.advance(30)
    put_numbers([3])
    clock.advance(40)  # 70 s: the next window
    put_numbers([4, 5])
    clock.advance(5)
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, clock=clock)

    while esm.poll():
        pass
    assert not esm.is_drained()  # the second window is still open
    clock.advance(60)
    while esm.poll():
        pass

    assert [window_view(event) for event in function.events] == [
        ([1, 2, 3], "2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z", {}, False, False),
        ([], "2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z", {"sum": 6}, True, False),
        ([4, 5], "2027-01-15T08:01:00Z", "2027-01-15T08:02:00Z", {}, False, False),
        ([], "2027-01-15T08:01:00Z", "2027-01-15T08:02:00Z", {"sum": 9}, True, False),
    ]
    assert all(event["shardId"] == "shardId-000000000000" for event in function.events)
    assert all(event["eventSourceARN"] == stream for event in function.events)
    assert esm.is_drained()
    assert esm.stats.windows_closed == 2


def test_state_passes_between_batches_of_one_window(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2, 3, 4, 5])
    clock.advance(61)
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, batch_size=2, clock=clock)

    while esm.poll():
        pass

    assert [(numbers_of(e), e["state"], e["isFinalInvokeForWindow"]) for e in function.events] == [
        ([1, 2], {}, False),
        ([3, 4], {"sum": 3}, False),
        ([5], {"sum": 10}, False),
        ([], {"sum": 15}, True),
    ]


def test_state_over_one_megabyte_ends_the_window_early_and_it_continues_fresh(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2, 3, 4])
    clock.advance(61)

    def bloating(event, numbers):
        if event["isFinalInvokeForWindow"]:
            return InvocationResult(response=None)
        state = {"seen": event["state"].get("seen", []) + numbers}
        if 2 in numbers:
            state["padding"] = "x" * STATE_LIMIT_BYTES
        return InvocationResult(response={"state": state})

    function = Recorder(bloating)
    esm = mapping(stream, function, tumbling_window_s=60, batch_size=2, clock=clock)

    while esm.poll():
        pass

    views = [(numbers_of(e), e["state"].get("seen"), e["isFinalInvokeForWindow"], e["isWindowTerminatedEarly"],
              e["window"]["start"]) for e in function.events]
    start = "2027-01-15T08:00:00Z"
    assert views == [
        ([1, 2], None, False, False, start),
        ([], [1, 2], True, True, start),
        ([3, 4], None, False, False, start),
        ([], [3, 4], True, False, start),
    ]


def test_a_response_without_state_is_a_function_error(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1])
    function = Recorder(lambda event, numbers: InvocationResult(response={"count": 1}))
    esm = mapping(stream, function, tumbling_window_s=60, maximum_retry_attempts=1, clock=clock)

    esm.poll()
    esm.poll()

    assert function.batches == [[1], [1]]
    assert esm.stats.function_errors == 2
    assert esm.stats.records_discarded == 1


def test_a_failed_final_invoke_is_retried_until_it_succeeds(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1])
    clock.advance(61)
    finals = iter([InvocationResult(function_error="Unhandled"), InvocationResult(response=None)])

    def flaky_final(event, numbers):
        return next(finals) if event["isFinalInvokeForWindow"] else summing(event, numbers)

    function = Recorder(flaky_final)
    esm = mapping(stream, function, tumbling_window_s=60, maximum_retry_attempts=0, clock=clock)

    while esm.poll():
        pass

    assert [(numbers_of(e), e["isFinalInvokeForWindow"]) for e in function.events] == [
        ([1], False), ([], True), ([], True),
    ]
    assert esm.is_drained()


def test_a_shard_read_to_its_tip_keeps_its_window_open_until_the_clock_passes_the_end(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2])
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, clock=clock)

    for _ in range(5):
        esm.poll()

    assert [e["isFinalInvokeForWindow"] for e in function.events] == [False]  # open shard: more may come
    assert not esm.is_drained()


class ReshardedSource:
    """A Kinesis source whose one shard is split after records 1 and 2: record 3 is on the child.

    moto cannot show this: after SplitShard it keeps writing to the closed parent.
    """

    batch_info_key = "KinesisBatchInfo"
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/events"

    def __init__(self, arrival: float) -> None:
        self.records = {"parent": [_record(1, arrival), _record(2, arrival)], "child": [_record(3, arrival)]}
        self.split = False

    def shards(self) -> list[ShardInfo]:
        if not self.split:
            return [ShardInfo("parent", ())]
        return [ShardInfo("parent", (), ending_sequence="2"), ShardInfo("child", ("parent",))]

    def iterator(self, shard_id, position, timestamp, after_sequence=None) -> str:
        return f"{shard_id}:0"

    def read(self, shard_id, iterator, limit) -> ReadResult:
        offset = int(iterator.split(":")[1])
        records = self.records[shard_id][offset:offset + limit]
        return ReadResult(records, f"{shard_id}:{offset + len(records)}", 0)

    def format_arrival(self, epoch_seconds: float) -> str:
        return str(epoch_seconds)


def _record(n: int, arrival: float) -> StreamRecord:
    data = base64.b64encode(json.dumps({"n": n}).encode()).decode()
    event_record = {"kinesis": {"sequenceNumber": str(n), "data": data, "partitionKey": "k"}}
    return StreamRecord(str(n), arrival, "k", event_record, {"data": {"n": n}}, 100)


def test_when_the_shard_ends_its_window_closes_at_once_and_the_children_start_fresh(aws):
    # AWS: "When the shard ends, Lambda considers the window closed, and the child shards start their
    # own window in a fresh state."
    clock = FakeClock()
    source = ReshardedSource(arrival=clock.now + 1)
    function = Recorder(summing)
    esm = mapping("arn:aws:kinesis:us-east-1:123456789012:stream/events", function, tumbling_window_s=60,
                  clock=clock)
    esm.source = source
    esm.poll()
    source.split = True

    for _ in range(5):  # the clock stands still: only the end of the shard can close the window
        esm.poll()

    assert [(e["shardId"], numbers_of(e), e["state"], e["isFinalInvokeForWindow"]) for e in function.events] == [
        ("parent", [1, 2], {}, False),
        ("parent", [], {"sum": 3}, True),
        ("child", [3], {}, False),
    ]


def test_draining_announces_once_each_window_it_waits_for(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1])
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, clock=clock)
    heard = []

    drain([esm], timeout_s=20, sleep=lambda _: clock.advance(5), notify=heard.append)

    end = time.strftime("%H:%M:%S", time.localtime(clock.now - clock.now % 60))
    assert heard == [f"waiting for window 2027-01-15T08:00:00Z..2027-01-15T08:01:00Z of under-test on "
                     f"shardId-000000000000 to end at {end}"]
    assert [e["isFinalInvokeForWindow"] for e in function.events] == [False, True]
