"""The stream processor's deployed handler beside the alternative a Python user would pick.

The peer: AWS Lambda Powertools' `BatchProcessor(EventType.KinesisDataStreams)` with
`process_partial_response`, and a record handler that decodes the record (exact decimals, as
DynamoDB needs) and writes it through boto3's `Table.batch_writer()`. Both run on the same batches
(1,000 and 10,000 records; JSON, and Glue-framed Avro through the same registry decoder), two ways:

- against a null DynamoDB endpoint: a loopback HTTP server in another process that answers every
  request at once, so what is measured is the function's own CPU (process time of this process);
- against moto's server (the embedded AWS), where moto's own cost dominates.

Printed per case: µs of CPU per record, records per second per core, requests per 1,000 records,
and peak memory measured in a fresh child process per contender (tracemalloc's peak, and the growth
of the resident set), as ratios of the handler against the peer measured in the same run.
"""

import base64
import contextlib
import functools
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3

from benchmarks.bench_stream_processor import BenchContext, deployed_handler, unicorn_records
from benchmarks.common import create_string_keyed_table, embedded_aws

SIZES = (1_000, 10_000)
ROUNDS = 5
KEYS = ("Name", "StatusTime")

NULL_SERVER = r"""
import http.server, sys
class Null(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        body = b'{"UnprocessedItems":{}}' if target.endswith("BatchWriteItem") else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Null)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def null_dynamodb() -> Iterator[str]:
    """A DynamoDB endpoint on loopback, in its own process, that answers every request with success."""
    server = subprocess.Popen([sys.executable, "-c", NULL_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{server.stdout.readline().strip()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def avro_records(count: int) -> list[dict[str, Any]]:
    """The same unicorn readings, Glue-framed Avro under the schema registered in the embedded AWS."""
    from tributary.producer import SCHEMAS, glue_encoder
    from tributary.schema_registration import SchemaRegistration

    records = unicorn_records(count)
    glue = boto3.client("glue")
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_registry(RegistryName="tributary")
    _, encode = glue_encoder(SchemaRegistration("tributary", glue), "unicorn-status", SCHEMAS / "unicorn_status.avsc")
    for record in records:
        status = json.loads(base64.b64decode(record["kinesis"]["data"]), parse_float=float)
        record["kinesis"]["data"] = base64.b64encode(encode(status)).decode()
    return records


def peer_handler(table_name: str, decode: Callable[[bytes], dict[str, Any]]) -> Callable[[dict, Any], dict]:
    """What a Powertools user writes: BatchProcessor + process_partial_response + Table.batch_writer()."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
    table = boto3.resource("dynamodb").Table(table_name)

    def handler(event: dict, context: Any) -> dict:
        with table.batch_writer(overwrite_by_pkeys=list(KEYS)) as batch:

            def record_handler(record: Any) -> None:
                batch.put_item(Item=decode(record.kinesis.data_as_bytes()))

            return process_partial_response(event, record_handler, processor, context)

    return handler


def json_decimal(data: bytes) -> dict[str, Any]:
    return json.loads(data, parse_float=Decimal)


@functools.cache
def registry_decoder() -> Callable[[bytes], dict[str, Any]]:
    """The functions' decoder, built once from the registry settings in the environment (as a cold start does)."""
    from tributary_shared.payloads import PayloadDecoder
    from tributary_shared.schema_registry import RegistrySettings

    return PayloadDecoder(registry=RegistrySettings.from_env()).decode


def avro_decimal(data: bytes) -> dict[str, Any]:
    """The registry decoder's record with its doubles as Decimals, the usual way to make boto3 take them."""
    return json.loads(json.dumps(registry_decoder()(data)), parse_float=Decimal)


class RequestCounter:
    """Counts DynamoDB requests of every client created after it (they copy the session's hooks)."""

    def __init__(self) -> None:
        self.requests = 0
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-send.dynamodb", self._count)  # type: ignore[union-attr]

    def _count(self, **_: Any) -> None:
        self.requests += 1


COUNTER: RequestCounter | None = None


def contenders(table: str, encoding: str) -> dict[str, Callable[[dict, Any], dict]]:
    decode = avro_decimal if encoding == "avro" else json_decimal
    return {"peer": peer_handler(table, decode), "handler": deployed_handler(table)}


def cpu_per_record(run: Callable[[], object], records: int) -> float:
    started = time.process_time()
    run()
    return (time.process_time() - started) / records


