"""Emulations of AWS features moto lacks: DynamoDB → Kinesis, S3 → Lambda, Firehose Kinesis → S3 (Parquet)."""

import base64
import datetime as dt
import gzip
import io
import json
import re
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.emulations.firehose import FirehoseFromKinesis
from tributary.runtime.emulations.firehose_parquet import glue_type_to_arrow
from tributary.runtime.emulations.firehose_prefixes import evaluate_prefix
from tributary.runtime.emulations.kinesis_for_dynamodb import kinesis_record_for_table_change
from tributary.runtime.lake import Lake

FIXTURES = Path(__file__).parent / "fixtures"


def started(template: str):
    with Runtime(RuntimeOptions(template_path=FIXTURES / template)) as runtime:
        yield runtime
        runtime.aws.reset()  # moto's backends are process-wide: leave nothing for the next test


@pytest.fixture
def pipeline():
    yield from started("pipeline.yaml")


@pytest.fixture
def lake_runtime():
    yield from started("lake.yaml")


def read_all(stream_name: str) -> list[dict]:
    kinesis = boto3.client("kinesis")
    shard = kinesis.list_shards(StreamName=stream_name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return [json.loads(record["Data"]) for record in records]


# ---------------------------------------------------------------- Kinesis Data Streams for DynamoDB


def test_table_changes_appear_on_the_kinesis_stream_in_aws_format(pipeline):
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName="t-items", Item={"id": {"S": "k1"}, "n": {"N": "1"}})
    dynamodb.put_item(TableName="t-items", Item={"id": {"S": "k1"}, "n": {"N": "2"}})
    dynamodb.delete_item(TableName="t-items", Key={"id": {"S": "k1"}})
    pipeline.drain(30)

    changes = read_all("t-changes")
    assert [change["eventName"] for change in changes] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = changes
    assert insert["dynamodb"]["NewImage"] == {"id": {"S": "k1"}, "n": {"N": "1"}}
    assert "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["OldImage"]["n"] == {"N": "1"} and modify["dynamodb"]["NewImage"]["n"] == {"N": "2"}
    assert remove["dynamodb"]["Keys"] == {"id": {"S": "k1"}} and "NewImage" not in remove["dynamodb"]
    for change in changes:
        assert change["eventSource"] == "aws:dynamodb"
        assert change["recordFormat"] == "application/json"
        assert change["tableName"] == "t-items"
        assert change["dynamodb"]["ApproximateCreationDateTimePrecision"] == "MILLISECOND"


def test_creation_time_is_in_milliseconds():
    moment = dt.datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=dt.UTC)
    record = {"eventName": "INSERT", "dynamodb": {"ApproximateCreationDateTime": moment, "Keys": {"id": {"S": "x"}}}}
    change = kinesis_record_for_table_change(record, "T")
    assert change["dynamodb"]["ApproximateCreationDateTime"] == int(moment.timestamp() * 1000)
    assert change["userIdentity"] is None


def test_writes_by_a_mapped_function_flow_through_to_the_changes_stream(pipeline):
    kinesis = boto3.client("kinesis")
    for number in range(3):
        kinesis.put_record(StreamName="t-input", Data=json.dumps({"id": f"r{number}"}).encode(), PartitionKey="k")
    pipeline.drain(30)
    assert sorted(change["dynamodb"]["Keys"]["id"]["S"] for change in read_all("t-changes")) == ["r0", "r1", "r2"]


# ---------------------------------------------------------------- S3 event notifications


def seen_keys(runtime: Runtime) -> dict[str, dict]:
    table = runtime.template.physical_name("SeenTable")
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {item["id"]["S"]: json.loads(item["event"]["S"]) for item in items}


