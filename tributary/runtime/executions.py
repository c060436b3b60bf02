"""Step Functions executions in the embedded AWS: find a state machine, start an execution, wait for its end.

What `tributary redrive` and the demo's redrive step use, against the runtime they are in or a running
`tributary up`: plain Step Functions API calls (StartExecution, DescribeExecution), as the AWS CLI makes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RUNNING = "RUNNING"
# The redrive's input locally: the runtime runs one invocation at a time, so one message at a time, and
# sooner retries, as its mappings retry sooner than Lambda (the same attempts, bounded the same way).
LOCAL_REDRIVE_OPTIONS: dict[str, Any] = {"maxConcurrency": 1, "retryDelaySeconds": 0.5}


@dataclass(frozen=True)
class ExecutionResult:
    arn: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED, or RUNNING when the wait ended first
    output: Any  # the execution's output, parsed, when it succeeded
    error: str | None
    cause: str | None
    seconds: float


def state_machine_arn(stepfunctions: Any, name: str) -> str:
    """The ARN of the state machine called `name`; LookupError naming the ones there are."""
    names: list[str] = []
    for page in stepfunctions.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
            names.append(machine["name"])
    raise LookupError(f"no state machine {name!r} (there are: {', '.join(names) or 'none'})")


def run_execution(
    stepfunctions: Any,
    arn: str,
    execution_input: Mapping[str, Any],
    *,
    name: str | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExecutionResult:
    """Start an execution of `arn` with `execution_input` and wait until it ends (or `timeout_s` passes)."""
    started = clock()
    execution = stepfunctions.start_execution(
        stateMachineArn=arn, name=name or f"run-{uuid.uuid4().hex[:12]}", input=json.dumps(execution_input)
    )["executionArn"]
    while True:
        described = stepfunctions.describe_execution(executionArn=execution)
        status = described["status"]
        if status != RUNNING or clock() - started >= timeout_s:
            break
        sleep(poll_s)
    output = described.get("output")
    return ExecutionResult(
        arn=execution,
        status=status,
        output=json.loads(output) if status == "SUCCEEDED" and output else None,
        error=described.get("error"),
        cause=described.get("cause"),
        seconds=clock() - started,
    )
