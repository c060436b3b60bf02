"""EMULATION wiring of AWS Step Functions: moto's ASL interpreter runs the template's state machines, and
its task states reach the runtime's functions and the embedded AWS.

moto 5.2.5 ships an interpreter of the Amazon States Language (a port of LocalStack's) that runs
executions when its `stepfunctions.execute_state_machine` setting is on (moto's documented config);
otherwise moto only stores state machines and fakes their executions. Its Lambda and SDK task
integrations make their boto3 clients in one function, `boto_client_for` (asl/utils/boto_client.py),
aimed at `localhost:$MOTO_PORT`: here Lambda calls go to the runtime's Lambda emulation instead,
where the template's functions run in-process, and every other service to the embedded moto server.

The patch is tied to moto 5.2.5 (the version requirements-dev.txt pins) and to the source of the
function it replaces (SHA-256). On any other moto it refuses, and the state machines are created
but their executions are not run (a start-up note says so): a routing written for code it was not
checked against could send a task anywhere.

Not emulated: CloudWatch Logs delivery and X-Ray traces of executions, EventBridge schedules (start
an execution by hand: `tributary redrive`), IAM (the state machine's role is not enforced).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import boto3
import moto
from botocore.config import Config

from tributary.runtime.template import ACCOUNT_ID, Template, TemplateError, load_yaml

PINNED_MOTO_VERSION = "5.2.5"
BOTO_CLIENT_FOR_SHA256 = "1f44dc2ac8aa2179df62365a6e5ea377f1770ea828a0f107440a2554f1b4edb8"
CLIENT_MODULE = "moto.stepfunctions.parser.asl.utils.boto_client"
# The modules that hold `boto_client_for` (imported by name, so each holds its own reference).
TASK_MODULES = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_factory",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)
# moto's own settings for task clients (one attempt, no parameter validation); a Lambda task waits up
# to its function's 15 minutes for the answer.
TASK_CLIENT_CONFIG = Config(
    parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1}, connect_timeout=10,
    read_timeout=3600,
)

_lock = threading.Lock()
_original: Callable[..., Any] | None = None
_saved_setting: dict[str, Any] | None = None
_saved_log_level = logging.NOTSET
INTERPRETER_LOGGER = "moto.stepfunctions.parser"


def refusal() -> str | None:
    """Why this moto's interpreter must not be wired to the runtime, or None when it may."""
    if moto.__version__ != PINNED_MOTO_VERSION:
        return f"moto is {moto.__version__}; the Step Functions wiring was written for moto {PINNED_MOTO_VERSION}"
    source = inspect.getsource(_client_module().boto_client_for)
    if hashlib.sha256(source.encode()).hexdigest() != BOTO_CLIENT_FOR_SHA256:
        return f"moto {moto.__version__}'s boto_client_for changed from the source the wiring was written against"
    return None


def run_executions() -> None:
    """Turn moto's interpreter on: state machines created from now on run their executions.

    The interpreter logs every error it evaluates at ERROR, those a Catch or a Choice handles as
    expected included; an execution's history says what failed, so its log is kept to itself.
    """
    global _saved_setting, _saved_log_level
    from moto.core.config import default_user_config

    with _lock:
        if _saved_setting is None:
            _saved_setting = dict(default_user_config.get("stepfunctions", {}))
            _saved_log_level = logging.getLogger(INTERPRETER_LOGGER).level
        default_user_config["stepfunctions"] = {**_saved_setting, "execute_state_machine": True}
        logging.getLogger(INTERPRETER_LOGGER).setLevel(logging.CRITICAL)


def route_tasks(aws_endpoint: str, lambda_endpoint: str) -> None:
    """Lambda tasks to `lambda_endpoint` (the runtime's functions), every other task to `aws_endpoint`."""
    global _original
    with _lock:
        module = _client_module()
        for name in TASK_MODULES:
            __import__(name)
        current = module.boto_client_for
        _original = _original or current
        _replace_everywhere(current, _routed_client_factory(aws_endpoint, lambda_endpoint))


def stop() -> None:
    """moto as it was: its own clients for tasks, its setting and its log level."""
    global _original, _saved_setting
    from moto.core.config import default_user_config

    with _lock:
        if _original is not None:
            current = _client_module().boto_client_for
            _replace_everywhere(current, _original)
            _original = None
        if _saved_setting is not None:
            default_user_config["stepfunctions"] = _saved_setting
            logging.getLogger(INTERPRETER_LOGGER).setLevel(_saved_log_level)
            _saved_setting = None


def _client_module() -> Any:
    __import__(CLIENT_MODULE)
    return sys.modules[CLIENT_MODULE]


def _replace_everywhere(old: Callable[..., Any], new: Callable[..., Any]) -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and module.__dict__.get("boto_client_for") is old:
            module.boto_client_for = new


def _routed_client_factory(aws_endpoint: str, lambda_endpoint: str) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        """moto's task client (same settings: no retries, no parameter validation), aimed at the runtime."""
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=lambda_endpoint if service == "lambda" else aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=TASK_CLIENT_CONFIG,
        )

    return boto_client_for


# ---------------------------------------------------------------- deployment


def definition(template: Template, properties: dict[str, Any]) -> str:
    """A state machine's definition as Step Functions receives it: DefinitionUri's file (JSON or YAML),
    Definition or DefinitionString, with DefinitionSubstitutions applied as SAM's Fn::Sub applies them."""
    if "DefinitionUri" in properties:
        uri = properties["DefinitionUri"]
        if not isinstance(uri, str) or uri.startswith("s3://"):
            raise TemplateError(f"DefinitionUri {uri!r} is not a local file")
        path = template.base_dir / uri
        body = _file_definition(path)
    elif "Definition" in properties:
        body = properties["Definition"]
    else:
        body = properties.get("DefinitionString")
    text = body if isinstance(body, str) else json.dumps(body)
    substitutions = properties.get("DefinitionSubstitutions") or {}
    resolved = template.resolve({"Fn::Sub": [text, substitutions]})
    if not isinstance(resolved, str):
        raise TemplateError("the state machine's definition did not resolve to text")
    return resolved


def _file_definition(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise TemplateError(f"cannot read the state machine definition {path}: {error.strerror}") from error
    return text if path.suffix == ".json" else load_yaml(text)


class StateMachineDeployer(Protocol):
    """What creating a state machine needs of the deployment (tributary.runtime.resources)."""

    template: Template

    def client(self, service: str) -> Any: ...

    def record(self, logical_id: str, **attributes: Any) -> None: ...


def create_state_machine(deployer: StateMachineDeployer, logical_id: str, properties: dict[str, Any]) -> None:
    """An AWS::Serverless::StateMachine or AWS::StepFunctions::StateMachine, created in the embedded AWS."""
    name = deployer.template.physical_name(logical_id)
    role = properties.get("Role") or properties.get("RoleArn") or f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-role"
    arn = deployer.client("stepfunctions").create_state_machine(
        name=name,
        definition=definition(deployer.template, properties),
        roleArn=str(role),
        type=str(properties.get("Type") or properties.get("StateMachineType") or "STANDARD"),
    )["stateMachineArn"]
    deployer.record(logical_id, Ref=arn, Arn=arn, Name=name)
