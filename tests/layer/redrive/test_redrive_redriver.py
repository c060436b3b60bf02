"""One on-failure message settled or kept: the batch read back from the emulated stream, the records through a
(stand-in) pipeline function, what still fails in the quarantine bucket."""

import base64
import io
import json
from collections.abc import Iterator

import boto3
import pytest
from moto.kinesis.models import kinesis_backends
from support import FakeLambdaContext

from tributary_shared.redrive.redriver import Redriver
from tributary_shared.redrive.settings import RedriveSettings, RunOptions

ACCOUNT, REGION = "123456789012", "us-east-1"
STREAM, BUCKET = "payments", "quarantine-bucket"
PIPELINE_FUNCTION = "fn-pay"
SETTINGS = RedriveSettings(
    pipelines={"payment-processor": PIPELINE_FUNCTION},
    quarantine_only={"fleet-aggregator": "fn-agg"},
    quarantine_bucket=BUCKET,
    invoke_identity_arn=f"arn:aws:iam::{ACCOUNT}:role/redrive",
    region=REGION,
)


class PipelineFunction:
    """A stand-in pipeline: fails the records whose data says "poison", reports what it did."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, **request):
        event = json.loads(request["Payload"])
        self.events.append(event)
        (record,) = event["Records"]
        sequence = record["kinesis"]["sequenceNumber"]
        poison = b"poison" in base64.b64decode(record["kinesis"]["data"])
        failed = {sequence: {"reason": "poison pill", "permanent": True}} if poison else {}
        answer = {"batchItemFailures": [{"itemIdentifier": sequence}] if poison else [],
                  "recordReport": {"records": 1, "superseded": [], "failed": failed}}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}  # fmt: skip


@pytest.fixture
def stream(aws) -> Iterator[list[str]]:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    sequences = [kinesis.put_record(StreamName=STREAM, PartitionKey=f"k{n}", Data=data)["SequenceNumber"]
                 for n, data in enumerate([b'{"n": 0}', b"poison", b'{"n": 2}', b'{"n": 3}'])]  # fmt: skip
    yield sequences


def message(first: str, last: str, size: int, function: str = PIPELINE_FUNCTION, stream: str = STREAM) -> dict:
    record = {
        "requestContext": {"requestId": "r", "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
                           "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "version": "1.0", "timestamp": "2026-11-21T12:00:00.000Z",
        "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": first,
                             "endSequenceNumber": last, "batchSize": size,
                             "streamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}"},
    }  # fmt: skip
    return {"type": "sqs", "messageId": "m-1", "body": json.dumps(record)}


def redrive(source: dict, function: PipelineFunction | None = None, **options) -> dict:
    redriver = Redriver(SETTINGS, lambda_client=function or PipelineFunction(), sleep=lambda _: None)
    return redriver.redrive(source, RunOptions(**options), FakeLambdaContext(timeout_s=900))


def quarantined() -> dict[str, list[dict]]:
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return {key: [json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]
            for key in keys}  # fmt: skip


def trim(count: int) -> None:
    """Drop the shard's oldest records, as Kinesis does when its retention period passes."""
    shard = kinesis_backends[ACCOUNT][REGION].streams[STREAM].shards["shardId-000000000000"]
    for sequence in list(shard.records)[:count]:
        del shard.records[sequence]


