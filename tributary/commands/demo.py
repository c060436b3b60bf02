"""`tributary demo`: every demo plug-in's producer, one drain, every plug-in's report, then the redrive step.

The redrive step (tributary.demos.redrive) fixes the cause of some dead-lettered records, runs the
redrive state machine and accounts for every dead-lettered record; its section is part of the verdict.
With `--faults`, the report ends with what was injected (per kind), what the mappings did about it
(records retried, bisections, records dead-lettered) and the verdict: the demo passes only if every
section holds, i.e. no record is lost and each key holds its newest record that was not dead-lettered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console

from tributary.commands.demo_report import ordered, print_report
from tributary.commands.samconfig import merged_overrides
from tributary.commands.session import (
    declared_parameters,
    drain_timeout,
    print_now,
    print_start,
    started_runtime,
)
from tributary.commands.session_output import drain_feedback, stdout_console, stdout_is_terminal
from tributary.console import write_report
from tributary.demos import DemoPipeline, DemoSection, discover_pipelines
from tributary.demos.redrive import STEP as REDRIVE_STEP
from tributary.runtime.alarms import summary_line
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import FaultPlan
from tributary.runtime.template import REGION
from tributary.user_errors import UserError

# The demo is a scripted, finite run: it retries and re-reads sooner than Lambda (1 s) to finish quickly;
# the order and number of invocations are the same. Fault injection is on with nothing drawn (unless
# `--faults` says otherwise), so the redrive step can inject its outage.
REPORT_TEXT_WIDTH = 110  # the HTML report's summary: the printed report, as a terminal this wide shows it
DEMO_OPTIONS = RuntimeOptions(retry_delay_s=0.1, idle_read_interval_s=0.1, faults=FaultPlan({}, seed=1))


class RuntimeDemoContext:
    """The `DemoContext` a running `Runtime` offers to demo plug-ins."""

    def __init__(self, runtime: Runtime, drain_timeout_s: float = 300.0, console: Console | None = None) -> None:
        self.runtime = runtime
        self.drain_timeout_s = drain_timeout_s
        self.console = console
        self.endpoint_url = runtime.aws.endpoint_url
        self.region = REGION
        self.parameters = {key: str(value) for key, value in runtime.template.parameters.items()}
        self._on_failure: list[dict] | None = None

    def client(self, service: str) -> Any:
        # No explicit endpoint: AWS_ENDPOINT_URL (moto) and the emulations' service-specific variables apply.
        return boto3.client(service, region_name=self.region)

    def has_resource(self, logical_id: str) -> bool:
        return logical_id in self.runtime.template.resources

    def physical_name(self, logical_id: str) -> str:
        return str(self.runtime.template.ref(logical_id))

    def arn(self, logical_id: str) -> str:
        return str(self.runtime.template.get_att(logical_id, "Arn"))

    def mapping_stats(self) -> Mapping[str, Any]:
        return {key: mapping.stats for key, mapping in self.runtime.mappings.items()}

    def on_failure_records(self) -> Sequence[dict]:
        if self._on_failure is None:
            self._on_failure = self.runtime.on_failure_records()
        return self._on_failure

    def invocations(self, function_logical_id: str) -> int:
        function = self.runtime.functions.get(function_logical_id)
        return function.invocations if function else 0

    # What the redrive step needs besides (tributary.demos.redrive.RedriveStepContext).
    def drain(self) -> None:
        if self.console is None:
            self.runtime.drain(self.drain_timeout_s, notify=print_now)
            return
        with drain_feedback(self.console, self.console.is_terminal, "redrive step: draining", quiet=True) as notify:
            self.runtime.drain(self.drain_timeout_s, notify=notify)

    def outage(self, kind: str) -> contextlib.AbstractContextManager[None]:
        return self.runtime.outage(kind)

    def current_failure_records(self) -> Sequence[dict]:
        return self.runtime.on_failure_records()


def demo_overrides(template_path: Any, pipelines: Sequence[DemoPipeline], user: Mapping[str, str]) -> dict[str, str]:
    """Every pipeline's overrides the template can take, then the user's (which win: --config-env's and
    --parameter-overrides, tributary.commands.samconfig.merged_overrides)."""
    declared = declared_parameters(Path(template_path))
    overrides: dict[str, str] = {}
    for pipeline in pipelines:
        overrides.update({key: value for key, value in pipeline.parameter_overrides.items() if key in declared})
    return {**overrides, **user}


def run_demo(arguments: argparse.Namespace) -> int:
    """`tributary demo` with its parsed arguments; 0 only if every section accounts for every record."""
    started = time.monotonic()
    pipelines = discover_pipelines()
    user = merged_overrides(arguments.parameter_overrides, arguments.config_env, arguments.config_file)
    overrides = demo_overrides(arguments.template, pipelines, user)
    console = stdout_console()
    if arguments.report is not None:
        check_report_path(arguments.report)  # before minutes of demo, not after them
    options = replace(DEMO_OPTIONS, keep_trace=True) if arguments.report is not None else DEMO_OPTIONS
    with started_runtime(arguments, overrides, options) as runtime:
        print_start(runtime, arguments.verbose)
        context = RuntimeDemoContext(runtime, drain_timeout(arguments, runtime), console)
        active = [pipeline for pipeline in pipelines if _missing(context, pipeline) == []]
        sections = [_skipped(pipeline, _missing(context, pipeline)) for pipeline in pipelines if pipeline not in active]
        failed_producers = {pipeline.name: _produce(pipeline, context) for pipeline in active}
        drained_problem = _drain(runtime, drain_timeout(arguments, runtime), console)
        for pipeline in active:
            section = _report(pipeline, context)
            if failed_producers[pipeline.name]:
                section.problems.append(failed_producers[pipeline.name])
                section.accounted = False
            sections.append(section)
        if not drained_problem:
            sections.append(_redrive_step(context))
        fault_lines = describe_faults(runtime) if arguments.faults is not None else None
        alarms = summary_line(runtime.alarms.evaluate().summary()) if runtime.alarms is not None else ""
        if arguments.report is not None:  # while the emulator still runs: the report reads its tables and streams
            summary = _report_text(sections, drained_problem, active, alarms)
            report_error = _write_report(arguments.report, runtime, summary)
    ok = _print_report(console, sections, drained_problem, active)
    if alarms:  # the template's alarms as CloudWatch would show them now (poison pills fill the on-failure queue)
        print(f"\n{alarms}")
    if fault_lines is not None:
        _print_fault_verdict(fault_lines, ok)
    print(f"\ndemo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    if arguments.report is not None:
        if report_error:  # the text report above stands; the file could not be written
            raise UserError(f"--report {arguments.report}: {report_error}")
        print(f"report: {arguments.report.resolve().as_uri()}")
    return 0 if ok else 1


def check_report_path(path: Path) -> None:
    """A UserError unless `path` names a file that can be written (its directory exists and is writable)."""
    directory = path.resolve().parent
    if path.is_dir():
        raise UserError(f"--report {path} is a directory: name a file, e.g. {path / 'report.html'}")
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise UserError(f"--report {path}: cannot write in {directory}: name a file in a writable directory")


def _write_report(path: Path, runtime: Runtime, summary: str) -> str:
    """Write the HTML report; the reason it could not be written, or ""."""
    try:
        write_report(path, runtime, summary.splitlines())
    except OSError as error:
        return error.strerror or str(error)
    return ""


def _report_text(sections: list[DemoSection], drained_problem: str, active: list[DemoPipeline], alarms: str) -> str:
    """The report as printed below, as plain text for the HTML report's summary."""
    recording = Console(record=True, file=io.StringIO(), width=REPORT_TEXT_WIDTH, force_terminal=False)
    _print_report(recording, sections, drained_problem, active)
    return recording.export_text() + (f"\n{alarms}\n" if alarms else "")


