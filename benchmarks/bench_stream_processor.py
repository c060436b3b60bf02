"""Stream processor on a 10,000-record batch (the Kinesis maximum) with DynamoDB on moto.

The deployed handler (functions/stream_processor/app.py, Powertools logging and metrics included) is
timed on the batch. Baseline, measured in the same run over the same records: a naive loop of one
PutItem per record. (The handler's cold import is measured in `bench_cold_start.py`.)
"""

import base64
import contextlib
import importlib
import io
import json
import os
import random
import sys
from collections.abc import Callable
from typing import Any

import boto3

from benchmarks.common import (
    REPO_ROOT,
    create_string_keyed_table,
    embedded_aws,
    interleaved_medians,
)
from tributary_shared.dynamo_items import serialize_item
from tributary_shared.payloads import decode_payload

RECORDS = 10_000
NAMES = [f"Unicorn{i:03d}" for i in range(200)]


def unicorn_records(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    records = []
    for i in range(count):
        status = {
            "Name": NAMES[i % len(NAMES)],
            "StatusTime": f"2017-06-05 09:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:03d}",
            "Latitude": round(42 + rng.random(), 6),
            "Longitude": round(-71 - rng.random(), 6),
            "Distance": rng.randint(0, 500),
            "MagicPoints": rng.randint(100, 200),
            "HealthPoints": rng.randint(100, 200),
        }
        data = base64.b64encode(json.dumps(status).encode()).decode()
        records.append({"kinesis": {"sequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + i),
                                    "data": data, "partitionKey": status["Name"]}})
    return records


def naive_put_item_loop(records: list[dict[str, Any]], table: str) -> None:
    client = boto3.client("dynamodb")
    for record in records:
        item = decode_payload(base64.b64decode(record["kinesis"]["data"]))
        client.put_item(TableName=table, Item=serialize_item(item))


class BenchContext:
    """The LambdaContext fields the handler and Powertools read; the whole batch fits in its time."""

    function_name = "StreamProcessorFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:StreamProcessorFunction"
    aws_request_id = "benchmark"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def deployed_handler(table: str) -> Handler:
    """functions/stream_processor/app.py as Lambda loads it: configured by its environment at import.

    The environment, import path and module name `app` are this process's again afterwards.
    """
    saved_environment, saved_path = dict(os.environ), list(sys.path)
    os.environ.update(TABLE_NAME=table, KEY_ATTRIBUTES="Name,StatusTime", POWERTOOLS_TRACE_DISABLED="true",
                      POWERTOOLS_METRICS_NAMESPACE="TributaryBenchmark")  # fmt: skip
    sys.path.insert(0, str(REPO_ROOT / "functions" / "stream_processor"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Powertools binds its log stream at import: keep it quiet
            return importlib.import_module("app").lambda_handler
    finally:
        sys.modules.pop("app", None)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_environment)


def invoke(handler: Handler, records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The handler's response and its EMF metrics document (printed on stdout, as in Lambda)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        response = handler({"Records": records}, BenchContext())
    documents = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith("{")]
    (metrics,) = [document for document in documents if "_aws" in document]
    return response, metrics


def main() -> None:
    records = unicorn_records(RECORDS)
    with embedded_aws():
        create_string_keyed_table("Bench", "Name", "StatusTime")
        handler = deployed_handler("Bench")
        response, metrics = invoke(handler, records)  # warm-up, and the request count
        assert response == {"batchItemFailures": []} and metrics["RecordsWritten"] == [RECORDS], metrics
        requests = metrics["DynamoDBRequests"][0]
        timings = interleaved_medians(
            {"naive PutItem loop": lambda: naive_put_item_loop(records, "Bench"),
             "stream processor": lambda: invoke(handler, records)},
            rounds=3,
        )
    naive, ours = timings["naive PutItem loop"], timings["stream processor"]
    print(f"batch of {RECORDS:,} records, DynamoDB on moto (median of 3 interleaved rounds)")
    print(f"  naive PutItem loop : {RECORDS / naive:>9,.0f} records/s, 1,000 requests per 1,000 records")
    print(f"  stream processor   : {RECORDS / ours:>9,.0f} records/s through the handler, "
          f"{requests * 1000 / RECORDS:.0f} requests per 1,000 records (target <= 40)")
    print(f"  ratio              : {naive / ours:.1f}x the naive loop's throughput")
