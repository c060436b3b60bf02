"""The redrive end to end under the local runtime, with the real template: the state machine's ASL in moto's
interpreter, RedriveFunction and the pipelines' functions in-process, the queue, stream, tables and buckets
in the embedded AWS. Records are dead-lettered the way production does it (a schema registry outage
while producers move to a new schema version, poison pills, a CSV load that cannot resume), then
redriven; every test reads the outcome back from the tables, the buckets and the queue.

Whether a done record counts as re-applied or superseded is the pipeline function's to say (its record
report); the tables say it independently, and that is what these tests hold the redrive to.
"""

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto.kinesis.models import kinesis_backends

from tributary.avro_encoding import encode_glue
from tributary.commands.demo import RuntimeDemoContext
from tributary.demos.data_lake import csv_bytes, order_rows
from tributary.demos.redrive import payment, payment_schema_v3, quarantine_lines, scan_versions
from tributary.demos.stream_processor import PAYMENT_SCHEMA, schema_registry
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.executions import LOCAL_REDRIVE_OPTIONS, run_execution
from tributary.runtime.faults import FaultPlan
from tributary.runtime.template import ACCOUNT_ID, REGION
from tributary_shared.avro_schemas import canonical_definition, parse_definition
from tributary_shared.kinesis_batch import record_version

ROOT = Path(__file__).parents[2]
FAST = {**LOCAL_REDRIVE_OPTIONS, "retryDelaySeconds": 0.05}
MOMENT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def start_runtime(**parameters: str) -> Runtime:
    options = RuntimeOptions(
        ROOT / "template.yaml",
        parameter_overrides={"BatchingWindowSeconds": "0", "TumblingWindowInSeconds": "1", **parameters},
        function_log=io.StringIO(), retry_delay_s=0.1, idle_read_interval_s=0.1, async_retry_delays_s=(0.0, 0.0),
        faults=FaultPlan({}, seed=1),  # nothing drawn: only the outages the tests inject
    )  # fmt: skip
    return Runtime(options)


@pytest.fixture
def runtime(aws: object) -> Iterator[Runtime]:  # `aws` first: moto state is process-wide
    with start_runtime() as running:
        yield running
        running.aws.reset()  # moto's backends are process-wide: leave nothing for the next test


@pytest.fixture
def s3_runtime(aws: object) -> Iterator[Runtime]:
    with start_runtime(OnFailureDestination="s3") as running:
        yield running
        running.aws.reset()


class Stack:
    """The deployed stack as the tests drive it: put records, dead-letter some, redrive, read back."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ctx = RuntimeDemoContext(runtime, drain_timeout_s=120)
        self.kinesis = boto3.client("kinesis")
        self.payments = self.ctx.physical_name("PaymentsStream")

    def put(self, stream: str, key: str, data: bytes) -> str:
        return self.kinesis.put_record(StreamName=stream, PartitionKey=key, Data=data)["SequenceNumber"]

    def put_json_payment(self, payment_id: str, status: str) -> str:
        return self.put(self.payments, payment_id, json.dumps({"paymentId": payment_id, "status": status}).encode())

    def during_registry_outage(self, statuses: dict[str, str]) -> dict[str, str]:
        """Put schema-v3 payments while the registry is down: the processor fails them until they are given up."""
        definition = canonical_definition(json.dumps(payment_schema_v3()))
        version_id = schema_registry(self.ctx).version_for(PAYMENT_SCHEMA, definition, compatibility="FULL")
        self.encode = lambda payment_id, status: encode_glue(payment(payment_id, status, MOMENT),
                                                             parse_definition(definition), version_id)  # fmt: skip
        with self.runtime.outage("glue.unavailable"):
            put = {pid: self.put(self.payments, pid, self.encode(pid, status)) for pid, status in statuses.items()}
            self.runtime.drain(120)
        return put

    def redrive(self, **options: object) -> dict:
        result = run_execution(boto3.client("stepfunctions"), self.ctx.physical_name("RedriveStateMachine"),
                               {**FAST, **options}, timeout_s=300)  # fmt: skip
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        return result.output

    def payment_versions(self) -> dict[str, str]:
        return {key[0]: version for key, version in scan_versions(self.ctx, "PaymentsTable", ("paymentId",)).items()}

    def queue_depth(self) -> int:
        sqs = boto3.client("sqs")
        url = self.ctx.physical_name("FailedRecordsQueue")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def quarantine(self) -> list[dict]:
        return quarantine_lines(self.ctx)


def done(summary: dict) -> int:
    """Records the pipelines took (written, or superseded by a newer item): the function says which."""
    return summary["reApplied"] + summary["superseded"] + summary["appliedUnreported"]


def trim(stream: str, through: str) -> None:
    """Expire every record of the stream's shard up to sequence number `through`, as retention would."""
    shard = kinesis_backends[ACCOUNT_ID][REGION].streams[stream].shards["shardId-000000000000"]
    for sequence in [number for number in shard.records if number <= int(through)]:
        del shard.records[sequence]


