"""A local runtime session as `tributary up | run | demo` start it: arguments, start-up, live counters, shutdown.

What the functions print (their logs, tracebacks of errors) goes to `--logs FILE`, or else to a new
file `.tributary/logs/<command>-<time>.log` under the current directory (gitignored), named at
start-up: the runtime's own output stays readable and nothing a function says is lost.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import faulthandler
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TextIO

from tributary.runtime.alarms import summary_line
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import FAULTS, FaultPlan, FaultSpecError, parse_faults
from tributary.stop_signals import StopRequest, stop_on_signals

DEFAULT_DRAIN_TIMEOUT_S = 300.0
WINDOW_TIMEOUT_MARGIN_S = 60.0
LIVE_REFRESH_S = 2.0
LIVE_IDLE_SLEEP_S = 0.2  # shards back off for a second after an empty read anyway
SLOW_SHUTDOWN_REPORT_S = 15.0
FUNCTION_LOG_DIRECTORY = Path(".tributary") / "logs"


class Steppable(Protocol):
    """What the live loop drives: a Runtime, or a stand-in in tests."""

    def step(self) -> bool: ...

    def counters(self) -> dict[str, Any]: ...


class WindowedRuntime(Protocol):
    def longest_tumbling_window_s(self) -> int: ...


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of every command that starts a runtime (`up`, `run`, `demo`)."""
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


@contextlib.contextmanager
def started_runtime(arguments: argparse.Namespace, overrides: Mapping[str, str],
                    options: RuntimeOptions | None = None) -> Iterator[Runtime]:
    """A started Runtime for the command's arguments; `options` gives defaults the arguments override
    (its `faults` only when `--faults` is not given)."""
    faults = fault_plan(arguments) or (options.faults if options else None)
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


def drain_timeout(arguments: argparse.Namespace, runtime: WindowedRuntime) -> float:
    """--timeout, or enough for the longest tumbling window to end and be finally invoked."""
    if arguments.timeout is not None:
        return float(arguments.timeout)
    return max(DEFAULT_DRAIN_TIMEOUT_S, runtime.longest_tumbling_window_s() + WINDOW_TIMEOUT_MARGIN_S)


def print_now(text: str) -> None:
    print(text, flush=True)


def print_start(runtime: Runtime) -> None:
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
    if runtime.faults is not None and runtime.faults.plan.probabilities:
        print(f"  faults: {runtime.faults.plan.describe()}")
    if runtime.alarms is not None:
        print(f"  alarms: {len(runtime.alarms.specs)} evaluated over what the runtime observes")
        for name, reason in runtime.alarms.not_evaluated.items():
            print(f"  alarm not evaluated locally: {name}: {reason}")
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
    if counters.get("alarms"):
        lines.append(summary_line(counters["alarms"]))
    return lines


def serve_until_stopped(runtime: Steppable) -> None:
    """Run with live counters until Ctrl-C or SIGTERM; the caller's `with` then stops the runtime."""
    print("running; Ctrl-C stops\n", flush=True)
    try:
        with stop_on_signals("stopping after the step in progress (Ctrl-C again to stop at once)") as stop:
            _run_live(runtime, stop)
    except KeyboardInterrupt:  # a second Ctrl-C: mid-step, which is exactly when a shutdown may hang
        print_now("interrupted")
    print_now("stopping: shutting the emulator and its services down")
    report_a_slow_shutdown()


def _run_live(runtime: Steppable, stop: StopRequest) -> None:
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


def report_a_slow_shutdown() -> None:
    """If stopping (servers, worker threads, interpreter exit) hangs, print every thread's stack and exit 1.

    Cancelled at exit: atexit runs after the interpreter has joined its threads, so a thread that
    never ends is still reported. The emulator's state is in memory and lost on exit anyway.
    """
    faulthandler.dump_traceback_later(SLOW_SHUTDOWN_REPORT_S, exit=True, file=sys.__stderr__)
    atexit.register(faulthandler.cancel_dump_traceback_later)
