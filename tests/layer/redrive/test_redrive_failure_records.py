"""What the redrive makes of an on-failure message: Lambda's invocation records, and anything else refused with why."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_shared.redrive.failure_records import (
    AsyncRequest,
    NotRedrivable,
    StreamBatch,
    day_of,
    parse_failure,
)

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tributary-PaymentProcessorFunction-ABC"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/payments"


def stream_record(**batch_info) -> dict:
    """An SQS on-failure message body as Lambda's Kinesis event source mapping writes it."""
    info = {
        "shardId": "shardId-000000000000",
        "startSequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "endSequenceNumber": "49590338271490256608559692540925702759324208523137515618",
        "approximateArrivalOfFirstRecord": "2026-11-21T12:00:00.000Z",
        "approximateArrivalOfLastRecord": "2026-11-21T12:00:01.000Z",
        "batchSize": 2,
        "streamArn": STREAM_ARN,
        **batch_info,
    }
    return {
        "requestContext": {"requestId": "r-1", "functionArn": FUNCTION_ARN, "condition": "RetryAttemptsExhausted",
                           "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-21T12:05:00.000Z",
        "KinesisBatchInfo": info,
    }  # fmt: skip


def without_batch_info() -> dict:
    return {key: value for key, value in stream_record().items() if key != "KinesisBatchInfo"}


def event_record(sequence: str) -> dict:
    return {"kinesis": {"sequenceNumber": sequence, "data": "e30=", "partitionKey": "k"}, "eventSource": "aws:kinesis"}


def test_a_stream_mappings_record_names_the_batch():
    batch = parse_failure(json.dumps(stream_record()))
    assert isinstance(batch, StreamBatch)
    assert batch.function_name == "tributary-PaymentProcessorFunction-ABC"
    assert (batch.stream_arn, batch.shard_id, batch.size) == (STREAM_ARN, "shardId-000000000000", 2)
    assert batch.records is None
    assert batch.condition == "RetryAttemptsExhausted"
    assert batch.name == f"shardId-000000000000-{batch.start_sequence}-{batch.end_sequence}"
    assert day_of(batch.timestamp) == "2026/11/21"


def test_an_s3_object_carries_the_batch_itself_in_sequence_order():
    record = stream_record(startSequenceNumber="10", endSequenceNumber="12")
    record["payload"] = json.dumps({"Records": [event_record("12"), event_record("10")]})
    batch = parse_failure(json.dumps(record).encode())
    assert isinstance(batch, StreamBatch)
    assert [r["kinesis"]["sequenceNumber"] for r in batch.records or ()] == ["10", "12"]


def test_an_asynchronous_invocations_record_is_a_request_to_send_again():
    record = {
        "version": "1.0",
        "timestamp": "2026-11-21T12:05:00.000Z",
        "requestContext": {"requestId": "req-7", "functionArn": f"{FUNCTION_ARN}:$LATEST",
                           "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": {"bucket": "b", "key": "orders/big.csv", "start_byte": 100},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "s3://b/orders/big.csv was deleted", "errorType": "LoadFailed"},
    }  # fmt: skip
    request = parse_failure(json.dumps(record))
    assert isinstance(request, AsyncRequest)
    assert (request.function_name, request.request_id, request.invoke_count) == (
        "tributary-PaymentProcessorFunction-ABC", "req-7", 3)  # fmt: skip
    assert request.payload == record["requestPayload"]
    assert request.error == "LoadFailed: s3://b/orders/big.csv was deleted"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"hello": "world"}', "no requestContext"),
        (json.dumps({**stream_record(), "requestContext": {"functionArn": "arn:aws:sqs:x"}}),
         "not a Lambda function ARN"),
        (json.dumps(stream_record(streamArn="arn:aws:sqs:us-east-1:123456789012:q")), "not a Kinesis stream ARN"),
        (json.dumps(stream_record(shardId="../../etc")), "not a shard id"),
        (json.dumps(stream_record(startSequenceNumber="12a")), "startSequenceNumber is not a sequence number"),
        (json.dumps(stream_record(startSequenceNumber="20", endSequenceNumber="10")), "ends (10) before it starts"),
        (json.dumps(stream_record(batchSize=0)), "batchSize is not a positive integer"),
        (json.dumps(stream_record(batchSize=True)), "batchSize is not a positive integer"),
        (json.dumps({**without_batch_info(), "DDBStreamBatchInfo": {}}), "DynamoDB stream batch"),
        (json.dumps(without_batch_info()), "neither KinesisBatchInfo"),
        (json.dumps({**stream_record(), "payload": "{}"}), "holds no records"),
        (json.dumps({**stream_record(), "payload": "not json"}), "payload is not the Kinesis event"),
        (json.dumps({**stream_record(startSequenceNumber="10", endSequenceNumber="11"),
                     "payload": json.dumps({"Records": [event_record("12")]})}), "outside its KinesisBatchInfo range"),
    ],
)  # fmt: skip
def test_anything_else_is_refused_with_the_reason(body, reason):
    with pytest.raises(NotRedrivable) as refused:
        parse_failure(body)
    assert reason in refused.value.reason


def test_an_unreadable_timestamp_dates_the_quarantine_undated():
    assert day_of("yesterday") == "undated"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@given(st.one_of(st.binary(max_size=300), JSON.map(json.dumps),
                 st.fixed_dictionaries({"requestContext": JSON, "KinesisBatchInfo": JSON, "payload": JSON}).map(
                     json.dumps)))  # fmt: skip
def test_fuzz_hostile_messages_are_refused_never_crash(body):
    try:
        parsed = parse_failure(body)
    except NotRedrivable as refused:
        assert refused.reason
    else:
        assert isinstance(parsed, StreamBatch | AsyncRequest)


BATCH_FIELDS = ["shardId", "startSequenceNumber", "endSequenceNumber", "batchSize", "streamArn"]


@given(
    st.dictionaries(st.sampled_from(BATCH_FIELDS), JSON, max_size=5),
    st.one_of(st.none(), JSON, JSON.map(json.dumps)),
    st.one_of(st.just(None), st.lists(JSON, max_size=3)),
)
def test_fuzz_a_real_record_with_hostile_fields_is_refused_or_read(fields, payload, records):
    record = stream_record(**fields)
    if payload is not None:
        record["payload"] = payload
    if records is not None:
        record["payload"] = json.dumps({"Records": records})
    try:
        parsed = parse_failure(json.dumps(record))
    except NotRedrivable as refused:
        assert refused.reason
    else:
        assert isinstance(parsed, StreamBatch) and int(parsed.start_sequence) <= int(parsed.end_sequence)
