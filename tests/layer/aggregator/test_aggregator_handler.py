"""Aggregator handler against moto: sample events, retries, early termination, poison records, summaries."""

import io
import json
import random
import re
import time
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import boto3
import pytest
from support import REPO_ROOT, FakeLambdaContext, kinesis_event, load_event, load_handler_module

from tributary.commands.demo import RuntimeDemoContext
from tributary.demos import read_stream
from tributary.demos.fleet_analytics import PIPELINE as FLEET_ANALYTICS
from tributary.fleet_queries import fleet_minutes, format_fleet_table, unicorn_minute
from tributary_shared.aggregator import window_handler
from tributary_shared.aggregator.aggregator import Aggregator
from tributary_shared.aggregator.readings import MAX_STATUS_MS, format_status_time, parse_reading, parse_status_time
from tributary_shared.aggregator.sink import (
    QUARANTINE_NAME,
    QUARANTINE_PART_CHARS,
    AggregationSink,
    PublishReport,
    QuarantineReport,
    WindowKey,
    quarantine_text,
    summary_id,
)
from tributary_shared.aggregator.window_state import STATE_VERSION, WindowState
from tributary_shared.errors import TransientError
from tributary_shared.kinesis_batch import record_version
from tributary_shared.kinesis_put import put_records
from tributary_shared.payloads import PayloadDecoder, decode_payload

TABLE = "UnicornAggregation"
SUMMARY_STREAM = "wildrydes-summary"
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/wildrydes"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:Aggregator"
WINDOW = {"start": "2026-11-21T12:00:00Z", "end": "2026-11-21T12:01:00Z"}
BASE_MS = 1_795_262_400_000
FIRST_SEQUENCE = 49656834216710451283762412935735891405936473474393636866
# A malformed event fails before any metric is added; powertools warns about the empty flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


app = load_handler_module("aggregator", TABLE_NAME=TABLE, SUMMARY_STREAM_NAME=SUMMARY_STREAM)


@pytest.fixture
def fleet(aws):
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
    return dynamodb, kinesis


def invoke(event):
    return app.lambda_handler(
        json.loads(json.dumps(event)), FakeLambdaContext("Aggregator", invoked_function_arn=FUNCTION_ARN)
    )


def summaries(kinesis):
    return [decode_payload(record.data) for record in read_stream(kinesis, SUMMARY_STREAM)]


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
    event = kinesis_event(
        [("p", raw)], first_sequence=sequence, shard_id=shard, stream_arn=ARN, arrival_timestamp=BASE_MS / 1000
    )
    return event["Records"][0]


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
        load_event(f"tumbling-window-{n}.json") for n in ("first", "middle", "final")
    )

    # The sample events hold version 1 states: the function reads them migrated, and returns version 2.
    after_first = invoke(first)
    assert after_first["batchItemFailures"] == [] and after_first["state"]["v"] == STATE_VERSION
    assert WindowState.from_json(after_first["state"]) == WindowState.from_json(middle["state"])
    after_middle = invoke(middle)
    assert after_middle["batchItemFailures"] == []
    assert WindowState.from_json(after_middle["state"]) == WindowState.from_json(final["state"])
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
    final = load_event("tumbling-window-final.json")
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


