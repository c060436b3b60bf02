"""The aggregator on KPL aggregated records: each reading folded once, whatever the retries of its
aggregate, marks inside an aggregate kept in the state, and states written before still read."""

import hashlib
import json
import math

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FakeLambdaContext, kinesis_event, load_handler_module

from tributary.fleet_queries import fleet_minutes
from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate
from tributary_shared.aggregator import window_handler
from tributary_shared.aggregator.aggregator import record_invocation
from tributary_shared.aggregator.readings import format_status_time
from tributary_shared.aggregator.window_state import STATE_VERSION, UnreadableState, WindowState, read_state
from tributary_shared.errors import TransientError
from tributary_shared.kinesis_aggregation import AGGREGATE_MAGIC, aggregated_record_type
from tributary_shared.kinesis_batch import MAX_SUBSEQUENCE, record_version
from tributary_shared.payloads import decode_payload

TABLE = "UnicornAggregation"
SUMMARY_STREAM = "wildrydes-summary"
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/wildrydes"
WINDOW = {"start": "2026-11-21T12:00:00Z", "end": "2026-11-21T12:01:00Z"}
BASE_MS = 1_795_262_400_000
FIRST = 49656834216710451283762412935735891405936473474393636866
POISON = b'{"Name": "Shadowfax", "InputData": "error: poison pill"}'
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

app = load_handler_module("aggregator", TABLE_NAME=TABLE, SUMMARY_STREAM_NAME=SUMMARY_STREAM)


@pytest.fixture
def fleet(aws):
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("name", "windowStart")],
        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}, {"AttributeName": "windowStart", "KeyType": "RANGE"}],
    )
    boto3.client("kinesis").create_stream(StreamName=SUMMARY_STREAM, ShardCount=1)


def reading(name: str, offset_ms: int, distance: float = 1.0) -> bytes:
    status_time = format_status_time(BASE_MS + offset_ms)
    document = {"Name": name, "StatusTime": status_time, "Distance": distance, "MagicPoints": 100, "HealthPoints": 150}
    return json.dumps(document).encode()


def aggregate(*datas: bytes, key: str = "Shadowfax") -> bytes:
    return encode_aggregate([OutgoingUserRecord(key, data) for data in datas])


def records(*datas: bytes, first: int = FIRST) -> list[dict]:
    return kinesis_event([("p", data) for data in datas], first_sequence=first, stream_arn=ARN,
                         arrival_timestamp=BASE_MS / 1000)["Records"]  # fmt: skip


def invoke(batch: list[dict], state: dict, *, final: bool = False) -> dict:
    event = {"Records": batch, "window": WINDOW, "state": state, "shardId": "shardId-000000000000",
             "eventSourceARN": ARN, "isFinalInvokeForWindow": final, "isWindowTerminatedEarly": False}  # fmt: skip
    return app.lambda_handler(json.loads(json.dumps(event)), FakeLambdaContext("Aggregator"))


def counts() -> dict[str, tuple[int, float]]:
    return {row.name: (row.figures.count, float(row.figures.distance)) for row in fleet_minutes(TABLE)}


def test_a_poison_reading_inside_an_aggregate_is_counted_once_and_no_reading_twice(fleet):
    packed = aggregate(reading("Shadowfax", 1), reading("Rocinante", 2), POISON, reading("Shadowfax", 3, 2.5))
    batch = records(reading("Bucephalus", 0), packed, reading("Bucephalus", 4))
    response = invoke(batch, {})
    parent = str(FIRST + 1)
    assert response["batchItemFailures"] == [{"itemIdentifier": parent}]
    state = response["state"]
    assert (state["last"], state["poison"], state["poisonSub"]) == (str(FIRST + 2), [1, parent], 2)
    assert "lastSub" not in state  # the last record folded was plain

    # The mapping retries from the aggregate with the state of the successful invocation, twice.
    for _ in range(2):
        retried = invoke(batch[1:], state)
        assert retried["batchItemFailures"] == [{"itemIdentifier": parent}]
        assert retried["state"] == state
    invoke([], state, final=True)
    assert counts() == {"Bucephalus": (2, 2.0), "Rocinante": (1, 1.0), "Shadowfax": (2, 3.5)}


