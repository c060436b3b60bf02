"""Aggregator handler against moto: sample events, retries, early termination, poison records, summaries."""

import base64
import importlib.util
import io
import json
import random
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from tributary.demos.fleet_analytics import PIPELINE as FLEET_ANALYTICS
from tributary.fleet_queries import fleet_minutes, format_fleet_table, unicorn_minute
from tributary_shared.aggregation_sink import AggregationSink, WindowKey, summary_id
from tributary_shared.errors import TransientError
from tributary_shared.kinesis_put import put_records
from tributary_shared.payloads import decode_payload
from tributary_shared.window_aggregates import WindowState, format_status_time, parse_reading

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
TABLE = "UnicornAggregation"
SUMMARY_STREAM = "wildrydes-summary"
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/wildrydes"
WINDOW = {"start": "2026-11-21T12:00:00Z", "end": "2026-11-21T12:01:00Z"}
BASE_MS = 1_795_262_400_000
FIRST_SEQUENCE = 49656834216710451283762412935735891405936473474393636866
# A malformed event fails before any metric is added; powertools warns about the empty flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def load_handler():
    spec = importlib.util.spec_from_file_location("aggregator_app", ROOT / "functions" / "aggregator" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_handler()


class FakeContext:
    function_name = "Aggregator"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:Aggregator"
    aws_request_id = "7f1c0a52-5b0e-4a39-9f57-0d6f3f0b8a11"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def fleet(aws, monkeypatch):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "name", "AttributeType": "S"},
            {"AttributeName": "windowStart", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "name", "KeyType": "HASH"},
            {"AttributeName": "windowStart", "KeyType": "RANGE"},
        ],
    )
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=SUMMARY_STREAM, ShardCount=1)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("SUMMARY_STREAM_NAME", SUMMARY_STREAM)
    return dynamodb, kinesis


def invoke(event):
    return app.lambda_handler(json.loads(json.dumps(event)), FakeContext())


def summaries(kinesis):
    shard = kinesis.list_shards(StreamName=SUMMARY_STREAM)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=SUMMARY_STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=10_000)["Records"]
    return [decode_payload(record["Data"]) for record in records]


def reading(name, offset_ms, distance, magic, health):
    return {
        "Name": name,
        "StatusTime": format_status_time(BASE_MS + offset_ms),
        "Distance": distance,
        "MagicPoints": magic,
        "HealthPoints": health,
    }


def record(sequence, data: bytes | dict, shard="shardId-000000000000"):
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "p",
            "sequenceNumber": str(sequence),
            "data": base64.b64encode(raw).decode(),
            "approximateArrivalTimestamp": BASE_MS / 1000,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "us-east-1",
        "eventSourceARN": ARN,
    }


def window_event(records, state, *, final=False, early=False, shard="shardId-000000000000"):
    return {
        "Records": records,
        "window": WINDOW,
        "state": state,
        "shardId": shard,
        "eventSourceARN": ARN,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": early,
    }


def test_sample_events_chain_into_each_other_and_the_final_one_stores_the_window(fleet):
    dynamodb, kinesis = fleet
    first, middle, final = (
        json.loads((EVENTS / f"tumbling-window-{n}.json").read_text()) for n in ("first", "middle", "final")
    )

    after_first = invoke(first)
    assert after_first == {"state": middle["state"], "batchItemFailures": []}
    after_middle = invoke(middle)
    assert after_middle == {"state": final["state"], "batchItemFailures": []}
    assert invoke(final) == {"state": {}, "batchItemFailures": []}

    shadowfax = unicorn_minute(TABLE, "Shadowfax", "2026-11-21T12:00:00Z", client=dynamodb)
    assert shadowfax is not None
    assert (shadowfax.figures.count, shadowfax.figures.distance) == (3, Decimal("24.22"))
    assert (shadowfax.figures.min_magic_points, shadowfax.figures.max_magic_points) == (138, 143)
    assert (shadowfax.figures.min_health_points, shadowfax.figures.max_health_points) == (149, 152)
    assert format_status_time(shadowfax.figures.last_status_ms) == "2026-11-21 12:00:59.999"
    assert not shadowfax.partial

    by_name = {summary["Name"]: summary for summary in summaries(kinesis)}
    assert set(by_name) == {"Shadowfax", "Bucephalus"}
    assert by_name["Bucephalus"] == {
        "Name": "Bucephalus",
        "StatusTime": "2026-11-21 12:00:00.000",
        "Distance": Decimal("18.45"),
        "MinMagicPoints": 122,
        "MaxMagicPoints": 125,
        "MinHealthPoints": 168,
        "MaxHealthPoints": 171,
        "SummaryId": by_name["Bucephalus"]["SummaryId"],
        "Partial": False,
    }


