"""The stream processor under the event-source-mapping engine, with the template's production settings.

Records with poison pills go on a moto Kinesis stream; the mapping retries, bisects and dead-letters
to SQS. Every record must end up in the table or inside a batch range delivered to the queue.
"""

import json
import random

import boto3
import pytest
from support import (
    UNICORN_ENV,
    FakeLambdaContext,
    create_unicorn_table,
    load_handler_module,
    mapping_config,
    table_items,
)

from tributary.runtime.esm import EventSourceMapping, drain
from tributary.runtime.invocation import InvocationResult

POISON_PILLS = [b'{"Name": "Bad", "InputData": "error"', b'{"StatusTime": "x"}', b"\x05"]
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:StreamProcessor"




def unicorn_payloads(count: int, poison_every: int) -> list[tuple[bytes, dict | None]]:
    rng = random.Random(3)
    payloads: list[tuple[bytes, dict | None]] = []
    for i in range(count):
        if i % poison_every == poison_every - 1:
            payloads.append((rng.choice(POISON_PILLS), None))
            continue
        status = {"Name": f"Unicorn{i % 7}", "StatusTime": f"2017-06-05 09:17:{i:04d}", "Distance": i}
        payloads.append((json.dumps(status).encode(), status))
    return payloads


@pytest.mark.slow
def test_every_record_is_in_the_table_or_in_a_dead_lettered_batch(aws):
    create_unicorn_table()
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    kinesis.create_stream(StreamName="wildrydes", ShardCount=2)
    stream_arn = kinesis.describe_stream_summary(StreamName="wildrydes")["StreamDescriptionSummary"]["StreamARN"]
    queue_url = sqs.create_queue(QueueName="failed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    sent = []
    for data, status in unicorn_payloads(250, poison_every=40):
        key = status["Name"] if status else "Bad"
        response = kinesis.put_record(StreamName="wildrydes", Data=data, PartitionKey=key)
        sent.append((response["ShardId"], int(response["SequenceNumber"]), status))

    handler = load_handler_module("stream_processor", **UNICORN_ENV).lambda_handler
    mapping = EventSourceMapping(
        mapping_config(stream_arn, queue_arn),
        lambda event: InvocationResult(response=handler(event, FakeLambdaContext())),
    )
    drain([mapping], timeout_s=120)

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    dead_lettered = [json.loads(m["Body"])["KinesisBatchInfo"] for m in messages]
    assert all(json.loads(m["Body"])["requestContext"]["condition"] == "RetryAttemptsExhausted" for m in messages)

    def in_dead_letter(shard: str, sequence: int) -> bool:
        return any(
            info["shardId"] == shard and int(info["startSequenceNumber"]) <= sequence <= int(info["endSequenceNumber"])
            for info in dead_lettered
        )

    written = table_items()
    poison = [(shard, seq) for shard, seq, status in sent if status is None]
    assert poison and all(in_dead_letter(shard, seq) for shard, seq in poison)
    # Bisect isolates each poison pill: no good record is dead-lettered, every one is in the table.
    for shard, sequence, status in sent:
        if status is not None:
            assert (status["Name"], status["StatusTime"]) in written
            assert not in_dead_letter(shard, sequence)
    assert sum(info["batchSize"] for info in dead_lettered) == len(poison)
