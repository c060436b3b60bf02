"""A big CSV file loads in several self-invoked segments under the local runtime, with the real template.

The loader continues a file by invoking itself asynchronously (Invoke, InvocationType Event); the
runtime's Lambda emulation serves that call and runs the continuation. To make every segment
short, the test gives the loader a continuation margin longer than its Timeout (in memory, before
the runtime starts): each segment then writes one batch of ROWS_PER_WRITE rows and hands over.
Failed asynchronous invocations are retried without delay here (AWS waits 1 and 2 minutes).
"""

import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import boto3
import pytest

from tributary.commands.demo import RuntimeDemoContext
from tributary.demos.data_lake import csv_bytes, order_rows
from tributary.runtime.app import Runtime, RuntimeOptions, read_destination

ROOT = Path(__file__).parents[2]
ROWS_PER_SEGMENT = 40
DAY = date(2020, 9, 3)


@pytest.fixture
def runtime(aws: object) -> Iterator[Runtime]:  # `aws` first: moto state is process-wide
    options = RuntimeOptions(ROOT / "template.yaml", function_log=io.StringIO(), async_retry_delays_s=(0.0, 0.0))
    running = Runtime(options)
    loader = running.template.resources["CsvLoaderFunction"].properties
    loader["Timeout"] = 300  # below the margin: every segment stops after its first batch
    loader["Environment"]["Variables"].update(
        CONTINUATION_MARGIN_MS="600000", ROWS_PER_WRITE=str(ROWS_PER_SEGMENT), WRITE_THREADS="1"
    )
    with running:
        yield running
        running.aws.reset()  # moto's backends are process-wide: leave nothing for the next test


def table_keys(table: str) -> list[tuple[str, str]]:
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return [(item["order_id"]["S"], item["item_id"]["S"]) for page in pages for item in page["Items"]]


@pytest.mark.slow
def test_a_file_continued_by_self_invocation_loads_every_row_exactly_once(runtime: Runtime) -> None:
    ctx = RuntimeDemoContext(runtime)
    rows = list(order_rows(DAY, orders=50))
    assert len(rows) > 2 * ROWS_PER_SEGMENT  # at least three segments: two continuations
    bucket = ctx.physical_name("OrdersSourceBucket")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"orders/{DAY}/big.csv", Body=csv_bytes(rows))

    runtime.drain(60)

    keys = table_keys(ctx.physical_name("OrderTransactionsTable"))
    assert sorted(keys) == sorted((row["order_id"], row["item_id"]) for row in rows)
    assert len(keys) == len(set(keys)) == len(rows)
    segments = -(-len(rows) // ROWS_PER_SEGMENT)
    loader = runtime.functions["CsvLoaderFunction"]
    assert loader.invocations == segments and loader.errors == 0
    assert runtime.lambda_service is not None
    stats = runtime.lambda_service.stats
    assert stats.queued == segments  # the S3 event and each continuation, all asynchronous invocations
    assert (stats.errors, stats.to_on_failure, stats.discarded) == (0, 0, 0)


@pytest.mark.slow
def test_a_continuation_that_cannot_resume_goes_to_the_failed_records_queue(runtime: Runtime) -> None:
    ctx = RuntimeDemoContext(runtime)
    request = {"bucket": ctx.physical_name("OrdersSourceBucket"), "key": "orders/gone.csv", "segment": 2}
    response = boto3.client("lambda").invoke(
        FunctionName=ctx.physical_name("CsvLoaderFunction"), InvocationType="Event", Payload=json.dumps(request)
    )
    assert response["StatusCode"] == 202

    runtime.drain(30)

    assert runtime.functions["CsvLoaderFunction"].invocations == 3  # MaximumRetryAttempts 2 in the template
    queue_arn = runtime.template.get_att("FailedRecordsQueue", "Arn")
    [record] = read_destination(queue_arn)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == request
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert "orders/gone.csv was deleted" in record["responsePayload"]["errorMessage"]