def test_a_large_state_is_stored_as_partial_segments_without_waiting_for_lambda(fleet, monkeypatch):
    dynamodb, kinesis = fleet
    monkeypatch.setattr(window_handler, "SEGMENT_FLUSH_BYTES", 1500)  # a few batches instead of 800 KB
    names = [f"Unicorn-{index:03d}" for index in range(25)]
    payloads = [reading(names[(i * 7) % 25], (i * 613) % 60_000, i % 9 + 0.25, i % 31, 90 + i % 13) for i in range(80)]
    batches = [
        [record(FIRST_SEQUENCE + i, payloads[i]) for i in range(start, start + 10)] for start in range(0, 80, 10)
    ]
    state: dict = {}
    flushed_after = []
    for number, batch in enumerate(batches):
        passed_in, stored_before = state, len(list(fleet_items(dynamodb)))
        state = invoke(window_event(batch, passed_in))["state"]
        if len(list(fleet_items(dynamodb))) > stored_before:
            flushed_after.append(number)
            # The state as passed in was stored before the batch: the batch went into a fresh segment.
            names_in_batch = {payloads[int(r["kinesis"]["sequenceNumber"]) - FIRST_SEQUENCE]["Name"] for r in batch}
            assert set(state["u"]) <= names_in_batch
            # A crash after that flush: the retry (or a bisected half) stores the very same segment,
            # and the records it re-delivers are folded into the new segment only.
            stored = sorted(map(str, fleet_items(dynamodb)))
            retried = invoke(window_event(batch[:5], passed_in))["state"]
            assert sorted(map(str, fleet_items(dynamodb))) == stored
            assert retried["last"] == batch[4]["kinesis"]["sequenceNumber"]
    assert len(flushed_after) >= 2
    invoke(window_event([], state, final=True))

    items = list(fleet_items(dynamodb))
    assert sum(item["partial"] for item in items) and not all(item["partial"] for item in items)
    assert len({item["segment"] for item in items}) == len(flushed_after) + 1
    rows = {row.name: row for row in fleet_minutes(TABLE, client=dynamodb)}
    for name in names:
        expected = [parse_reading(payload) for payload in payloads if payload["Name"] == name]
        figures = rows[name].figures
        assert (figures.count, figures.distance) == (len(expected), sum(r.distance for r in expected))
        assert figures.max_health_points == max(r.health_points for r in expected)
    assert len({summary["SummaryId"] for summary in summaries(kinesis)}) == len(items)


class RecordingSink:
    def __init__(self, failure=None):
        self.published = []
        self.quarantined = []
        self.failure = failure

    def publish(self, key, state, *, partial, deadline):
        if self.failure:
            raise self.failure
        self.published.append((state.unicorns, partial))
        return PublishReport(len(state.rows), len(state.rows), 1)

    def quarantine_state(self, key, unreadable, deadline):
        if self.failure:
            raise self.failure
        self.quarantined.append(unreadable)
        return QuarantineReport("quarantine#…", 1, 10, False, unreadable.reason)


def thousands_of_unicorns_event():
    rng = random.Random(11)
    # 64-character names and float figures: ~200 bytes a row, 4,500 rows pass 800 KB.
    batch = [
        record(FIRST_SEQUENCE + i, reading(f"{i:05d}-" + "x" * 58, i, *(rng.uniform(0, 250) for _ in range(3))))
        for i in range(4500)
    ]
    return window_event(batch, {})


def large_state_then_one_more_reading():
    """The state after thousands of unicorns, and the next batch: one more reading."""
    first = window_handler.handle_window_event(thousands_of_unicorns_event(), RecordingSink(), time.monotonic() + 60)
    assert first.state_bytes > window_handler.SEGMENT_FLUSH_BYTES
    state = first.response["state"]
    return window_event([record(FIRST_SEQUENCE + 4500, reading("Late", 1, 1.5, 100, 150))], state)


def test_past_the_flush_threshold_the_state_passed_in_is_stored_and_the_batch_starts_a_segment():
    sink = RecordingSink()
    report = window_handler.handle_window_event(large_state_then_one_more_reading(), sink, time.monotonic() + 60)
    [(unicorns, partial)] = sink.published
    assert len(unicorns) == 4500 and "Late" not in unicorns and partial
    state = WindowState.from_json(report.response["state"])
    assert set(state.rows) == {"Late"}
    assert (state.first_sequence, state.last_sequence) == (FIRST_SEQUENCE + 4500, FIRST_SEQUENCE + 4500)


