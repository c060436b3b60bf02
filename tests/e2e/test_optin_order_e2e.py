"""Per-number order of the opt-in updater through the event-source-mapping engine, with the template's
mapping settings, after a function error that came once the handler had applied its batch.

That is what `tributary demo --faults lambda.crash=...` measured: the batch was applied, the runtime
died before returning, bisect delivered the older half again, and users whose last change was an
opt-in were put back on the opt-out list (their second removal within 30 days then refused). The
oracle is independent of the updater's own counts: the opt-out list itself, every call the SMS
emulation accepted or refused, and the on-failure queue.
"""

import json
from collections.abc import Iterator, Mapping
from itertools import groupby
from typing import Any

import boto3
import pytest
from support import OPT_OUT_LIST as LIST
from support import VERSION_TABLE, FakeLambdaContext, create_version_table, load_handler_module
from support import declared_mapping as declared_kinesis_event

from tributary.runtime.emulations.sms import SmsEmulation
from tributary.runtime.esm import EventSourceMapping, MappingConfig, drain
from tributary.runtime.invocation import InvocationResult

STREAM = "optin-cdc"
USERS = 30
INVALID_PHONE = "206-555-0100"


class RecordingSms(SmsEmulation):
    """The SMS emulation, keeping every opt-out list call it answered: (operation, number, error code)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, str]] = []

    def dispatch(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        number = str(request.get("OptedOutNumber", ""))
        try:
            response = super().dispatch(operation, request)
        except Exception as error:
            self.calls.append((operation, number, getattr(error, "code", type(error).__name__)))
            raise
        self.calls.append((operation, number, ""))
        return response

    def refusals(self) -> list[tuple[str, str, str]]:
        return [call for call in self.calls if call[2] == "ConflictException"]


@pytest.fixture
def sms() -> Iterator[RecordingSms]:
    with RecordingSms() as emulation:
        emulation.create_opt_out_list(LIST)
        yield emulation


def phone(user: int) -> str:
    return f"+1{2065550100 + user}"


def dms_row(user: int, number: str, optin: int, operation: str) -> tuple[str, bytes]:
    metadata = {"record-type": "data", "operation": operation, "schema-name": "blog_db", "table-name": "optin_status"}
    document = {"data": {"userid": f"user{user}", "phone": number, "optin": optin}, "metadata": metadata}
    return f"user{user}", json.dumps(document).encode()


def opts_out_last(user: int) -> bool:
    return user % 3 == 0


def history() -> list[tuple[str, bytes]]:
    """Every user loaded, then changing their mind once: every third one opts out, the others opt in.
    The last user's final change has an invalid number: poison, dead-lettered.

    One batch (fewer than 100 records), so the first invocation applies all of it before it "crashes".
    """
    records = [dms_row(user, phone(user), int(opts_out_last(user)), "load") for user in range(USERS)]
    records += [dms_row(user, phone(user), int(not opts_out_last(user)), "update") for user in range(USERS)]
    records.append(dms_row(USERS - 1, INVALID_PHONE, 0, "update"))
    return records


def put_records(records: list[tuple[str, bytes]]) -> tuple[str, list[str]]:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]
    sequences = [
        kinesis.put_record(StreamName=STREAM, PartitionKey=key, Data=data)["SequenceNumber"] for key, data in records
    ]
    return stream_arn, sequences


def failure_queue() -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="failed")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def dead_lettered_ranges(queue_url: str) -> list[tuple[int, int]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    infos = [json.loads(message["Body"])["KinesisBatchInfo"] for message in messages]
    return [(int(info["startSequenceNumber"]), int(info["endSequenceNumber"])) for info in infos]


def expected_opted_out(records: list[tuple[str, bytes]], sequences: list[str], dead: list[tuple[int, int]]) -> set[str]:
    """Each valid number as its newest change that was not dead-lettered leaves it."""
    newest: dict[str, bool] = {}
    for (_, data), sequence in zip(records, sequences, strict=True):
        if any(start <= int(sequence) <= end for start, end in dead):
            continue
        row = json.loads(data)["data"]
        newest[row["phone"]] = row["optin"] == 0
    return {number for number, opted_out in newest.items() if opted_out and number != INVALID_PHONE}


def run_with_a_crash_after_the_first_invocation(stream_arn: str, queue_arn: str) -> list[dict]:
    handler = load_handler_module(
        "optin_updater", OPT_OUT_LIST_NAME=LIST, SOURCE_TABLE="optin_status", VERSION_TABLE_NAME=VERSION_TABLE
    )
    events: list[dict] = []

    def invoke(event: dict) -> InvocationResult:
        events.append(event)
        response = handler.lambda_handler(event, FakeLambdaContext(function_name="OptInUpdater"))
        if len(events) == 1:
            # The batch is applied; then the runtime dies before answering: a function error.
            return InvocationResult(
                function_error="Unhandled", error_message="Runtime exited with error: signal: killed"
            )
        return InvocationResult(response=response)

    declared = declared_kinesis_event("OptInUpdaterFunction")
    config = MappingConfig(
        function_name="OptInUpdater",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:OptInUpdater",
        source_arn=stream_arn,
        batch_size=declared["BatchSize"],
        starting_position=declared["StartingPosition"],
        maximum_retry_attempts=declared["MaximumRetryAttempts"],
        bisect_on_function_error=declared["BisectBatchOnFunctionError"],
        report_batch_item_failures=declared["FunctionResponseTypes"] == ["ReportBatchItemFailures"],
        on_failure_destination_arn=queue_arn,
    )
    mapping = EventSourceMapping(config, invoke, retry_delay_s=0.0, idle_read_interval_s=0.0)
    drain([mapping], timeout_s=120, sleep=lambda _: None)
    return events


def test_a_crash_after_the_batch_was_applied_then_bisect_never_takes_a_number_back(aws, sms: RecordingSms) -> None:
    create_version_table()
    records = history()
    stream_arn, sequences = put_records(records)
    queue_url, queue_arn = failure_queue()

    events = run_with_a_crash_after_the_first_invocation(stream_arn, queue_arn)

    first, second = events[0], events[1]
    assert len(first["Records"]) == len(records)  # one batch, applied in full before the crash
    assert len(second["Records"]) < len(records)  # then the older half, bisected
    dead = dead_lettered_ranges(queue_url)
    assert dead == [(int(sequences[-1]), int(sequences[-1]))]  # only the invalid number is dead-lettered
    expected = expected_opted_out(records, sequences, dead)
    assert expected == {phone(user) for user in range(USERS) if opts_out_last(user)}
    assert sms.opted_out_numbers(LIST) == expected
    assert sms.refusals() == []  # no number was put back and then refused a second removal
    # Each number received its changes in stream order and nothing older afterwards: the older half's
    # loads, delivered again after the crash, neither re-added an opted-in number nor removed an
    # opted-out one. Only the newest change is applied again (an idempotent Put, or a lookup).
    for user in range(USERS):
        received = [operation for operation, number, error in sms.calls if number == phone(user) and not error]
        writes = [operation for operation, _ in groupby(op for op in received if op != "DescribeOptedOutNumbers")]
        if opts_out_last(user):
            assert writes == ["PutOptedOutNumber"], (phone(user), received)
        else:
            assert writes == ["PutOptedOutNumber", "DeleteOptedOutNumber"], (phone(user), received)
