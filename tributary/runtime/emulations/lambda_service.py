"""EMULATION of the Lambda Invoke API and of Lambda's asynchronous invocation, for the local runtime only.

moto stores functions but cannot run them here (no Docker), and the runtime runs the template's
functions in-process. This is a small HTTP server on loopback speaking Lambda's REST-JSON Invoke
operation (`POST /2015-03-31/functions/{FunctionName}/invocations`, API version 2015-03-31; the wire
format is lambda_invoke_api.py) for the functions the runtime runs, found by name, full or partial
ARN (qualifier `$LATEST` or none):

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
  `X-Amz-Function-Error: Unhandled` header. Invocations are serialised in-process: a call from a
  function that is waiting for the answer (it comes through that function's own endpoint,
  `caller_endpoint`) runs nested in its invocation (tributary.runtime.invocation_slot); any other
  call while one runs is answered 429 TooManyRequestsException (botocore retries it): the local
  runtime's concurrency is one.
- `DryRun`: 204. An unknown function: 404 ResourceNotFoundException in Lambda's error shape.

Not emulated: other Lambda operations, log tails (X-Amz-Log-Result), versions and
aliases, throttling and system-error retries, reserved concurrency, recursive loop detection.
The runtime's functions reach it unchanged through botocore's service-specific endpoint variable
AWS_ENDPOINT_URL_LAMBDA (service id "Lambda"), which `start()` sets.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary.runtime.destinations import OnFailureDestination, iso_millis
from tributary.runtime.emulations.lambda_invoke_api import (
    CALLER_PREFIX,
    function_not_found,
    handler_for,
    response_payload,
)
from tributary.runtime.emulations.loopback import LoopbackRequestHandler, LoopbackService, ServiceError
from tributary.runtime.functions import FunctionLookup, LocalFunction, invocation_slot_if_free
from tributary.runtime.invocation import ClientContext, InvocationResult
from tributary.runtime.template import Template

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_LAMBDA"
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 2
DEFAULT_MAXIMUM_EVENT_AGE_S = 6 * 3600
AWS_RETRY_DELAYS_S = (60.0, 120.0)  # "one minute ... then two minutes" between attempts
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"



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

    def request_handler(self) -> type[LoopbackRequestHandler]:
        return handler_for(self)

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

    def caller_endpoint(self, function: LocalFunction) -> str:
        """The endpoint `function`'s own clients use: its synchronous calls then run nested in its invocation."""
        return f"{self.endpoint_url}{CALLER_PREFIX}{function.config.name}"

    def invoke_sync(self, function: LocalFunction, payload: Any, caller: str | None = None,
                    client_context: ClientContext | None = None) -> InvocationResult:  # fmt: skip
        """Run now (RequestResponse): nested in `caller`'s invocation if it is waiting for this one, else
        if no other invocation is running; 429 otherwise."""
        if caller is not None and (result := function.invoke_nested(payload, caller, client_context)) is not None:
            return result
        with invocation_slot_if_free() as free:
            if not free:
                raise ServiceError(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded. (local runtime: one invocation at a time; another is running)",
                    Reason="ConcurrentInvocationLimitExceeded",
                )
            return function.invoke(payload, client_context)

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


def _qualifier_in_name(name_or_arn: str) -> str | None:
    name = name_or_arn.rsplit(":function:", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None