def _missing(context: RuntimeDemoContext, pipeline: DemoPipeline) -> list[str]:
    return [logical_id for logical_id in pipeline.required_resources if not context.has_resource(logical_id)]


def _skipped(pipeline: DemoPipeline, missing: list[str]) -> DemoSection:
    return DemoSection(pipeline.name, [f"skipped: the template lacks {', '.join(missing)}"], accounted=True)


def _produce(pipeline: DemoPipeline, context: RuntimeDemoContext) -> str:
    try:
        pipeline.produce(context)
    except Exception:  # a broken plug-in fails its own section, not the whole demo's report
        return f"produce failed:\n{traceback.format_exc()}"
    return ""


def _report(pipeline: DemoPipeline, context: RuntimeDemoContext) -> DemoSection:
    try:
        return pipeline.report(context)
    except Exception:  # as in _produce
        return DemoSection(pipeline.name, problems=[f"report failed:\n{traceback.format_exc()}"])


def _redrive_step(context: RuntimeDemoContext) -> DemoSection:
    missing = [logical_id for logical_id in REDRIVE_STEP.required_resources if not context.has_resource(logical_id)]
    if missing:
        return DemoSection(REDRIVE_STEP.name, [f"skipped: the template lacks {', '.join(missing)}"], accounted=True)
    print_now("redrive step: an outage, the fix, then the redrive state machine")
    try:
        return REDRIVE_STEP.run(context)
    except Exception:  # as in _report: the step fails its own section
        return DemoSection(REDRIVE_STEP.name, problems=[f"redrive step failed:\n{traceback.format_exc()}"])


def _drain(runtime: Runtime, timeout_s: float, console: Console) -> str:
    try:
        with drain_feedback(console, stdout_is_terminal(), "draining the demo's records") as notify:
            runtime.drain(timeout_s, notify=notify)
    except TimeoutError as error:
        return str(error)
    return ""


def describe_faults(runtime: Runtime) -> list[str]:
    """What `--faults` injected and what the mappings did about it, in figures."""
    assert runtime.faults is not None
    injected = runtime.faults.injected
    stats = [mapping.stats for mapping in runtime.mappings.values()]
    kinds = ", ".join(f"{kind} {injected[kind]}" for kind in runtime.faults.plan.probabilities) or "none"
    return [
        f"plan: {runtime.faults.plan.describe()}",
        f"injected: {sum(injected.values())} faults ({kinds})",
        f"mappings: {sum(item.records_in for item in stats)} records in, "
        f"{sum(item.function_errors for item in stats)} failed invocations, "
        f"{sum(item.records_retried for item in stats)} records retried "
        f"({sum(item.retries for item in stats)} retries, {sum(item.bisections for item in stats)} bisections), "
        f"{sum(item.records_discarded for item in stats)} records dead-lettered "
        f"({sum(item.records_to_destination for item in stats)} delivered to on-failure destinations)",
    ]


def _print_fault_verdict(lines: list[str], ok: bool) -> None:
    print("\n## under injected faults")
    for line in lines:
        print(f"  {line}")
    verdict = ("every record written or dead-lettered, and every key holds its newest record that was not "
               "dead-lettered" if ok else "records lost or out of order, or not drained: see the problems above")
    print(f"  verdict: {verdict}")


def _print_report(console: Console, sections: list[DemoSection], drained_problem: str,
                  active: list[DemoPipeline]) -> bool:
    general = [problem for problem in (drained_problem,) if problem]
    if not active:
        general.append("no demo pipeline could run against this template")
    print_report(console, ordered(sections), general)
    return bool(active) and not drained_problem and all(section.accounted for section in sections)