def quiet(handler: Callable[[dict, Any], dict], event: dict) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints logs and EMF metrics, as in Lambda
        return handler(event, BenchContext())


def aim_dynamodb(endpoint: str | None) -> None:
    """DynamoDB requests go to `endpoint` (None: the embedded AWS); every other service stays there."""
    if endpoint is None:
        os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    else:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint


def measure_cpu(endpoint: str | None, encoding: str, size: int) -> dict[str, tuple[float, float]]:
    """Median µs per record of each contender over interleaved rounds, and its requests per 1,000 records."""
    records = avro_records(size) if encoding == "avro" else unicorn_records(size)
    aim_dynamodb(endpoint)
    event = {"Records": records}
    counter = COUNTER
    assert counter is not None
    handlers = contenders("PeerBench", encoding)
    samples: dict[str, list[float]] = {name: [] for name in handlers}
    requests: dict[str, float] = {}
    for name, handler in handlers.items():  # warm-up and request count
        before = counter.requests
        response = quiet(handler, event)
        assert response == {"batchItemFailures": []}, (name, response)
        requests[name] = (counter.requests - before) * 1000 / size
    for _ in range(ROUNDS):
        for name, handler in handlers.items():
            samples[name].append(cpu_per_record(lambda handler=handler: quiet(handler, event), size))
    return {name: (statistics.median(values) * 1e6, requests[name]) for name, values in samples.items()}


def measure_memory(endpoint: str, size: int, name: str) -> tuple[float, float]:
    """(tracemalloc peak, resident-set growth) in MiB of one invocation of JSON records, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_memory_in_child, (dict(os.environ), endpoint, size, name))


def _memory_in_child(environment: dict[str, str], endpoint: str, size: int, name: str) -> tuple[float, float]:
    os.environ.update(environment)
    aim_dynamodb(endpoint)
    records = unicorn_records(size)
    event = {"Records": records}
    handler = contenders("PeerBench", "json")[name]
    quiet(handler, {"Records": records[:300]})  # imports, clients and a full write chunk, as a warm function has them
    resident_before = _resident_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # Linux: the peak resident set (VmHWM) starts again from now
    quiet(handler, event)
    grown = _resident_mib("VmHWM") - resident_before
    tracemalloc.start()
    quiet(handler, event)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, max(grown, 0.0)


def _resident_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def report(case: str, cpu: dict[str, tuple[float, float]], target: str = "") -> None:
    (peer_us, peer_requests), (ours_us, ours_requests) = cpu["peer"], cpu["handler"]
    print(f"  {case}")
    print(f"    µs CPU per record      : handler {ours_us:6.1f}, peer {peer_us:6.1f} -> "
          f"{peer_us / ours_us:.2f}x the peer's records/s per core{target}")
    print(f"    records/s per core     : handler {1e6 / ours_us:8,.0f}, peer {1e6 / peer_us:8,.0f}")
    print(f"    requests / 1,000       : handler {ours_requests:.0f}, peer {peer_requests:.0f} (target <= 40)")


def main() -> None:
    global COUNTER
    with embedded_aws() as aws, null_dynamodb() as null_endpoint:
        COUNTER = RequestCounter()
        os.environ["GLUE_REGISTRY_NAME"] = "tributary"
        create_string_keyed_table("PeerBench", *KEYS)
        print(f"Powertools BatchProcessor + batch_writer (the peer) vs the deployed handler; median of {ROUNDS} "
              "interleaved rounds, process CPU time")
        for where, endpoint in (("null DynamoDB endpoint", null_endpoint), ("moto", None)):
            # The target is the function's own CPU; on moto, moto's work is most of what is measured.
            target = " (target >= 2x)" if endpoint == null_endpoint else ""
            for encoding in ("json", "avro"):
                for size in SIZES:
                    report(f"{where}, {encoding}, {size:,} records", measure_cpu(endpoint, encoding, size), target)
        print("  peak memory of one invocation, fresh process per contender (null endpoint, JSON)")
        for size in SIZES:
            peer = measure_memory(null_endpoint, size, "peer")
            ours = measure_memory(null_endpoint, size, "handler")
            print(f"    {size:>6,} records: tracemalloc peak handler {ours[0]:6.2f} MiB, peer {peer[0]:6.2f} MiB "
                  f"({ours[0] / peer[0]:.2f}x, target <= 1x); RSS growth handler {ours[1]:6.2f} MiB, "
                  f"peer {peer[1]:6.2f} MiB")
        aws.reset()  # moto's state is process-wide: leave nothing for the next benchmark
