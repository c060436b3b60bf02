"""CSV loader into DynamoDB on moto: rows per second against a naive loop of one PutItem per row.

Both read the same generated order file (20,000 lines) from S3 on moto and write every row to a
table of their own, once each in the same run. The naive loop is what a first version would do:
csv.DictReader over the downloaded body, then PutItem per row. Goal: at least 10x its rows/s.

The loader runs as deployed (the template's ROWS_PER_WRITE and WRITE_THREADS). moto serves from
this process, so most of either side's time is moto handling requests under the same interpreter
lock: parallel BatchWriteItem requests, which hide DynamoDB's round trips in Lambda, gain nothing
here, and the ratio is bounded by moto's cost per BatchWriteItem against its cost per PutItem.
"""

import csv
import io
import time
from datetime import date
from decimal import Decimal

import boto3

from benchmarks.common import REPO_ROOT, create_string_keyed_table, embedded_aws
from tributary.demos.data_lake import csv_bytes, order_rows
from tributary.runtime.template import load_yaml
from tributary_shared.order_loader import LoadRequest, OrderCsvLoader, order_table_writer

ORDERS = 10_000
BUCKET = "bench-orders"
KEY = "orders.csv"


def deployed_settings() -> dict[str, int]:
    """The loader's batch size and parallel requests as the template configures the function."""
    function = load_yaml((REPO_ROOT / "template.yaml").read_text())["Resources"]["CsvLoaderFunction"]
    variables = function["Properties"]["Environment"]["Variables"]
    return {"rows_per_write": int(variables["ROWS_PER_WRITE"]), "write_threads": int(variables["WRITE_THREADS"])}


def loader_rows(table: str) -> int:
    loader = OrderCsvLoader(boto3.client("s3"), order_table_writer(table), **deployed_settings())
    result = loader.load(LoadRequest(BUCKET, KEY), lambda: 900.0, 30.0)
    assert result.rows_rejected == 0 and result.continuation is None, result.as_dict()
    return result.rows_loaded


def naive_rows(table: str) -> int:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read().decode()
    dynamodb = boto3.resource("dynamodb").Table(table)
    rows = 0
    for row in csv.DictReader(io.StringIO(body)):
        dynamodb.put_item(Item={**row, "amount": Decimal(row["amount"])})
        rows += 1
    return rows


def rows_per_second(run: object, table: str) -> float:
    create_string_keyed_table(table, "order_id", "item_id")
    started = time.perf_counter()
    rows = run(table)  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    assert boto3.client("dynamodb").scan(TableName=table, Select="COUNT")["ScannedCount"] > 0
    return rows / elapsed


def main() -> None:
    with embedded_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        body = csv_bytes(order_rows(date(2020, 9, 2), ORDERS))
        boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=body)
        naive = rows_per_second(naive_rows, "NaiveOrders")
        loader = rows_per_second(loader_rows, "LoadedOrders")
    lines = body.count(b"\n") - 1
    print(f"order file: {lines} lines, {len(body) / 1e6:.1f} MB, DynamoDB and S3 on moto")
    print(f"naive PutItem loop: {naive:8.0f} rows/s")
    print(f"CsvLoader         : {loader:8.0f} rows/s  ({loader / naive:.1f}x, goal >= 10x; {deployed_settings()})")
