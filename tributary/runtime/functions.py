"""Run each AWS::Serverless::Function of a template in this process, the way Lambda would.

For every invocation of a function:
- its CodeUri directory and the template's layer directories (and their `python/` folders) lead
  `sys.path`; its Environment (with Globals) plus Lambda's own variables replace `os.environ`;
- the modules of its CodeUri (e.g. `app`) are its own: two functions sharing `app.py` but with
  different environments each import it once, in their own environment, and keep their copy;
- the handler runs in a worker thread and is abandoned after the template's `Timeout`
  (a Python thread cannot be killed; it finishes in the background, its result ignored);
- an exception, a timeout or a response that is not JSON-serialisable is a function error with
  `functionError` "Unhandled", as Lambda reports it;
- with a `FaultInjector` (`--faults`), an invocation may start in a new execution environment
  (lambda.cold-start) or fail after its handler returned (lambda.crash, lambda.timeout).

Functions it cannot run this way (a Runtime other than python3.x, InlineCode, a container image, no
local CodeUri directory) are named by `unloadable_functions` with the reason and left out; the rest
of the template still runs.

Invocations are serialised (`invocation_slot`) because environment variables and `sys.modules` are
process-wide; a function's synchronous Invoke of another runs nested in its slot
(`invoke_nested`), reached through its own Lambda endpoint (`caller_endpoint`), which names it. What
function threads print (Powertools logs) goes to the function log (`function_output`), never to the
runtime's own output.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from tributary.runtime import invocation_slot
from tributary.runtime.function_output import function_thread, stdout_routed
from tributary.runtime.function_output import route_function_output as route_function_output
from tributary.runtime.invocation import ClientContext, InvocationResult
from tributary.runtime.template import ACCOUNT_ID, REGION, FunctionSpec, Template, TemplateError

# For callers on other threads that must not wait behind an invocation (invocation_slot.slot_if_free).
invocation_slot_if_free = invocation_slot.slot_if_free
_DEFAULT_ENVIRONMENT = {
    # No X-Ray daemon locally: tracing is off unless the template turns it on explicitly.
    "POWERTOOLS_TRACE_DISABLED": "true",
}


class InvocationFaults(Protocol):
    """What `--faults` does to invocations (tributary.runtime.faults.FaultInjector, which imports this module
    to tell the functions' clients apart: so it is named here by what it does)."""

    def cold_start(self, function: str) -> bool: ...

    def failure_after_handler(self, function: str, timeout_s: float) -> str | None: ...


class LambdaContext:
    """The attributes and method of Lambda's Python context object that handlers use."""

    def __init__(self, function: FunctionConfig, deadline: float, client_context: ClientContext | None = None) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = client_context
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class FunctionConfig:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    layer_dirs: list[Path] = field(default_factory=list)

    @property
    def import_path(self) -> list[str]:
        paths = [self.code_dir]
        for layer in self.layer_dirs:
            paths += [layer / "python", layer] if (layer / "python").is_dir() else [layer]
        return [str(path) for path in paths]


def function_config(template: Template, spec: FunctionSpec) -> FunctionConfig:
    """Resolve a function's code location, handler, limits and environment from the template."""
    properties = spec.properties
    code_uri = template.resolve(properties.get("CodeUri"))
    handler = template.resolve(properties.get("Handler"))
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{spec.logical_id}: needs a local CodeUri directory and Handler module.function")
    name = template.physical_name(spec.logical_id)
    variables = template.resolve((properties.get("Environment") or {}).get("Variables") or {})
    return FunctionConfig(
        logical_id=spec.logical_id,
        name=name,
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
        code_dir=(template.base_dir / code_uri).resolve(),
        handler=handler,
        timeout_s=float(template.resolve(properties.get("Timeout", 3))),
        memory_mb=int(template.resolve(properties.get("MemorySize", 128))),
        environment={key: _env_string(value) for key, value in variables.items()},
        layer_dirs=[path.resolve() for path in template.layer_directories(properties.get("Layers") or [])],
    )


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LocalFunction:
    """One function of the template, invocable in-process; its invoker is what the ESM engine calls."""

    def __init__(self, config: FunctionConfig, faults: InvocationFaults | None = None) -> None:
        self.config = config
        self.faults = faults
        # AWS_ENDPOINT_URL_LAMBDA in its environment: the Lambda emulation, told this function is calling.
        self.caller_endpoint: str | None = None
        # Hears every invocation's event and result (function name first): Lambda's metrics (alarms.py).
        self.on_invoked: Callable[[str, dict, InvocationResult], None] | None = None
        self.invocations = 0
        self.errors = 0
        self._own_modules: dict[str, ModuleType] = {}
        self._handler: Any = None
        self._top_level_names = _top_level_module_names(config.code_dir)

    def invoke(self, event: dict, client_context: ClientContext | None = None) -> InvocationResult:
        """Invoke with `event` as Lambda does, once the slot is free; never raises for a function's own failure."""
        with invocation_slot.top_level(self.config.name):
            return self._invoke(event, client_context)

    def invoke_nested(self, event: dict, caller: str, client_context: ClientContext | None = None
                      ) -> InvocationResult | None:  # fmt: skip
        """Invoke nested in `caller`'s invocation, which waits for the answer; None if `caller` is not the
        innermost invocation running (then it is not waiting for this one)."""
        with invocation_slot.nested_in(caller, self.config.name) as admitted:
            return self._invoke(event, client_context) if admitted else None

    def _invoke(self, event: dict, client_context: ClientContext | None) -> InvocationResult:
        result = self._invoke_once(event, client_context)
        if self.on_invoked is not None:
            self.on_invoked(self.config.name, event, result)
        return result

    def _invoke_once(self, event: dict, client_context: ClientContext | None) -> InvocationResult:
        payload = json.loads(json.dumps(event))  # what crosses Lambda's API is JSON, nothing else
        if self.faults is not None and self.faults.cold_start(self.config.name):
            self._own_modules, self._handler = {}, None  # a new execution environment imports afresh
        outcome = self._run(payload, client_context)
        if outcome.error is None and self.faults is not None:
            outcome.error = self.faults.failure_after_handler(self.config.name, self.config.timeout_s)
        if outcome.error is not None:
            return self._failed(outcome)
        try:
            response = json.loads(json.dumps(outcome.value))
        except (TypeError, ValueError) as error:
            return self._failed(_Outcome(error=f"Runtime.MarshalError: unable to marshal response: {error}",
                                         request_id=outcome.request_id))  # fmt: skip
        return InvocationResult(response=response, request_id=outcome.request_id)

    def _run(self, payload: Any, client_context: ClientContext | None = None) -> _Outcome:
        """The handler's outcome in this function's process state; the caller holds the invocation slot."""
        with self._lambda_process(), stdout_routed():
            try:
                return self._run_handler(payload, client_context)
            finally:
                invocation_slot.wait_for_nested(self.config.name)  # before the process state is restored

    def _run_handler(self, payload: Any, client_context: ClientContext | None) -> _Outcome:
        self.invocations += 1
        deadline = time.monotonic() + self.config.timeout_s
        try:
            with function_thread(self.config.name):
                handler = self._load_handler()
        except Exception as error:  # an import error is an init failure: Runtime error, like Lambda
            return _Outcome(error=f"Runtime.ImportModuleError: {type(error).__name__}: {error}",
                            stack_trace=_handler_frames(error))  # fmt: skip
        context = LambdaContext(self.config, deadline, client_context)
        return _run_with_timeout(handler, payload, context, max(0.0, deadline - time.monotonic()))

    def _failed(self, outcome: _Outcome) -> InvocationResult:
        self.errors += 1
        assert outcome.error is not None
        return InvocationResult(function_error="Unhandled", error_message=outcome.error,
                                error_type=_error_type(outcome.error), stack_trace=outcome.stack_trace,
                                request_id=outcome.request_id)  # fmt: skip

    def _load_handler(self) -> Any:
        if self._handler is None:
            module_name, _, function_name = self.config.handler.rpartition(".")
            module = importlib.import_module(module_name.replace("/", "."))
            self._handler = getattr(module, function_name)
        return self._handler

    @contextlib.contextmanager
    def _lambda_process(self) -> Iterator[None]:
        """This function's environment, import path and CodeUri modules, restored afterwards."""
        saved_environ = dict(os.environ)
        saved_path = list(sys.path)
        saved_modules = self._swap_in_own_modules()
        os.environ.update(self._lambda_environment())
        sys.path[:0] = self.config.import_path
        importlib.invalidate_caches()
        try:
            yield
        finally:
            self._swap_out_own_modules(saved_modules)
            sys.path[:] = saved_path
            os.environ.clear()
            os.environ.update(saved_environ)

    def _lambda_environment(self) -> dict[str, str]:
        config = self.config
        lambda_variables = {
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
            "LAMBDA_TASK_ROOT": str(config.code_dir),
            "_HANDLER": config.handler,
        }
        if self.caller_endpoint is not None:
            lambda_variables["AWS_ENDPOINT_URL_LAMBDA"] = self.caller_endpoint
        return {**_DEFAULT_ENVIRONMENT, **lambda_variables, **config.environment}

    def _is_own(self, module_name: str) -> bool:
        return module_name.partition(".")[0] in self._top_level_names

    def _swap_in_own_modules(self) -> dict[str, ModuleType]:
        others = {name: module for name, module in sys.modules.items() if self._is_own(name)}
        for name in others:
            del sys.modules[name]
        sys.modules.update(self._own_modules)
        return others

    def _swap_out_own_modules(self, others: dict[str, ModuleType]) -> None:
        self._own_modules = {name: module for name, module in sys.modules.items() if self._is_own(name)}
        for name in self._own_modules:
            del sys.modules[name]
        sys.modules.update(others)


def _top_level_module_names(code_dir: Path) -> frozenset[str]:
    if not code_dir.is_dir():
        raise TemplateError(f"CodeUri directory {code_dir} does not exist")
    names = {path.stem for path in code_dir.glob("*.py")}
    names |= {path.name for path in code_dir.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    return frozenset(names)


@dataclass
class _Outcome:
    value: Any = None
    error: str | None = None  # "Type: message", as Lambda's runtime describes a failure
    stack_trace: tuple[str, ...] = ()
    request_id: str | None = None


_TYPED_ERROR = re.compile(r"([A-Za-z_][\w.]*): ", re.ASCII)  # "ValueError: boom", "Runtime.MarshalError: ..."


def _error_type(error: str) -> str:
    if error.startswith("Task timed out"):
        return "Sandbox.Timedout"
    match = _TYPED_ERROR.match(error)
    return match.group(1) if match else "Runtime.Unknown"


def _run_with_timeout(handler: Any, event: dict, context: LambdaContext, timeout_s: float) -> _Outcome:
    outcome = _Outcome(request_id=context.aws_request_id)

    def target() -> None:
        with function_thread(context.function_name):
            try:
                outcome.value = handler(event, context)
            except Exception as error:
                outcome.error = f"{type(error).__name__}: {error}"
                outcome.stack_trace = _handler_frames(error)
                print(traceback.format_exc())  # the function's log, as Lambda's runtime logs it

    worker = threading.Thread(target=target, name=f"lambda-{context.function_name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return _Outcome(error=f"Task timed out after {timeout_s:.2f} seconds", request_id=context.aws_request_id)
    return outcome


def _handler_frames(error: Exception) -> tuple[str, ...]:
    """The traceback's frames from the handler down, as Lambda's stackTrace lists them (this module's left out)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
    return tuple(traceback.format_list(frames))


FunctionLookup = Callable[[str], LocalFunction | None]
"""A function the runtime runs, by name, full or partial ARN; None when it runs no such function."""


def load_functions(template: Template, faults: InvocationFaults | None = None) -> dict[str, LocalFunction]:
    """Every AWS::Serverless::Function of the template this runtime can run, by logical id (`faults` for all)."""
    unloadable = unloadable_functions(template)
    return {
        spec.logical_id: LocalFunction(function_config(template, spec), faults)
        for spec in template.functions()
        if spec.logical_id not in unloadable
    }


def unloadable_functions(template: Template) -> dict[str, str]:
    """Functions this runtime cannot run in-process, by logical id, with the reason."""
    reasons = {spec.logical_id: _unloadable_reason(template, spec) for spec in template.functions()}
    return {logical_id: reason for logical_id, reason in reasons.items() if reason}


def _unloadable_reason(template: Template, spec: FunctionSpec) -> str:
    properties = spec.properties
    runtime = template.resolve(properties.get("Runtime"))
    if properties.get("PackageType") == "Image":
        return "container image functions are not run locally"
    if not (isinstance(runtime, str) and runtime.startswith("python3")):
        return f"Runtime {runtime} is not run locally (python3.x only)"
    if "InlineCode" in properties:
        return "InlineCode is not run locally (a local CodeUri directory is needed)"
    code_uri = template.resolve(properties.get("CodeUri"))
    if not isinstance(code_uri, str) or not (template.base_dir / code_uri).is_dir():
        return f"CodeUri {code_uri!r} is not a local directory"
    handler = template.resolve(properties.get("Handler"))
    if not isinstance(handler, str) or "." not in handler:
        return f"Handler {handler!r} is not module.function"
    return ""