def test_a_segment_that_cannot_be_stored_yet_stays_in_the_state():
    sink = RecordingSink(failure=TransientError("throttled"))
    report = window_handler.handle_window_event(large_state_then_one_more_reading(), sink, time.monotonic() + 60)
    assert report.flush_deferred == "throttled"
    assert len(WindowState.from_json(report.response["state"]).rows) == 4501  # nothing dropped


def batch_with_poison():
    """Good, good, poison, good, poison, good (in sequence order); the good readings all differ."""
    batch = [record(FIRST_SEQUENCE + i, reading("Bucephalus", i, i + 1, 100 + i, 200 - i)) for i in range(6)]
    batch[2] = record(FIRST_SEQUENCE + 2, b"{not json")
    batch[4] = record(FIRST_SEQUENCE + 4, {"Name": "Bucephalus", "Distance": "far", "MagicPoints": 1})
    return batch


def lowest_failure(response):
    return [int(failure["itemIdentifier"]) - FIRST_SEQUENCE for failure in response["batchItemFailures"]]


# What the mapping may do after the first invocation reports the first poison record (batch[2]):
# (batches it delivers next with the returned state, the failure each must report).
AFTER_POISON = {
    "retries from it and bisects it out": [
        ("[2:]", [2]),
        ("[2:4]", [2]),
        ("[2:3]", [2]),
        ("[2:3]", [2]),
        ("[3:4]", []),
        ("[4:]", [4]),
        ("[4:5]", [4]),
        ("[4:5]", [4]),
        ("[5:]", []),
    ],
    # Whether Lambda bisects a batch whose first record is reported is not documented: if not, two
    # retries and the whole rest of the batch goes to the on-failure destination as a range.
    "retries from it and dead-letters the rest": [("[2:]", [2]), ("[2:]", [2])],
}


@pytest.mark.parametrize("mapping_behaviour", AFTER_POISON)
def test_poison_records_are_skipped_and_every_valid_record_is_counted_once(fleet, mapping_behaviour):
    dynamodb, _ = fleet
    batch = batch_with_poison()
    response = invoke(window_event(batch, {}))
    assert lowest_failure(response) == [2]
    state = WindowState.from_json(response["state"])
    assert (state.unicorns["Bucephalus"].count, state.poison_count) == (4, 2)  # folding went on past them

    for cut, reported in AFTER_POISON[mapping_behaviour]:
        start, stop = (int(part) if part else None for part in cut.strip("[]").split(":"))
        response = invoke(window_event(batch[start:stop], response["state"]))
        assert lowest_failure(response) == reported
    later = [record(FIRST_SEQUENCE + 6, reading("Bucephalus", 6, 7, 106, 194))]
    response = invoke(window_event(later, response["state"]))
    assert WindowState.from_json(response["state"]).poison_count == 2  # counted once each
    invoke(window_event([], response["state"], final=True))

    row = unicorn_minute(TABLE, "Bucephalus", WINDOW["start"], client=dynamodb)
    good = [0, 1, 3, 5, 6]
    assert (row.figures.count, row.figures.distance) == (len(good), sum(i + 1 for i in good))
    assert (row.figures.min_magic_points, row.figures.max_magic_points) == (100, 106)
    assert (row.figures.min_health_points, row.figures.max_health_points) == (194, 200)


def test_a_registry_outage_is_reported_for_retry_but_not_counted_as_poison(fleet, monkeypatch):
    def registry_down(data):
        raise TransientError("schema registry unavailable: throttled")

    built = app.aggregator  # as the cold start built it, with a decoder whose registry is down passed in
    decode = PayloadDecoder(registry_down).decode
    down = Aggregator(built.settings, sink=built.sink, decode=decode, logger=built.logger, metrics=built.metrics)
    monkeypatch.setattr(app, "aggregator", down)
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


