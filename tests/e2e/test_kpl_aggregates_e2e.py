"""KPL aggregated records through the event-source-mapping engine, with the template's mapping settings,
for every Kinesis function: a poison user record in the middle of an aggregate, a crash after the
first invocation's work, retries from the aggregate and bisection down to it.

The oracles are independent of the functions' counters: the read model's own DynamoDB stream (every
write it applied, in order), the fleet's stored figures against the readings put, the opt-out list
and every call the SMS emulation answered, and the on-failure queue.
"""

import json
import time
from collections import defaultdict
from decimal import Decimal
from itertools import groupby, islice

import boto3
import pytest
from kpl_support import require_writes_keyed_by_user_record
from support import (
    VERSION_TABLE,
    FakeLambdaContext,
    create_version_table,
    declared_mapping,
    load_handler_module,
    mapping_config,
    table_stream_images,
)

from tributary.fleet_queries import fleet_minutes
from tributary.kpl_aggregation import KeyAggregator
from tributary.runtime.emulations.sms import SmsEmulation
from tributary.runtime.esm import EventSourceMapping, MappingConfig, drain
from tributary.runtime.invocation import InvocationResult
from tributary.sample_records import payment_events, unicorn_statuses
from tributary_shared.aggregator.readings import format_status_time
from tributary_shared.kinesis_aggregation import Aggregate, open_aggregate
from tributary_shared.kinesis_put import put_records

POISON_PAYMENT = b'{"paymentId": "broken", '
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def create_stream(name: str) -> str:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def failure_queue() -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="failed")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def dead_lettered(queue_url: str) -> list[tuple[int, int]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    infos = [json.loads(message["Body"])["KinesisBatchInfo"] for message in messages]
    return [(int(info["startSequenceNumber"]), int(info["endSequenceNumber"])) for info in infos]


def put_aggregated(stream: str, user_records: list[tuple[str, bytes]]) -> list[tuple[int, str, bytes]]:
    """Pack `user_records` per key and put them; (sequence number, key, data) of each Kinesis record put."""
    packed = KeyAggregator().pack(user_records)
    kinesis = boto3.client("kinesis")
    report = put_records(kinesis, stream, [(record.partition_key, record.data) for record in packed])
    assert report.failed == 0
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    stored = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=10_000)["Records"]
    assert sum(isinstance(open_aggregate(r["Data"]), Aggregate) for r in stored) >= 1
    return [(int(r["SequenceNumber"]), r["PartitionKey"], r["Data"]) for r in stored]


def crashing_after_first(handler, function_name: str, events: list[dict]):
    """The handler, whose first invocation does all its work and then dies (a function error)."""

    def invoke(event: dict) -> InvocationResult:
        events.append(event)
        response = handler(event, FakeLambdaContext(function_name=function_name))
        if len(events) == 1:
            return InvocationResult(function_error="Unhandled", error_message="Runtime exited: signal: killed")
        return InvocationResult(response=response)

    return invoke


def sequence_holding(stored: list[tuple[int, str, bytes]], marker: bytes) -> int:
    (sequence,) = [sequence for sequence, _, data in stored if marker in data]
    return sequence


# ------------------------------------------------------------------------------------ stream processor


