"""Helpers the tests share: a Lambda-like context, loading a function's handler as Lambda does, a fake
clock, Kinesis events in Lambda's shape and the repository's Avro schemas."""

import base64
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError
from samcli.yamlhelper import yaml_parse

from tributary.moto_glue_ids import schema_version_id
from tributary.runtime.esm import MappingConfig
from tributary_shared.avro_schemas import canonical_definition

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"
FUNCTIONS_DIR = REPO_ROOT / "functions"
SCHEMAS_DIR = REPO_ROOT / "schemas"
KINESIS_STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/wildrydes"
FIRST_SEQUENCE = 10**20


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    timeout_s: float = 60.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler_module(function: str, **env: str) -> ModuleType:
    """Import functions/<function>/app.py under a unique name with `env` set, as a cold start would."""
    path = FUNCTIONS_DIR / function / "app.py"
    name = f"handler_{function}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with environment(**env):
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


class FakeClock:
    """time.monotonic (or time.time) and time.sleep in one: sleeping advances the clock, no real waiting."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def kinesis_event(
    records: list[tuple[str, bytes]],
    *,
    first_sequence: int = FIRST_SEQUENCE,
    sequence_step: int = 1,
    shard_id: str = "shardId-000000000000",
    stream_arn: str = KINESIS_STREAM_ARN,
    arrival_timestamp: float = 1795262400.0,
) -> dict[str, Any]:
    """The event Lambda's Kinesis event source mapping passes: one record per (partition key, data),
    sequence numbers rising by `sequence_step` from `first_sequence`."""
    return {"Records": [
        _kinesis_event_record(key, data, str(first_sequence + index * sequence_step), shard_id, stream_arn,
                              arrival_timestamp)
        for index, (key, data) in enumerate(records)
    ]}  # fmt: skip


def _kinesis_event_record(
    partition_key: str, data: bytes, sequence: str, shard_id: str, stream_arn: str, arrival_timestamp: float
) -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": arrival_timestamp,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/test-function-role",
        "awsRegion": stream_arn.split(":")[3],
        "eventSourceARN": stream_arn,
    }


def definition(name: str) -> str:
    """The canonical form of schemas/<name>.avsc."""
    return canonical_definition((SCHEMAS_DIR / f"{name}.avsc").read_text())


# The schema-version ids events/kinesis-payment-avro.json is framed with: the ones the embedded AWS gives
# versions 1 and 2 of payment-event in the template's registry (tributary.moto_glue_ids), by schema file.
PAYMENT_EVENT_SCHEMA_VERSIONS = {
    schema_version_id("tributary", "payment-event", 1): "payment_event_v1",
    schema_version_id("tributary", "payment-event", 2): "payment_event_v2",
}


class AlwaysThrottled:
    def __init__(self) -> None:
        self.calls = 0

    def batch_write_item(self, RequestItems: dict) -> dict:
        self.calls += 1
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "x")

    def transact_write_items(self, TransactItems: list) -> dict:
        self.calls += 1
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "x")


def table_stream_images(stream_arn: str) -> list[dict[str, Any]]:
    """The new image of every write a table applied, in the order DynamoDB applied them (its stream).

    The tests' oracle for per-key order: what the table received, not what the code says it sent.
    """

    streams = boto3.client("dynamodbstreams")
    images = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            images += [record["dynamodb"]["NewImage"] for record in page["Records"] if "NewImage" in record["dynamodb"]]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return images

# The template as SAM reads it, for tests that check code against what is declared.
TEMPLATE = yaml_parse((REPO_ROOT / "template.yaml").read_text())
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
STREAM_PROCESSOR_ARN = "arn:aws:lambda:us-east-1:123456789012:function:StreamProcessor"
OPT_OUT_LIST = "tributary-optouts"
# Not the template's name: moto's state is shared by every emulator in the process, the runtime's too.
VERSION_TABLE = "test-optin-versions"


def declared_mapping(function: str) -> dict[str, Any]:
    """The template's Kinesis event of `function`: its event source mapping's declared settings."""
    events = RESOURCES[function]["Properties"]["Events"]
    (event,) = [e for e in events.values() if e["Type"] == "Kinesis"]
    return event["Properties"]


def assert_never_back_in_time(applied: list[tuple[str, int]]) -> None:
    newest: dict[str, int] = {}
    for key, sequence in applied:
        assert sequence > newest.get(key, -1), f"{key} went back from {newest[key]} to {sequence}"
        newest[key] = sequence


UNICORN_ENV = {"TABLE_NAME": "UnicornSensorData", "KEY_ATTRIBUTES": "Name,StatusTime"}


def create_unicorn_table() -> None:
    boto3.client("dynamodb").create_table(
        TableName="UnicornSensorData",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "Name", "AttributeType": "S"},
            {"AttributeName": "StatusTime", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "Name", "KeyType": "HASH"},
            {"AttributeName": "StatusTime", "KeyType": "RANGE"},
        ],
    )


def table_items() -> dict[tuple[str, str], dict]:
    """The table's items without the version attribute every item carries (checked apart)."""
    items = boto3.resource("dynamodb").Table("UnicornSensorData").scan()["Items"]
    return {(item["Name"], item["StatusTime"]): without_version(item) for item in items}


def without_version(item: dict) -> dict:
    return {name: value for name, value in item.items() if name != "recordVersion"}


def create_version_table(name: str = VERSION_TABLE) -> None:
    """The template's OptInVersionsTable, in the emulator."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "phone", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "phone", "KeyType": "HASH"}],
    )


def item_image(**overrides: dict[str, Any]) -> dict[str, Any]:
    image = {
        "order_id": {"S": "o-1"},
        "item_id": {"S": "i-1"},
        "customer_id": {"S": "c-1"},
        "product": {"S": "Kindle"},
        "amount": {"N": "12.5"},
        "currency": {"S": "EUR"},
        "time_stamp": {"S": "2020-09-02T10:15:00Z"},
        "transaction_date": {"S": "2020-09-02"},
    }
    image.update(overrides)
    return {name: value for name, value in image.items() if value is not None}


def mapping_config(stream_arn: str, queue_arn: str) -> MappingConfig:
    declared = declared_mapping("StreamProcessorFunction")
    return MappingConfig(
        function_name="StreamProcessor",
        function_arn=STREAM_PROCESSOR_ARN,
        source_arn=stream_arn,
        batch_size=declared["BatchSize"],
        starting_position="TRIM_HORIZON",  # the records are put before the mapping starts
        maximum_retry_attempts=declared["MaximumRetryAttempts"],
        maximum_record_age_s=declared["MaximumRecordAgeInSeconds"],
        bisect_on_function_error=declared["BisectBatchOnFunctionError"],
        report_batch_item_failures=declared["FunctionResponseTypes"] == ["ReportBatchItemFailures"],
        on_failure_destination_arn=queue_arn,
    )