def test_a_mark_inside_an_aggregate_skips_only_the_user_records_already_folded(fleet):
    packed = aggregate(*[reading("Shadowfax", n) for n in range(4)], b'{"Name": "Shadowfax", "registry": "down"}')
    decode_fails_on_marker = transient_on(b"registry")
    report = window_handler.handle_window_event(
        {"Records": records(packed), "window": WINDOW, "state": {}, "shardId": "s"},
        sink=None, deadline=math.inf, decode=decode_fails_on_marker,
    )  # fmt: skip
    state = report.response["state"]
    assert (state["first"], state["firstSub"], state["last"], state["lastSub"]) == (str(FIRST), 0, str(FIRST), 3)
    assert report.fold.not_reached == 0 and report.fold.transient_sequence == f"{FIRST}:4"
    restored = WindowState.from_json(state)
    assert restored.already_folded(FIRST, 3) and not restored.already_folded(FIRST, 4)
    assert restored.version == record_version(str(FIRST), 3) and restored.segment == f"{FIRST}:0"


def transient_on(marker: bytes):
    def decode(data: bytes) -> dict:
        if marker in data:
            raise TransientError("schema registry unavailable")
        return decode_payload(data)

    return decode


def test_segments_that_start_inside_an_aggregate_have_keys_of_their_own(fleet, monkeypatch):
    """A segment stored while a retry resumes inside an aggregate: the next one starts at a subsequence."""
    monkeypatch.setattr(window_handler, "SEGMENT_FLUSH_BYTES", 150)
    outage = [True]

    def decode(data: bytes) -> dict:
        if b"Late" in data and outage[0]:
            raise TransientError("schema registry unavailable")
        return decode_payload(data)

    app.aggregator.decode = decode
    try:
        packed = aggregate(reading("Shadowfax", 1), reading("Rocinante", 2), reading("Late", 3), reading("Late", 4))
        batch = records(packed)
        state = invoke(batch, {})["state"]  # folds two user records, then the outage
        outage[0] = False
        state = invoke(batch, state)["state"]  # the state passed 150 bytes: stored, then the rest folded
        invoke([], state, final=True)
    finally:
        app.aggregator.decode = decode_payload
    segments = {item["segment"]["S"] for item in boto3.client("dynamodb").scan(TableName=TABLE)["Items"]}
    assert segments == {f"{FIRST}:0", f"{FIRST}:2"}
    assert counts() == {"Late": (2, 2.0), "Rocinante": (1, 1.0), "Shadowfax": (1, 1.0)}


def test_metrics_count_user_records_and_aggregates_apart():
    class Metrics:
        def __init__(self):
            self.values = {}

        def add_metric(self, name, unit, value):
            self.values[name] = value

    report = window_handler.handle_window_event(
        {"Records": records(aggregate(reading("A", 1), reading("B", 2), POISON), reading("C", 3)), "window": WINDOW,
         "state": {}, "shardId": "s"},
        sink=None, deadline=math.inf,
    )  # fmt: skip
    metrics = Metrics()
    record_invocation(report, None, metrics)
    assert {name: metrics.values[name] for name in ("RecordsIn", "AggregatedRecordsIn", "RecordsFolded",
                                                    "PoisonRecords")} == {
        "RecordsIn": 4, "AggregatedRecordsIn": 1, "RecordsFolded": 3, "PoisonRecords": 1
    }  # fmt: skip


# ------------------------------------------------------------------------------------ the state


def test_a_state_written_before_aggregates_were_opened_reads_as_before_and_covers_whole_records():
    old = {"v": STATE_VERSION, "first": "100", "last": "104", "poison": [1, "103"], "u": {}, "x": []}
    state = WindowState.from_json(old)
    assert state.to_json() == old  # plain records only: the layout is unchanged
    assert state.already_folded(104, 7) and state.already_folded(104) and not state.already_folded(105, 0)
    assert not state.count_poison(103, 5) and state.count_poison(104, 0)


def test_marks_inside_aggregates_round_trip_through_the_state():
    state = WindowState(first_sequence=5, first_subsequence=2, last_sequence=7, last_subsequence=0,
                        last_poison_sequence=7, last_poison_subsequence=1, poison_count=1)  # fmt: skip
    json_form = state.to_json()
    assert (json_form["firstSub"], json_form["lastSub"], json_form["poisonSub"]) == (2, 0, 1)
    assert WindowState.from_json(json_form) == state
    carried = state.next_segment()
    assert (carried.last_sequence, carried.last_subsequence, carried.last_poison_subsequence) == (7, 0, 1)
    assert carried.already_folded(7, 0) and not carried.already_folded(7, 1)
    assert carried.segment is None and state.segment == "5:2" and state.high_water_mark == "7:0"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"lastSub": -1}, "lastSub must be a subsequence number"),
        ({"lastSub": MAX_SUBSEQUENCE + 1}, "lastSub must be a subsequence number"),
        ({"firstSub": "3"}, "firstSub must be a subsequence number"),
        ({"first": "9", "last": "9", "firstSub": 4, "lastSub": 2}, "first record 9:4 is above its last 9:2"),
        ({"first": None, "firstSub": 1}, "firstSub without the sequence number"),
    ],
)
def test_a_state_with_unusable_subsequence_marks_is_set_aside_keeping_what_it_can(extra, problem):
    raw = {"v": STATE_VERSION, "first": "5", "last": "9", "poison": [0, None], "u": {}, **extra}
    unreadable = read_state(raw)
    assert isinstance(unreadable, UnreadableState) and problem in unreadable.reason
    assert unreadable.fresh.last_sequence == 9


