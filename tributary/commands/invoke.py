"""`tributary invoke [FUNCTION] -e EVENT.json`: one function of the template on one event, without Docker.

The counterpart of `sam local invoke`, with its flags where they make sense (`-e/--event`, `-e -` for
stdin, `--env-vars`, `--parameter-overrides`, `-t/--template`, `--config-env`, `--config-file`). It
deploys the template into the embedded AWS, runs the function in this process as the local runtime
does (tributary.runtime.functions: its environment, layers, timeout) and exits. Nothing else runs: no
event source mapping is stepped and no S3 notification delivered, so the event is all the function sees.

What the function prints goes to stderr; the response goes to stdout as one JSON line, the last, as
`sam local invoke` prints it. Exit status 0 when the function returned; 1 when it failed (the error
response, as Lambda writes it, on stdout and one line naming the exception on stderr); a mistake in the
command is a UserError (exit 2), found before the emulator starts where it can be.

An event may need data in place first: each `--put-object s3://BUCKET/KEY=FILE` (BUCKET a name or the
template's logical id) is uploaded after the deployment and before the invocation; an S3 notification
event naming an object the emulated S3 does not hold is refused, naming the object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tributary.commands.invoke_inputs import (
    ObjectToPut,
    env_var_overrides,
    missing_object_error,
    read_env_vars,
    read_event,
    read_object_to_put,
    resolved_bucket,
    s3_objects_named,
)
from tributary.commands.samconfig import DEFAULT_CONFIG_FILE, LOCAL_INVOKE_SECTIONS, merged_overrides
from tributary.runtime.template import Template
from tributary.user_errors import UserError

if TYPE_CHECKING:  # the runtime (boto3, moto) is imported once the arguments are known to be right
    from tributary.runtime.functions import LocalFunction
    from tributary.runtime.invocation import InvocationResult



def main(command: str, argv: list[str]) -> int:
    arguments = _parser(command).parse_args(argv)
    event = read_event(arguments.event)
    env_vars = read_env_vars(arguments.env_vars)
    objects = [read_object_to_put(item) for item in arguments.put_object]
    overrides = merged_overrides(arguments.parameter_overrides, arguments.config_env, arguments.config_file,
                                 sections=LOCAL_INVOKE_SECTIONS)  # fmt: skip
    from tributary.runtime.app import Runtime, RuntimeOptions

    # What the function prints goes to stderr exactly as printed, as `sam local invoke` shows it.
    runtime = Runtime(RuntimeOptions(template_path=arguments.template, parameter_overrides=overrides,
                                     function_log=sys.stderr, function_log_labels=False))  # fmt: skip
    logical_id = chosen_function(runtime.template, arguments.function, arguments.template)
    objects = [resolved_bucket(item, runtime.template) for item in objects]
    with runtime:
        function = runtime.functions[logical_id]
        _override_environment(function, env_vars)
        _put_objects(objects)
        _check_objects_exist(event, runtime.template, arguments.event)
        started = time.monotonic()
        result = function.invoke(event)
        elapsed_ms = (time.monotonic() - started) * 1000
    return _report(logical_id, result, elapsed_ms)


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"tributary {command}",
        description="Invoke one function of the template on an event, in this process (no Docker); "
                    "its logs go to stderr, its response to stdout as JSON.",
    )  # fmt: skip
    parser.add_argument("function", nargs="?", help="the function's logical id (optional if the template has one)")
    parser.add_argument("-e", "--event", metavar="FILE", help="JSON event file, or - for stdin (default: {})")
    parser.add_argument("-t", "--template", type=Path, default=Path("template.yaml"), help="SAM template")
    parser.add_argument("--env-vars", type=Path, metavar="FILE",
                        help='JSON: {"FunctionLogicalId": {"VAR": "value"}, "Parameters": {"VAR": "value"}}; '
                             "only variables the template declares are overridden, as with sam")  # fmt: skip
    parser.add_argument("--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config-env", help="take parameter_overrides from this samconfig environment")
    parser.add_argument("--config-file", type=Path, default=DEFAULT_CONFIG_FILE, help="(default samconfig.toml)")
    parser.add_argument(
        "--put-object",
        action="append",
        default=[],
        metavar="s3://BUCKET/KEY=FILE",
        help="upload FILE before invoking (repeatable; BUCKET may be the bucket's logical id)",
    )
    return parser


def chosen_function(template: Template, name: str | None, template_path: Path) -> str:
    """The logical id of the function to invoke (by logical id or function name); UserError listing them if
    there is no such function, or no name and not exactly one function."""
    from tributary.runtime.functions import unloadable_functions

    logical_ids = [spec.logical_id for spec in template.functions()]
    listed = ", ".join(logical_ids) or "none"
    if name is None:
        if len(logical_ids) != 1:
            raise UserError(f"name the function to invoke; {template_path} has these: {listed}")
        name = logical_ids[0]
    by_name = {template.physical_name(logical_id): logical_id for logical_id in logical_ids}
    logical_id = name if name in logical_ids else by_name.get(name)
    if logical_id is None:
        raise UserError(f"{template_path} has no function {name!r}; its functions: {listed}")
    reason = unloadable_functions(template).get(logical_id)
    if reason:
        raise UserError(f"{logical_id} cannot be invoked locally: {reason}")
    return logical_id


def _override_environment(function: LocalFunction, env_vars: dict[str, dict[str, str]]) -> None:
    config = function.config
    overrides, ignored = env_var_overrides(env_vars, config.logical_id, config.name, config.environment)
    config.environment.update(overrides)
    if ignored:
        _say(f"--env-vars: not in {config.logical_id}'s Environment in the template, so not set (as with sam): "
             f"{', '.join(ignored)}")  # fmt: skip


def _put_objects(objects: list[ObjectToPut]) -> None:
    import boto3

    s3 = boto3.client("s3")
    for item in objects:
        s3.put_object(Bucket=item.bucket, Key=item.key, Body=item.body)
        _say(f"put {item.source} at {item.url()}")


def _check_objects_exist(event: Any, template: Template, event_source: str | None) -> None:
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3")
    for bucket, key in s3_objects_named(event):
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            raise missing_object_error(bucket, key, template, event_source) from error


def _report(logical_id: str, result: InvocationResult, elapsed_ms: float) -> int:
    """Print the outcome: one line on stderr, the response (or error response) as the last line of stdout."""
    if result.function_error is None:
        _say(f"{logical_id} returned in {elapsed_ms:.0f} ms")
        print(json.dumps(result.response), flush=True)
        return 0
    message = " ".join((result.error_message or "").split())  # one line, whatever the exception's message holds
    _say(f"{logical_id} failed after {elapsed_ms:.0f} ms: {message}")
    print(json.dumps(result.error_response()), flush=True)
    return 1


def _say(text: str) -> None:
    print(f"tributary invoke: {text}", file=sys.stderr, flush=True)