def test_s3_uploads_matching_the_filter_invoke_the_function_with_the_s3_event(pipeline):
    s3 = boto3.client("s3")
    s3.put_object(Bucket="t-uploads", Key="incoming/orders 1.csv", Body=b"a,b\n")
    s3.put_object(Bucket="t-uploads", Key="incoming/notes.txt", Body=b"x")
    s3.put_object(Bucket="t-uploads", Key="elsewhere/orders.csv", Body=b"x")
    pipeline.drain(30)

    seen = seen_keys(pipeline)
    assert list(seen) == ["incoming/orders+1.csv"]  # S3 URL-encodes keys in events
    record = seen["incoming/orders+1.csv"]
    assert unquote_plus(record["s3"]["object"]["key"]) == "incoming/orders 1.csv"
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"] == {
        "name": "t-uploads",
        "ownerIdentity": {"principalId": "123456789012"},
        "arn": "arn:aws:s3:::t-uploads",
    }
    assert record["s3"]["object"]["size"] == 4


def test_overwriting_an_object_notifies_again_and_unchanged_objects_do_not(pipeline):
    s3 = boto3.client("s3")
    s3.put_object(Bucket="t-uploads", Key="incoming/a.csv", Body=b"1")
    pipeline.drain(30)
    emulation = next(item for item in pipeline.emulations if item.name == "s3-notifications:t-uploads")
    assert emulation.invocations == 1
    pipeline.drain(30)
    assert emulation.invocations == 1
    s3.put_object(Bucket="t-uploads", Key="incoming/a.csv", Body=b"22")
    pipeline.drain(30)
    assert emulation.invocations == 2


def test_bucket_lambda_configurations_are_emulated_too(pipeline):
    s3 = boto3.client("s3")
    s3.put_object(Bucket="t-reports", Key="r/1.json", Body=b"{}")
    pipeline.drain(30)
    assert seen_keys(pipeline) == {}  # only removals are configured
    s3.delete_object(Bucket="t-reports", Key="r/1.json")
    pipeline.drain(30)
    record = seen_keys(pipeline)["r/1.json"]
    assert record["eventName"] == "ObjectRemoved:Delete"
    assert record["s3"]["bucket"]["name"] == "t-reports"


# ---------------------------------------------------------------- Firehose from Kinesis to S3


ORDERS = [
    {"id": "o1", "amount": 12.5, "quantity": 2, "tags": ["a"], "day": "2026-11-20"},
    {"id": "o2", "amount": "7.25", "quantity": 1, "tags": [], "day": "2026-11-21"},
    {"id": "o3", "amount": 1, "quantity": 3, "tags": [], "day": "2026-11-21", "status": "drop"},
    {"id": "o4", "amount": 1, "quantity": 3, "tags": [], "day": "2026-11-21", "status": "bad"},
    {"id": "o5", "amount": 3, "quantity": "many", "tags": [], "day": "2026-11-21"},
]


def objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def put_orders(orders) -> None:
    kinesis = boto3.client("kinesis")
    for order in orders:
        kinesis.put_record(StreamName="orders", Data=json.dumps(order).encode(), PartitionKey=order["id"])


