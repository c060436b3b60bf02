"""`tributary redrive`: start the redrive state machine of a running `tributary up` and print its summary.

    tributary redrive --port 4566 [--pipeline payment-processor] [--dry-run]

It is what `aws stepfunctions start-execution` does against AWS: the execution runs inside `up`'s
process (moto's interpreter there, tasks wired to its functions), this command starts it, waits for
its end and prints the summary (exit 0 when the execution succeeded). `--dry-run` lists what would
be re-applied and changes nothing. The local runtime runs one invocation at a time, so the execution
redrives one message at a time (`maxConcurrency` 1) and `up`'s mappings wait meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws_guard import use_local_endpoint
from tributary.demos.redrive_summary import STATE_MACHINE_NAME, summary_lines
from tributary.runtime.executions import LOCAL_REDRIVE_OPTIONS, run_execution, state_machine_arn
from tributary.runtime.template import REGION

DEFAULT_TIMEOUT_S = 3600.0


def main(command: str, argv: list[str]) -> int:
    arguments = _parser(command).parse_args(argv)
    endpoint = arguments.endpoint_url or (f"http://127.0.0.1:{arguments.port}" if arguments.port else None)
    if endpoint is None:
        print("tributary redrive: pass --port (or --endpoint-url) of a running `tributary up`", file=sys.stderr)
        return 2
    use_local_endpoint(endpoint)
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    name = arguments.name_prefix + STATE_MACHINE_NAME
    try:
        arn = state_machine_arn(stepfunctions, name)
        execution_input: dict[str, Any] = {**LOCAL_REDRIVE_OPTIONS, "dryRun": arguments.dry_run}
        if arguments.pipeline:
            execution_input["pipeline"] = arguments.pipeline
        print(f"starting {name} with {json.dumps(execution_input)}", flush=True)
        result = run_execution(stepfunctions, arn, execution_input, timeout_s=arguments.timeout)
    except (LookupError, ClientError, BotoCoreError) as error:
        print(f"tributary redrive: {error}", file=sys.stderr)
        return 2
    print(f"execution {result.arn}: {result.status} in {result.seconds:.1f} s")
    if result.status != "SUCCEEDED":
        print(f"  {result.error}: {result.cause}" if result.error else "  (still running: see its history)")
        return 1
    print(json.dumps(result.output, indent=2) if arguments.json else "\n".join(summary_lines(result.output)))
    return 0


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tributary {command}")
    parser.add_argument("--port", type=int, default=None, help="port of the running `tributary up`")
    parser.add_argument("--endpoint-url", help="the running `tributary up` (default http://127.0.0.1:PORT)")
    parser.add_argument("--pipeline", help="only this pipeline's records (e.g. payment-processor); others stay")
    parser.add_argument("--dry-run", action="store_true", help="list what would be re-applied; change nothing")
    parser.add_argument("--name-prefix", default="", help="the stack's NamePrefix parameter, if `up` was given one")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the execution")
    parser.add_argument("--json", action="store_true", help="print the execution's output as it is")
    return parser
