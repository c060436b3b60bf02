"""`tributary up | demo | run | query`: the commands that drive the local runtime.

- `up`: start the emulator, deploy the template, run its pipelines with live counters until Ctrl-C.
- `demo`: start, deploy, run every demo pipeline's producer, drain, print the report; exit 0 only if
  every section accounts for every record (tributary.commands.demo).
- `run`: the same engine on any SAM template: put JSON-lines files on streams, drain, print counters.
- `query`: SQL (DuckDB) over the data lake of a running `tributary up` (Parquet read through its S3 API).

`up`, `demo` and `run` take `--faults KIND=P,...` (and `--fault-seed N`): AWS faults injected into the
functions' own requests and invocations (tributary.runtime.faults), counted and traced. Where the
functions' own output goes: see tributary.commands.session.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3

from tributary.aws_guard import use_local_endpoint
from tributary.commands.demo import run_demo
from tributary.commands.session import (
    add_runtime_arguments,
    counter_lines,
    drain_timeout,
    print_now,
    print_start,
    serve_until_stopped,
    started_runtime,
)
from tributary.runtime.app import Runtime
from tributary.runtime.faults import FaultSpecError
from tributary.runtime.template import Template, TemplateError, parse_parameter_overrides
from tributary_shared.kinesis_put import put_records


def main(command: str, argv: list[str]) -> int:
    handlers = {"up": _up, "demo": run_demo, "run": _run, "query": _query}
    parser = _parser(command)
    arguments = parser.parse_args(argv)
    try:
        return handlers[command](arguments)
    except (TemplateError, FaultSpecError) as error:
        print(f"tributary {command}: {error}", file=sys.stderr)
        return 2


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tributary {command}")
    parser.set_defaults(command=command)
    if command == "query":
        parser.add_argument("sql", nargs="?", help="SQL, or the name of one of the template's Athena named queries")
        parser.add_argument("--endpoint-url", help="the running `tributary up` (default http://127.0.0.1:PORT)")
        parser.add_argument("--port", type=int, default=None, help="port of the running `tributary up`")
        parser.add_argument("--list", action="store_true", help="list tables and named queries")
        return parser
    add_runtime_arguments(parser)
    if command == "run":
        parser.add_argument("--records", action="append", default=[], metavar="STREAM=FILE.jsonl")
        parser.add_argument("--partition-key", help="field of each line whose value is the partition key")
        parser.add_argument("--until-drained", action="store_true", help="stop once everything is processed")
    return parser


# ---------------------------------------------------------------- up


def _up(arguments: argparse.Namespace) -> int:
    overrides = parse_parameter_overrides(arguments.parameter_overrides)
    with started_runtime(arguments, overrides) as runtime:
        print_start(runtime)
        print(f"\nexport AWS_ENDPOINT_URL={runtime.aws.endpoint_url}  # for the producer, consumer and AWS CLI")
        print(f"tributary query --port {runtime.aws.port} --list  # SQL over the data lake")
        serve_until_stopped(runtime)
    print_now("stopped")
    return 0


# ---------------------------------------------------------------- run


def _run(arguments: argparse.Namespace) -> int:
    overrides = parse_parameter_overrides(arguments.parameter_overrides)
    inputs = [_records_argument(item) for item in arguments.records]
    with started_runtime(arguments, overrides) as runtime:
        print_start(runtime)
        for stream, path in inputs:
            sent = put_json_lines(runtime.template, stream, path, arguments.partition_key)
            print(f"put {sent} records from {path} on {stream}")
        if arguments.until_drained:
            return _drain_and_report(arguments, runtime)
        serve_until_stopped(runtime)
    print_now("stopped")
    return 0


def _drain_and_report(arguments: argparse.Namespace, runtime: Runtime) -> int:
    try:
        runtime.drain(drain_timeout(arguments, runtime), notify=print_now)
    except TimeoutError as error:
        print(f"tributary run: {error}", file=sys.stderr)
        return 1
    print("drained")
    for line in counter_lines(runtime.counters()):
        print(f"  {line}")
    for record in runtime.on_failure_records():
        print(f"  on-failure: {_describe_failure(record)}")
    return 0


def _records_argument(text: str) -> tuple[str, Path]:
    stream, sep, path = text.partition("=")
    if not sep or not stream or not path:
        raise TemplateError(f"--records {text!r} is not STREAM=FILE.jsonl")
    return stream, Path(path)


def put_json_lines(template: Template, stream: str, path: Path, partition_key_field: str | None) -> int:
    """Put each non-empty line of `path` on the stream named by logical id or name; return records sent."""
    stream_name = template.physical_name(stream) if stream in template.resources else stream
    try:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as error:
        raise TemplateError(f"cannot read {path}: {error.strerror}") from error
    entries = [(_partition_key(line, partition_key_field, path, number), line) for number, line in enumerate(lines, 1)]
    report = put_records(boto3.client("kinesis"), stream_name, entries)
    if report.failed_entries:
        first = report.failed_entries[0]
        raise TemplateError(f"{len(report.failed_entries)} records of {path} not put: {first.error_message}")
    return report.sent


def _partition_key(line: bytes, field: str | None, path: Path, number: int) -> str:
    if field is None:
        return "tributary-run"  # one key keeps every record of the file in order on one shard
    try:
        value = json.loads(line)[field]
    except (ValueError, KeyError, TypeError) as error:
        raise TemplateError(f"{path}:{number}: no field {field!r} for the partition key") from error
    return str(value)


def _describe_failure(record: Mapping[str, Any]) -> str:
    context = record.get("requestContext", {})
    if "requestPayload" in record:  # an asynchronous invocation's record (S3 events, self-invocations)
        response = record.get("responsePayload")
        error = response.get("errorMessage", "") if isinstance(response, dict) else ""
        function = context.get("functionArn", "").rsplit(":function:", 1)[-1]
        return f"{context.get('condition')} {function} after {context.get('approximateInvokeCount')} attempts: {error}"
    batch = record.get("KinesisBatchInfo") or record.get("DDBStreamBatchInfo") or {}
    return (
        f"{context.get('condition')} {batch.get('streamArn', '').rsplit('/', 1)[-1]} {batch.get('shardId')} "
        f"{batch.get('startSequenceNumber')}..{batch.get('endSequenceNumber')} ({batch.get('batchSize')} records)"
    )


# ---------------------------------------------------------------- query


def _query(arguments: argparse.Namespace) -> int:
    from tributary.runtime.lake import Lake  # duckdb is loaded for `query` only

    endpoint = arguments.endpoint_url or (f"http://127.0.0.1:{arguments.port}" if arguments.port else None)
    if endpoint is None:
        print("tributary query: pass --port (or --endpoint-url) of a running `tributary up`", file=sys.stderr)
        return 2
    use_local_endpoint(endpoint)
    lake = Lake.from_emulator()
    if arguments.list or not arguments.sql:
        print("tables:", ", ".join(lake.tables) or "none")
        print("named queries:", ", ".join(lake.named_queries) or "none")
        return 0
    _print_rows(*lake.query(lake.named_queries.get(arguments.sql, arguments.sql)))
    return 0


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if value is None else str(value) for value in row))
    print(f"({len(rows)} rows)")