def test_firehose_transforms_partitions_and_writes_parquet_with_the_glue_schema(lake_runtime):
    put_orders(ORDERS)
    lake_runtime.drain(30)

    stored = objects("fixture-lake")
    parquet = {key: pq.read_table(io.BytesIO(body)) for key, body in stored.items() if key.startswith("orders/")}
    assert sorted(key.split("/")[1] for key in parquet) == ["day=2026-11-20", "day=2026-11-21"]
    rows = sorted((row for table in parquet.values() for row in table.to_pylist()), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == ["o1", "o2"]
    schema = next(iter(parquet.values())).schema
    assert schema.field("amount").type == pa.decimal128(10, 2)  # "Amount" matched case-insensitively
    assert schema.field("quantity").type == pa.int32()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert str(rows[1]["amount"]) == "7.25"


def test_firehose_sends_failed_records_to_the_error_prefix_and_drops_dropped_ones(lake_runtime):
    put_orders(ORDERS)
    lake_runtime.drain(30)

    stored = objects("fixture-lake")
    errors = {
        key.split("/")[1]: [json.loads(line) for line in body.decode().splitlines()]
        for key, body in stored.items()
        if key.startswith("errors/")
    }
    assert set(errors) == {"processing-failed", "format-conversion-failed"}
    assert [json.loads(base64.b64decode(line["rawData"]))["id"] for line in errors["processing-failed"]] == ["o4"]
    assert [json.loads(base64.b64decode(line["rawData"]))["id"] for line in errors["format-conversion-failed"]] == [
        "o5"
    ]
    emulation = lake_runtime.emulations[0]
    assert emulation.counters()["dropped"] == 1
    assert emulation.counters()["records_in"] == len(ORDERS)


def test_lake_query_reads_parquet_through_s3_with_partition_columns(lake_runtime):
    put_orders(ORDERS)
    lake_runtime.drain(30)
    lake = Lake.from_emulator()
    assert lake.tables == ["fixture_lake.orders"]
    columns, rows = lake.query(lake.named_queries["total-by-day"])
    assert columns == ["day", "total", "orders"]
    assert [(day, str(total), count) for day, total, count in rows] == [
        ("2026-11-20", "12.50", 1),
        ("2026-11-21", "7.25", 1),
    ]


@pytest.mark.parametrize(
    ("glue_type", "arrow_type"),
    [
        ("string", pa.string()),
        ("bigint", pa.int64()),
        ("decimal(12,3)", pa.decimal128(12, 3)),
        ("varchar(20)", pa.string()),
        ("timestamp", pa.timestamp("ms")),
        ("array<struct<sku:string,qty:int>>", pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int32())]))),
        ("map<string,double>", pa.map_(pa.string(), pa.float64())),
    ],
)
def test_glue_types_map_to_arrow(glue_type, arrow_type):
    assert glue_type_to_arrow(glue_type) == arrow_type


def test_prefix_expressions():
    now = dt.datetime.now(dt.UTC)
    assert evaluate_prefix("d=!{partitionKeyFromLambda:d}/", {"d": "x"}, None) == "d=x/"
    assert evaluate_prefix("e/!{firehose:error-output-type}/", {}, "processing-failed") == "e/processing-failed/"
    assert evaluate_prefix("y=!{timestamp:yyyy}/", {}, None) == f"y={now:%Y}/"
    assert evaluate_prefix("plain/", {}, None).startswith(f"plain/{now:%Y/%m/%d}/")
    with pytest.raises(KeyError):
        evaluate_prefix("d=!{partitionKeyFromLambda:d}/", {}, None)


def test_firehose_without_transform_or_conversion_writes_the_records_as_they_are(aws):
    kinesis, s3 = boto3.client("kinesis"), boto3.client("s3")
    kinesis.create_stream(StreamName="raw", ShardCount=1)
    s3.create_bucket(Bucket="raw-lake")
    properties = {
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {"KinesisStreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/raw"},
        "ExtendedS3DestinationConfiguration": {
            "BucketARN": "arn:aws:s3:::raw-lake",
            "Prefix": "raw/",
            "CompressionFormat": "GZIP",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        },
    }
    firehose = FirehoseFromKinesis("raw-delivery", properties, lambda arn: None)
    for number in range(3):
        kinesis.put_record(StreamName="raw", Data=f'{{"n": {number}}}'.encode(), PartitionKey="k")
    while firehose.poll() or not firehose.is_drained():
        pass

    [(key, body)] = objects("raw-lake").items()
    assert re.fullmatch(r"raw/\d{4}/\d\d/\d\d/\d\d/raw-delivery-1-[\d-]{19}-[0-9a-f-]{36}\.gz", key), key
    assert gzip.decompress(body) == b'{"n": 0}\n{"n": 1}\n{"n": 2}\n'