@pytest.mark.slow
def test_payments_an_outage_dead_lettered_come_back_and_newer_items_stay_untouched(runtime):
    stack = Stack(runtime)
    for payment_id in ("pay-1", "pay-2", "pay-3"):
        stack.put_json_payment(payment_id, "PENDING")
    poison = stack.put(stack.payments, "bad", b"\xff not a payment")
    runtime.drain(120)
    dead = stack.during_registry_outage({"pay-1": "REFUNDED", "pay-2": "REFUNDED"})
    newer = stack.put(stack.payments, "pay-2", stack.encode("pay-2", "SETTLED"))
    runtime.drain(120)
    assert stack.queue_depth() == 3  # the poison pill and the two payments, each given up alone

    summary = stack.redrive()

    versions = stack.payment_versions()
    assert versions["pay-1"] == record_version(dead["pay-1"])  # brought back
    assert versions["pay-2"] == record_version(newer)  # the newer item was not replaced by the older record
    assert done(summary) == 2 and summary["quarantined"] == 1 and summary["lostToRetention"] == 0
    assert summary["messages"] == {"settled": 3, "kept": 0, "notSelected": 0, "planned": 0}
    [line] = stack.quarantine()
    assert (line["sequenceNumber"], line["pipeline"]) == (poison, "payment-processor")
    assert line["reason"] and line["data"] and line["attempts"] >= 1
    assert stack.queue_depth() == 0

    again = stack.redrive()  # nothing left: a second run changes nothing
    assert again["messages"]["settled"] == 0 and stack.payment_versions() == versions and len(stack.quarantine()) == 1


@pytest.mark.slow
def test_records_the_stream_expired_are_reported_lost_with_their_range(runtime):
    stack = Stack(runtime)
    stack.put_json_payment("pay-1", "PENDING")
    runtime.drain(120)
    dead = stack.during_registry_outage({"pay-1": "REFUNDED", "pay-2": "REFUNDED"})
    trim(stack.payments, through=dead["pay-1"])  # pay-1's refund has expired, pay-2's has not

    summary = stack.redrive()

    assert summary["lostToRetention"] == 1 and done(summary) == 1
    [lost] = summary["lost"]
    assert (lost["from"], lost["to"], lost["records"]) == (dead["pay-1"], dead["pay-1"], 1)
    assert [line["kind"] for line in stack.quarantine()] == ["lost"]
    assert stack.payment_versions()["pay-2"] == record_version(dead["pay-2"])
    assert stack.queue_depth() == 0


@pytest.mark.slow
def test_messages_that_are_no_redrivable_record_stay_in_the_queue_with_their_reasons(runtime):
    stack = Stack(runtime)
    sqs, url = boto3.client("sqs"), stack.ctx.physical_name("FailedRecordsQueue")
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/deleted-stream"
    function = stack.ctx.physical_name("PaymentProcessorFunction")
    record = {"requestContext": {"functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}"},
              "timestamp": "2026-11-21T12:00:00.000Z",
              "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "1",
                                   "endSequenceNumber": "2", "batchSize": 2, "streamArn": arn}}  # fmt: skip
    stranger = {**record, "requestContext": {"functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:other"}}
    for body in ("{not json", json.dumps({"hello": "world"}), json.dumps(record), json.dumps(stranger)):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    summary = stack.redrive()

    reasons = sorted(item["reason"] for item in summary["kept"])
    assert summary["messages"]["kept"] == 4 and summary["messages"]["settled"] == 0
    assert any("not JSON" in reason for reason in reasons)
    assert any("no requestContext" in reason for reason in reasons)
    assert any("deleted-stream no longer exists" in reason for reason in reasons)
    assert any("other is not a function this stack redrives" in reason for reason in reasons)
    visible = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert int(visible["ApproximateNumberOfMessages"]) == 4  # kept, and visible again for the next run
    assert stack.quarantine() == []


