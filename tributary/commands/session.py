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

from tributary.commands.samconfig import DEFAULT_CONFIG_FILE, merged_overrides
from tributary.commands.session_output import CounterDisplay, counter_lines, stdout_console, stdout_is_terminal
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import FAULTS, FaultPlan, FaultSpecError, parse_faults
from tributary.runtime.log_format import FUNCTION_LOG_DIRECTORY
from tributary.runtime.resources import NOT_NEEDED_LOCALLY
from tributary.runtime.template import load_yaml
from tributary.stop_signals import StopRequest, stop_on_signals
from tributary.user_errors import UserError

__all__ = ["counter_lines"]  # `run --until-drained` prints them; tests read them

DEFAULT_DRAIN_TIMEOUT_S = 300.0
WINDOW_TIMEOUT_MARGIN_S = 60.0
LIVE_REFRESH_S = 2.0
LIVE_REFRESH_TERMINAL_S = 0.5  # redrawn in place: cheap to update often
LIVE_IDLE_SLEEP_S = 0.2  # shards back off for a second after an empty read anyway
SLOW_SHUTDOWN_REPORT_S = 15.0


class Steppable(Protocol):
    """What the live loop drives: a Runtime, or a stand-in in tests."""

    def step(self) -> bool: ...

    def counters(self) -> dict[str, Any]: ...


class WindowedRuntime(Protocol):
    def longest_tumbling_window_s(self) -> int: ...


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of every command that starts a runtime (`up`, `run`, `demo`)."""
    parser.add_argument("--template", type=Path, default=Path("template.yaml"), help="SAM template (template.yaml)")
    parser.add_argument("--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="template parameters; they win over --config-env's, key by key")
    parser.add_argument("--config-env", metavar="NAME", default=None,
                        help="parameter_overrides of [NAME.deploy.parameters] in samconfig.toml, as `sam deploy` reads")
    parser.add_argument("--config-file", type=Path, default=DEFAULT_CONFIG_FILE,
                        help=f"the samconfig file of --config-env (default {DEFAULT_CONFIG_FILE})")
    parser.add_argument("--verbose", action="store_true",
                        help="list every resource, function, mapping, emulation and alarm at start-up")
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


def runtime_overrides(arguments: argparse.Namespace, defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The template's parameter overrides: `defaults` the template declares, then --config-env's, then
    --parameter-overrides (each winning key by key). Checks the template is there before anything starts."""
    declared = declared_parameters(arguments.template)
    chosen = merged_overrides(arguments.parameter_overrides, arguments.config_env, arguments.config_file)
    return {**{key: value for key, value in (defaults or {}).items() if key in declared}, **chosen}


def declared_parameters(template_path: Path) -> dict[str, Any]:
    """The template's Parameters; UserError when there is no template to read."""
    try:
        return load_yaml(Path(template_path).read_text(encoding="utf-8")).get("Parameters") or {}
    except OSError as error:
        raise UserError(f"cannot read template {template_path}: {error.strerror}; run from the directory "
                        "holding template.yaml, or pass --template PATH") from error


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


def print_start(runtime: Runtime, verbose: bool = False) -> None:
    """What was deployed: in a line or two, with whatever will not run as in AWS; everything with `--verbose`."""
    print(f"emulator: {runtime.aws.endpoint_url}  (aws --endpoint-url {runtime.aws.endpoint_url} ...)")
    lines = start_notes(runtime) if verbose else start_summary(runtime)
    print(*(f"  {line}" for line in lines), sep="\n", flush=True)


def start_summary(runtime: Runtime) -> list[str]:
    deployed = (f"deployed {len(runtime.deployment.created)} resources; {len(runtime.functions)} functions, "
                f"{len(runtime.mappings)} event source mappings, {len(runtime.emulations)} emulations")
    if runtime.alarms is not None:
        deployed += f", {len(runtime.alarms.specs)} alarms"
    lines = [f"{deployed} (--verbose lists them)"]
    lines += [f"skipped {logical_id}: {reason}" for logical_id, reason in runtime.deployment.skipped
              if reason not in NOT_NEEDED_LOCALLY.values() and logical_id not in runtime.template.skipped_by_condition]
    return lines + _not_as_in_aws(runtime)


def start_notes(runtime: Runtime) -> list[str]:
    lines = list(runtime.deployment.summary_lines())
    lines.append(f"functions: {', '.join(runtime.functions) or 'none'}")
    lines.append(f"event source mappings: {', '.join(runtime.mappings) or 'none'}")
    lines += [f"emulation: {emulation.name}" for emulation in runtime.emulations]
    if runtime.alarms is not None:
        lines.append(f"alarms: {len(runtime.alarms.specs)} evaluated over what the runtime observes")
        lines += [f"alarm not evaluated locally: {name}: {reason}"
                  for name, reason in runtime.alarms.not_evaluated.items()]  # fmt: skip
    return lines + _not_as_in_aws(runtime)


def _not_as_in_aws(runtime: Runtime) -> list[str]:
    """What the user must know even without --verbose: what does not run, the faults drawn, warnings."""
    lines = [f"function not run: {logical_id}: {reason}" for logical_id, reason in runtime.skipped_functions.items()]
    lines += [f"event not emulated: {name}" for name in runtime.unmapped_events]
    if runtime.faults is not None and runtime.faults.plan.probabilities:
        lines.append(f"faults: {runtime.faults.plan.describe()}")
    lines += [f"warning: {warning}" for warning in [*runtime.template.warnings, *runtime.retry_forever_warnings()]]
    return lines


def serve_until_stopped(runtime: Steppable) -> bool:
    """Run with live counters until Ctrl-C or SIGTERM; the caller's `with` then stops the runtime.

    True when Ctrl-C stopped it: the command then ends as interrupted (exit 130); SIGTERM is a plain stop.
    """
    print("running; Ctrl-C stops\n", flush=True)
    try:
        with stop_on_signals("stopping after the step in progress (Ctrl-C again to stop at once)") as stop:
            _run_live(runtime, stop)
        interrupted = stop.by_interrupt
    except KeyboardInterrupt:  # a second Ctrl-C: mid-step, which is exactly when a shutdown may hang
        interrupted = True
    report_a_slow_shutdown()
    return interrupted


def _run_live(runtime: Steppable, stop: StopRequest) -> None:
    terminal = stdout_is_terminal()
    refresh_s = LIVE_REFRESH_TERMINAL_S if terminal else LIVE_REFRESH_S
    next_refresh = 0.0
    with CounterDisplay(stdout_console(), terminal) as display:
        while not stop.requested:
            if not runtime.step():
                time.sleep(LIVE_IDLE_SLEEP_S)
            if time.monotonic() >= next_refresh:
                display.show(runtime.counters())
                next_refresh = time.monotonic() + refresh_s


def report_a_slow_shutdown() -> None:
    """If stopping (servers, worker threads, interpreter exit) hangs, print every thread's stack and exit 1.

    Cancelled at exit: atexit runs after the interpreter has joined its threads, so a thread that
    never ends is still reported. The emulator's state is in memory and lost on exit anyway.
    """
    faulthandler.dump_traceback_later(SLOW_SHUTDOWN_REPORT_S, exit=True, file=sys.__stderr__)
    atexit.register(faulthandler.cancel_dump_traceback_later)