def emitted(capsys):
    """The JSON lines the handler printed: its metrics (EMF)."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def metric(lines, name):
    return sum(sum(line[name]) for line in lines if "_aws" in line and name in line)


def test_records_redelivered_after_a_retry_are_not_counted_twice(fleet, capsys):
    batch = [record(FIRST_SEQUENCE + i, reading("Rocinante", i, i + 1, 50 + i, 60)) for i in range(6)]
    state = invoke(window_event(batch[:3], {}))["state"]
    # A retried batch starts at the checkpoint: records the state already holds, then new ones.
    response = invoke(window_event(batch[1:], state))
    figures = WindowState.from_json(response["state"]).unicorns["Rocinante"]
    assert (figures.count, figures.distance, figures.max_magic_points) == (6, 21, 55)
    lines = emitted(capsys)
    assert (metric(lines, "RecordsRedelivered"), metric(lines, "RecordsFolded")) == (2, 6)


def test_records_are_folded_in_sequence_order_whatever_order_the_event_lists_them(fleet, capsys):
    batch = [record(FIRST_SEQUENCE + i, reading("Rocinante", i, i + 1, 50 + i, 60)) for i in range(5)]
    state = invoke(window_event(batch[:3], {}))["state"]
    capsys.readouterr()
    # An old record listed after a new one (Kinesis never delivers this): sorted, it is a re-delivery.
    response = invoke(window_event([batch[3], batch[1], batch[4]], state))
    figures = WindowState.from_json(response["state"]).unicorns["Rocinante"]
    assert (figures.count, figures.distance) == (5, 15)
    lines = emitted(capsys)
    assert (metric(lines, "RecordsRedelivered"), metric(lines, "RecordsFolded")) == (1, 2)


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
    final = load_event("tumbling-window-final.json")
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
        ({"Records": [], "window": WINDOW, "shardId": "shard#1", "state": {}}, "shardId"),
        ({"Records": [], "window": {"start": "9999-12-31T23:59:59-01:00"}, "shardId": "s"}, "window bound"),
    ],
)
def test_malformed_events_fail_the_invocation_naming_the_problem(fleet, event, problem):
    with pytest.raises(ValueError, match=problem):
        invoke(event)


@pytest.fixture
def local_runtime(request, aws):
    # moto's backends are process-wide: the runtime's server shares them with the session's, so
    # depending on `aws` resets them once the runtime has stopped.
    from tributary.runtime.app import Runtime, RuntimeOptions

    overrides = {"ShardCount": "2", **request.param}
    with Runtime(RuntimeOptions(REPO_ROOT / "template.yaml", overrides, function_log=io.StringIO())) as runtime:
        yield runtime


@pytest.mark.slow
@pytest.mark.parametrize("local_runtime", [FLEET_ANALYTICS.parameter_overrides], indirect=True)
def test_demo_counts_every_reading_once_under_the_local_runtime(local_runtime):
    runtime = local_runtime
    ctx = RuntimeDemoContext(runtime)
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
def test_figures_through_the_esm_match_an_independent_computation_over_windows_and_shards(fleet):
    """Readings of 40 unicorns on 3 shards over several 2-second windows, StatusTimes out of order
    within each shard, poison pills among them; the mapping emulation assigns windows by arrival, as
    Lambda does. The stored figures, combined across shards, must equal a plain computation over the
    records read back from the stream."""
    from tributary.runtime.esm import EventSourceMapping, MappingConfig
    from tributary.runtime.invocation import InvocationResult

    dynamodb, kinesis = fleet
    kinesis.create_stream(StreamName="wildrydes", ShardCount=3)
    source_arn = kinesis.describe_stream_summary(StreamName="wildrydes")["StreamDescriptionSummary"]["StreamARN"]
    window_s, clock_offset = 2, [0.0]
    config = MappingConfig(
        function_name="Aggregator", function_arn=FUNCTION_ARN, source_arn=source_arn,
        starting_position="TRIM_HORIZON", maximum_retry_attempts=2, bisect_on_function_error=True,
        report_batch_item_failures=True, tumbling_window_s=window_s,
    )  # fmt: skip
    mapping = EventSourceMapping(
        config, lambda event: InvocationResult(response=invoke(event)), clock=lambda: time.time() + clock_offset[0]
    )
    rng = random.Random(11)
    unicorns = [f"Unicorn{index:02d}" for index in range(40)]
    for _ in range(5):  # 5 rounds 0.8 s apart span more than one 2-second window
        round_entries = [
            (name, json.dumps(reading(name, rng.randint(0, 600_000), rng.randint(0, 500), rng.randint(0, 300),
                                      rng.randint(0, 300))).encode())
            for name in rng.sample(unicorns, len(unicorns))
        ]  # fmt: skip
        round_entries += [("Unicorn03", b"{not json"), ("Unicorn07", json.dumps(
            reading("Unicorn07", 5, 1, 1, 1) | {"InputData": "error: poison pill"}).encode())]  # fmt: skip
        assert put_records(kinesis, "wildrydes", round_entries).failed == 0
        mapping.poll()
        time.sleep(0.8)
    while mapping.poll():
        pass
    clock_offset[0] = 3 * window_s  # every window has ended: the final invocations come
    while not mapping.is_drained():
        mapping.poll()

    expected: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for record in read_stream(kinesis, "wildrydes"):
        try:
            status = json.loads(record.data)
        except ValueError:
            continue
        if "InputData" not in status:
            window_start = int(record.arrival.timestamp()) // window_s * window_s
            expected[(status["Name"], window_start)].append(status)
    assert len({window for _, window in expected}) >= 2

    stored = {
        (row.name, int(datetime.fromisoformat(row.window_start).timestamp())): row.figures
        for row in fleet_minutes(TABLE, client=dynamodb)
    }
    assert stored.keys() == expected.keys()
    for key, statuses in expected.items():
        figures = stored[key]
        times = [parse_status_time(status["StatusTime"]) for status in statuses]
        assert (figures.count, figures.distance) == (len(statuses), sum(Decimal(s["Distance"]) for s in statuses))
        assert (figures.min_magic_points, figures.max_magic_points) == (
            min(s["MagicPoints"] for s in statuses), max(s["MagicPoints"] for s in statuses))  # fmt: skip
        assert (figures.min_health_points, figures.max_health_points) == (
            min(s["HealthPoints"] for s in statuses), max(s["HealthPoints"] for s in statuses))  # fmt: skip
        assert (figures.first_status_ms, figures.last_status_ms) == (min(times), max(times))


@pytest.mark.slow
def test_a_window_past_the_state_limit_loses_nothing_under_the_esm_emulation(fleet):
    """Thousands of unicorns in one window would push the state past 1 MB: the function stores a
    partial segment at 800 KB, before Lambda (here the runtime's ESM) would end the window early;
    every segment is stored, marked partial, and the parts add up exactly."""
    from tributary.runtime.esm import EventSourceMapping, MappingConfig
    from tributary.runtime.invocation import InvocationResult

    dynamodb, kinesis = fleet
    kinesis.create_stream(StreamName="wildrydes", ShardCount=1)
    source_arn = kinesis.describe_stream_summary(StreamName="wildrydes")["StreamDescriptionSummary"]["StreamARN"]
    clock_offset = [0.0]
    config = MappingConfig(
        function_name="Aggregator",
        function_arn=FUNCTION_ARN,
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

    assert mapping.stats.windows_closed == 1  # one final invocation: the state never reached 1 MB
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


def test_aggregator_mapping_has_the_settings_of_the_issue():
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse((REPO_ROOT / "template.yaml").read_text())
    (event,) = template["Resources"]["AggregatorFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "Kinesis"
    mapping = event["Properties"]
    # The wildrydes stream itself, or its enhanced fan-out consumer when AggregatorFanOut=enhanced.
    assert mapping["Stream"] == {
        "Fn::If": [
            "AggregatorReadsThroughConsumer",
            {"Fn::GetAtt": ["WildrydesAggregatorConsumer", "ConsumerARN"]},
            {"Fn::GetAtt": ["WildrydesStream", "Arn"]},
        ]
    }
    assert mapping["TumblingWindowInSeconds"] == {"Ref": "TumblingWindowInSeconds"}
    assert template["Parameters"]["TumblingWindowInSeconds"]["Default"] == 60
    assert mapping["BatchSize"] == 100  # window_handler.SEGMENT_FLUSH_BYTES leaves room for ~700 new rows
    assert mapping["MaximumRetryAttempts"] == 2
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::If": [
            "FailuresToS3",
            {"Fn::GetAtt": ["FailedRecordsBucket", "Arn"]},
            {"Fn::GetAtt": ["FailedRecordsQueue", "Arn"]},
        ]
    }


def test_tributary_consume_prints_the_summary_stream_in_the_flink_shape(fleet, capsys):
    from tributary import consumer

    invoke(load_event("tumbling-window-final.json"))
    capsys.readouterr()

    argv = ["--stream", SUMMARY_STREAM, "--from", "TRIM_HORIZON", "--max-records", "2", "--idle-exit", "30"]
    assert consumer.main("consume", argv) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    lines = [json.loads(line) for line in printed.out.splitlines()]
    assert sorted(line["Name"] for line in lines) == ["Bucephalus", "Shadowfax"]
    figures = ("Distance", "MinMagicPoints", "MaxMagicPoints", "MinHealthPoints", "MaxHealthPoints")
    for line in lines:
        assert list(line) == ["Name", "StatusTime", *figures, "SummaryId", "Partial"]  # Flink's row, then ours
        assert line["StatusTime"] == "2026-11-21 12:00:00.000" and line["Partial"] is False
        assert all(isinstance(line[name], int | float) for name in figures)
    shadowfax = next(line for line in lines if line["Name"] == "Shadowfax")
    assert (shadowfax["Distance"], shadowfax["MinMagicPoints"], shadowfax["MaxHealthPoints"]) == (24.22, 138, 152)


def quarantined(dynamodb):
    """The quarantined items, by sort key, as plain values."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    response = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="#n = :name",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":name": {"S": QUARANTINE_NAME}},
        ConsistentRead=True,
    )
    return [{key: deserializer.deserialize(value) for key, value in item.items()} for item in response["Items"]]


