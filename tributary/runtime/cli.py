"""`tributary up | demo | run | query`: the local runtime's commands.

- `up`: start the emulator, deploy the template, run its pipelines with live counters until Ctrl-C.
- `demo`: start, deploy, run every demo pipeline's producer, drain, print the report; exit 0 only if
  every section accounts for every record.
- `run`: the same engine on any SAM template: put JSON-lines files on streams, drain, print counters.

`up`, `demo` and `run` take `--faults KIND=P,...` (and `--fault-seed N`): AWS faults injected into the
functions' own requests and invocations (tributary.runtime.faults), counted and traced.
- `query`: SQL (DuckDB) over the data lake of a running `tributary up` (Parquet read through its S3 API).

What the functions print (their logs, tracebacks of errors) goes to `--logs FILE`, or else to a new
file `.tributary/logs/<command>-<time>.log` under the current directory (gitignored), named at
start-up: the runtime's own output stays readable and nothing a function says is lost.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import faulthandler
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import boto3

from tributary.aws_guard import use_local_endpoint
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.demo import run_demo
from tributary.runtime.faults import FAULTS, FaultPlan, FaultSpecError, parse_faults
from tributary.runtime.template import Template, TemplateError, parse_parameter_overrides
from tributary.stop_signals import StopRequest, stop_on_signals
from tributary_shared.kinesis_put import put_records

DEFAULT_DRAIN_TIMEOUT_S = 300.0
WINDOW_TIMEOUT_MARGIN_S = 60.0
LIVE_REFRESH_S = 2.0
LIVE_IDLE_SLEEP_S = 0.2  # shards back off for a second after an empty read anyway
SLOW_SHUTDOWN_REPORT_S = 15.0
FUNCTION_LOG_DIRECTORY = Path(".tributary") / "logs"


def main(command: str, argv: list[str]) -> int:
    handlers = {"up": _up, "demo": _demo, "run": _run, "query": _query}
    parser = _parser(command)
    arguments = parser.parse_args(argv)
    try:
        return handlers[command](arguments)
    except (TemplateError, FaultSpecError) as error:
        print(f"tributary {command}: {error}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- arguments


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tributary {command}")
    parser.set_defaults(command=command)
    if command == "query":
        parser.add_argument("sql", nargs="?", help="SQL, or the name of one of the template's Athena named queries")
        parser.add_argument("--endpoint-url", help="the running `tributary up` (default http://127.0.0.1:PORT)")
        parser.add_argument("--port", type=int, default=None, help="port of the running `tributary up`")
        parser.add_argument("--list", action="store_true", help="list tables and named queries")
        return parser
    parser.add_argument("--template", type=Path, default=Path("template.yaml"), help="SAM template (template.yaml)")
    parser.add_argument("--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--port", type=int, default=None, help="emulator port (default: a free one)")
    parser.add_argument("--trace", type=Path, default=None, help="JSON lines: one per invocation and delivery")
    parser.add_argument("--logs", type=Path, default=None,
                        help=f"file for the functions' own output (default: a new file in {FUNCTION_LOG_DIRECTORY})")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds to wait for draining (default {DEFAULT_DRAIN_TIMEOUT_S:.0f}, or the longest "
                             f"TumblingWindowInSeconds + {WINDOW_TIMEOUT_MARGIN_S:.0f} if longer)")
    parser.add_argument("--faults", metavar="KIND=P,...",
                        help=f"inject AWS faults into the functions' requests, each with probability P: "
                             f"{', '.join(FAULTS)}")
    parser.add_argument("--fault-seed", type=int, default=None, metavar="N",
                        help="seed of the fault draws (default: random, printed at start)")
    if command == "run":
        parser.add_argument("--records", action="append", default=[], metavar="STREAM=FILE.jsonl")
        parser.add_argument("--partition-key", help="field of each line whose value is the partition key")
        parser.add_argument("--until-drained", action="store_true", help="stop once everything is processed")
    return parser


@contextlib.contextmanager
def _runtime(arguments: argparse.Namespace, overrides: Mapping[str, str],
             options: RuntimeOptions | None = None) -> Iterator[Runtime]:
    """A started Runtime for the command's arguments; `options` gives defaults the arguments override."""
    faults = fault_plan(arguments)
    with contextlib.ExitStack() as stack:
        log_path = arguments.logs or function_log_path(arguments.command)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logs: TextIO = stack.enter_context(log_path.open("a", encoding="utf-8"))
        print(f"function output: {log_path}", flush=True)
        runtime_options = replace(
            options or RuntimeOptions(),
            template_path=arguments.template,
            parameter_overrides=overrides,
            port=arguments.port,
            trace_path=arguments.trace,
            function_log=logs,
            faults=faults,
        )
        yield stack.enter_context(Runtime(runtime_options))


def fault_plan(arguments: argparse.Namespace) -> FaultPlan | None:
    """--faults and --fault-seed, checked before anything starts."""
    if arguments.faults is None:
        if arguments.fault_seed is not None:
            raise FaultSpecError("--fault-seed needs --faults")
        return None
    return parse_faults(arguments.faults, arguments.fault_seed)


