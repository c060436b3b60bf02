"""Stream processor on a 10,000-record batch (the Kinesis maximum) with DynamoDB on moto.

Baseline, measured in the same run over the same records: a naive loop of one PutItem per record.
Also the handler's cold import against a bare `import boto3`, the floor of any Python function that
talks to AWS.
"""

import base64
import json
import os
import random
from typing import Any

import boto3

from benchmarks.common import create_string_keyed_table, embedded_aws, interleaved_medians, python_startup_seconds
from tributary_shared.dynamo_writer import serialize_item
from tributary_shared.payloads import decode_payload
from tributary_shared.stream_processor import ProcessorConfig, StreamProcessor

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


def cold_import_ratio() -> tuple[float, float]:
    env = {**os.environ, "TABLE_NAME": "t", "KEY_ATTRIBUTES": "Name", "AWS_DEFAULT_REGION": "us-east-1"}
    handler = "import sys; sys.path[:0] = ['layers/shared', 'functions/stream_processor']; import app"
    timings = interleaved_medians(
        {"boto3": lambda: python_startup_seconds("import boto3", env),
         "handler": lambda: python_startup_seconds(handler, env)},
        rounds=7,
    )
    return timings["boto3"], timings["handler"]


def main() -> None:
    records = unicorn_records(RECORDS)
    with embedded_aws():
        create_string_keyed_table("Bench", "Name", "StatusTime")
        processor = StreamProcessor(ProcessorConfig("Bench", ("Name", "StatusTime")))
        outcome = processor.process(records, deadline=float("inf"))  # warm-up, and the request count
        assert outcome.written == RECORDS, outcome
        timings = interleaved_medians(
            {"naive PutItem loop": lambda: naive_put_item_loop(records, "Bench"),
             "stream processor": lambda: processor.process(records, deadline=float("inf"))},
            rounds=3,
        )
    naive, ours = timings["naive PutItem loop"], timings["stream processor"]
    print(f"batch of {RECORDS:,} records, DynamoDB on moto (median of 3 interleaved rounds)")
    print(f"  naive PutItem loop : {RECORDS / naive:>9,.0f} records/s, 1,000 requests per 1,000 records")
    print(f"  stream processor   : {RECORDS / ours:>9,.0f} records/s, "
          f"{outcome.requests * 1000 / RECORDS:.0f} requests per 1,000 records (target <= 40)")
    print(f"  ratio              : {naive / ours:.1f}x the naive loop's throughput")
    boto3_s, handler_s = cold_import_ratio()
    print(f"cold import (median of 7): python+boto3 {boto3_s * 1000:.0f} ms, "
          f"python+handler {handler_s * 1000:.0f} ms = {handler_s / boto3_s:.2f}x the boto3 floor")
