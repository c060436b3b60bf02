"""What a developer can do from the console: put a burst of unicorn readings on the stream, start a redrive.

A burst goes through the same path as `tributary produce` (tributary.sample_records' readings, poison
pills as the producer makes them, tributary_shared.kinesis_put's PutRecords); each burst continues the
same unicorns' walk, so their trails join up. A redrive is a StartExecution of the template's redrive
state machine, as `tributary redrive` makes it; the console does not wait for its end (the pipelines view
lists the executions and their status).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tributary.producer import POISON_EVERY, json_bytes, poison_pill
from tributary.runtime.app import Runtime
from tributary.runtime.executions import LOCAL_REDRIVE_OPTIONS
from tributary.sample_records import unicorn_statuses
from tributary.user_errors import UserError
from tributary_shared.aggregator.readings import format_status_time
from tributary_shared.kinesis_put import put_records

READINGS_STREAM = "WildrydesStream"
REDRIVE_STATE_MACHINE = "RedriveStateMachine"  # the template's logical id, as the demo's redrive step names it
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
MAX_BURST = 10_000
READING_INTERVAL_MS = 250  # between one unicorn's readings in a burst
SHOWN_EXECUTIONS = 5


@dataclass(frozen=True)
class Burst:
    stream: str
    sent: int
    poison: int
    failed: int


class Bursts:
    """Produces bursts of readings for named unicorns; one endless walk per set of names."""

    def __init__(self, runtime: Runtime, kinesis: Any) -> None:
        self.runtime = runtime
        self.kinesis = kinesis
        self._walks: dict[tuple[str, ...], Iterator[dict[str, Any]]] = {}
        self._lock = threading.Lock()  # two browser tabs may ask at once

    def produce(self, names: Sequence[str], per_unicorn: int, *, poison: bool = False) -> Burst:
        total = len(names) * per_unicorn
        if not names or per_unicorn < 1 or total > MAX_BURST:
            raise UserError(f"a burst is 1 to {MAX_BURST} records: {len(names)} unicorns x {per_unicorn} asked")
        if READINGS_STREAM not in self.runtime.template.resources:
            raise UserError(f"the template has no {READINGS_STREAM} to put readings on")
        stream = self.runtime.template.physical_name(READINGS_STREAM)
        with self._lock:
            walk = self._walks.setdefault(tuple(names), unicorn_statuses(list(names)))
            readings = [next(walk) for _ in range(total)]
        # The walk goes on from where the last burst left it; its readings are stamped from now.
        now_ms = int(time.time() * 1000)
        for index, reading in enumerate(readings):
            reading["StatusTime"] = format_status_time(now_ms + index // len(names) * READING_INTERVAL_MS)
        entries, pills = [], 0
        for position, reading in enumerate(readings, start=1):
            data = json_bytes(reading)
            if poison and position % POISON_EVERY == 0:
                data, pills = poison_pill(position // POISON_EVERY, reading, data), pills + 1
            entries.append((str(reading["Name"]), data))
        report = put_records(self.kinesis, stream, entries)
        return Burst(stream, report.sent, pills, report.failed)


def redrive_state_machine(runtime: Runtime) -> str | None:
    """The ARN of the template's redrive state machine in the emulator; None when the template has none."""
    resource = runtime.template.resources.get(REDRIVE_STATE_MACHINE)
    if resource is None or resource.type not in STATE_MACHINE_TYPES:
        return None
    return str(runtime.template.get_att(REDRIVE_STATE_MACHINE, "Arn"))


def start_redrive(runtime: Runtime, stepfunctions: Any, *, dry_run: bool = False) -> str:
    """StartExecution of the redrive state machine; the execution's ARN."""
    arn = redrive_state_machine(runtime)
    if arn is None or not runtime.runs_state_machines:
        raise UserError("no redrive here: the template has no redrive state machine, or this moto runs none")
    execution = stepfunctions.start_execution(
        stateMachineArn=arn, name=f"console-{uuid.uuid4().hex[:12]}",
        input=json.dumps({**LOCAL_REDRIVE_OPTIONS, "dryRun": dry_run}),
    )  # fmt: skip
    return str(execution["executionArn"])


def redrive_executions(runtime: Runtime, stepfunctions: Any) -> dict[str, Any]:
    """Whether a redrive can start here, and its latest executions with their status."""
    arn = redrive_state_machine(runtime)
    if arn is None or not runtime.runs_state_machines:
        return {"available": False, "executions": []}
    listed = stepfunctions.list_executions(stateMachineArn=arn, maxResults=SHOWN_EXECUTIONS).get("executions", [])
    return {
        "available": True,
        "stateMachine": arn.rsplit(":", 1)[-1],
        "executions": [{"name": item["name"], "status": item["status"], "started": item["startDate"].isoformat()}
                       for item in listed],
    }
