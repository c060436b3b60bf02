"""Per-key order through the event-source-mapping engine with the template's mapping settings.

The oracle is the table's DynamoDB stream: every write DynamoDB applied, in the order it applied
them. Whatever the mapping does (retry from the reported record, bisect, dead-letter), a key's
writes never go back in stream order and its final item is its newest record not dead-lettered.
"""

import json

import boto3
from support import (
    FakeLambdaContext,
    assert_never_back_in_time,
    load_handler_module,
    mapping_config,
    table_stream_images,
)

from tributary.runtime.esm import EventSourceMapping, drain
from tributary.runtime.invocation import InvocationResult

PAYMENTS_ENV = {"TABLE_NAME": "Payments", "KEY_ATTRIBUTES": "paymentId"}


def create_payments(shards: int = 1) -> tuple[str, str, str]:
    """The Payments table (with a stream, the oracle), the payments stream and a failure queue."""
    table = boto3.client("dynamodb").create_table(
        TableName="Payments",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "paymentId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "paymentId", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    kinesis.create_stream(StreamName="payments", ShardCount=shards)
    stream_arn = kinesis.describe_stream_summary(StreamName="payments")["StreamDescriptionSummary"]["StreamARN"]
    url = sqs.create_queue(QueueName="failed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return table["TableDescription"]["LatestStreamArn"], stream_arn, queue_arn


def applied_versions(table_stream_arn: str) -> list[tuple[str, str]]:
    """(paymentId, version label) of every write the table applied, in order."""
    return [(image["paymentId"]["S"], image["v"]["S"]) for image in table_stream_images(table_stream_arn)]


def put(data: bytes, key: str) -> None:
    boto3.client("kinesis").put_record(StreamName="payments", Data=data, PartitionKey=key)


def run(stream_arn: str, queue_arn: str, crash_after_first_invocation: bool = False) -> list[dict]:
    handler = load_handler_module("stream_processor", **PAYMENTS_ENV).lambda_handler
    events: list[dict] = []

    def invoke(event: dict) -> InvocationResult:
        events.append(event)
        response = handler(event, FakeLambdaContext())
        if crash_after_first_invocation and len(events) == 1:
            # The writes happened; the function then dies (out of memory, say): a function error.
            return InvocationResult(function_error="Unhandled", error_message="Runtime exited")
        return InvocationResult(response=response)

    config = mapping_config(stream_arn, queue_arn)
    drain([EventSourceMapping(config, invoke, retry_delay_s=0.0, idle_read_interval_s=0.0)], timeout_s=60,
          sleep=lambda _: None)
    return events


def test_poison_before_three_versions_of_a_key_never_takes_the_key_back(aws):
    """The issue's case: [poison, k:v1, k:v2, k:v3] once gave DynamoDB v3, v1, v1, v3."""
    table_stream, stream_arn, queue_arn = create_payments()
    put(b'{"paymentId": "broken"', "k")
    for version in ("v1", "v2", "v3"):
        put(json.dumps({"paymentId": "k", "v": version}).encode(), "k")
    events = run(stream_arn, queue_arn)
    assert len(events) > 1  # the mapping did retry and bisect
    applied = applied_versions(table_stream)
    assert applied and all(key == "k" for key, _ in applied)
    labels = [label for _, label in applied]
    assert labels == sorted(labels) and len(set(labels)) == len(labels), labels
    item = boto3.resource("dynamodb").Table("Payments").get_item(Key={"paymentId": "k"})["Item"]
    assert item["v"] == "v3"


def test_a_crash_after_the_writes_then_bisect_never_takes_a_key_back(aws):
    table_stream, stream_arn, queue_arn = create_payments()
    sequence_of: dict[tuple[str, int], int] = {}
    for n in range(1, 41):
        key = f"p{n % 4}"
        response = boto3.client("kinesis").put_record(
            StreamName="payments", Data=json.dumps({"paymentId": key, "v": f"{n:03d}"}).encode(), PartitionKey=key
        )
        sequence_of[(key, n)] = int(response["SequenceNumber"])
    run(stream_arn, queue_arn, crash_after_first_invocation=True)
    applied = applied_versions(table_stream)
    assert_never_back_in_time([(key, int(label)) for key, label in applied])
    items = boto3.resource("dynamodb").Table("Payments").scan()["Items"]
    assert {item["paymentId"]: item["v"] for item in items} == {"p0": "040", "p1": "037", "p2": "038", "p3": "039"}