def function_log_path(command: str) -> Path:
    return FUNCTION_LOG_DIRECTORY / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def drain_timeout(arguments: argparse.Namespace, runtime: Runtime) -> float:
    """--timeout, or enough for the longest tumbling window to end and be finally invoked."""
    if arguments.timeout is not None:
        return float(arguments.timeout)
    return max(DEFAULT_DRAIN_TIMEOUT_S, runtime.longest_tumbling_window_s() + WINDOW_TIMEOUT_MARGIN_S)


def print_now(text: str) -> None:
    print(text, flush=True)


def _print_start(runtime: Runtime) -> None:
    print(f"emulator: {runtime.aws.endpoint_url}  (aws --endpoint-url {runtime.aws.endpoint_url} ...)")
    for line in runtime.deployment.summary_lines():
        print(f"  {line}")
    print(f"  functions: {', '.join(runtime.functions) or 'none'}")
    for logical_id, reason in runtime.skipped_functions.items():
        print(f"  function not run: {logical_id}: {reason}")
    print(f"  event source mappings: {', '.join(runtime.mappings) or 'none'}")
    for name in runtime.unmapped_events:
        print(f"  event not emulated: {name}")
    for emulation in runtime.emulations:
        print(f"  emulation: {emulation.name}")
    if runtime.faults is not None:
        print(f"  faults: {runtime.faults.plan.describe()}")
    for warning in [*runtime.template.warnings, *runtime.retry_forever_warnings()]:
        print(f"  warning: {warning}")


def counter_lines(counters: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, item in counters["mappings"].items():
        lines.append(
            f"{key:<40} {item['source']:<24} in={item['records_in']:<6} invocations={item['invocations']:<5} "
            f"errors={item['errors']:<4} retries={item['retries']:<4} age={item['iterator_age_ms']}ms "
            f"on-failure={item['to_on_failure']}"
        )
        lines += [f"    {reason}" for reason in item.get("stuck", [])]
        if item.get("last_error"):
            lines.append(f"    last function error: {item['last_error']}")
    for name, item in counters["emulations"].items():
        lines.append(f"{name:<40} " + " ".join(f"{key}={value}" for key, value in item.items()))
    if counters.get("faults"):
        injected = " ".join(f"{kind}={count}" for kind, count in counters["faults"].items())
        lines.append(f"{'faults injected':<40} {injected}")
    return lines


# ---------------------------------------------------------------- up


def _up(arguments: argparse.Namespace) -> int:
    overrides = parse_parameter_overrides(arguments.parameter_overrides)
    with _runtime(arguments, overrides) as runtime:
        _print_start(runtime)
        print(f"\nexport AWS_ENDPOINT_URL={runtime.aws.endpoint_url}  # for the producer, consumer and AWS CLI")
        print(f"tributary query --port {runtime.aws.port} --list  # SQL over the data lake")
        _serve_until_stopped(runtime)
    print_now("stopped")
    return 0


def _serve_until_stopped(runtime: Runtime) -> None:
    """Run with live counters until Ctrl-C or SIGTERM; the caller's `with` then stops the runtime."""
    print("running; Ctrl-C stops\n", flush=True)
    try:
        with stop_on_signals("stopping after the step in progress (Ctrl-C again to stop at once)") as stop:
            _run_live(runtime, stop)
    except KeyboardInterrupt:  # a second Ctrl-C: mid-step, which is exactly when a shutdown may hang
        print_now("interrupted")
    print_now("stopping: shutting the emulator and its services down")
    _report_a_slow_shutdown()


def _run_live(runtime: Runtime, stop: StopRequest) -> None:
    shown: list[str] = []
    next_refresh = 0.0
    while not stop.requested:
        if not runtime.step():
            time.sleep(LIVE_IDLE_SLEEP_S)
        if time.monotonic() >= next_refresh:
            lines = counter_lines(runtime.counters())
            if lines != shown:
                print(time.strftime("%H:%M:%S"), *lines, sep="\n  ", flush=True)
                shown = lines
            next_refresh = time.monotonic() + LIVE_REFRESH_S


def _report_a_slow_shutdown() -> None:
    """If stopping (servers, worker threads, interpreter exit) hangs, print every thread's stack and exit 1.

    Cancelled at exit: atexit runs after the interpreter has joined its threads, so a thread that
    never ends is still reported. The emulator's state is in memory and lost on exit anyway.
    """
    faulthandler.dump_traceback_later(SLOW_SHUTDOWN_REPORT_S, exit=True, file=sys.__stderr__)
    atexit.register(faulthandler.cancel_dump_traceback_later)


# ---------------------------------------------------------------- run


def _run(arguments: argparse.Namespace) -> int:
    overrides = parse_parameter_overrides(arguments.parameter_overrides)
    inputs = [_records_argument(item) for item in arguments.records]
    with _runtime(arguments, overrides) as runtime:
        _print_start(runtime)
        for stream, path in inputs:
            sent = put_json_lines(runtime.template, stream, path, arguments.partition_key)
            print(f"put {sent} records from {path} on {stream}")
        if arguments.until_drained:
            return _drain_and_report(arguments, runtime)
        _serve_until_stopped(runtime)
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


# ---------------------------------------------------------------- demo


def _demo(arguments: argparse.Namespace) -> int:
    return run_demo(arguments, _runtime, _print_start, drain_timeout)


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