def test_retried_final_invocation_neither_double_counts_nor_duplicates(fleet):
    dynamodb, kinesis = fleet
    final = json.loads((EVENTS / "tumbling-window-final.json").read_text())
    invoke(final)
    invoke(final)  # Lambda retries a final invocation with the same state, e.g. after a timeout

    items = dynamodb.scan(TableName=TABLE)["Items"]
    assert len(items) == 2
    rows = {row.name: row for row in fleet_minutes(TABLE, client=dynamodb)}
    assert rows["Shadowfax"].figures.count == 3
    sent = summaries(kinesis)
    assert len(sent) == 4  # at-least-once on the stream...
    assert len({summary["SummaryId"] for summary in sent}) == 2  # ...with an id to drop repeats by


def test_window_ended_early_is_stored_as_partial_and_its_continuation_adds_up(fleet):
    dynamodb, kinesis = fleet
    early_part = [record(FIRST_SEQUENCE + i, reading("Shadowfax", i, 1.5, 100 + i, 200 - i)) for i in range(3)]
    state = invoke(window_event(early_part, {}))["state"]
    assert invoke(window_event([], state, final=True, early=True)) == {"state": {}, "batchItemFailures": []}
    # Lambda continues the same window with a fresh state.
    rest = [record(FIRST_SEQUENCE + 10 + i, reading("Shadowfax", 30_000 + i, 2.25, 90, 210)) for i in range(2)]
    state = invoke(window_event(rest, {}))["state"]
    invoke(window_event([], state, final=True))

    items = dynamodb.scan(TableName=TABLE)["Items"]
    assert sorted(item["partial"]["BOOL"] for item in items) == [False, True]
    combined = unicorn_minute(TABLE, "Shadowfax", WINDOW["start"], client=dynamodb)
    assert combined.parts == 2 and combined.partial
    assert combined.figures.count == 5
    assert combined.figures.distance == Decimal("9.0")
    assert (combined.figures.min_magic_points, combined.figures.max_health_points) == (90, 210)
    partial_flags = sorted(summary["Partial"] for summary in summaries(kinesis))
    assert partial_flags == [False, True]


def test_poison_records_are_reported_counted_once_and_never_folded(fleet):
    dynamodb, _ = fleet
    good = [record(FIRST_SEQUENCE + i, reading("Bucephalus", i, 1, 100, 100)) for i in range(4)]
    poison = [
        record(FIRST_SEQUENCE + 100, b"{not json"),
        record(FIRST_SEQUENCE + 200, {"Name": "Bucephalus", "Distance": "far", "MagicPoints": 1}),
    ]
    batch = [good[0], good[1], poison[0], good[2], poison[1], good[3]]
    batch[3]["kinesis"]["sequenceNumber"] = str(FIRST_SEQUENCE + 150)  # keep the batch in sequence order
    batch[5]["kinesis"]["sequenceNumber"] = str(FIRST_SEQUENCE + 250)

    response = invoke(window_event(batch, {}))
    assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE + 100)}]
    state = WindowState.from_json(response["state"])
    assert state.unicorns["Bucephalus"].count == 2
    assert state.poison_count == 1

    # The mapping re-delivers from the reported record; bisect then isolates it until it is sent to
    # the on-failure destination. Each re-delivery reports it again and counts it once.
    for attempt in (batch[2:], batch[2:3], batch[2:3]):
        response = invoke(window_event(attempt, response["state"]))
        assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE + 100)}]
    assert WindowState.from_json(response["state"]).poison_count == 1
    # Past it, the second poison record stops the batch the same way.
    response = invoke(window_event(batch[3:], response["state"]))
    assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE + 200)}]
    response = invoke(window_event(batch[5:], response["state"]))
    assert response["batchItemFailures"] == []
    state = WindowState.from_json(response["state"])
    assert (state.poison_count, state.unicorns["Bucephalus"].count) == (2, 4)

    invoke(window_event([], response["state"], final=True))
    row = unicorn_minute(TABLE, "Bucephalus", WINDOW["start"], client=dynamodb)
    assert (row.figures.count, row.figures.distance) == (4, 4)


def test_a_registry_outage_is_reported_for_retry_but_not_counted_as_poison(fleet, monkeypatch):
    def registry_down(data):
        raise TransientError("schema registry unavailable: throttled")

    monkeypatch.setattr("tributary_shared.payloads._framed_decoder", registry_down)
    batch = [
        record(FIRST_SEQUENCE, reading("Pegasus", 0, 3, 4, 5)),
        record(FIRST_SEQUENCE + 1, b"\x03\x00" + bytes(16) + b"avro body"),
        record(FIRST_SEQUENCE + 2, reading("Pegasus", 1, 3, 4, 5)),
    ]
    response = invoke(window_event(batch, {}))
    assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE + 1)}]
    state = WindowState.from_json(response["state"])
    assert (state.poison_count, state.unicorns["Pegasus"].count) == (0, 1)