def test_aggregated_payments_keep_per_key_order_and_no_user_record_is_applied_twice(aws):
    require_writes_keyed_by_user_record()
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.create_table(
        TableName="Payments", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "paymentId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "paymentId", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]  # fmt: skip
    stream_arn = create_stream("payments")
    queue_url, queue_arn = failure_queue()
    events = [dict(event, step=step) for step, event in enumerate(islice(payment_events(accounts=5, seed=3), 150))]
    user_records = [(e["paymentId"], json.dumps(e, default=str).encode()) for e in events]
    poisoned_key = events[60]["paymentId"]
    user_records.insert(61, (poisoned_key, POISON_PAYMENT))  # in the middle of that payment's aggregate
    stored = put_aggregated("payments", user_records)

    handler = load_handler_module("stream_processor", TABLE_NAME="Payments", KEY_ATTRIBUTES="paymentId").lambda_handler
    invocations: list[dict] = []
    mapping = EventSourceMapping(mapping_config(stream_arn, queue_arn),
                                 crashing_after_first(handler, "StreamProcessor", invocations),
                                 retry_delay_s=0.0, idle_read_interval_s=0.0)  # fmt: skip
    drain([mapping], timeout_s=120, sleep=lambda _: None)

    assert len(invocations) > 2  # the crash was retried and bisected
    poisoned = sequence_holding(stored, POISON_PAYMENT)
    assert dead_lettered(queue_url) == [(poisoned, poisoned)]  # the aggregate alone; its sequence is all Lambda knows
    applied = [(image["paymentId"]["S"], image["recordVersion"]["S"]) for image in table_stream_images(
        table["LatestStreamArn"])]  # fmt: skip
    versions_by_key: dict[str, list[str]] = defaultdict(list)
    for key, version in applied:
        versions_by_key[key].append(version)
    for key, versions in versions_by_key.items():
        assert versions == sorted(set(versions)), f"{key}: a write went back in time or came twice: {versions}"
    # Each payment holds its newest event: the valid user records around the poison were written too.
    newest = {event["paymentId"]: event["step"] for event in events}
    items = boto3.resource("dynamodb").Table("Payments").scan()["Items"]
    assert {item["paymentId"]: int(item["step"]) for item in items} == newest


# ------------------------------------------------------------------------------------ aggregator


def test_aggregated_readings_are_each_counted_once_through_retries_and_bisection(aws):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="UnicornAggregation", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("name", "windowStart")],
        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}, {"AttributeName": "windowStart", "KeyType": "RANGE"}],
    )  # fmt: skip
    boto3.client("kinesis").create_stream(StreamName="wildrydes-summary", ShardCount=1)
    stream_arn = create_stream("wildrydes")
    queue_url, queue_arn = failure_queue()
    readings = list(islice(unicorn_statuses([f"Unicorn-{n}" for n in range(5)], seed=8), 300))
    user_records = [(r["Name"], json.dumps(r).encode()) for r in readings]
    poison = readings[102] | {"InputData": "error: poison pill"}
    user_records.insert(103, (poison["Name"], json.dumps(poison).encode()))
    stored = put_aggregated("wildrydes", user_records)

    handler = load_handler_module(
        "aggregator", TABLE_NAME="UnicornAggregation", SUMMARY_STREAM_NAME="wildrydes-summary"
    ).lambda_handler
    declared = declared_mapping("AggregatorFunction")
    clock_offset = [0.0]
    config = MappingConfig(
        function_name="Aggregator", function_arn="arn:aws:lambda:us-east-1:123456789012:function:Aggregator",
        source_arn=stream_arn, starting_position="TRIM_HORIZON", batch_size=declared["BatchSize"],
        maximum_retry_attempts=declared["MaximumRetryAttempts"],
        bisect_on_function_error=declared["BisectBatchOnFunctionError"],
        report_batch_item_failures=declared["FunctionResponseTypes"] == ["ReportBatchItemFailures"],
        tumbling_window_s=900, on_failure_destination_arn=queue_arn,
    )  # fmt: skip
    invocations: list[dict] = []
    mapping = EventSourceMapping(config, crashing_after_first(handler, "Aggregator", invocations),
                                 retry_delay_s=0.0, idle_read_interval_s=0.0,
                                 clock=lambda: time.time() + clock_offset[0])  # fmt: skip
    while mapping.poll():
        pass
    clock_offset[0] = 900.0  # the window has ended: the final invocation stores it
    while not mapping.is_drained():
        mapping.poll()

    assert len(invocations) > 3
    poisoned = sequence_holding(stored, b"poison pill")
    assert dead_lettered(queue_url) == [(poisoned, poisoned)]
    expected: dict[str, list[dict]] = defaultdict(list)
    for reading in readings:
        expected[reading["Name"]].append(reading)
    figures = {row.name: row.figures for row in fleet_minutes("UnicornAggregation", client=dynamodb)}
    assert {name: f.count for name, f in figures.items()} == {name: len(rs) for name, rs in expected.items()}
    for name, statuses in expected.items():
        assert figures[name].distance == sum(Decimal(repr(s["Distance"])) for s in statuses)
        assert format_status_time(figures[name].last_status_ms) == max(s["StatusTime"] for s in statuses)