def joined_text(parts):
    assert [part["part"] for part in parts] == list(range(len(parts))) and all(p["parts"] == len(parts) for p in parts)
    return "".join(part["text"] for part in parts)


def test_a_reading_the_window_could_not_store_is_poison_when_folded_and_the_window_closes(fleet, caplog):
    """On main, a StatusTime in year 10000 (UTC) was folded and failed every close of its window."""
    dynamodb, kinesis = fleet
    batch = [record(FIRST_SEQUENCE + i, reading("Pegasus", i, 2, 10 + i, 20)) for i in range(5)]
    year_10000_in_utc = {"StatusTime": "9999-12-31 23:59:59.999-01:00"}
    batch[1] = record(FIRST_SEQUENCE + 1, reading("Pegasus", 1, 2, 11, 20) | year_10000_in_utc)
    batch[3] = record(FIRST_SEQUENCE + 3, reading("\ud800", 3, 2, 13, 20))
    response = invoke(window_event(batch, {}))
    assert lowest_failure(response) == [1]
    reasons = [entry.getMessage() for entry in caplog.records if entry.levelname == "WARNING"]
    assert any("StatusTime '9999-12-31 23:59:59.999-01:00' is outside" in reason for reason in reasons)
    # Refused when the record is decoded, or else when the reading is parsed: never folded.
    assert any(re.search(r"lone (UTF-16 )?surrogate", reason) for reason in reasons)

    assert invoke(window_event([], response["state"], final=True)) == {"state": {}, "batchItemFailures": []}
    (item,) = fleet_items(dynamodb)
    assert (item["name"], item["count"], item["distance"]) == ("Pegasus", 3, 6)
    assert item["recordVersion"] == record_version(str(FIRST_SEQUENCE + 4))  # the last record folded into it
    assert quarantined(dynamodb) == []
    assert [summary["Name"] for summary in summaries(kinesis)] == ["Pegasus"]


