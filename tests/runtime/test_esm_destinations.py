"""On-failure destinations: AWS's invocation record in SQS, SNS and S3 (with the payload), and record age."""

import base64
import io
import json
import re

import boto3
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
    raise_on,
    run_until_drained,
)

from tributary.runtime.trace import TraceWriter

ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_sqs_receives_the_invocation_record_without_record_data(aws):
    stream = create_stream()
    queue = create_queue()
    sequence = put_numbers(range(1, 4))
    esm = mapping(stream, Recorder(raise_on(2)), maximum_retry_attempts=1, on_failure_destination_arn=queue)

    run_until_drained(esm)

    [record] = queue_messages("failed-records")
    assert set(record) == {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
    assert record["requestContext"]["functionArn"] == FUNCTION_ARN
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert re.fullmatch(r"[0-9a-f-]{36}", record["requestContext"]["requestId"])
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["version"] == "1.0"
    assert ISO_MILLIS.match(record["timestamp"])
    info = record["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000"
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (sequence[1], sequence[3])
    assert info["batchSize"] == 3
    assert info["streamArn"] == stream
    assert ISO_MILLIS.match(info["approximateArrivalOfFirstRecord"])
    assert info["approximateArrivalOfFirstRecord"] <= info["approximateArrivalOfLastRecord"]


def test_s3_objects_carry_the_whole_invocation_event_under_aws_key_layout(aws):
    stream = create_stream()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="failed-batches")
    put_numbers(range(1, 4))
    function = Recorder(raise_on(1))
    esm = mapping(stream, function, maximum_retry_attempts=0, on_failure_destination_arn="arn:aws:s3:::failed-batches")

    run_until_drained(esm)

    [listed] = s3.list_objects_v2(Bucket="failed-batches")["Contents"]
    key = listed["Key"]
    assert re.fullmatch(
        rf"aws/lambda/{esm.uuid}/shardId-000000000000/\d{{4}}/\d\d/\d\d/"
        r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{36}",
        key,
    ), key
    stored = json.loads(s3.get_object(Bucket="failed-batches", Key=key)["Body"].read())
    assert stored["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert stored["KinesisBatchInfo"]["batchSize"] == 3
    payload = json.loads(stored["payload"])
    assert payload == function.events[0]
    assert [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in payload["Records"]] == [1, 2, 3]


def test_sns_topics_receive_the_invocation_record(aws):
    stream = create_stream()
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="failed-batches")["TopicArn"]
    queue = create_queue("subscriber")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue, Attributes={"RawMessageDelivery": "true"})
    put_numbers(range(1, 3))
    esm = mapping(stream, Recorder(raise_on(1)), maximum_retry_attempts=0, on_failure_destination_arn=topic)

    run_until_drained(esm)

    [record] = queue_messages("subscriber")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["KinesisBatchInfo"]["batchSize"] == 2
    assert esm.stats.records_to_destination == 2


def test_an_unreachable_destination_is_reported_not_lost(aws):
    stream = create_stream()
    put_numbers(range(1, 3))
    esm = mapping(stream, Recorder(raise_on(1)), maximum_retry_attempts=0,
                  on_failure_destination_arn="arn:aws:sqs:us-east-1:123456789012:missing")

    run_until_drained(esm)

    [delivery] = esm.stats.deliveries
    assert "missing" in delivery["error"] or "NonExistentQueue" in delivery["error"]
    assert esm.stats.records_discarded == 2
    assert esm.stats.records_to_destination == 0


def test_records_older_than_the_maximum_age_are_discarded_before_the_next_try(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    queue = create_queue()
    sequence = put_numbers([1, 2, 3])
    clock.advance(30)
    put_numbers([4, 5])
    function = Recorder(lambda event, numbers: raise_on(numbers[0])(event, numbers))
    esm = mapping(stream, function, maximum_record_age_s=60, on_failure_destination_arn=queue, clock=clock)

    clock.advance(1)
    esm.poll()  # invokes 1..5, fails
    clock.advance(30)  # records 1-3 are 61 s old, 4-5 are 31 s old
    esm.poll()  # discards 1-3 before invoking
    esm.poll()  # invokes 4-5, fails
    clock.advance(30)  # records 4-5 are 61 s old
    esm.poll()

    assert function.batches == [[1, 2, 3, 4, 5], [4, 5]]
    first, second = queue_messages("failed-records")
    assert first["requestContext"]["condition"] == "RecordAgeExceeded"
    assert first["requestContext"]["approximateInvokeCount"] == 1
    assert (first["KinesisBatchInfo"]["startSequenceNumber"], first["KinesisBatchInfo"]["endSequenceNumber"]) == (
        sequence[1], sequence[3],
    )
    assert second["requestContext"]["condition"] == "RecordAgeExceeded"
    assert second["KinesisBatchInfo"]["batchSize"] == 2
    assert esm.is_drained()


def test_records_that_expire_before_any_invocation_carry_no_response_context(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    queue = create_queue()
    put_numbers([1, 2])
    clock.advance(3600)
    function = Recorder()
    esm = mapping(stream, function, maximum_record_age_s=60, on_failure_destination_arn=queue, clock=clock)

    run_until_drained(esm)

    assert function.batches == []
    [record] = queue_messages("failed-records")
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in record


def test_trace_lines_follow_each_invocation_and_delivery(aws):
    stream = create_stream()
    sequence = put_numbers(range(1, 4))
    lines = io.StringIO()
    esm = mapping(stream, Recorder(raise_on(2)), maximum_retry_attempts=1, trace=TraceWriter(lines))

    run_until_drained(esm)

    trace = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(line["type"], line.get("attempt"), line.get("outcome")) for line in trace] == [
        ("invocation", 1, "error"), ("invocation", 2, "error"), ("delivery", None, None),
    ]
    assert trace[0]["sequenceNumbers"] == [sequence[1], sequence[2], sequence[3]]
    assert trace[0]["shard"] == "shardId-000000000000"
    assert trace[0]["function"] == "under-test"
    assert trace[0]["checkpoint"] is None
    assert trace[2]["condition"] == "RetryAttemptsExhausted"
    assert trace[2]["batchInfo"]["endSequenceNumber"] == sequence[3]
