"""`tributary up | demo | run | query`: the commands that drive the local runtime.

- `up`: start the emulator, deploy the template, run its pipelines with live counters until Ctrl-C.
- `demo`: start, deploy, run every demo pipeline's producer, drain, print the report; exit 0 only if
  every section accounts for every record (tributary.commands.demo).
- `run`: the same engine on any SAM template: put JSON-lines files on streams, drain, print counters.
- `query`: SQL (DuckDB) over the data lake of a running `tributary up` (Parquet read through its S3 API).

`up`, `demo` and `run` take `--faults KIND=P,...` (and `--fault-seed N`): AWS faults injected into the
functions' own requests and invocations (tributary.runtime.faults), counted and traced. Where the
functions' own output goes: see tributary.commands.session. They also take `--config-env NAME` (parameter
overrides from samconfig.toml, as `sam deploy` reads them) and `--verbose` (every resource at start-up).

Mistakes the user can fix (a missing file, an unknown stream, bad SQL) raise UserError before anything
starts; the `tributary` command prints its message on one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from tributary.aws_guard import use_local_endpoint
from tributary.commands.demo import run_demo
from tributary.commands.session import (
    add_runtime_arguments,
    counter_lines,
    drain_timeout,
    print_now,
    print_start,
    runtime_overrides,
    serve_until_stopped,
    started_runtime,
)
from tributary.commands.session_output import drain_feedback, stdout_console, stdout_is_terminal
from tributary.console import start_console
from tributary.ports import ensure_port_free
from tributary.runtime.app import Runtime
from tributary.runtime.esm.windows import window_start
from tributary.runtime.template import Template, TemplateError
from tributary.user_errors import UserError
from tributary_shared.kinesis_put import put_records

if TYPE_CHECKING:
    from tributary.runtime.lake import Lake

QUERY_RETRY_INTERVAL_S = 1.0

# `up` shows results soon, as the demo does: a summary every 10 s rather than every minute (the template's default).
UP_DEFAULTS = {"TumblingWindowInSeconds": "10"}
KINESIS_STREAM = "AWS::Kinesis::Stream"


def main(command: str, argv: list[str]) -> int:
    handlers = {"up": _up, "demo": run_demo, "run": _run, "query": _query}
    parser = _parser(command)
    arguments = parser.parse_args(argv)
    return handlers[command](arguments)


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tributary {command}")
    parser.set_defaults(command=command)
    if command == "query":
        parser.add_argument("sql", nargs="?", help="SQL, or the name of one of the template's Athena named queries")
        parser.add_argument("--endpoint-url", help="the running `tributary up` (default http://127.0.0.1:PORT)")
        parser.add_argument("--port", type=int, default=None, help="port of the running `tributary up`")
        parser.add_argument("--list", action="store_true", help="list tables and named queries")
        parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                            help="until the query returns rows, retry for up to SECONDS (the lake fills as "
                                 "Firehose delivers)")  # fmt: skip
        return parser
    add_runtime_arguments(parser)
    if command == "up":
        parser.add_argument("--console-port", type=int, default=None, metavar="N",
                            help="serve the console on a loopback port of its own (default: the emulator's port)")
    if command == "demo":
        parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                            help="also write the demo's views (summary, fleet, pipelines, timeline) as one "
                                 "self-contained HTML file")  # fmt: skip
    if command == "run":
        parser.add_argument("--records", action="append", default=[], metavar="STREAM=FILE.jsonl")
        parser.add_argument("--partition-key", help="field of each line whose value is the partition key")
        parser.add_argument("--until-drained", action="store_true", help="stop once everything is processed")
    return parser


# ---------------------------------------------------------------- up


def _up(arguments: argparse.Namespace) -> int:
    if arguments.console_port is not None:  # before the deployment, not after it
        ensure_port_free(arguments.console_port, option="--console-port")
    overrides = runtime_overrides(arguments, UP_DEFAULTS)
    with started_runtime(arguments, overrides) as runtime:
        console = start_console(runtime, arguments.console_port)
        try:
            print_start(runtime, arguments.verbose)
            for line in window_lines(runtime, time.time()):
                print(f"  {line}")
            print(f"\nconsole: {console.url}  (open it in a browser)")
            print(f"export AWS_ENDPOINT_URL={runtime.aws.endpoint_url}  # for the producer, consumer and AWS CLI")
            print(f"tributary query --port {runtime.aws.port} --list  # SQL over the data lake")
            interrupted = serve_until_stopped(runtime)
        finally:
            console.stop()  # before the runtime stops: its event streams end first
    return _stopped(interrupted)


# ---------------------------------------------------------------- run


def window_lines(runtime: Runtime, now: float) -> list[str]:
    """Per mapping with tumbling windows: their length, and when the first results are due if records come now."""
    lines = []
    for key, mapping in runtime.mappings.items():
        window_s = mapping.config.tumbling_window_s
        if not window_s:
            continue
        due = time.strftime("%H:%M:%S", time.localtime(window_start(now, window_s) + window_s))
        outputs = _output_streams(runtime, key.split(".", 1)[0], mapping.config.source_arn)
        what = f"{', '.join(outputs)} ({key})" if outputs else key
        lines.append(f"{what}: {window_s} s tumbling windows; the first summary is due about {due}, "
                     "after the first window with records closes")
    return lines


def _output_streams(runtime: Runtime, function_logical_id: str, source_arn: str) -> list[str]:
    """Streams of the template named in the function's environment, other than the one it reads."""
    function = runtime.functions.get(function_logical_id)
    if function is None:
        return []
    streams = {runtime.template.physical_name(logical_id)
               for logical_id, resource in runtime.template.resources.items() if resource.type == KINESIS_STREAM}
    named = set(function.config.environment.values()) & streams
    return sorted(name for name in named if not source_arn.endswith(f"/{name}") and f"/{name}/" not in source_arn)