def test_a_state_of_the_previous_version_is_migrated_and_its_window_stored_whatever_a_row_holds(fleet, caplog, capsys):
    dynamodb, kinesis = fleet
    epoch_ms_main_folded = MAX_STATUS_MS + 3_600_000  # "9999-12-31 23:59:59.999-01:00"
    bad_row = [1, 5, 1, 1, 1, 1, epoch_ms_main_folded, epoch_ms_main_folded]
    version_1 = {
        "v": 1,
        "first": str(FIRST_SEQUENCE),
        "last": str(FIRST_SEQUENCE + 3),
        "poison": [0, None],
        "u": {"Shadowfax": [3, "24.22", 138, 143, 149, 152, BASE_MS, BASE_MS + 59_999], "Bucephalus": bad_row},
    }
    assert invoke(window_event([], version_1, final=True)) == {"state": {}, "batchItemFailures": []}

    (row,) = fleet_minutes(TABLE, client=dynamodb)  # the quarantined item is not a unicorn-minute
    assert (row.name, row.figures.count, row.figures.distance) == ("Shadowfax", 3, Decimal("24.22"))
    assert [summary["Name"] for summary in summaries(kinesis)] == ["Shadowfax"]
    parts = quarantined(dynamodb)
    set_aside = json.loads(joined_text(parts))
    assert set_aside["highWaterMark"] == str(FIRST_SEQUENCE + 3) and set_aside["segment"] == str(FIRST_SEQUENCE)
    [(name, kept_row, reason)] = set_aside["rows"]
    assert (name, kept_row) == ("Bucephalus", bad_row) and "outside 1970-01-01" in reason
    assert parts[0]["windowStart"].startswith(f"quarantine#{WINDOW['start']}#shardId-000000000000#rows-")
    assert parts[0]["recordVersion"] == record_version(str(FIRST_SEQUENCE + 3))
    assert metric(emitted(capsys), "RowsQuarantined") == 1
    assert any("rows that could not be stored" in entry.getMessage() for entry in caplog.records)