def test_the_batch_is_re_applied_record_by_record_and_what_fails_is_quarantined(stream):
    pipeline = PipelineFunction()
    outcome = redrive(message(stream[0], stream[2], 3), pipeline)
    assert outcome["disposition"] == "settled"
    assert outcome["counts"] == {"reApplied": 2, "superseded": 0, "appliedUnreported": 0, "quarantined": 1,
                                 "lostToRetention": 0}  # fmt: skip
    assert [event["Records"][0]["kinesis"]["sequenceNumber"] for event in pipeline.events] == stream[:3]
    record = pipeline.events[0]["Records"][0]
    assert (record["eventSourceARN"], record["eventID"], record["invokeIdentityArn"]) == (
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}", f"shardId-000000000000:{stream[0]}",
        SETTINGS.invoke_identity_arn)  # fmt: skip
    ((key, lines),) = quarantined().items()
    assert key == f"quarantine/payment-processor/2026/11/21/shardId-000000000000-{stream[0]}-{stream[2]}.jsonl"
    assert [(line["kind"], line["sequenceNumber"], line["reason"], line["attempts"]) for line in lines] == [
        ("record", stream[1], "poison pill", 1)]  # fmt: skip
    assert outcome["quarantine"] == f"s3://{BUCKET}/{key}"


def test_running_twice_leaves_one_quarantine_object_and_none_once_nothing_fails(stream):
    source = message(stream[0], stream[2], 3)
    redrive(source)
    first = quarantined()
    redrive(source)
    assert quarantined().keys() == first.keys()
    redrive(message(stream[2], stream[3], 2))
    assert len(quarantined()) == 1  # a message with nothing to quarantine leaves no object


def test_records_the_stream_has_expired_are_lost_to_retention_with_their_range(stream):
    trim(2)
    outcome = redrive(message(stream[0], stream[2], 3))
    assert outcome["disposition"] == "settled"
    assert (outcome["counts"]["lostToRetention"], outcome["counts"]["reApplied"]) == (2, 1)
    assert outcome["lost"] == [{"streamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}",
                                "shardId": "shardId-000000000000", "from": stream[0],
                                "to": str(int(stream[2]) - 1), "records": 2}]  # fmt: skip
    (lines,) = quarantined().values()
    assert [line["kind"] for line in lines] == ["lost"] and lines[0]["records"] == 2


def test_a_batch_wholly_expired_is_lost_whole(stream):
    trim(4)
    outcome = redrive(message(stream[0], stream[1], 2))
    assert outcome["counts"]["lostToRetention"] == 2 and outcome["lost"][0]["to"] == stream[1]


def test_a_stream_that_no_longer_exists_keeps_the_message(stream):
    outcome = redrive(message(stream[0], stream[1], 2, stream="deleted-stream"))
    assert outcome["disposition"] == "kept" and "no longer exists" in outcome["reason"]
    assert quarantined() == {}


def test_a_pipeline_that_cannot_replay_has_its_records_quarantined_with_why(stream):
    pipeline = PipelineFunction()
    outcome = redrive(message(stream[0], stream[1], 2, function="fn-agg"), pipeline)
    assert outcome["counts"]["quarantined"] == 2 and pipeline.events == []
    (lines,) = quarantined().values()
    assert all("tumbling window has closed" in line["reason"] and line["attempts"] == 0 for line in lines)


def test_a_dry_run_reads_and_plans_but_invokes_and_writes_nothing(stream):
    pipeline = PipelineFunction()
    outcome = redrive(message(stream[0], stream[2], 3), pipeline, dry_run=True)
    assert outcome["disposition"] == "planned" and outcome["plan"]["wouldReApply"] == 3
    assert pipeline.events == [] and quarantined() == {}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ({"type": "sqs", "messageId": "m", "body": "hello"}, "not JSON"),
        ({"type": "s3", "bucket": BUCKET, "key": "aws/lambda/gone"}, "no longer exists"),
    ],
)
def test_a_message_that_is_no_invocation_record_is_kept_with_why(stream, source, reason):
    outcome = redrive(source)
    assert outcome["disposition"] == "kept" and reason in outcome["reason"]


def test_another_functions_record_is_kept_and_another_pipelines_left_alone(stream):
    assert "not a function this stack redrives" in redrive(message(stream[0], stream[1], 2, function="other"))["reason"]
    other = redrive(message(stream[0], stream[1], 2), pipeline="fleet-aggregator")
    assert (other["disposition"], other["pipeline"]) == ("not-selected", "payment-processor")
