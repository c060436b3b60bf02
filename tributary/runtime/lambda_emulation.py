"""EMULATION of the Lambda Invoke API and of Lambda's asynchronous invocation, for the local runtime only.

moto stores functions but cannot run them here (no Docker), and the runtime runs the template's
functions in-process. This is a small HTTP server on loopback speaking Lambda's REST-JSON Invoke
operation (`POST /2015-03-31/functions/{FunctionName}/invocations`, API version 2015-03-31) for the
functions the runtime runs, found by name, full or partial ARN (qualifier `$LATEST` or none):

- `Event` (asynchronous invocation): 202 at once; the event is queued and run later on the
  runtime's polling thread (`poll()`), like every other invocation. A function error (an exception,
  a timeout) is retried up to the function's EventInvokeConfig `MaximumRetryAttempts` (default 2)
  after delays (AWS waits 1 then 2 minutes; injectable, seconds locally), as long as the event is
  younger than `MaximumEventAgeInSeconds` (default 6 h). Then the invocation record
  ("Capturing records of Lambda asynchronous invocations": version, timestamp, requestContext
  {requestId, functionArn, condition RetriesExhausted | EventAgeExceeded, approximateInvokeCount},
  requestPayload, responseContext {statusCode, executedVersion, functionError}, responsePayload)
  goes to the OnFailure destination (SQS, SNS, S3 under `aws/lambda/async/<function>/...`, or a
  Lambda function); a success goes to OnSuccess if set. EventBridge destinations are not emulated.
- `RequestResponse`: runs the function and answers its response, or its error payload with the
  `X-Amz-Function-Error: Unhandled` header. Invocations are serialised in-process, so while one
  runs (e.g. a function invoking another synchronously) the answer is 429 TooManyRequestsException
  (botocore retries it): the local runtime's concurrency is one.
- `DryRun`: 204. An unknown function: 404 ResourceNotFoundException in Lambda's error shape.

Not emulated: other Lambda operations, ClientContext, log tails (X-Amz-Log-Result), versions and
aliases, throttling and system-error retries, reserved concurrency, recursive loop detection.
The runtime's functions reach it unchanged through botocore's service-specific endpoint variable
AWS_ENDPOINT_URL_LAMBDA (service id "Lambda"), which `start()` sets.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from tributary.runtime.destinations import OnFailureDestination, iso_millis
from tributary.runtime.esm import InvocationResult
from tributary.runtime.functions import LocalFunction, invocation_slot_if_free
from tributary.runtime.loopback_service import LoopbackService
from tributary.runtime.template import ACCOUNT_ID, REGION, Template

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_LAMBDA"
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations$")
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 2
DEFAULT_MAXIMUM_EVENT_AGE_S = 6 * 3600
AWS_RETRY_DELAYS_S = (60.0, 120.0)  # "one minute ... then two minutes" between attempts
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"

FunctionLookup = Callable[[str], LocalFunction | None]


class ServiceError(Exception):
    """An Invoke error response: HTTP status and Lambda's error type (x-amzn-ErrorType)."""

    def __init__(self, status: HTTPStatus, code: str, message: str, **members: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.members = {"Type": "User", "Message": message, **members}


def function_not_found(name: str) -> ServiceError:
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
    return ServiceError(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"Function not found: {arn}")


@dataclass(frozen=True)
class AsyncConfig:
    """A function's EventInvokeConfig: retries, maximum event age and destinations (ARNs)."""

    maximum_retry_attempts: int = DEFAULT_MAXIMUM_RETRY_ATTEMPTS
    maximum_event_age_s: int = DEFAULT_MAXIMUM_EVENT_AGE_S
    on_failure: str | None = None
    on_success: str | None = None


def async_configs(template: Template, lookup: FunctionLookup) -> dict[str, AsyncConfig]:
    """EventInvokeConfig by function name: SAM's function property and AWS::Lambda::EventInvokeConfig."""
    configs: dict[str, AsyncConfig] = {}
    for spec in template.functions():
        function = lookup(template.physical_name(spec.logical_id))
        properties = template.resolve(spec.properties.get("EventInvokeConfig"))
        if function is not None and properties:
            configs[function.config.name] = _async_config(properties)
    for resource in template.resources.values():
        if resource.type != "AWS::Lambda::EventInvokeConfig":
            continue
        properties = template.resolve(resource.properties)
        function = lookup(str(properties.get("FunctionName", "")))
        if function is not None:
            configs[function.config.name] = _async_config(properties)
    return configs


def _async_config(properties: Mapping[str, Any]) -> AsyncConfig:
    destinations = properties.get("DestinationConfig") or {}
    return AsyncConfig(
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", DEFAULT_MAXIMUM_RETRY_ATTEMPTS)),
        maximum_event_age_s=int(properties.get("MaximumEventAgeInSeconds", DEFAULT_MAXIMUM_EVENT_AGE_S)),
        on_failure=(destinations.get("OnFailure") or {}).get("Destination"),
        on_success=(destinations.get("OnSuccess") or {}).get("Destination"),
    )


@dataclass(order=True)
class QueuedEvent:
    """One asynchronous invocation waiting in the queue (its first try or a retry)."""

    due: float
    sequence: int
    function: LocalFunction = field(compare=False)
    payload: Any = field(compare=False)
    request_id: str = field(compare=False)
    queued_at: float = field(compare=False)
    attempts: int = field(default=0, compare=False)


@dataclass
class AsyncStats:
    queued: int = 0
    invocations: int = 0
    succeeded: int = 0
    errors: int = 0
    retries: int = 0
    to_on_failure: int = 0
    discarded: int = 0  # failed for good with no OnFailure destination (or it could not take the record)
    last_error: str | None = None
    records: list[dict] = field(default_factory=list)  # every record sent to a destination, for reports


class LambdaEmulation(LoopbackService):
    """The Invoke API on loopback and the asynchronous event queue the runtime's poll loop drains."""

    endpoint_variable = ENDPOINT_VARIABLE
    service_name = "lambda"

    def __init__(
        self,
        lookup: FunctionLookup,
        configs: Mapping[str, AsyncConfig] | None = None,
        *,
        retry_delays_s: Sequence[float] = AWS_RETRY_DELAYS_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.name = "lambda-async-invocations"
        self.lookup = lookup
        self.configs = dict(configs or {})
        self.retry_delays_s = tuple(retry_delays_s) or (0.0,)
        self.clock = clock
        self.wall_clock = wall_clock
        self.stats = AsyncStats()
        self._queue: list[QueuedEvent] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._destinations: dict[str, OnFailureDestination] = {}

    def request_handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # ------------------------------------------------------------------ Invoke
    def resolve(self, name_or_arn: str, qualifier: str | None = None) -> LocalFunction:
        """The function an Invoke names (name, ARN or partial ARN; only $LATEST); 404 otherwise."""
        function = self.lookup(name_or_arn)
        name_qualifier = _qualifier_in_name(name_or_arn)
        if function is None or {qualifier, name_qualifier} - {None, "$LATEST"}:
            raise function_not_found(name_or_arn + (f":{qualifier}" if qualifier else ""))
        if name_or_arn.startswith("arn:") and not name_or_arn.startswith(function.config.arn):
            raise function_not_found(name_or_arn)  # another account or region
        return function

    def invoke_async(self, function: LocalFunction, payload: Any) -> str:
        """Queue an asynchronous invocation (InvocationType Event); returns its request id."""
        now = self.clock()
        event = QueuedEvent(now, next(self._sequence), function, payload, str(uuid.uuid4()), now)
        with self._lock:
            heapq.heappush(self._queue, event)
            self.stats.queued += 1
        return event.request_id

    def invoke_sync(self, function: LocalFunction, payload: Any) -> InvocationResult:
        """Run now (RequestResponse) if no other invocation is running; 429 otherwise."""
        with invocation_slot_if_free() as free:
            if not free:
                raise ServiceError(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded. (local runtime: one invocation at a time; another is running)",
                    Reason="ConcurrentInvocationLimitExceeded",
                )
            return function.invoke(payload)

    # ------------------------------------------------------------------ the asynchronous queue
    def poll(self) -> bool:
        """Run every queued event that is due (on the runtime's polling thread); True if any ran."""
        due = self._take_due()
        for event in due:
            self._run(event)
        return bool(due)

    def _take_due(self) -> list[QueuedEvent]:
        now = self.clock()
        due: list[QueuedEvent] = []
        with self._lock:
            while self._queue and self._queue[0].due <= now:
                due.append(heapq.heappop(self._queue))
        return due

    def is_drained(self) -> bool:
        with self._lock:
            return not self._queue

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _run(self, event: QueuedEvent) -> None:
        config = self.configs.get(event.function.config.name, AsyncConfig())
        event.attempts += 1
        self.stats.invocations += 1
        result = event.function.invoke(event.payload)
        if result.function_error is None:
            self.stats.succeeded += 1
            if config.on_success:
                self._send(config.on_success, self._record(event, "Success", result), event)
            return
        self.stats.errors += 1
        self.stats.last_error = f"{event.function.config.name}: {result.error_message}"
        if event.attempts <= config.maximum_retry_attempts:
            delay = self.retry_delays_s[min(event.attempts, len(self.retry_delays_s)) - 1]
            if self.clock() + delay - event.queued_at <= config.maximum_event_age_s:
                self._retry(event, delay)
                return
            self._fail(event, config, self._record(event, EVENT_AGE_EXCEEDED, result))
            return
        self._fail(event, config, self._record(event, RETRIES_EXHAUSTED, result))

    def _retry(self, event: QueuedEvent, delay: float) -> None:
        event.due = self.clock() + delay
        event.sequence = next(self._sequence)
        with self._lock:
            heapq.heappush(self._queue, event)
        self.stats.retries += 1

    def _fail(self, event: QueuedEvent, config: AsyncConfig, record: dict) -> None:
        if config.on_failure and self._send(config.on_failure, record, event):
            self.stats.to_on_failure += 1
            return
        self.stats.discarded += 1

    def _record(self, event: QueuedEvent, condition: str, result: InvocationResult) -> dict[str, Any]:
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if result.function_error:
            response_context["functionError"] = result.function_error
        return {
            "version": "1.0",
            "timestamp": iso_millis(self.wall_clock()),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": f"{event.function.config.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": event.payload,
            "responseContext": response_context,
            "responsePayload": response_payload(result, event.request_id),
        }

    def _send(self, arn: str, record: dict[str, Any], event: QueuedEvent) -> bool:
        """Deliver an invocation record; False (named in last_error) if the destination cannot take it."""
        try:
            if arn.split(":")[2:3] == ["lambda"]:
                self.invoke_async(self.resolve(arn), record)
            else:
                destination = self._destinations.get(arn) or self._destinations.setdefault(
                    arn, OnFailureDestination(arn)
                )
                destination.send(record, None, mapping_uuid="async", shard_id=event.function.config.name,
                                 now=self.wall_clock())
        except (ServiceError, ValueError, ClientError, BotoCoreError) as error:
            self.stats.last_error = f"{event.function.config.name}: destination {arn} refused the record: {error}"
            return False
        self.stats.records.append(record)
        return True

    def __repr__(self) -> str:
        return f"{self.name} ({self.pending()} queued)"

    def counters(self) -> dict[str, int]:
        stats = self.stats
        return {
            "queued": self.pending(),
            "invocations": stats.invocations,
            "errors": stats.errors,
            "retries": stats.retries,
            "on-failure": stats.to_on_failure,
            "discarded": stats.discarded,
        }


def response_payload(result: InvocationResult, request_id: str) -> Any:
    """What Invoke answers: the function's response, or the Python runtime's error object."""
    if result.function_error is None:
        return result.response
    message = result.error_message or ""
    error_type, separator, detail = message.partition(": ")
    if message.startswith("Task timed out"):
        return {"errorMessage": f"{request_id} {message}", "errorType": "Sandbox.Timedout"}
    if separator and re.fullmatch(r"[A-Za-z_][\w.]*", error_type):
        return {"errorMessage": detail, "errorType": error_type, "requestId": request_id, "stackTrace": []}
    return {"errorMessage": message, "errorType": "Runtime.Unknown", "requestId": request_id}


def _qualifier_in_name(name_or_arn: str) -> str | None:
    name = name_or_arn.rsplit(":function:", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def _handler_for(emulation: LambdaEmulation) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "TributaryLambdaEmulation/1"

        def do_POST(self) -> None:
            request_id = str(uuid.uuid4())
            try:
                self._invoke(request_id)
            except ServiceError as error:
                self._error(error, request_id)

        def do_GET(self) -> None:
            self._error(_unsupported(self.command, self.path), str(uuid.uuid4()))

        do_PUT = do_DELETE = do_GET

        def _invoke(self, request_id: str) -> None:
            url = urlsplit(self.path)
            match = INVOKE_PATH.fullmatch(url.path)
            if match is None:
                raise _unsupported(self.command, url.path)
            qualifier = (parse_qs(url.query).get("Qualifier") or [None])[0]
            function = emulation.resolve(unquote(match["function"]), qualifier)
            invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if invocation_type not in {"Event", "RequestResponse", "DryRun"}:
                raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidParameterValueException",
                                   f"InvocationType {invocation_type!r} is not Event, RequestResponse or DryRun")
            limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
            payload = self._payload(limit)
            if invocation_type == "DryRun":
                self._reply(HTTPStatus.NO_CONTENT, b"", request_id)
            elif invocation_type == "Event":
                self._reply(HTTPStatus.ACCEPTED, b"", emulation.invoke_async(function, payload))
            else:
                result = emulation.invoke_sync(function, payload)
                body = json.dumps(response_payload(result, request_id)).encode()
                headers = {"X-Amz-Executed-Version": "$LATEST"}
                if result.function_error:
                    headers["X-Amz-Function-Error"] = result.function_error
                self._reply(HTTPStatus.OK, body, request_id, headers)

        def _payload(self, limit: int) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                raise ServiceError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestTooLargeException",
                                   f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
            body = self.rfile.read(length)
            if not body.strip():
                return {}
            try:
                return json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                                   f"Could not parse request body into json: {error}") from error

        def _error(self, error: ServiceError, request_id: str) -> None:
            headers = {"x-amzn-ErrorType": error.code}
            if error.status == HTTPStatus.TOO_MANY_REQUESTS:
                headers["Retry-After"] = "1"
            self._reply(error.status, json.dumps(error.members).encode(), request_id, headers)

        def _reply(self, status: HTTPStatus, body: bytes, request_id: str,
                   headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", request_id)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the runtime's counters and trace say what the functions did."""

    return Handler


def _unsupported(method: str, path: str) -> ServiceError:
    return ServiceError(HTTPStatus.BAD_REQUEST, "UnsupportedOperationException",
                        f"{method} {path}: the local Lambda emulation serves Invoke only")