@given(st.lists(st.integers(0, 4), min_size=1, max_size=8), st.data())
def test_whatever_the_mapping_delivers_again_each_reading_is_folded_once(sizes, data):
    """Kinesis records (0: plain, n: an aggregate of n readings), delivered in batches that each start
    at or before where the last one ended (a retry from a reported aggregate, a bisected half)."""
    entries = [
        ("p", reading("U", index) if size == 0 else aggregate(*[reading("U", index * 10 + n) for n in range(size)]))
        for index, size in enumerate(sizes)
    ]
    stream = kinesis_event(entries, first_sequence=FIRST)["Records"]
    readings = sum(max(size, 1) for size in sizes)
    state, folded, end = WindowState(), 0, 0
    while end < len(stream):
        start = data.draw(st.integers(0, end), label="delivery starts at")
        end = data.draw(st.integers(end + 1, len(stream)), label="and ends before")
        folded += window_handler.fold_batch(state, stream[start:end]).folded
        state = WindowState.from_json(json.loads(json.dumps(state.to_json())))  # as Lambda passes it on
    assert folded == readings == state.unicorns["U"].count


def test_a_large_aggregate_folds_in_one_invocation(fleet):
    packed = aggregate(*[reading(f"U{n % 50}", n) for n in range(2000)])
    response = invoke(records(packed), {})
    assert response["batchItemFailures"] == [] and len(response["state"]["u"]) == 50
    assert response["state"]["lastSub"] == 1999
    invoke([], response["state"], final=True)
    assert sum(count for count, _ in counts().values()) == 2000


# ------------------------------------------------------------------------------------ hostile aggregates


def framed(body: bytes) -> bytes:
    return AGGREGATE_MAGIC + body + hashlib.md5(body).digest()


def varint(value: int) -> bytes:
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(encoded + bytes([value]))


def hostile_body(draw_records: list[tuple[int, bytes]], keys: int) -> bytes:
    message = aggregated_record_type()()
    message.partition_key_table.extend(f"k{n}" for n in range(keys))
    for key_index, data in draw_records:
        message.records.add(partition_key_index=key_index, data=data)
    return message.SerializeToString()


user_data = st.one_of(
    st.integers(0, 10_000).map(lambda offset: reading("Fuzz", offset)),
    st.just(POISON),
    st.binary(max_size=30),
)
hostile_records = st.one_of(
    user_data.map(lambda data: [data]),  # plain
    st.tuples(st.lists(st.tuples(st.integers(0, 3), user_data), min_size=1, max_size=6), st.integers(0, 3)).map(
        lambda drawn: framed(hostile_body(*drawn))
    ),
    st.binary(max_size=40).map(framed),  # garbage after the magic bytes, with a valid checksum
    st.integers(10, 2**63).map(lambda huge: framed(b"\x1a" + varint(huge) + b"\x08\x00")),  # a length past the end
    st.integers(100, 300).map(lambda depth: framed(b"\x23" * depth + b"\x24" * depth)),  # groups nested deep
)


@given(st.lists(hostile_records, max_size=10))
def test_hostile_aggregates_fail_their_own_user_records_and_every_good_reading_is_folded_once(entries):
    datas = [entry[0] if isinstance(entry, list) else entry for entry in entries]
    batch = records(*datas) if datas else []
    event = {"Records": batch, "window": WINDOW, "state": {}, "shardId": "s"}
    first = window_handler.handle_window_event(event, sink=None, deadline=math.inf)
    fold = first.fold
    assert fold.folded + len(fold.poison) + fold.not_reached == fold.records_in
    again = window_handler.handle_window_event(
        {**event, "state": first.response["state"]}, sink=None, deadline=math.inf
    )  # the mapping retries the batch from its first failure: nothing is folded twice
    assert again.fold.folded == 0 and again.fold.new_poison == 0
    assert again.response["state"] == first.response["state"]