def test_a_window_of_only_poison_records_closes_without_writing_anything(fleet):
    dynamodb, kinesis = fleet
    response = invoke(window_event([record(FIRST_SEQUENCE, b"\xff")], {}))
    assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE)}]
    assert invoke(window_event([], response["state"], final=True)) == {"state": {}, "batchItemFailures": []}
    assert dynamodb.scan(TableName=TABLE)["Items"] == []
    assert summaries(kinesis) == []


def test_records_redelivered_after_a_retry_are_not_counted_twice(fleet):
    batch = [record(FIRST_SEQUENCE + i, reading("Rocinante", i, 2, 50, 60)) for i in range(5)]
    state = invoke(window_event(batch[:3], {}))["state"]
    # Re-delivered out of order together with new records: only the new ones count.
    response = invoke(window_event([batch[4], batch[1], batch[3]], state))
    assert WindowState.from_json(response["state"]).unicorns["Rocinante"].count == 4


def test_several_shards_combine_to_the_fleet_figures(fleet):
    dynamodb, kinesis = fleet
    names = ["Shadowfax", "Bucephalus", "Rocinante", "Pegasus"]
    sent = defaultdict(list)
    for shard_index in range(3):
        shard = f"shardId-00000000000{shard_index}"
        readings = [
            reading(names[(i + shard_index) % 4], (i * 7919) % 60_000, i % 5 + 0.5, i % 17, 100 + i % 23)
            for i in range(40)
        ]
        state: dict = {}
        for start in range(0, 40, 9):
            batch = [record(FIRST_SEQUENCE + i, readings[i], shard) for i in range(start, min(start + 9, 40))]
            state = invoke(window_event(batch, state, shard=shard))["state"]
        invoke(window_event([], state, final=True, shard=shard))
        for payload in readings:
            sent[payload["Name"]].append(parse_reading(payload))

    rows = {row.name: row for row in fleet_minutes(TABLE, client=dynamodb)}
    for name, name_readings in sent.items():
        figures = rows[name].figures
        assert figures.count == len(name_readings)
        assert figures.distance == sum(r.distance for r in name_readings)
        assert figures.min_magic_points == min(r.magic_points for r in name_readings)
        assert figures.max_health_points == max(r.health_points for r in name_readings)
        assert figures.first_status_ms == min(r.status_time_ms for r in name_readings)
        assert rows[name].parts == 3
    table = format_fleet_table(list(rows.values()))
    assert len(table) == 5 and "Shadowfax" in "\n".join(table)
    assert len(summaries(kinesis)) == 12


def test_a_failed_write_fails_the_final_invocation_before_any_summary_is_sent(fleet):
    _, kinesis = fleet

    class Throttled:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    sink = AggregationSink(TABLE, SUMMARY_STREAM, dynamodb=Throttled(), kinesis=kinesis)
    final = json.loads((EVENTS / "tumbling-window-final.json").read_text())
    state = WindowState.from_json(final["state"])
    key = WindowKey.parse(WINDOW["start"], WINDOW["end"], "shardId-000000000000")
    with pytest.raises(TransientError, match="not written"):
        sink.publish(key, state, partial=False, deadline=0)
    assert summaries(kinesis) == []


def test_summary_ids_differ_per_unicorn_shard_and_segment():
    key = WindowKey.parse("2026-11-21T12:00:00.000Z", "2026-11-21T12:01:00Z", "shardId-000000000000")
    assert key.start == "2026-11-21T12:00:00Z"
    other_shard = WindowKey.parse(key.start, key.end, "shardId-000000000001")
    ids = {summary_id("A", key, 1), summary_id("B", key, 1), summary_id("A", other_shard, 1), summary_id("A", key, 2)}
    assert len(ids) == 4
    assert summary_id("A", key, 1) == summary_id("A", key, 1)


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"Records": []}, "window"),
        ({"Records": [], "window": WINDOW, "shardId": ""}, "shardId"),
        ({"Records": [{"kinesis": {}}], "window": WINDOW, "shardId": "s", "state": {}}, "sequenceNumber"),
        ({"Records": [], "window": WINDOW, "shardId": "s", "state": {"v": 9}}, "state"),
    ],
)
def test_malformed_events_fail_the_invocation_naming_the_problem(fleet, event, problem):
    with pytest.raises(ValueError, match=problem):
        invoke(event)