def test_a_state_that_cannot_be_read_is_stored_raw_and_records_keep_flowing(fleet, caplog, capsys):
    """A state from a newer version (a rollback mid-window): set aside, the high-water mark kept."""
    dynamodb, _ = fleet
    future = {
        "v": 3,
        "first": str(FIRST_SEQUENCE),
        "last": str(FIRST_SEQUENCE + 1),
        "rows": [{"name": "Shadowfax", "count": 2, "note": "caf\u00e9 \udc80"}],
    }
    batch = [record(FIRST_SEQUENCE + i, reading("Shadowfax", i, 1, 100, 200)) for i in range(4)]
    response = invoke(window_event(batch, future))
    assert response["batchItemFailures"] == []
    state = WindowState.from_json(response["state"])
    # Records 0 and 1 are in the quarantined state (at or below its mark): not counted again.
    assert (state.first_sequence, state.last_sequence) == (FIRST_SEQUENCE + 2, FIRST_SEQUENCE + 3)
    assert state.unicorns["Shadowfax"].count == 2
    lines = emitted(capsys)
    assert (metric(lines, "StateQuarantined"), metric(lines, "RecordsRedelivered")) == (1, 2)
    (error,) = [entry for entry in caplog.records if entry.levelname == "ERROR"]
    assert "window state could not be read" in error.getMessage() and "version 3" in error.getMessage()

    parts = quarantined(dynamodb)
    assert json.loads(joined_text(parts)) == future
    assert parts[0]["recordVersion"] == record_version(str(FIRST_SEQUENCE + 1))
    assert parts[0]["what"].startswith("state-") and not parts[0]["truncated"]
    invoke(window_event([], response["state"], final=True))
    assert unicorn_minute(TABLE, "Shadowfax", WINDOW["start"], client=dynamodb).figures.count == 2