def _run(arguments: argparse.Namespace) -> int:
    overrides = runtime_overrides(arguments)
    inputs = checked_records(Template.load(arguments.template, overrides), arguments.records)
    with started_runtime(arguments, overrides) as runtime:
        print_start(runtime, arguments.verbose)
        for stream, path in inputs:
            sent = put_json_lines(runtime.template, stream, path, arguments.partition_key)
            print(f"put {sent} records from {path} on {stream}")
        if arguments.until_drained:
            return _drain_and_report(arguments, runtime)
        interrupted = serve_until_stopped(runtime)
    return _stopped(interrupted)


def _stopped(interrupted: bool) -> int:
    """After the runtime has stopped: Ctrl-C ends the command as interrupted (`interrupted`, exit 130)."""
    if interrupted:
        raise KeyboardInterrupt
    print_now("stopped")
    return 0


def _drain_and_report(arguments: argparse.Namespace, runtime: Runtime) -> int:
    try:
        with drain_feedback(stdout_console(), stdout_is_terminal()) as notify:
            runtime.drain(drain_timeout(arguments, runtime), notify=notify)
    except TimeoutError as error:
        print(f"tributary run: {error}", file=sys.stderr)
        return 1
    print("drained")
    for line in counter_lines(runtime.counters()):
        print(f"  {line}")
    for record in runtime.on_failure_records():
        print(f"  on-failure: {_describe_failure(record)}")
    return 0


def checked_records(template: Template, arguments: Sequence[str]) -> list[tuple[str, Path]]:
    """Each `--records STREAM=FILE`, checked before anything starts: the file is there, the template has the stream."""
    streams = {logical_id: template.physical_name(logical_id)
               for logical_id, resource in template.resources.items() if resource.type == KINESIS_STREAM}
    inputs = []
    for text in arguments:
        stream, sep, path = text.partition("=")
        if not sep or not stream or not path:
            raise UserError(f"--records {text!r} is not STREAM=FILE.jsonl")
        if stream not in streams and stream not in streams.values():
            known = ", ".join(f"{logical_id} ({name})" for logical_id, name in streams.items()) or "none"
            raise UserError(f"--records {text}: the template has no stream {stream!r}; its streams: {known}")
        if not Path(path).is_file():
            raise UserError(f"--records {text}: no file {path}; give a JSON-lines file, one record per line")
        inputs.append((stream, Path(path)))
    return inputs


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
    except (ValueError, KeyError, TypeError, RecursionError) as error:
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

    port_url = f"http://127.0.0.1:{arguments.port}" if arguments.port else None
    endpoint = arguments.endpoint_url or port_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise UserError("pass --port (or --endpoint-url) of a running `tributary up`, or export the "
                        "AWS_ENDPOINT_URL it printed")  # fmt: skip
    use_local_endpoint(endpoint)
    lake = Lake.from_emulator()
    if arguments.list or not arguments.sql:
        print("tables:", ", ".join(lake.tables) or "none")
        print("named queries:", ", ".join(lake.named_queries) or "none")
        return 0
    columns, rows = _rows_within(arguments.wait, Lake.from_emulator, arguments.sql, lake)
    print_rows(columns, rows, stdout_is_terminal())
    return 0


def _rows_within(wait_s: float, reload: Callable[[], Lake], sql: str, lake: Lake) -> tuple[list[str], list]:
    """The query's result; with `--wait`, asked again on a fresh read of the lake until it has rows or time is up."""
    from tributary.runtime.lake import LakeTableMissing  # duckdb is loaded for `query` only

    deadline = time.monotonic() + wait_s
    while True:
        try:
            columns, rows = lake.query(lake.named_queries.get(sql, sql))
        except LakeTableMissing:  # no object of that table yet (a typo in SQL is reported at once)
            if time.monotonic() >= deadline:
                raise
            columns, rows = [], []
        if rows or time.monotonic() >= deadline:
            return columns, rows
        time.sleep(QUERY_RETRY_INTERVAL_S)
        lake = reload()


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], terminal: bool) -> None:
    """A table on a terminal; tab-separated lines elsewhere (scripts read them: keep the format)."""
    if terminal:
        from rich.table import Table

        table = Table(*columns, caption=f"{len(rows)} rows")
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        stdout_console().print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if value is None else str(value) for value in row))
    print(f"({len(rows)} rows)")