class RuntimeDemoContext:
    """Just enough of tributary.demos.DemoContext over a running local runtime."""

    def __init__(self, runtime, parameters):
        self.runtime = runtime
        self.parameters = parameters

    def client(self, service):
        return boto3.client(service)

    def physical_name(self, logical_id):
        return {
            "WildrydesStream": "wildrydes",
            "UnicornAggregationTable": "UnicornAggregation",
            "WildrydesSummaryStream": "wildrydes-summary",
        }[logical_id]

    def mapping_stats(self):
        return {key: mapping.stats for key, mapping in self.runtime.mappings.items()}


@pytest.fixture
def local_runtime(request, aws):
    # moto's backends are process-wide: the runtime's server shares them with the session's, so
    # depending on `aws` resets them once the runtime has stopped.
    from tributary.runtime.app import Runtime, RuntimeOptions

    overrides = {"ShardCount": "2", **request.param}
    with Runtime(RuntimeOptions(ROOT / "template.yaml", overrides, function_log=io.StringIO())) as runtime:
        yield runtime, overrides


@pytest.mark.slow
@pytest.mark.parametrize("local_runtime", [FLEET_ANALYTICS.parameter_overrides], indirect=True)
def test_demo_counts_every_reading_once_under_the_local_runtime(local_runtime):
    runtime, parameters = local_runtime
    ctx = RuntimeDemoContext(runtime, parameters)
    demo = type(FLEET_ANALYTICS)()
    demo.produce(ctx)
    poison = {"PartitionKey": "Starlight", "Data": b"{not json"}
    boto3.client("kinesis").put_records(StreamName="wildrydes", Records=[poison])
    runtime.drain(timeout_s=120)

    section = demo.report(ctx)
    assert section.accounted, section.problems
    assert any("Starlight" in line for line in section.lines)
    stats = runtime.mappings["AggregatorFunction.Wildrydes"].stats
    assert stats.records_to_destination == 1  # the poison record, isolated and delivered, not folded


@pytest.mark.slow
def test_window_ended_early_by_state_size_loses_nothing_under_the_esm_emulation(fleet):
    """Thousands of unicorns in one window push the state past 1 MB: Lambda (here the runtime's ESM)
    ends the window early; every segment is stored, marked partial, and the parts add up exactly."""
    from tributary.runtime.esm import EventSourceMapping, InvocationResult, MappingConfig

    dynamodb, kinesis = fleet
    kinesis.create_stream(StreamName="wildrydes", ShardCount=1)
    source_arn = kinesis.describe_stream_summary(StreamName="wildrydes")["StreamDescriptionSummary"]["StreamARN"]
    clock_offset = [0.0]
    config = MappingConfig(
        function_name="Aggregator",
        function_arn=FakeContext.invoked_function_arn,
        source_arn=source_arn,
        starting_position="TRIM_HORIZON",
        maximum_retry_attempts=2,
        bisect_on_function_error=True,
        report_batch_item_failures=True,
        tumbling_window_s=900,
    )
    mapping = EventSourceMapping(
        config, lambda event: InvocationResult(response=invoke(event)), clock=lambda: time.time() + clock_offset[0]
    )
    rng = random.Random(5)
    # 64-character names and float figures (~210 bytes a row): 5,500 unicorns pass 1 MB of state.
    unicorns = [f"{index:05d}-" + "x" * 58 for index in range(5500)]
    entries = [
        (name, json.dumps(reading(name, rng.randint(0, 59_999), *(rng.uniform(0, 250) for _ in range(3)))).encode())
        for name in unicorns
    ]
    assert put_records(kinesis, "wildrydes", entries).failed == 0
    arrivals = {
        int(record["ApproximateArrivalTimestamp"].timestamp()) // 900
        for record in kinesis.get_records(
            ShardIterator=kinesis.get_shard_iterator(
                StreamName="wildrydes", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"],
            Limit=10_000,
        )["Records"]
    }
    if len(arrivals) > 1:
        pytest.skip("the records straddle a 15-minute window boundary; the next run will not")

    while mapping.stats.records_in < len(entries) or mapping.poll():
        mapping.poll()
    clock_offset[0] = 900.0  # past the window end: the final invocation comes
    while not mapping.is_drained():
        mapping.poll()

    items = list(fleet_items(dynamodb))
    assert len(items) == len(unicorns)  # one item per unicorn, in whichever segment it fell
    partial = [item for item in items if item["partial"]]
    assert partial and len(partial) < len(items)
    assert len({item["segment"] for item in items}) >= 2
    rows = fleet_minutes(TABLE, client=dynamodb)
    assert sum(row.figures.count for row in rows) == len(unicorns)
    assert {summary["SummaryId"] for summary in summaries(kinesis)} == {
        summary_id(item["name"], WindowKey.parse(*window_of(item), item["shardId"]), int(item["segment"]))
        for item in items
    }


def fleet_items(dynamodb):
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            yield {key: deserializer.deserialize(value) for key, value in item.items()}


def window_of(item):
    return item["windowStart"].split("#")[0], item["windowEnd"]