def test_a_large_unreadable_state_is_split_into_parts_that_fit_an_item(fleet):
    dynamodb, _ = fleet
    garbage = {"v": "?", "blob": "x" * (2 * QUARANTINE_PART_CHARS + 5)}
    invoke(window_event([], garbage))
    parts = quarantined(dynamodb)
    assert len(parts) == 3
    assert all(len(part["text"]) <= QUARANTINE_PART_CHARS for part in parts)
    assert joined_text(parts) == quarantine_text(garbage)
    assert {part["chars"] for part in parts} == {len(quarantine_text(garbage))}
    assert all("recordVersion" not in part for part in parts)  # no high-water mark could be read
    invoke(window_event([], garbage))  # Lambda retrying the invocation: the same items again
    assert len(quarantined(dynamodb)) == 3


def test_quarantined_text_past_the_part_limit_is_truncated_and_says_so():
    from tributary_shared.aggregator.sink import MAX_QUARANTINE_PARTS, quarantine_items

    key = WindowKey.parse(WINDOW["start"], WINDOW["end"], "shardId-000000000000")
    text = "y" * (QUARANTINE_PART_CHARS * MAX_QUARANTINE_PARTS + 7)
    items, report = quarantine_items(key, "state-test", text, "unreadable", None)
    assert len(items) == MAX_QUARANTINE_PARTS and report.truncated
    assert all(item.item["truncated"] and item.item["chars"] == len(text) for item in items)
    assert len({item.item["windowStart"] for item in items}) == MAX_QUARANTINE_PARTS


def test_a_quarantine_that_cannot_be_written_yet_fails_the_invocation_so_lambda_retries_it(fleet):
    class Throttled:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    sink = AggregationSink(TABLE, SUMMARY_STREAM, dynamodb=Throttled(), kinesis=fleet[1])
    event = window_event([record(FIRST_SEQUENCE, reading("Pegasus", 0, 1, 1, 1))], {"v": 7})
    with pytest.raises(TransientError, match="quarantined items not written"):
        window_handler.handle_window_event(event, sink, deadline=time.monotonic() + 0.5)


def test_an_item_dynamodb_refuses_is_quarantined_and_the_other_items_stored(fleet):
    from botocore.exceptions import ClientError

    dynamodb, kinesis = fleet

    class RefusesOneUnicorn:
        """DynamoDB refusing one item as invalid (ValidationException), as for a changed table."""

        def _refuse_if_named(self, items):
            if any(item.get("name") == {"S": "Refused"} for item in items):
                error = {"Error": {"Code": "ValidationException", "Message": "One or more values were invalid"}}
                raise ClientError(error, "BatchWriteItem")

        def batch_write_item(self, RequestItems):
            self._refuse_if_named([request["PutRequest"]["Item"] for request in RequestItems[TABLE]])
            return dynamodb.batch_write_item(RequestItems=RequestItems)

        def put_item(self, TableName, Item):
            self._refuse_if_named([Item])
            return dynamodb.put_item(TableName=TableName, Item=Item)

    sink = AggregationSink(TABLE, SUMMARY_STREAM, dynamodb=RefusesOneUnicorn(), kinesis=kinesis)
    state = WindowState()
    for offset, name in enumerate(["Accepted", "Refused", "Also"]):
        state.fold(parse_reading(reading(name, offset, 1, 1, 1)), FIRST_SEQUENCE + offset)
    key = WindowKey.parse(WINDOW["start"], WINDOW["end"], "shardId-000000000000")
    published = sink.publish(key, state, partial=False, deadline=time.monotonic() + 30)
    assert (published.items_written, published.summaries_sent, published.rows_quarantined) == (2, 2, 1)
    assert sorted(row.name for row in fleet_minutes(TABLE, client=dynamodb)) == ["Accepted", "Also"]
    [(name, row, reason)] = json.loads(joined_text(quarantined(dynamodb)))["rows"]
    assert (name, row) == ("Refused", state.rows["Refused"]) and "ValidationException" in reason