# ------------------------------------------------------------------------------------ opt-in updater


def dms_row(user: int, phone: str, optin: int) -> tuple[str, bytes]:
    metadata = {"record-type": "data", "operation": "update", "schema-name": "db", "table-name": "optin_status"}
    return f"user{user}", json.dumps({"data": {"userid": f"user{user}", "phone": phone, "optin": optin},
                                      "metadata": metadata}).encode()  # fmt: skip


def test_aggregated_opt_in_changes_reach_each_number_in_order_and_once(aws):
    create_version_table()
    stream_arn = create_stream("optin-cdc")
    queue_url, queue_arn = failure_queue()
    with SmsEmulation() as sms:
        sms.create_opt_out_list("tributary-optouts")
        calls: list[tuple[str, str]] = []
        dispatch = sms.dispatch

        def recording(operation, request):
            response = dispatch(operation, request)
            calls.append((operation, str(request.get("OptedOutNumber", ""))))
            return response

        sms.dispatch = recording
        users = 8
        history = []
        for user in range(users):  # out, in, and every other user out again (one removal per 30 days)
            history += [dms_row(user, f"+1206555{user:04d}", optin) for optin in (0, 1, 0)[: 3 - user % 2]]
        history.insert(10, dms_row(3, "206-555-0100", 0))  # user 3's last change, in its aggregate: invalid
        stored = put_aggregated("optin-cdc", history)

        handler = load_handler_module("optin_updater", OPT_OUT_LIST_NAME="tributary-optouts",
                                      SOURCE_TABLE="optin_status", VERSION_TABLE_NAME=VERSION_TABLE).lambda_handler
        declared = declared_mapping("OptInUpdaterFunction")
        config = MappingConfig(
            function_name="OptInUpdater", function_arn="arn:aws:lambda:us-east-1:123456789012:function:OptInUpdater",
            source_arn=stream_arn, batch_size=declared["BatchSize"], starting_position="TRIM_HORIZON",
            maximum_retry_attempts=declared["MaximumRetryAttempts"],
            bisect_on_function_error=declared["BisectBatchOnFunctionError"],
            report_batch_item_failures=declared["FunctionResponseTypes"] == ["ReportBatchItemFailures"],
            on_failure_destination_arn=queue_arn,
        )  # fmt: skip
        invocations: list[dict] = []
        mapping = EventSourceMapping(config, crashing_after_first(handler, "OptInUpdater", invocations),
                                     retry_delay_s=0.0, idle_read_interval_s=0.0)  # fmt: skip
        drain([mapping], timeout_s=120, sleep=lambda _: None)

        poisoned = sequence_holding(stored, b"206-555-0100")
        assert dead_lettered(queue_url) == [(poisoned, poisoned)]
        assert sms.opted_out_numbers("tributary-optouts") == {f"+1206555{u:04d}" for u in range(users) if u % 2 == 0}
        for user in range(users):
            number = f"+1206555{user:04d}"
            writes = [op for op, _ in groupby(op for op, n in calls if n == number and op != "DescribeOptedOutNumbers")]
            # Each change once, in stream order; the redeliveries after the crash took no number back.
            expected = ["PutOptedOutNumber", "DeleteOptedOutNumber", "PutOptedOutNumber"][: 3 - user % 2]
            assert writes == expected, (number, writes)