@pytest.mark.slow
def test_an_interrupted_execution_loses_nothing_and_running_again_settles_the_rest(runtime):
    stack = Stack(runtime)
    poison = [stack.put(stack.payments, f"bad-{n}", f"bad record {n}".encode()) for n in range(4)]
    runtime.drain(120)
    assert stack.queue_depth() == 4
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=stack.ctx.physical_name("RedriveStateMachine"), name="interrupted",
        input=json.dumps({**LOCAL_REDRIVE_OPTIONS, "retryDelaySeconds": 0.3, "visibilityTimeoutSeconds": 2}),
    )["executionArn"]
    deadline = time.monotonic() + 60
    while stack.queue_depth() == 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    sfn.stop_execution(executionArn=execution)  # dies midway: one message settled, the others not yet
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)  # the task in progress ends first
    # moto's interpreter reports a stop that lands inside a Map now ABORTED, now FAILED (States.Runtime): either
    # way the execution died with a message in hand.
    assert sfn.describe_execution(executionArn=execution)["status"] in {"ABORTED", "FAILED"}
    time.sleep(2.5)  # the visibility timeout of the messages it had received

    remaining = stack.queue_depth()
    assert 1 <= remaining <= 3
    settled = {line["sequenceNumber"] for line in stack.quarantine()}
    assert len(settled) >= 4 - remaining  # every deleted message's records were quarantined first

    summary = stack.redrive()

    assert summary["messages"]["settled"] == remaining and stack.queue_depth() == 0
    lines = stack.quarantine()
    assert sorted(line["sequenceNumber"] for line in lines) == sorted(poison)  # each once, however often redriven
    assert stack.payment_versions() == {}


@pytest.mark.slow
def test_an_s3_destinations_batches_come_back_from_their_payload_and_move_to_redriven(s3_runtime):
    stack = Stack(s3_runtime)
    poison = stack.put(stack.payments, "bad", b"\xff not a payment")
    s3_runtime.drain(120)
    dead = stack.during_registry_outage({"pay-1": "REFUNDED"})
    trim(stack.payments, through=dead["pay-1"])  # the stream no longer has them: only the objects do
    s3, bucket = boto3.client("s3"), stack.ctx.physical_name("FailedRecordsBucket")

    def keys(prefix: str) -> list[str]:
        return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]

    failed = keys("aws/lambda/")
    assert len(failed) == 2 and stack.queue_depth() == 0

    summary = stack.redrive()

    assert done(summary) == 1 and summary["quarantined"] == 1 and summary["lostToRetention"] == 0
    assert stack.payment_versions()["pay-1"] == record_version(dead["pay-1"])
    assert keys("aws/lambda/") == [] and sorted(keys("redriven/")) == sorted(f"redriven/{key}" for key in failed)
    [line] = stack.quarantine()
    assert line["sequenceNumber"] == poison and keys("quarantine/payment-processor/")


@pytest.mark.slow
def test_the_csv_loaders_resume_requests_are_sent_again_or_quarantined(runtime):
    stack = Stack(runtime)
    bucket, loader = stack.ctx.physical_name("OrdersSourceBucket"), stack.ctx.physical_name("CsvLoaderFunction")
    for key in ("orders/late.csv", "orders/gone.csv"):  # a continuation of a file that is not there (yet)
        request = {"bucket": bucket, "key": key, "segment": 2}
        boto3.client("lambda").invoke(FunctionName=loader, InvocationType="Event", Payload=json.dumps(request))
    runtime.drain(60)
    assert stack.queue_depth() == 2
    rows = list(order_rows(datetime(2020, 9, 4).date(), 5))
    boto3.client("s3").put_object(Bucket=bucket, Key="orders/late.csv", Body=csv_bytes(rows))  # the fix: it arrived
    runtime.drain(60)  # its own upload event loads it too; the redrive's load of it changes nothing

    summary = stack.redrive(pipeline="csv-loader")

    assert (done(summary), summary["quarantined"]) == (1, 1) and stack.queue_depth() == 0
    [line] = stack.quarantine()
    assert line["kind"] == "request" and line["request"]["key"] == "orders/gone.csv"
    assert "orders/gone.csv was deleted" in line["reason"]
    table = stack.ctx.physical_name("OrderTransactionsTable")
    count = boto3.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"]
    assert count == len({(row["order_id"], row["item_id"]) for row in rows})


@pytest.mark.slow
def test_a_dry_run_changes_nothing_and_a_pipeline_asked_for_leaves_the_others(runtime):
    stack = Stack(runtime)
    stack.put(stack.payments, "bad", b"\xff not a payment")
    stack.put(stack.ctx.physical_name("WildrydesStream"), "bad", b"{not json")
    runtime.drain(120)
    messages = stack.queue_depth()
    assert messages == 3  # the payment, and the unicorn for the stream processor and for the aggregator

    plan = stack.redrive(dryRun=True)

    assert plan["messages"]["planned"] == 3 and plan["wouldReApply"] == 2 and plan["wouldQuarantine"] == 1
    assert stack.queue_depth() == 3 and stack.quarantine() == []

    summary = stack.redrive(pipeline="payment-processor")

    assert summary["messages"] == {"settled": 1, "kept": 0, "notSelected": 2, "planned": 0}
    assert stack.queue_depth() == 2 and {line["pipeline"] for line in stack.quarantine()} == {"payment-processor"}
